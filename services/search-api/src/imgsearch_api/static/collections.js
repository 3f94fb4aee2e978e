// The collections the server holds (GET /api/collections), shared by the views: the
// collection fields' suggestions, the search's advice, the library's list.

import { getJson } from "./api.js";
import { $, el } from "./dom.js";

let known = [];
let loaded = false;
const listeners = new Set();

/** The last list fetched (name, images, windows, model); empty before the first. */
export const collections = () => known;
export const collectionsLoaded = () => loaded;
export const findCollection = (name) => known.find((c) => c.name === name) || null;

/** Calls `listener(list)` after each successful fetch. */
export function onCollections(listener) {
  listeners.add(listener);
}

/** Fetches the list; throws the ApiError when the server refuses. */
export async function refreshCollections() {
  const data = await getJson("/api/collections");
  known = Array.isArray(data.collections) ? data.collections.filter((c) => c && typeof c.name === "string") : [];
  loaded = true;
  $("collection-names").replaceChildren(...known.map((c) => el("option", { value: c.name })));
  for (const listener of listeners) listener(known);
  return known;
}
