"""What a person does on the page, in the words of its DOM contract (ids and attributes
listed in the design of issue 12), and the geometry the box checks need."""

from __future__ import annotations

from playwright.sync_api import FilePayload, Locator, Page, expect

Box = tuple[float, float, float, float]


def results(page: Page) -> Locator:
    return page.locator("#results li.result")


def choose(field: Locator, value: str) -> None:
    """Type ``value`` into a text field, or pick it in a ``<select>``."""
    if field.evaluate("e => e.tagName") == "SELECT":
        field.select_option(value)
    else:
        field.fill(value)


def set_collection(page: Page, name: str) -> None:
    choose(page.locator("#opt-collection"), name)


def search_file(page: Page, name: str, data: bytes, *, collection: str) -> None:
    """Choose ``data`` as the query image: the page searches once, by itself."""
    set_collection(page, collection)
    page.locator("#mode-image").check()
    page.locator("#query-file").set_input_files(files=[jpeg_file(name, data)])


def jpeg_file(name: str, data: bytes) -> FilePayload:
    """A file for an ``<input type=file>``, made in memory."""
    return {"name": name, "mimeType": "image/jpeg", "buffer": data}


def search_text(page: Page, text: str, *, collection: str) -> None:
    set_collection(page, collection)
    page.locator("#mode-text").check()
    page.locator("#query-text").fill(text)
    page.locator("#query-text").press("Enter")


def search_url(page: Page, url: str) -> None:
    page.locator("#mode-url").check()
    page.locator("#query-url").fill(url)
    page.locator("#query-url").press("Enter")


def best_box(result: Locator) -> Box:
    """The ``data-box`` of the result's one ``.box[data-best]``: x0,y0,x1,y1 in the
    original image's pixels."""
    box = result.locator(".box[data-best]")
    expect(box).to_have_count(1)
    x0, y0, x1, y1 = (float(v) for v in (box.get_attribute("data-box") or "").split(","))
    return x0, y0, x1, y1


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def centre_inside(inner: Box, outer: Box) -> bool:
    cx, cy = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]
