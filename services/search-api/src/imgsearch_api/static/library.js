// The library view: the collections (counts, the model that filled them, drop), adding
// images (a folder on the server, uploaded files, an address), and the batches: recent ones
// from the server on load (so they survive a reload), polled while any is running, with
// their failures in words and a button that queues the failed files again.

import { describeError, deleteJson, getJson, postForm, postJson } from "./api.js";
import { collections, onCollections, refreshCollections } from "./collections.js";
import {
  $, confirmAction, el, fmtBytes, fmtDuration, fmtInt, isNum, plural, setFieldError, sleep,
} from "./dom.js";

const POLL_MS = 1000;
const BATCH_LIST_LIMIT = 20;
/** Per upload request: one huge body would pass the server's MAX_UPLOAD_BYTES (25 MB). */
const UPLOAD_MAX_FILES = 16;
const UPLOAD_MAX_BYTES = 16 * 1024 * 1024;
/** Where this browser remembers the batches it queued (their labels, and the list itself
 *  for servers without GET /api/index/batches). */
const STORAGE_KEY = "imgsearch.batches";
const REMEMBERED = 30;

const REASON_WORDS = {
  missing_file: "the file is no longer there",
  unsupported_image: "not an image the server can read",
  corrupt_image: "a damaged or incomplete image",
  image_too_large: "the image has too many pixels",
  payload_too_large: "the file is too big",
  empty_input: "the file is empty",
  url_refused: "the address is not allowed (public web addresses only)",
  url_fetch_failed: "the address could not be fetched",
  retries_exhausted: "it failed again after several tries",
  worker_crashed: "it stopped its worker repeatedly",
  malformed_job: "the job could not be read",
  model_mismatch: "the collection was filled by another model",
  not_found: "it was not found",
};

export const reasonWords = (reason) => REASON_WORDS[reason] || String(reason || "failed").replace(/_/g, " ");

const ui = {
  collections: $("collections"),
  collectionsNote: $("collections-note"),
  refresh: $("collections-refresh"),
  indexCollection: $("index-collection"),
  apiKey: $("index-api-key"),
  folderForm: $("folder-form"),
  path: $("index-path"),
  extensions: $("index-extensions"),
  recursive: $("index-recursive"),
  sync: $("index-sync"),
  folderButton: $("folder-button"),
  uploadForm: $("upload-form"),
  uploadZone: $("upload-zone"),
  files: $("index-files"),
  filesName: $("index-files-name"),
  uploadButton: $("upload-button"),
  urlForm: $("url-form"),
  url: $("index-url"),
  urlButton: $("url-button"),
  batches: $("batches"),
  batchesNote: $("batches-note"),
};

let onChanged = () => {};
/** Said under the collections once they are shown again (after a drop). */
let pendingNote = "";
const goSearch = (name) => {
  $("opt-collection").value = name;
  window.location.hash = "#search";
};

// ---------------------------------------------------------------- collections

function modelWords(model) {
  if (!model || typeof model !== "object") return "no model recorded yet";
  const weights = model.pretrained === "random" ? "random weights" : model.pretrained;
  return [model.model, weights, isNum(model.dim) ? `${model.dim} dimensions` : null].filter(Boolean).join(" · ");
}

function renderCollections(list) {
  ui.collections.replaceChildren(...list.map((c) => {
    const search = el("button", { type: "button", class: "secondary small" }, "Search");
    search.setAttribute("aria-label", `Search in ${c.name}`);
    search.addEventListener("click", () => goSearch(c.name));
    const drop = el("button", { type: "button", class: "danger small drop-collection", "aria-label": `Drop the collection ${c.name}` }, "Drop…");
    drop.addEventListener("click", () => dropCollection(c, drop));
    return el("li", { "data-name": c.name },
      el("div", { class: "collection-main" },
        el("span", { class: "name" }, c.name),
        el("span", { class: "count" }, plural(c.images, "image")),
        el("span", { class: "windows" }, plural(c.windows, "region"))),
      el("div", { class: "model" }, modelWords(c.model)),
      el("div", { class: "row-actions" }, search, drop));
  }));
  ui.collectionsNote.textContent = [pendingNote, list.length ? "" : "No collections yet: add images below."].join(" ").trim();
  pendingNote = "";
}

async function loadCollections() {
  setFieldError("collections-error", "");
  try {
    await refreshCollections();
  } catch (err) {
    setFieldError("collections-error", describeError(err).words);
  }
}

