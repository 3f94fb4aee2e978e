// Search results: the cards (thumbnail, what kind of match in words, the score, the file,
// the best box only), the empty state, the timings, and the detail dialog (the original,
// every matched box, where the result lies in the query, delete).

import { deleteJson, describeError } from "./api.js";
import {
  $, baseName, closeOnBackdrop, folderLine, confirmAction, el, fmtBytes, fmtMs, fmtScore, isNum, openModal,
  plural, sameOriginUrl, setFieldError,
} from "./dom.js";
import { drawBox, missingFile, pictureWrap, thumbnail, validBox } from "./media.js";

export const KIND_WORDS = {
  same: "Same image",
  contains_query: "Contains your query",
  in_query: "Appears in your query",
  similar: "Similar",
};

const KIND_HINTS = {
  same: "The same picture as your query.",
  contains_query: "Your query is a part of this picture: the outline shows where.",
  in_query: "This picture appears inside your query.",
  similar: "Looks alike as a whole; no part of it matched better than the whole.",
};

/** The server's `kind`; for answers of servers without it, derived from the older fields:
 *  a region that beat the whole picture means the picture contains the query ("same" is
 *  never guessed). */
export function kindOf(result) {
  if (!result) return "similar";
  if (KIND_WORDS[result.kind]) return result.kind;
  if (result.match_type === "contains") return "in_query";
  if (result.match_type === "partial_to_full") return "contains_query";
  if (isNum(result.partial_score) && (!isNum(result.full_score) || result.partial_score > result.full_score)) {
    return "contains_query";
  }
  return "similar";
}

/** The one box drawn by default: the server's `best_box` (null: none), or for answers
 *  without it the best matched box of a region match. */
export function bestBoxOf(result) {
  if (result && "best_box" in result) {
    return result.best_box && validBox(result.best_box.box) ? result.best_box : null;
  }
  if (kindOf(result) === "similar") return null;
  const boxes = matchedBoxes(result);
  return boxes.length ? boxes[0] : null;
}

/** The matched boxes, best first. */
export function matchedBoxes(result) {
  const boxes = Array.isArray(result && result.matched_boxes) ? result.matched_boxes : [];
  return boxes
    .filter((b) => b && validBox(b.box))
    .sort((a, b) => (isNum(b.score) ? b.score : -Infinity) - (isNum(a.score) ? a.score : -Infinity));
}

const sameBox = (a, b) => a.length === b.length && a.every((v, i) => v === b[i]);

function dims(result) {
  const meta = result && result.metadata && typeof result.metadata === "object" ? result.metadata : {};
  const width = isNum(meta.width) && meta.width > 0 ? meta.width : 0;
  const height = isNum(meta.height) && meta.height > 0 ? meta.height : 0;
  return { meta, width, height };
}

function pathOf(meta) {
  return typeof meta.original_path === "string" && meta.original_path ? meta.original_path : "";
}

function nameOf(result, meta) {
  if (typeof meta.filename === "string" && meta.filename) return meta.filename;
  return baseName(pathOf(meta)) || String(result.id || "");
}

// ---------------------------------------------------------------- the list

const ui = {
  list: $("results"),
  summary: $("results-summary"),
  empty: $("results-empty"),
  advice: $("results-advice"),
  timings: $("timings"),
  timingsList: $("timings-list"),
};

/** No results and nothing else shown (a failed search, a new one starting). */
export function clearResults(summary) {
  ui.list.replaceChildren();
  ui.empty.hidden = true;
  ui.timings.hidden = true;
  ui.summary.textContent = summary;
}

export function setBusy(busy) {
  if (busy) ui.list.setAttribute("aria-busy", "true");
  else ui.list.removeAttribute("aria-busy");
}

/** Shows a search's answer. `ctx`: `collection` (searched), `advice` (the empty state's
 *  suggestions), `query` (the query picture, for "appears in your query"). */
export function showResults(data, ctx) {
  const results = Array.isArray(data.results) ? data.results : [];
  ui.list.replaceChildren(...results.map((result, i) => card(result, i + 1, ctx)));
  summarise(results.length, ctx, data.processing_time_ms);
  ui.empty.hidden = results.length > 0;
  if (!results.length) {
    ui.advice.replaceChildren(...ctx.advice.map((words) => el("li", {}, words)));
  }
  showTimings(data);
}

function summarise(count, ctx, ms) {
  const where = `in “${ctx.collection}”`;
  ui.summary.textContent = count
    ? `${plural(count, "result")} ${where}, best first${isNum(ms) ? ` (${fmtMs(ms)})` : ""}.`
    : `No good match ${where}.`;
}

