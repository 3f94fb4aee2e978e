"""The page on a phone, with the keyboard only, and the API's own /docs offline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Corpus, OpenedPage
from tests.browser.pageflow import results, search_text, set_collection

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

Shot = Callable[[Page, str], Path]
PHONE = {"width": 390, "height": 844}


def _horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than the screen (0: no horizontal scroll)."""
    return int(
        page.evaluate(
            "() => document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth"
        )
    )


def test_the_phone_layout_has_no_horizontal_scroll_and_shows_the_results(
    open_page: Callable[..., OpenedPage], corpus: Corpus, shot: Shot
) -> None:
    page = open_page("/#search", viewport=PHONE, is_mobile=True, has_touch=True).page
    for view in ("library", "duplicates", "search"):
        page.locator(f'a[href="#{view}"]').click()
        expect(page.locator(f"#view-{view}")).to_be_visible()
        assert _horizontal_overflow(page) <= 0, view
    search_text(page, "a photograph", collection=corpus.collection)
    # The results start below the fold on a phone: the page brings them into view.
    expect(results(page).first).to_be_in_viewport()
    assert _horizontal_overflow(page) <= 0
    shot(page, "phone-results")


def _tab_to(page: Page, test: str, *, most: int = 60) -> None:
    """Press Tab until ``test`` (a JS expression on ``document.activeElement`` as ``e``)
    holds."""
    for _ in range(most):
        page.keyboard.press("Tab")
        if page.evaluate(f"() => {{ const e = document.activeElement; return !!({test}); }}"):
            return
    pytest.fail(f"{most} presses of Tab never reached {test}")


def test_the_keyboard_alone_searches_opens_a_result_and_closes_it(
    open_page: Callable[..., OpenedPage], corpus: Corpus, shot: Shot
) -> None:
    page = open_page("/#search").page
    set_collection(page, corpus.collection)
    page.locator("#mode-text").check()
    page.locator("#query-text").fill("a photograph")
    _tab_to(page, "e && e.id === 'search-button'")
    page.keyboard.press("Enter")
    expect(results(page).first).to_be_visible()
    _tab_to(page, "e && e.closest('#results li.result')")
    page.keyboard.press("Enter")
    detail = page.locator("dialog#detail")
    expect(detail).to_be_visible()
    shot(page, "keyboard-detail")
    page.keyboard.press("Escape")
    expect(detail).to_be_hidden()


def test_docs_render_swagger_ui_offline(open_page: Callable[..., OpenedPage], shot: Shot) -> None:
    # open_page refuses (and fails the test on) any request that leaves this machine.
    page = open_page("/docs").page
    expect(page.locator(".opblock").first).to_be_visible()
    assert page.locator(".opblock").count() >= 10
    shot(page, "docs")


def test_a_request_to_another_host_is_refused_and_reported(
    open_page: Callable[..., OpenedPage],
) -> None:
    # What makes the offline claims above (and every test's teardown check) worth anything.
    opened = open_page("/")
    fetched = opened.page.evaluate(
        "() => fetch('https://cdn.example.com/x.js').then(() => true, () => false)"
    )
    assert fetched is False
    assert opened.log.refused == ["https://cdn.example.com/x.js"]
    opened.log.refused.clear()  # seen: the teardown would fail this test for it