async function dropCollection(c, button) {
  setFieldError("collections-error", "");
  const yes = await confirmAction({
    title: `Drop the collection “${c.name}”?`,
    text: `Its ${plural(c.images, "image")} and ${plural(c.windows, "region")} are removed from the index, `
      + "and searches of it will find nothing. No file is deleted from disk.",
    yes: "Drop collection",
  });
  if (!yes) return;
  button.disabled = true;
  try {
    const dropped = await deleteJson(`/api/collections/${encodeURIComponent(c.name)}`);
    pendingNote = `“${c.name}” was dropped (${plural(dropped.images, "image")} out of the index; no file was deleted).`;
    onChanged();
  } catch (err) {
    setFieldError("collections-error", describeError(err).words);
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- batches

/** id -> { status, label, li } for every batch shown. */
const shown = new Map();
let listRoute = true; // false once GET /api/index/batches answered 404 (an older server)
let polling = false;

function remembered() {
  try {
    const list = JSON.parse(localStorage.getItem(STORAGE_KEY) || "[]");
    return Array.isArray(list) ? list.filter((b) => b && typeof b.id === "string") : [];
  } catch {
    return [];
  }
}

function remember(id, label) {
  const list = [{ id, label }, ...remembered().filter((b) => b.id !== id)].slice(0, REMEMBERED);
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(list));
  } catch {
    // storage full or disabled: the server's list still has it
  }
}

const localLabel = (id) => (remembered().find((b) => b.id === id) || {}).label || "";

function percentOf(status) {
  const total = isNum(status.total) ? status.total : 0;
  const processed = (status.done || 0) + (status.failed || 0);
  if (total <= 0) return status.finished ? 100 : 0;
  return Math.min(100, Math.floor((100 * processed) / total));
}

function progressLine(status) {
  const total = status.total || 0;
  const processed = (status.done || 0) + (status.failed || 0);
  const percent = percentOf(status);
  const failed = status.failed ? `, ${fmtInt(status.failed)} failed` : "";
  const seconds = isNum(status.created_at) ? Date.now() / 1000 - status.created_at : 0;
  if (status.finished) {
    if (!total) return "Nothing to index: every file was already there.";
    return `Done: ${plural(status.done || 0, "image")} indexed${failed} of ${fmtInt(total)} (100%).`;
  }
  const rate = seconds > 0 && processed > 0 ? processed / seconds : 0;
  const eta = rate > 0 ? ` · about ${fmtDuration((total - processed) / rate)} left` : "";
  return `${fmtInt(processed)} of ${plural(total, "file")} (${percent}%)${failed}${rate ? ` · ${rate.toFixed(1)} images/s` : ""}${eta}`;
}

function syncWords(status) {
  const parts = [];
  if (status.unchanged) parts.push(`${fmtInt(status.unchanged)} unchanged (skipped)`);
  if (status.moved) parts.push(`${fmtInt(status.moved)} moved`);
  if (status.removed) parts.push(`${fmtInt(status.removed)} removed from the index`);
  return parts.join(", ");
}

function batchItem(id) {
  const entry = shown.get(id);
  const { status } = entry;
  const percent = percentOf(status);
  const state = !status.finished ? "running" : status.failed ? "failed" : "done";
  const label = status.label || entry.label || `Batch ${id.slice(0, 8)}`;
  const bar = el("progress", {
    class: "progress",
    max: String(Math.max(status.total || 0, 1)),
    value: String(status.total ? Math.min((status.done || 0) + (status.failed || 0), status.total) : status.finished ? 1 : 0),
    "aria-label": `Progress of ${label}`,
  });
  const li = el("li", { class: `batch ${state}`, "data-batch-id": id, "data-percent": String(percent) },
    el("div", { class: "batch-head" },
      el("span", { class: "label" }, label),
      el("span", { class: "where" }, `→ ${status.collection || "default"}`)),
    bar,
    el("p", { class: "line" }, progressLine(status)));
  const sync = syncWords(status);
  if (sync) li.append(el("p", { class: "line sync" }, sync));
  const errors = Array.isArray(status.errors) ? status.errors : [];
  if (errors.length) {
    const list = el("ul", { class: "batch-errors" }, ...errors.map((e) =>
      el("li", { title: String(e.message || "") },
        el("span", { class: "path" }, String(e.path)), ` — ${reasonWords(e.reason)}`)));
    const unlisted = (status.failed || 0) - errors.length;
    if (unlisted > 0) list.append(el("li", {}, `… and ${fmtInt(unlisted)} more`));
    li.append(list);
  }
  // A server without the batch list cannot re-queue one batch's files either (it would
  // take the request for all of them).
  if (status.finished && status.failed > 0 && listRoute) {
    const requeue = el("button", { type: "button", class: "secondary small requeue" },
      `Re-queue ${plural(status.failed, "failed file")}`);
    const note = el("p", { class: "note", role: "status" });
    requeue.addEventListener("click", () => requeueBatch(id, label, requeue, note));
    li.append(el("div", { class: "row-actions" }, requeue), note);
  }
  return li;
}