function showTimings(data) {
  const rows = [];
  if (isNum(data.processing_time_ms)) rows.push(["total", data.processing_time_ms]);
  const split = data.timings_ms && typeof data.timings_ms === "object" ? Object.entries(data.timings_ms) : [];
  for (const [name, ms] of split) if (isNum(ms)) rows.push([name.replace(/_/g, " "), ms]);
  ui.timingsList.replaceChildren(...rows.flatMap(([name, ms]) => [el("dt", {}, name), el("dd", {}, `${ms.toFixed(1)} ms`)]));
  ui.timings.hidden = rows.length === 0;
}

function card(result, rank, ctx) {
  const { meta, width, height } = dims(result);
  const kind = kindOf(result);
  const name = nameOf(result, meta);
  const path = pathOf(meta);
  const collection = typeof result.collection === "string" ? result.collection : ctx.collection;
  const li = el("li", {
    class: "result",
    tabindex: "0",
    "data-id": result.id,
    "data-kind": kind,
    "data-score": isNum(result.score) ? String(result.score) : "",
    "data-collection": collection,
    "aria-label": `${rank}. ${KIND_WORDS[kind]}, score ${fmtScore(result.score)}: ${name}. Press Enter for details.`,
  });
  const pic = thumbnail({
    id: result.id, collection, thumbnailUrl: result.thumbnail_url, width, height, alt: name, path,
    onMissing: () => li.classList.add("missing-file"),
  });
  const best = bestBoxOf(result);
  if (best && width && height) {
    drawBox(pic.wrap, best.box, width, height, { best: true, title: `best match ${fmtScore(best.score)}` });
  }
  // The other matched boxes only while the card is hovered or focused.
  const others = best ? matchedBoxes(result).filter((b) => !sameBox(b.box, best.box)) : [];
  if (others.length && width && height) {
    let shown = [];
    const show = () => {
      if (shown.length) return;
      shown = others.map((b) => drawBox(pic.wrap, b.box, width, height, { title: fmtScore(b.score) }));
    };
    const hide = () => {
      if (li.matches(":hover") || li === document.activeElement) return;
      for (const node of shown) node.remove();
      shown = [];
    };
    li.addEventListener("mouseenter", show);
    li.addEventListener("focus", show);
    li.addEventListener("mouseleave", hide);
    li.addEventListener("blur", hide);
  }

  const score = el("span", { class: "score", title: isNum(result.score) ? `score ${result.score.toFixed(4)}` : null },
    fmtScore(result.score));
  const body = el("div", { class: "card-body" },
    el("div", { class: "card-line" }, el("span", { class: `kind kind-${kind}` }, KIND_WORDS[kind]), score),
    el("div", { class: "filename", title: path || name }, name),
    folderLine(path));
  li.append(pic.frame, body);

  const open = () => openDetail(result, li, { ...ctx, collection });
  li.addEventListener("click", open);
  li.addEventListener("keydown", (event) => {
    if (event.target !== li) return;
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      open();
    }
  });
  return li;
}

// ---------------------------------------------------------------- the detail dialog

const detail = {
  dialog: $("detail"),
  title: $("detail-title"),
  frame: $("detail-frame"),
  caption: $("detail-caption"),
  kind: $("detail-kind"),
  facts: $("detail-facts"),
  boxes: $("detail-boxes"),
  query: $("detail-query"),
  queryFrame: $("detail-query-frame"),
  paths: $("detail-paths"),
  remove: $("detail-delete"),
  close: $("detail-close"),
  current: null,
};

detail.close.addEventListener("click", () => detail.dialog.close());
closeOnBackdrop(detail.dialog);
detail.dialog.addEventListener("close", () => {
  // The original is only wanted while the dialog shows it.
  detail.frame.replaceChildren();
  detail.queryFrame.replaceChildren();
  detail.current = null;
});

function fact(name, value) {
  return value === null || value === undefined || value === "" ? [] : [el("dt", {}, name), el("dd", {}, value)];
}

