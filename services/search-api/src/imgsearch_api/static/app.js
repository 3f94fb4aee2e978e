// The page's entry: the views by hash (#search, #library, #duplicates), the header's
// status, and the modules' start.

import { describeError, getJson } from "./api.js";
import { $, fmtInt, isNum, plural } from "./dom.js";
import { initDuplicates } from "./duplicates.js";
import { initLibrary, loadCollections } from "./library.js";
import { initSearch } from "./search.js";

const VIEWS = ["search", "library", "duplicates"];
const STATUS_MS = 15000;

function showView() {
  const wanted = window.location.hash.replace(/^#/, "");
  const view = VIEWS.includes(wanted) ? wanted : "search";
  for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
  for (const link of document.querySelectorAll("nav.views a")) {
    if (link.getAttribute("href") === `#${view}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${view.charAt(0).toUpperCase()}${view.slice(1)} · Image search`;
}

async function refreshStatus() {
  const box = $("server-status");
  const text = $("server-status-text");
  try {
    const data = await getJson("/api/status");
    const counts = data.indexed_images || {};
    const queue = data.queue || {};
    const parts = [plural(counts.full_images, "image"), plural(counts.partial_images, "region")];
    if (isNum(queue.pending) && queue.pending > 0) parts.push(`${fmtInt(queue.pending)} queued`);
    if (isNum(queue.dead_letters) && queue.dead_letters > 0) parts.push(plural(queue.dead_letters, "dead letter"));
    text.textContent = parts.join(" · ");
    box.className = "server-status ok";
    const names = Object.entries(data.collections || {}).map(([name, c]) =>
      `${name}: ${plural(c.full_images, "image")}, ${plural(c.partial_images, "region")}`);
    box.title = names.join("\n");
  } catch (err) {
    text.textContent = err && err.code === "network" ? "Server unreachable" : `Status unavailable: ${describeError(err).words}`;
    box.className = "server-status down";
  }
}

/** Something in the index changed (a batch finished, an image or collection deleted). */
function changed() {
  refreshStatus();
  loadCollections();
}

window.addEventListener("hashchange", showView);
showView();
initSearch({ changed });
initLibrary({ changed });
initDuplicates({ changed });
refreshStatus();
setInterval(() => {
  if (!document.hidden) refreshStatus();
}, STATUS_MS);
