// The search form: one request per action (choose, drop or paste a file; Search or Enter
// in address/text mode; an option changed re-runs the last search). A request still running
// is aborted only when a new, different action starts. Errors go next to the control that
// caused them; a failed search clears the results.

import { ApiError, describeError, postForm, postJson } from "./api.js";
import { collections, findCollection } from "./collections.js";
import { $, el, fmtBytes, isNum, listWords, setFieldError } from "./dom.js";
import { clearResults, setBusy, showResults } from "./results.js";

const ui = {
  form: $("search-form"),
  modes: document.querySelectorAll('input[name="mode"]'),
  panes: { image: $("pane-image"), url: $("pane-url"), text: $("pane-text") },
  dropZone: $("drop-zone"),
  file: $("query-file"),
  fileName: $("query-file-name"),
  preview: $("query-preview"),
  url: $("query-url"),
  text: $("query-text"),
  full: $("opt-full"),
  partial: $("opt-partial"),
  removeText: $("opt-remove-text"),
  enhance: $("opt-enhance"),
  limit: $("opt-limit"),
  collection: $("opt-collection"),
  minScore: $("opt-min-score"),
  matchMode: $("opt-match-mode"),
  imageOnly: document.querySelectorAll("#search-form .image-only"),
  textHint: $("text-mode-hint"),
  busy: $("search-busy"),
  results: $("results"),
  empty: $("results-empty"),
};

/** Where each kind of error is shown, by query mode. */
const INPUT_ERROR = {
  image: ["query-file-error", "query-file"],
  url: ["query-url-error", "query-url"],
  text: ["query-text-error", "query-text"],
};
const ERROR_BOXES = [...Object.values(INPUT_ERROR), ["opt-collection-error", "opt-collection"], ["search-error", null]];
const NARROW = window.matchMedia("(max-width: 600px)");

const state = {
  file: null,
  serial: 0, // which file: a new choice is a new query even with the same name
  picture: null, // the query file's object URL and size, for "appears in your query"
  last: null, // the last query searched: options re-run it
  inflight: null, // { key, controller }
};

let onChanged = () => {};

export function currentMode() {
  for (const radio of ui.modes) if (radio.checked) return radio.value;
  return "image";
}

function setMode(mode) {
  for (const radio of ui.modes) radio.checked = radio.value === mode;
  for (const [name, pane] of Object.entries(ui.panes)) pane.hidden = name !== mode;
  const text = mode === "text";
  for (const control of [ui.removeText, ui.enhance, ui.matchMode]) control.disabled = text;
  for (const part of ui.imageOnly) part.classList.toggle("disabled", text);
  ui.textHint.hidden = !text;
}

function clearErrors() {
  for (const [box, control] of ERROR_BOXES) setFieldError(box, "", control);
}

/** Shows `info` ({ target, words, names? }) next to the control it belongs to. */
function showError(info, mode) {
  if (info.code === "collection_not_found") {
    const content = [`There is no collection “${ui.collection.value.trim() || "default"}”.`];
    const names = info.names || [];
    if (info.none) content.push(" There are no collections yet: add images in the Library view.");
    else if (!names.length) content.push(" ", info.words);
    else {
      content.push(` The ${names.length === 1 ? "collection is" : "collections are"}: `, el("span", { class: "choices" },
        ...names.slice(0, 12).map((name) => {
          const pick = el("button", { type: "button", class: "link", "aria-label": `Search in ${name}` }, name);
          pick.addEventListener("click", () => {
            ui.collection.value = name;
            rerun();
          });
          return pick;
        })));
    }
    setFieldError("opt-collection-error", content, "opt-collection");
  } else if (info.target === "collection") {
    setFieldError("opt-collection-error", info.words, "opt-collection");
  } else if (info.target === "input") {
    const [box, control] = INPUT_ERROR[mode];
    setFieldError(box, info.words, control);
  } else {
    setFieldError("search-error", info.words, null);
  }
}

