// The duplicates view: GET /api/duplicates, each group's files side by side with their
// thumbnails and the evidence in words; "Keep this one" removes the group's other images
// from the index (DELETE /api/images/{id}) after a confirmation. Files on disk are never
// touched.

import { deleteJson, describeError, getJson } from "./api.js";
import {
  $, baseName, confirmAction, el, folderLine, fmtBytes, fmtMs, fmtScore, isNum, listWords, plural, setFieldError,
} from "./dom.js";
import { drawBox, thumbnail, validBox } from "./media.js";

const TIER_WORDS = {
  exact: "Exact copies",
  near: "Near copies",
  contained: "A picture and its crops",
};
const TIER_HINTS = {
  exact: "The same picture: identical file content or identical pixels.",
  near: "The same picture re-saved, resized or lightly edited.",
  contained: "The first picture holds the others as crops.",
};

const ui = {
  form: $("dup-form"),
  collection: $("dup-collection"),
  tier: $("dup-tier"),
  button: $("find-duplicates"),
  summary: $("dup-summary"),
  groups: $("dup-groups"),
};

let onChanged = () => {};
const letter = (i) => String.fromCharCode(65 + (i % 26)) + (i >= 26 ? String(Math.floor(i / 26)) : "");
const pctWords = (x) => `${Math.round(x * 100)}%`;

/** One pair's evidence, naming the items by their letters. */
function evidenceWords(pair) {
  const a = letter(pair.a);
  const b = letter(pair.b);
  const e = pair.evidence || {};
  const measures = [];
  if (isNum(e.correlation)) measures.push(`pixels correlate ${fmtScore(e.correlation)}`);
  if (isNum(e.detail)) measures.push(`edges correlate ${fmtScore(e.detail)}`);
  if (isNum(e.clip_score)) measures.push(`model similarity ${fmtScore(e.clip_score)}`);
  const how = measures.length ? ` (${listWords(measures)})` : "";
  switch (e.check) {
    case "content":
      return `${a} and ${b} hold the same file content, byte for byte.`;
    case "pixels":
      return `${a} and ${b} are different files with identical pixels${how}.`;
    case "thumbnail":
      return `${b} is a re-saved or resized copy of ${a}${how}.`;
    case "located": {
      const where = validBox(e.box) ? ` at ${e.box[0]}, ${e.box[1]} (${e.box[2] - e.box[0]} × ${e.box[3] - e.box[1]} px)` : "";
      const area = isNum(e.area) ? `, covering ${pctWords(e.area)} of ${a}` : "";
      return `${b} is a crop of ${a}, found${where}${area}${how}.`;
    }
    default:
      return `${a} and ${b} match (score ${fmtScore(pair.score)}).`;
  }
}

function groupItem(group, item, index, collection, groupLi) {
  const name = baseName(item.path) || item.id;
  const pic = thumbnail({
    id: item.id, collection, width: item.width, height: item.height, alt: name, path: item.path,
  });
  // A parent shows where its crops were found.
  for (const pair of group.pairs || []) {
    const e = pair.evidence || {};
    if (pair.a === index && e.check === "located" && validBox(e.box) && item.width && item.height) {
      drawBox(pic.wrap, e.box, item.width, item.height, { best: true, label: letter(pair.b) });
    }
  }
  const role = group.tier === "contained" ? (index === 0 ? "Original" : "Crop") : null;
  const li = el("li", { class: "dup-item", "data-id": item.id },
    el("div", { class: "dup-letter", "aria-hidden": "true" }, letter(index)),
    pic.frame,
    el("div", { class: "card-body" },
      el("div", { class: "filename", title: item.path }, `${letter(index)}. ${name}`),
      folderLine(item.path),
      el("div", { class: "facts-line" },
        [role, `${item.width} × ${item.height} px`, fmtBytes(item.file_size)].filter(Boolean).join(" · "))));
  const others = [...new Set(group.items.map((x) => x.id))].filter((id) => id !== item.id);
  if (others.length) {
    const keep = el("button", { type: "button", class: "secondary keep", "aria-label": `Keep ${letter(index)}, ${name}, and remove the others from the index` },
      "Keep this one");
    keep.addEventListener("click", () => keepOne(group, item, others, collection, groupLi));
    li.querySelector(".card-body").append(keep);
  }
  return li;
}

