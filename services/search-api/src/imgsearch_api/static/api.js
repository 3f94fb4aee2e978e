// HTTP: fetch + the server's {"error": {"code", "message", "details"?}} shape, and the
// error codes in words people understand. All requests go to relative, same-origin URLs.

import { $ } from "./dom.js";

export class ApiError extends Error {
  constructor(message, { code, status = 0, retryAfter = 0, details = [] }) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.retryAfter = retryAfter;
    this.details = details;
  }
}

/** fetch + JSON; throws ApiError for a refused request (and AbortError when aborted). */
export async function api(path, init = {}) {
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError("cannot reach the server", { code: "network", retryAfter: 2 });
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    body = null;
  }
  if (!response.ok) {
    const error = body && typeof body === "object" ? body.error : null;
    const message = error && typeof error.message === "string"
      ? error.message
      : `the server answered ${response.status} ${response.statusText}`.trim();
    throw new ApiError(message, {
      code: error && typeof error.code === "string" ? error.code : `http_${response.status}`,
      status: response.status,
      retryAfter: Number(response.headers.get("Retry-After")) || 0,
      details: error && Array.isArray(error.details) ? error.details : [],
    });
  }
  if (body === null || typeof body !== "object") {
    throw new ApiError("the server sent an answer this page does not understand", {
      code: "bad_response",
      status: response.status,
    });
  }
  return body;
}

/** The API key typed in the Library view, as the header write calls send it. */
export function keyHeaders() {
  const field = $("index-api-key");
  const key = field ? field.value.trim() : "";
  return key ? { "X-API-Key": key } : {};
}

export const getJson = (path, { signal, key = false } = {}) =>
  api(path, { signal, headers: key ? keyHeaders() : {} });

export const postJson = (path, body, { signal, key = false } = {}) =>
  api(path, {
    method: "POST",
    signal,
    headers: { "Content-Type": "application/json", ...(key ? keyHeaders() : {}) },
    body: JSON.stringify(body),
  });

export const postForm = (path, form, { signal, key = false } = {}) =>
  api(path, { method: "POST", signal, headers: key ? keyHeaders() : {}, body: form });

export const deleteJson = (path) => api(path, { method: "DELETE", headers: keyHeaders() });

// ---------------------------------------------------------------- error words

/** The server's lowercase message as sentences: "no x; the y" -> "No x. The y." */
export function sentences(message) {
  const text = String(message || "").trim();
  if (!text) return "";
  const parts = text.split(/;\s+/).map((p) => p.charAt(0).toUpperCase() + p.slice(1));
  const joined = parts.join(". ");
  return /[.!?]$/.test(joined) ? joined : `${joined}.`;
}

/** The collections a collection_not_found message names ("the collections are: 'a', 'b'"). */
export function namedCollections(message) {
  const at = String(message || "").indexOf("the collections are:");
  if (at < 0) return [];
  return [...message.slice(at).matchAll(/'([^']*)'/g)].map((m) => m[1]);
}

const BUSY = "The server is busy; try again in a moment.";

/** What went wrong, in words, and which control it belongs next to: `target` is "input"
 *  (the query or the form's main field), "collection", "key" or "other"; `code` the
 *  server's. */
export function describeError(err) {
  if (!(err instanceof ApiError)) {
    return { target: "other", code: "page", words: "Something went wrong in this page. Reload it and try again." };
  }
  return { code: err.code, ...words(err) };
}

function words(err) {
  const said = sentences(err.message);
  switch (err.code) {
    case "url_refused":
      return { target: "input", words: "This address is not allowed: the server only fetches public web addresses." };
    case "url_fetch_failed":
      return { target: "input", words: `The server could not get an image from this address. ${said}` };
    case "unsupported_image":
      return { target: "input", words: `This is not an image the server can read. ${said}` };
    case "corrupt_image":
      return { target: "input", words: `This image is damaged or incomplete: the server could not decode it. ${said}` };
    case "empty_input":
      return { target: "input", words: "The file is empty." };
    case "image_too_large":
      return { target: "input", words: `This image has too many pixels for the server. ${said}` };
    case "payload_too_large":
      return { target: "input", words: `This is too big to send to the server. ${said}` };
    case "overloaded":
    case "upstream_unavailable":
    case "store_locked":
      return {
        target: "other",
        words: err.retryAfter > 1 ? `The server is busy; try again in ${Math.ceil(err.retryAfter)} seconds.` : BUSY,
      };
    case "network":
      return { target: "other", words: "Cannot reach the server. Check that it is running, then try again." };
    case "collection_not_found":
      return { target: "collection", words: said, names: namedCollections(err.message), none: /no collections yet/.test(err.message) };
    case "invalid_collection":
      return { target: "collection", words: `This is not a valid collection name. ${said}` };
    case "unauthorized":
      return { target: "key", words: "The server needs an API key for this: enter it in Library → Add images." };
    case "forbidden":
      return { target: "key", words: `The server refused this request. ${said}` };
    case "model_mismatch":
      return { target: "collection", words: `This collection was filled by another model than the one the server runs now. ${said}` };
    case "reindex_running":
      return { target: "collection", words: "This collection is being reindexed; try again when that has finished." };
    case "validation_error":
      return validationWords(err);
    default:
      return { target: "other", words: said || "The request failed." };
  }
}

/** A validation_error's first detail, named by its field; the field decides the target. */
function validationWords(err) {
  const first = err.details.find((d) => d && Array.isArray(d.loc)) || null;
  if (!first) return { target: "other", words: sentences(err.message) };
  const field = String(first.loc[first.loc.length - 1]);
  const words = `${field.replace(/_/g, " ")}: ${String(first.msg || "not valid")}`;
  if (field === "collection" || field === "collections") return { target: "collection", words: sentences(words) };
  if (["url", "text", "file", "path", "files"].includes(field)) return { target: "input", words: sentences(words) };
  return { target: "other", words: sentences(words) };
}