function readOptions(mode) {
  const options = {
    use_full_matching: ui.full.checked,
    use_partial_matching: ui.partial.checked,
    limit: Number(ui.limit.value),
    collection: ui.collection.value.trim() || "default",
  };
  if (mode !== "text") {
    options.remove_text = ui.removeText.checked;
    options.enhance_image = ui.enhance.checked;
    options.match_mode = ui.matchMode.value;
  }
  const minScore = ui.minScore.value.trim();
  if (minScore !== "") options.min_score = Number(minScore);
  return options;
}

/** The form's own checks, before anything is sent. */
function checkOptions(options) {
  if (!options.use_full_matching && !options.use_partial_matching) {
    return { target: "other", words: "Turn on whole-image matching, partial matching, or both." };
  }
  if (!Number.isInteger(options.limit) || options.limit < 1 || options.limit > 100) {
    return { target: "other", words: "Results: a whole number from 1 to 100." };
  }
  if ("min_score" in options && (!isNum(options.min_score) || options.min_score < -1 || options.min_score > 2)) {
    return { target: "other", words: "Minimum score: a number from -1 to 2, or empty for the server's." };
  }
  return null;
}

/** The query the form holds now, or { error } when it is incomplete. */
function queryFromForm() {
  const mode = currentMode();
  if (mode === "image") {
    if (!state.file) return { error: { target: "input", words: "Choose, drop or paste an image first." }, mode };
    return { mode, file: state.file, serial: state.serial };
  }
  if (mode === "url") {
    const url = ui.url.value.trim();
    if (!/^https?:\/\/\S+$/i.test(url)) {
      return { error: { target: "input", words: "Enter the web address of an image (an http or https address)." }, mode };
    }
    return { mode, url };
  }
  const text = ui.text.value.trim();
  if (!text) return { error: { target: "input", words: "Type a few words describing the picture." }, mode };
  return { mode, text };
}

function send(query, options, signal) {
  if (query.mode === "image") {
    const form = new FormData();
    form.append("file", query.file, query.file.name || "pasted.png");
    for (const [key, value] of Object.entries(options)) form.append(key, String(value));
    return postForm("/api/search/by-image", form, { signal });
  }
  if (query.mode === "url") return postJson("/api/search/by-url", { url: query.url, ...options }, { signal });
  return postJson("/api/search/by-text", { text: query.text, ...options }, { signal });
}

const actionKey = (query, options) =>
  JSON.stringify([query.mode, query.serial || query.url || query.text, options]);

/** What to try when nothing passed, fitted to the options that were set. */
function advice(query, options) {
  const name = options.collection;
  const info = findCollection(name);
  if (info && info.images === 0) return [`“${name}” holds no images yet: add some in the Library view.`];
  const tips = [];
  if ("min_score" in options) {
    tips.push(`Lower the minimum score (now ${options.min_score}), or clear it to use the server's.`);
  } else {
    tips.push("Nothing scored above the server's minimum: set a lower minimum score to see weaker matches.");
  }
  if (!options.use_partial_matching) tips.push("Turn on partial matching to find pictures your query is a part of.");
  if (!options.use_full_matching) tips.push("Turn on whole-image matching to compare whole pictures too.");
  if (query.mode !== "text" && options.match_mode === "region") {
    tips.push("If your query is a larger picture holding the ones you look for, set Match to “Pictures inside my query” or “Both”.");
  }
  if (query.mode === "text") tips.push("Describe the picture in other words.");
  const others = collections().map((c) => c.name).filter((n) => n !== name);
  if (others.length) tips.push(`Search another collection: ${listWords(others.slice(0, 6).map((n) => `“${n}”`))}.`);
  return tips;
}