/** Shows (or updates) the batches of `statuses`, newest first. A batch whose status did
 *  not change keeps its element (and the focus, and the note under its button). */
function upsert(statuses) {
  for (const status of statuses) {
    if (!status || typeof status.batch_id !== "string") continue;
    const entry = shown.get(status.batch_id) || { label: localLabel(status.batch_id) };
    const wasRunning = entry.status && !entry.status.finished;
    const seen = JSON.stringify(status);
    if (entry.seen !== seen) {
      entry.status = status;
      entry.seen = seen;
      entry.li = null;
    }
    shown.set(status.batch_id, entry);
    if (wasRunning && status.finished) onChanged();
  }
  const order = [...shown.values()].sort((a, b) => (b.status.created_at || 0) - (a.status.created_at || 0));
  const items = order.map((e) => {
    if (!e.li) e.li = batchItem(e.status.batch_id);
    return e.li;
  });
  const same = items.length === ui.batches.children.length && items.every((li, i) => ui.batches.children[i] === li);
  if (!same) ui.batches.replaceChildren(...items);
  ui.batchesNote.textContent = shown.size ? "" : "No recent batches.";
  if ([...shown.values()].some((e) => !e.status.finished)) startPolling();
}

async function fetchBatches() {
  if (listRoute) {
    try {
      const data = await getJson(`/api/index/batches?limit=${BATCH_LIST_LIMIT}`, { key: true });
      upsert(Array.isArray(data.batches) ? data.batches : []);
      return;
    } catch (err) {
      if (err.status !== 404) throw err;
      listRoute = false; // an older server: follow the batches this browser queued
    }
  }
  const ids = new Set([...remembered().map((b) => b.id)]);
  for (const [id, entry] of shown) if (entry.status.finished) ids.delete(id);
  const statuses = [];
  for (const id of ids) {
    try {
      statuses.push(await getJson(`/api/index/batches/${encodeURIComponent(id)}`, { key: true }));
    } catch (err) {
      if (err.status !== 404) throw err; // 404: expired
    }
  }
  upsert(statuses);
}

async function loadBatches() {
  try {
    await fetchBatches();
  } catch (err) {
    ui.batchesNote.textContent = `The batches could not be loaded. ${describeError(err).words}`;
  }
}

async function startPolling() {
  if (polling) return;
  polling = true;
  let failures = 0;
  try {
    while ([...shown.values()].some((e) => !e.status.finished)) {
      await sleep(POLL_MS);
      try {
        await fetchBatches();
        failures = 0;
      } catch (err) {
        failures += 1;
        const transient = err.status === 0 || err.status === 429 || err.status >= 500;
        if (!transient || failures >= 10) {
          ui.batchesNote.textContent = `Stopped following the batches. ${describeError(err).words}`;
          return;
        }
        await sleep(Math.max(0, (err.retryAfter || 0) * 1000 - POLL_MS));
      }
    }
  } finally {
    polling = false;
  }
}

/** A batch just queued from this page. */
function track(queued, label) {
  remember(queued.batch_id, label);
  const status = {
    ...queued,
    total: queued.queued,
    done: 0,
    failed: 0,
    pending: queued.queued,
    finished: queued.queued === 0,
    created_at: Date.now() / 1000,
    errors: [],
  };
  if (!shown.has(queued.batch_id)) {
    shown.set(queued.batch_id, { label });
    upsert([status]);
  }
}

async function requeueBatch(id, label, button, note) {
  button.disabled = true;
  note.textContent = "";
  try {
    const answer = await postJson("/api/index/dead-letters/requeue", { batch_id: id }, { key: true });
    const batches = Array.isArray(answer.batches) ? answer.batches : [];
    note.textContent = answer.requeued
      ? `${plural(answer.requeued, "file")} queued again.`
      : "Nothing to re-queue: these files are no longer in the failed list.";
    for (const queued of batches) track(queued, `Again: ${label}`);
  } catch (err) {
    note.textContent = describeError(err).words;
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- adding images

const indexCollection = () => ui.indexCollection.value.trim() || "default";

function queuedWords(queued) {
  const extra = syncWords(queued);
  const head = queued.queued ? `Queued ${plural(queued.queued, "file")}.` : "Nothing new to index.";
  return extra ? `${head} ${extra.charAt(0).toUpperCase()}${extra.slice(1)}.` : head;
}

/** Runs one form's request: its button busy, its error and note next to it. */
async function submitForm({ button, errorId, noteId, controlId }, work) {
  setFieldError(errorId, "", controlId);
  $(noteId).textContent = "";
  button.disabled = true;
  try {
    $(noteId).textContent = await work();
  } catch (err) {
    setFieldError(errorId, describeError(err).words, controlId);
  } finally {
    button.disabled = false;
  }
}

const folderForm = { button: ui.folderButton, errorId: "index-path-error", noteId: "index-path-note", controlId: "index-path" };
const uploadForm = { button: ui.uploadButton, errorId: "index-files-error", noteId: "index-files-note", controlId: "index-files" };
const urlForm = { button: ui.urlButton, errorId: "index-url-error", noteId: "index-url-note", controlId: "index-url" };

ui.folderForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const path = ui.path.value.trim();
  if (!path) {
    setFieldError(folderForm.errorId, "Enter the folder's path on the server.", folderForm.controlId);
    ui.path.focus();
    return;
  }
  const extensions = ui.extensions.value.split(/[\s,]+/).filter(Boolean).map((ext) => (ext.startsWith(".") ? ext : `.${ext}`));
  submitForm(folderForm, async () => {
    const queued = await postJson("/api/index/folder", {
      path,
      collection: indexCollection(),
      extensions: extensions.length ? extensions : null,
      recursive: ui.recursive.checked,
      sync: ui.sync.checked,
    }, { key: true });
    track(queued, path);
    if (queued.removed || queued.moved) onChanged();
    return queuedWords(queued);
  });
});

