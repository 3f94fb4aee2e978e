"""Searching from the page: by an indexed photo, by a crop of one, by text; what the
result cards load."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from tests.browser.conftest import Corpus, OpenedPage
from tests.browser.pageflow import (
    best_box,
    centre_inside,
    choose,
    iou,
    results,
    search_file,
    search_text,
)
from tests.support.images import jpeg_bytes

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

Shot = Callable[[Page, str], Path]
#: The design's target for every thumbnail the result cards load.
THUMBNAIL_MAX_BYTES = 100_000
#: The routes that serve an indexed file as it is.
ORIGINAL = re.compile(r"/api/image/[^/]+|/(static/)?images/.+")


def test_an_indexed_photo_comes_back_first_as_the_same_image_boxed_whole(
    open_page: Callable[..., OpenedPage], corpus: Corpus, shot: Shot
) -> None:
    opened = open_page("/#search")
    page = opened.page
    path = corpus.paths["chelsea"]
    search_file(page, path.name, path.read_bytes(), collection=corpus.collection)
    first = results(page).first
    expect(first).to_have_attribute("data-id", corpus.id_of("chelsea"))
    expect(first).to_have_attribute("data-kind", "same")
    expect(first.locator(".kind")).to_have_text(re.compile("same image", re.I))
    expect(first).to_contain_text(path.name)
    width, height = corpus.size_of("chelsea")
    assert best_box(first) == pytest.approx((0, 0, width, height), abs=1)
    # Choosing the file was one action: one search, not one more when results came.
    assert len(opened.log.matching("/api/search/by-image")) == 1
    shot(page, "search-same-image")


def test_a_crop_of_15_percent_finds_its_parent_boxed_where_it_was_cut(
    open_page: Callable[..., OpenedPage], corpus: Corpus, shot: Shot
) -> None:
    page = open_page("/#search").page
    with Image.open(corpus.paths["china"]) as img:
        width, height = img.size
        side = 0.15**0.5  # of each side: 15 % of the area
        w, h = int(width * side), int(height * side)
        x0, y0 = int((width - w) * 0.55), int((height - h) * 0.5)
        cut = (x0, y0, x0 + w, y0 + h)
        query = jpeg_bytes(img.crop(cut), quality=90)
    search_file(page, "crop.jpg", query, collection=corpus.collection)
    first = results(page).first
    expect(first).to_have_attribute("data-id", corpus.id_of("china"))
    expect(first).to_have_attribute("data-kind", "contains_query")
    box = best_box(first)
    assert centre_inside(box, cut), (box, cut)
    assert iou(box, cut) >= 0.5, (box, cut)
    shot(page, "search-crop")


def test_a_text_query_returns_results(
    open_page: Callable[..., OpenedPage], corpus: Corpus, shot: Shot
) -> None:
    page = open_page("/#search").page
    search_text(page, "a cat on a sofa", collection=corpus.collection)
    expect(results(page).first).to_be_visible()
    # Text never matches an image as "the same image".
    expect(page.locator('#results li.result[data-kind="same"]')).to_have_count(0)
    expect(page.locator("#results-summary")).to_be_visible()
    shot(page, "search-text")


def test_result_cards_load_thumbnails_under_100_kb_never_the_originals(
    open_page: Callable[..., OpenedPage], corpus: Corpus
) -> None:
    opened = open_page("/#search")
    page = opened.page
    choose(page.locator("#opt-limit"), str(len(corpus.paths)))
    search_text(page, "a photograph", collection=corpus.collection)
    cards = results(page)
    expect(cards.first).to_be_visible()
    shown = cards.count()
    thumbs = page.locator("#results li.result img.thumb")
    expect(thumbs).to_have_count(shown)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img.thumb')]"
        ".every(i => i.complete && i.naturalWidth > 0)",
        timeout=30_000,
    )
    # Each card shows its thumbnail (no placeholder: every one was served).
    sources = thumbs.evaluate_all("imgs => imgs.map(i => i.currentSrc)")
    sizes = opened.log.body_sizes("/thumbnail")
    assert set(sources) <= set(sizes), (sources, sizes)
    too_big = {url: size for url, size in sizes.items() if size > THUMBNAIL_MAX_BYTES}
    assert not too_big, too_big
    # The originals (hubble, retina and the near-copy are 300 KB to 1 MB) wait for the
    # detail view.
    originals = [r.url for r in opened.log.responses if ORIGINAL.fullmatch(urlsplit(r.url).path)]
    assert not originals, originals
