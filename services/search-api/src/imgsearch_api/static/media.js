// Pictures on the page: thumbnails (256 px, 512 px on 2x screens) for cards, with a
// placeholder when the file is gone, and the outlined boxes drawn over them.

import { el, isNum, sameOriginUrl } from "./dom.js";

export const THUMB_SIZES = [256, 512];

/** The thumbnail route of an indexed image. */
export function thumbUrl(id, collection, size = THUMB_SIZES[0]) {
  const query = new URLSearchParams({ size: String(size), collection: collection || "default" });
  return `/api/image/${encodeURIComponent(id)}/thumbnail?${query}`;
}

/** `src` and `srcset` for an image: the server's thumbnail_url when it sent one (same origin
 *  only), its 512 px sibling for 2x screens. */
export function thumbSources(id, collection, thumbnailUrl) {
  const src = sameOriginUrl(thumbnailUrl) || thumbUrl(id, collection);
  const big = new URL(src, window.location.href);
  big.searchParams.set("size", String(THUMB_SIZES[1]));
  return { src, srcset: `${src} 1x, ${big.pathname}${big.search} 2x` };
}

/** A box that keeps the shape of a `width` x `height` picture inside its frame (the frame's
 *  height is the CSS `--frame-h`): boxes positioned in percent then stay on the picture. */
export function pictureWrap(width, height) {
  const wrap = el("div", { class: "wrap" });
  const ratio = width > 0 && height > 0 ? width / height : 1;
  wrap.style.setProperty("--ratio", ratio.toFixed(5));
  return wrap;
}

/** The placeholder shown instead of a picture whose file is gone. */
export function missingFile(path) {
  return el("div", { class: "missing", role: "img", "aria-label": `File no longer available: ${path || "unknown path"}` },
    el("span", { class: "missing-title" }, "File no longer available"),
    path ? el("span", { class: "missing-path" }, String(path)) : null);
}

/** A card's picture: its thumbnail in a frame, replaced by the placeholder if it fails to
 *  load (the thumbnail route answers 404 when the indexed file is gone). */
export function thumbnail({ id, collection, thumbnailUrl, width, height, alt, path, onMissing }) {
  const frame = el("div", { class: "frame" });
  const wrap = pictureWrap(width, height);
  const { src, srcset } = thumbSources(id, collection, thumbnailUrl);
  const img = el("img", { class: "thumb", alt: alt || "", loading: "lazy", decoding: "async", srcset, src });
  img.addEventListener("load", () => wrap.classList.add("loaded"));
  img.addEventListener("error", () => {
    frame.replaceChildren(missingFile(path));
    if (onMissing) onMissing();
  }, { once: true });
  wrap.append(img);
  frame.append(wrap);
  return { frame, wrap, img };
}

export const validBox = (box) => Array.isArray(box) && box.length === 4 && box.every(isNum);

const pct = (value) => `${(Math.min(Math.max(value, 0), 1) * 100).toFixed(3)}%`;

/** Draws `box` ([x0, y0, x1, y1] in the picture's original pixels) in percent of the
 *  picture: it follows the displayed size by itself. */
export function drawBox(wrap, box, width, height, { best = false, label = null, title = null } = {}) {
  const [x0, y0, x1, y1] = box;
  const node = el("div", {
    class: best ? "box best" : "box",
    "data-box": box.join(","),
    "data-best": best ? "true" : null,
    title,
    "aria-hidden": "true",
  });
  node.style.left = pct(x0 / width);
  node.style.top = pct(y0 / height);
  node.style.width = pct((x1 - x0) / width);
  node.style.height = pct((y1 - y0) / height);
  if (label !== null) node.append(el("span", { class: "tag" }, label));
  wrap.append(node);
  return node;
}