function groupElement(group, collection) {
  const li = el("li", { class: `dup-group tier-${group.tier}`, "data-tier": group.tier });
  const items = el("ol", { class: "dup-items" });
  items.append(...group.items.map((item, i) => groupItem(group, item, i, collection, li)));
  const pairs = group.pairs || [];
  const evidence = pairs.length
    ? [el("p", { class: "dup-why" }, "Why:"), el("ul", { class: "dup-evidence" }, ...pairs.map((p) => el("li", {}, evidenceWords(p))))]
    : [];
  const ids = new Set(group.items.map((x) => x.id));
  const note = ids.size === 1
    ? el("p", { class: "hint" }, "These files are one image in the index (the same content), so there is nothing to remove from it. Delete the extra files on disk yourself if you want to.")
    : null;
  li.append(...[
    el("h2", { class: "dup-title" }, `${TIER_WORDS[group.tier] || group.tier} · ${plural(group.items.length, "file")}`),
    el("p", { class: "hint" }, TIER_HINTS[group.tier] || ""),
    items, ...evidence, note,
    el("p", { class: "field-error", role: "alert", hidden: true }),
  ].filter(Boolean));
  return li;
}

async function keepOne(group, kept, others, collection, groupLi) {
  const removed = group.items.filter((x) => others.includes(x.id));
  const yes = await confirmAction({
    title: `Keep “${baseName(kept.path)}” only?`,
    text: `${plural(others.length, "other image")} of this group ${others.length === 1 ? "is" : "are"} removed from the index of “${collection}”: `
      + `${listWords(removed.map((x) => x.path))}. No file is deleted from disk.`,
    yes: "Remove the others from the index",
  });
  if (!yes) return;
  const error = groupLi.querySelector(".field-error");
  error.hidden = true;
  for (const button of groupLi.querySelectorAll("button.keep")) button.disabled = true;
  const failed = [];
  for (const id of others) {
    try {
      await deleteJson(`/api/images/${encodeURIComponent(id)}?${new URLSearchParams({ collection })}`);
    } catch (err) {
      if (err.status !== 404) failed.push(describeError(err).words); // 404: already gone
    }
  }
  onChanged();
  if (failed.length) {
    error.textContent = failed[0];
    error.hidden = false;
    for (const button of groupLi.querySelectorAll("button.keep")) button.disabled = false;
    return;
  }
  groupLi.replaceChildren(el("p", { class: "done-note", role: "status", tabindex: "-1" },
    `Kept ${kept.path}; removed ${plural(others.length, "other image")} from the index. No file was deleted from disk.`));
  groupLi.classList.add("resolved");
  groupLi.firstChild.focus();
}

async function find() {
  setFieldError("dup-error", "", "dup-collection");
  const collection = ui.collection.value.trim() || "default";
  const params = new URLSearchParams({ collection });
  if (ui.tier.value) params.set("tier", ui.tier.value);
  ui.button.disabled = true;
  ui.summary.textContent = "Looking for duplicates… (this reads every image of the collection)";
  ui.groups.replaceChildren();
  try {
    const data = await getJson(`/api/duplicates?${params}`);
    const groups = Array.isArray(data.groups) ? data.groups : [];
    const among = `among ${plural(data.images, "image")} of “${data.collection}”`;
    ui.summary.textContent = groups.length
      ? `${plural(groups.length, "group")} ${among} (${fmtMs(data.processing_time_ms)}).${data.truncated ? " There may be more: the search stopped at its limit." : ""}`
      : `No duplicates found ${among}.`;
    ui.groups.replaceChildren(...groups.map((g) => groupElement(g, data.collection)));
  } catch (err) {
    const info = describeError(err);
    ui.summary.textContent = "";
    setFieldError("dup-error", info.words, info.target === "collection" ? "dup-collection" : null);
  } finally {
    ui.button.disabled = false;
  }
}

export function initDuplicates({ changed }) {
  onChanged = changed;
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    find();
  });
}
