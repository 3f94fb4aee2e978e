// Small helpers shared by the page's modules: building elements, formatting numbers and
// words, the inline errors next to controls, the dialogs.
//
// Everything the server sends is inserted with textContent / append(string) / setAttribute:
// never as HTML.

export const $ = (id) => document.getElementById(id);

/** An element with attributes and children (strings become text nodes). */
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

export const isNum = (x) => typeof x === "number" && Number.isFinite(x);
export const fmtInt = (x) => (isNum(x) ? x.toLocaleString("en") : "?");

/** "1 image", "2 images", "1 dead letter". */
export function plural(n, singular, pluralForm) {
  return `${fmtInt(n)} ${n === 1 ? singular : pluralForm || `${singular}s`}`;
}

/** Scores everywhere on the page: two decimals (the exact value goes in a title). */
export const fmtScore = (x) => (isNum(x) ? x.toFixed(2) : "–");

export function fmtBytes(bytes) {
  if (!isNum(bytes)) return "?";
  if (bytes >= 1048576) return `${(bytes / 1048576).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1024))} kB`;
}

export function fmtDuration(seconds) {
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export function fmtMs(ms) {
  if (!isNum(ms)) return "?";
  // A no-break space: "1.8 s" never splits over two lines.
  return ms >= 1000 ? `${(ms / 1000).toFixed(1)}\u00a0s` : `${Math.round(ms)}\u00a0ms`;
}

/** "a", "a and b", "a, b and c". */
export function listWords(items) {
  if (items.length <= 1) return items.join("");
  return `${items.slice(0, -1).join(", ")} and ${items[items.length - 1]}`;
}

/** The last part of a path or address. */
export function baseName(path) {
  const text = String(path || "");
  const parts = text.split(/[\\/]/).filter(Boolean);
  return parts.length ? parts[parts.length - 1] : text;
}

/** The folder part of a path ("" for a bare name or an address). */
export function dirName(path) {
  const text = String(path || "");
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) return "";
  const at = Math.max(text.lastIndexOf("/"), text.lastIndexOf("\\"));
  return at > 0 ? text.slice(0, at) : "";
}

/** The folder of a file, cut at its start when long (its end says most). */
export function folderLine(path) {
  const folder = dirName(path);
  // The left-to-right mark keeps a leading "/" in place in the right-to-left box that puts
  // the ellipsis on the left.
  return folder ? el("div", { class: "path", title: path }, `\u200e${folder}`) : null;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Only same-origin URLs are used as image sources; anything else is dropped. */
export function sameOriginUrl(value) {
  if (typeof value !== "string" || value === "") return null;
  try {
    const url = new URL(value, window.location.href);
    if (url.origin !== window.location.origin) return null;
    return url.pathname + url.search;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- inline errors

/** Shows `content` (a string or nodes) in the error element next to a control, and marks
 *  the control invalid; empty content hides it. */
export function setFieldError(errorId, content, controlId) {
  const box = $(errorId);
  if (!box) return;
  const parts = content === null || content === undefined || content === "" ? [] : [content].flat();
  box.replaceChildren(...parts);
  box.hidden = parts.length === 0;
  const control = controlId ? $(controlId) : null;
  if (control) {
    if (parts.length) {
      control.setAttribute("aria-invalid", "true");
      control.setAttribute("aria-describedby", errorId);
    } else {
      control.removeAttribute("aria-invalid");
      if (control.getAttribute("aria-describedby") === errorId) control.removeAttribute("aria-describedby");
    }
  }
}

// ---------------------------------------------------------------- dialogs

/** Opens a modal dialog (the rest of the page is inert while it is open, Esc closes it)
 *  and gives the focus back to what had it when the dialog closes. */
export function openModal(dialog, onClose) {
  const opener = document.activeElement;
  const closed = () => {
    dialog.removeEventListener("close", closed);
    if (onClose) onClose(dialog.returnValue);
    if (opener && opener.isConnected && typeof opener.focus === "function") opener.focus();
  };
  dialog.addEventListener("close", closed);
  dialog.returnValue = "";
  dialog.showModal();
}

/** Asks with the `#confirm` dialog; resolves true for yes, false for no, Esc or a click
 *  outside. */
export function confirmAction({ title, text, yes = "Delete" }) {
  const dialog = $("confirm");
  $("confirm-title").textContent = title;
  $("confirm-text").textContent = text;
  $("confirm-yes").textContent = yes;
  return new Promise((resolve) => {
    openModal(dialog, (value) => resolve(value === "yes"));
    $("confirm-no").focus();
  });
}

/** A click on a modal's backdrop (outside its box) closes it. */
export function closeOnBackdrop(dialog) {
  dialog.addEventListener("click", (event) => {
    if (event.target !== dialog) return;
    const r = dialog.getBoundingClientRect();
    const inside = event.clientX >= r.left && event.clientX <= r.right
      && event.clientY >= r.top && event.clientY <= r.bottom;
    if (!inside) dialog.close();
  });
}