/** Runs `query` with the options set now: one request, unless the same one is running. */
export async function search(query) {
  clearErrors();
  if (query.error) {
    showError(query.error, query.mode);
    return;
  }
  const options = readOptions(query.mode);
  const problem = checkOptions(options);
  if (problem) {
    showError(problem, query.mode);
    return;
  }
  const key = actionKey(query, options);
  if (state.inflight && state.inflight.key === key) return; // already on its way
  if (state.inflight) state.inflight.controller.abort();
  const controller = new AbortController();
  const mine = { key, controller };
  state.inflight = mine;
  state.last = query;
  ui.busy.textContent = "Searching…";
  setBusy(true);
  try {
    const data = await send(query, options, controller.signal);
    showResults(data, {
      collection: options.collection,
      advice: advice(query, options),
      query: query.mode === "image" ? state.picture : null,
      onDeleted: () => onChanged(),
    });
    if (NARROW.matches) (data.results && data.results.length ? ui.results : ui.empty).scrollIntoView({ block: "start" });
  } catch (err) {
    if (err && err.name === "AbortError") return;
    if (!(err instanceof ApiError)) console.error(err);
    clearResults("No results.");  // the error itself is shown next to its control
    showError(describeError(err), query.mode);
  } finally {
    if (state.inflight === mine) {
      state.inflight = null;
      ui.busy.textContent = "";
      setBusy(false);
    }
  }
}

/** An option changed: the last search again, with the new options. */
function rerun() {
  if (state.last) search(state.last);
}

function setQueryFile(file) {
  state.file = file;
  state.serial += 1;
  if (state.picture) URL.revokeObjectURL(state.picture.url);
  const picture = { url: URL.createObjectURL(file), width: 0, height: 0 };
  state.picture = picture;
  ui.preview.onload = () => {
    picture.width = ui.preview.naturalWidth;
    picture.height = ui.preview.naturalHeight;
  };
  ui.preview.src = picture.url;
  ui.preview.hidden = false;
  ui.fileName.textContent = `${file.name || "pasted image"} (${fmtBytes(file.size)})`;
  setMode("image");
}

const firstImage = (files) => Array.from(files || []).find((f) => !f.type || f.type.startsWith("image/")) || null;

/** A file chosen, dropped or pasted: search with it, once. */
function searchFiles(files) {
  const file = firstImage(files);
  clearErrors();
  if (!file) {
    setMode("image");
    setFieldError("query-file-error", "That is not an image file.", "query-file");
    return;
  }
  setQueryFile(file);
  search({ mode: "image", file, serial: state.serial });
}

const searchVisible = () => !$("view-search").hidden;

export function initSearch({ changed }) {
  onChanged = changed;
  setMode(currentMode());
  for (const radio of ui.modes) {
    radio.addEventListener("change", () => {
      clearErrors();
      setMode(currentMode());
    });
  }
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    search(queryFromForm());
  });
  for (const control of [ui.full, ui.partial, ui.removeText, ui.enhance, ui.limit, ui.collection, ui.minScore, ui.matchMode]) {
    control.addEventListener("change", rerun);
  }
  ui.file.addEventListener("change", () => {
    if (ui.file.files && ui.file.files.length) searchFiles(ui.file.files);
    ui.file.value = ""; // choosing the same file again still fires "change"
  });

  ui.dropZone.addEventListener("dragover", (event) => {
    event.preventDefault();
    ui.dropZone.classList.add("dragover");
  });
  ui.dropZone.addEventListener("dragleave", () => ui.dropZone.classList.remove("dragover"));
  // A drop anywhere on the search view is a query (the library's zone stops its own drops).
  document.addEventListener("dragover", (event) => event.preventDefault());
  document.addEventListener("drop", (event) => {
    event.preventDefault();
    ui.dropZone.classList.remove("dragover");
    if (searchVisible() && event.dataTransfer && event.dataTransfer.files.length) searchFiles(event.dataTransfer.files);
  });

  document.addEventListener("paste", (event) => {
    const data = event.clipboardData;
    if (!data || !searchVisible()) return;
    const file = firstImage(data.files);
    if (file) {
      event.preventDefault();
      searchFiles([file]);
      return;
    }
    // A web address pasted outside a text box: search by that address.
    const target = event.target;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement;
    const text = (data.getData("text/plain") || "").trim();
    if (!typing && /^https?:\/\/\S+$/i.test(text)) {
      event.preventDefault();
      ui.url.value = text;
      setMode("url");
      search({ mode: "url", url: text });
    }
  });
}