let uploadFiles = [];

function setUploadFiles(files) {
  uploadFiles = Array.from(files || []);
  const total = uploadFiles.reduce((sum, f) => sum + f.size, 0);
  ui.filesName.textContent = uploadFiles.length ? `${plural(uploadFiles.length, "file")} (${fmtBytes(total)})` : "";
}

/** The files in requests of bounded count and size. */
function chunks(files) {
  const groups = [];
  let group = [];
  let bytes = 0;
  for (const file of files) {
    if (group.length && (group.length >= UPLOAD_MAX_FILES || bytes + file.size > UPLOAD_MAX_BYTES)) {
      groups.push(group);
      group = [];
      bytes = 0;
    }
    group.push(file);
    bytes += file.size;
  }
  if (group.length) groups.push(group);
  return groups;
}

ui.files.addEventListener("change", () => setUploadFiles(ui.files.files));
ui.uploadZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  event.stopPropagation();
  ui.uploadZone.classList.add("dragover");
});
ui.uploadZone.addEventListener("dragleave", () => ui.uploadZone.classList.remove("dragover"));
ui.uploadZone.addEventListener("drop", (event) => {
  event.preventDefault();
  event.stopPropagation();
  ui.uploadZone.classList.remove("dragover");
  if (event.dataTransfer) setUploadFiles(event.dataTransfer.files);
});

ui.uploadForm.addEventListener("submit", (event) => {
  event.preventDefault();
  if (!uploadFiles.length) {
    setFieldError(uploadForm.errorId, "Choose or drop the images to upload first.", uploadForm.controlId);
    return;
  }
  const groups = chunks(uploadFiles);
  const collection = indexCollection();
  submitForm(uploadForm, async () => {
    // The server checks every file of a request before queueing any: one bad file refuses
    // its part; the other parts still go.
    let queuedFiles = 0;
    const refused = [];
    for (const [i, group] of groups.entries()) {
      const form = new FormData();
      for (const file of group) form.append("files", file, file.name);
      form.append("collection", collection);
      const label = groups.length > 1 ? `${plural(group.length, "uploaded file")} (part ${i + 1} of ${groups.length})` : plural(group.length, "uploaded file");
      try {
        const queued = await postForm("/api/index/upload", form, { key: true });
        queuedFiles += queued.queued;
        track(queued, label);
      } catch (err) {
        if (groups.length === 1) throw err;
        refused.push(`part ${i + 1}: ${describeError(err).words}`);
        if (err.status === 401 || err.code === "network") break; // the next parts would fail alike
      }
    }
    ui.files.value = "";
    setUploadFiles([]);
    if (refused.length) setFieldError(uploadForm.errorId, `Some files were refused — ${refused.join(" ")}`, uploadForm.controlId);
    return `Queued ${plural(queuedFiles, "file")}.`;
  });
});

ui.urlForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const url = ui.url.value.trim();
  if (!/^https?:\/\/\S+$/i.test(url)) {
    setFieldError(urlForm.errorId, "Enter the web address of an image (an http or https address).", urlForm.controlId);
    return;
  }
  submitForm(urlForm, async () => {
    const queued = await postJson("/api/index/url", { url, collection: indexCollection() }, { key: true });
    track(queued, url);
    return queuedWords(queued);
  });
});

export function initLibrary({ changed }) {
  onChanged = changed;
  onCollections(renderCollections);
  ui.refresh.addEventListener("click", () => {
    loadCollections();
    loadBatches();
  });
  // The batch routes sit behind the API key: a key typed in may show them.
  ui.apiKey.addEventListener("change", loadBatches);
  if (collections().length) renderCollections(collections());
  loadCollections();
  loadBatches();
}

export { loadCollections };