function openDetail(result, li, ctx) {
  const { meta, width, height } = dims(result);
  const kind = kindOf(result);
  const name = nameOf(result, meta);
  const path = pathOf(meta);
  detail.current = { result, li, ctx };
  setFieldError("detail-error", "");
  detail.title.textContent = name;
  detail.kind.className = `kind kind-${kind}`;
  detail.kind.textContent = KIND_WORDS[kind];
  detail.caption.textContent = KIND_HINTS[kind];

  // The original file, loaded now (and only now), with every matched box.
  const boxes = matchedBoxes(result);
  const best = bestBoxOf(result);
  const wrap = pictureWrap(width, height);
  const src = sameOriginUrl(result.image_url);
  const img = el("img", { class: "full", alt: name, decoding: "async" });
  img.addEventListener("load", () => wrap.classList.add("loaded"));
  img.addEventListener("error", () => detail.frame.replaceChildren(missingFile(path)), { once: true });
  wrap.append(img);
  const drawn = width && height
    ? boxes.map((b, i) => drawBox(wrap, b.box, width, height, {
      best: Boolean(best) && sameBox(b.box, best.box), label: String(i + 1), title: fmtScore(b.score),
    }))
    : [];
  detail.frame.replaceChildren(wrap);
  if (src) img.src = src;
  else detail.frame.replaceChildren(missingFile(path));

  detail.boxes.replaceChildren(...(boxes.length
    ? boxes.map((b, i) => boxItem(b, i, drawn[i]))
    : [el("li", { class: "none" }, "No region matched on its own: the whole picture was compared.")]));

  const facts = [
    ...fact("Score", fmtScore(result.score)),
    ...fact("Whole picture", isNum(result.full_score) ? fmtScore(result.full_score) : null),
    ...fact("Best part", isNum(result.partial_score) ? fmtScore(result.partial_score) : null),
    ...fact("Inside your query", isNum(result.contains_score) ? fmtScore(result.contains_score) : null),
    ...fact("Regions matched", isNum(result.matched_regions) && result.matched_regions > 0 ? String(result.matched_regions) : null),
    ...fact("Size", width && height ? `${width} × ${height} px${isNum(meta.file_size) ? `, ${fmtBytes(meta.file_size)}` : ""}` : null),
    ...fact("Collection", ctx.collection),
    ...fact("Indexed", isNum(meta.indexed_at) ? new Date(meta.indexed_at * 1000).toLocaleString() : null),
  ];
  detail.facts.replaceChildren(...facts);

  const paths = Array.isArray(meta.paths) && meta.paths.length ? meta.paths : path ? [path] : [];
  detail.paths.replaceChildren(...(paths.length ? paths.map((p) => el("li", {}, String(p))) : [el("li", {}, "unknown")]));

  showQueryBox(result, ctx.query);
  openModal(detail.dialog);
  detail.close.focus();
}

function boxItem(b, i, node) {
  const [x0, y0, x1, y1] = b.box;
  const li = el("li", { tabindex: "0", "data-box": b.box.join(",") },
    el("span", { class: "box-no" }, String(i + 1)),
    el("span", { class: "score" }, fmtScore(b.score)),
    el("span", { class: "where" }, `${x1 - x0} × ${y1 - y0} px at ${x0}, ${y0}`));
  if (node) {
    const on = () => { node.classList.add("hl"); li.classList.add("hl"); };
    const off = () => { node.classList.remove("hl"); li.classList.remove("hl"); };
    li.addEventListener("mouseenter", on);
    li.addEventListener("focus", on);
    li.addEventListener("mouseleave", off);
    li.addEventListener("blur", off);
  }
  return li;
}

/** "Appears in your query": the query picture (a file of this page) with where the result
 *  lies in it. Not for an address query: the page does not fetch other sites. */
function showQueryBox(result, query) {
  const box = result.query_box;
  if (!validBox(box) || !query || !query.url || !query.width || !query.height) {
    detail.query.hidden = true;
    return;
  }
  const wrap = pictureWrap(query.width, query.height);
  wrap.classList.add("loaded");
  wrap.append(el("img", { alt: "Your query, with this picture outlined", src: query.url }));
  drawBox(wrap, box, query.width, query.height, { best: true });
  detail.queryFrame.replaceChildren(wrap);
  detail.query.hidden = false;
}

detail.remove.addEventListener("click", async () => {
  const current = detail.current;
  if (!current) return;
  const { result, li, ctx } = current;
  const name = detail.title.textContent;
  const yes = await confirmAction({
    title: "Delete from the index?",
    text: `“${name}” will no longer be found in “${ctx.collection}”. The file itself is not deleted.`,
    yes: "Delete from the index",
  });
  if (!yes || detail.current !== current) return;
  detail.remove.disabled = true;
  try {
    const query = new URLSearchParams({ collection: ctx.collection });
    await deleteJson(`/api/images/${encodeURIComponent(result.id)}?${query}`);
    const next = li.nextElementSibling || li.previousElementSibling;
    li.remove();
    detail.dialog.close();
    if (next) next.focus();
    const left = ui.list.children.length;
    ui.summary.textContent = left
      ? `${plural(left, "result")} in “${ctx.collection}” (“${name}” was deleted from the index).`
      : `“${name}” was deleted from the index; no results left.`;
    if (ctx.onDeleted) ctx.onDeleted();
  } catch (err) {
    setFieldError("detail-error", describeError(err).words);
  } finally {
    detail.remove.disabled = false;
  }
});
