"""The library from the page: a batch queued by upload, the batches list after a reload,
an image deleted from its detail view."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from imgsearch_devstack.photos import load_photos
from tests.browser.conftest import INDEX_TIMEOUT_MS, TO_DELETE, Corpus, OpenedPage
from tests.browser.pageflow import choose, jpeg_file, results, search_file
from tests.support.images import jpeg_bytes

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

Shot = Callable[[Page, str], Path]


def test_a_batch_uploaded_from_the_page_reaches_100_percent(
    open_page: Callable[..., OpenedPage], shot: Shot
) -> None:
    page = open_page("/#library").page
    photos = load_photos()
    files = [jpeg_file(f"{name}.jpg", jpeg_bytes(photos[name], 90)) for name in ("coins", "clock")]
    choose(page.locator("#index-collection"), "browser-upload")
    page.locator("#index-files").set_input_files(files=files)
    with page.expect_response(re.compile(r"/api/index/upload$")) as queued:
        page.locator("#upload-button").click()
    assert queued.value.status == 202
    batch = page.locator(f'#batches li.batch[data-batch-id="{queued.value.json()["batch_id"]}"]')
    expect(batch).to_be_visible()
    expect(batch).to_have_attribute("data-percent", "100", timeout=INDEX_TIMEOUT_MS)
    progress = batch.locator("progress.progress")
    expect(progress).to_have_attribute("max", "2")
    expect(progress).to_have_attribute("value", "2")
    expect(batch.locator(".requeue")).to_have_count(0)
    expect(page.locator('#collections li[data-name="browser-upload"] .count')).to_contain_text("2")
    shot(page, "library-batch-done")


def test_the_batches_list_survives_a_reload(
    open_page: Callable[..., OpenedPage], corpus: Corpus
) -> None:
    page = open_page("/#library").page
    batch = page.locator(f'#batches li.batch[data-batch-id="{corpus.batch_id}"]')
    expect(batch).to_have_attribute("data-percent", "100")
    # What was queued: the folder.
    expect(batch.locator(".label")).to_contain_text(corpus.folder.name)
    page.reload()
    expect(batch).to_have_attribute("data-percent", "100")
    expect(batch.locator(".label")).to_contain_text(corpus.folder.name)


def test_an_image_deleted_from_its_detail_view_leaves_results_and_the_count(
    open_page: Callable[..., OpenedPage], corpus: Corpus, shot: Shot
) -> None:
    page = open_page("/#library").page
    count = page.locator(f'#collections li[data-name="{corpus.collection}"] .count')
    before = len(corpus.paths)
    expect(count).to_have_text(re.compile(rf"\b{before}\b"))
    page.locator('a[href="#search"]').click()
    query = corpus.paths[TO_DELETE].read_bytes()
    search_file(page, "query.jpg", query, collection=corpus.collection)
    doomed = page.locator(f'#results li.result[data-id="{corpus.id_of(TO_DELETE)}"]')
    expect(doomed).to_be_visible()
    doomed.click()
    detail = page.locator("dialog#detail")
    expect(detail).to_be_visible()
    expect(detail.locator("img.full")).to_be_visible()
    shot(page, "detail")
    page.locator("#detail-delete").click()
    page.locator("#confirm-yes").click()
    expect(doomed).to_have_count(0)
    expect(detail).to_be_hidden()
    # Searched again, it is not found any more...
    with page.expect_response(re.compile(r"/api/search/by-image$")):
        search_file(page, "query-again.jpg", query, collection=corpus.collection)
    expect(results(page).first).to_be_visible()
    expect(doomed).to_have_count(0)
    # ... and its collection counts one image less.
    page.locator('a[href="#library"]').click()
    expect(count).to_have_text(re.compile(rf"\b{before - 1}\b"))
