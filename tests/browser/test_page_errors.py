"""Errors said next to the control that caused them, in words, with no stale results."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Corpus, OpenedPage
from tests.browser.pageflow import results, search_text, search_url, set_collection

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

Shot = Callable[[Page, str], Path]


@pytest.mark.parametrize(
    ("url", "state"),
    [
        ("http://127.0.0.1/x", "error-url-loopback"),
        ("http://169.254.169.254/latest/meta-data/", "error-url-metadata"),
    ],
)
def test_a_blocked_url_says_so_next_to_the_url_field(
    open_page: Callable[..., OpenedPage], shot: Shot, url: str, state: str
) -> None:
    page = open_page("/#search").page
    search_url(page, url)
    error = page.locator("#query-url-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    # Words for people, not the API's code.
    expect(error).to_have_text(re.compile(r"\w+ \w+ \w+"))
    expect(error).not_to_contain_text("url_refused")
    expect(page.locator("#search-error")).to_be_hidden()
    expect(results(page)).to_have_count(0)
    shot(page, state)


def test_a_mistyped_collection_is_said_not_to_exist(
    open_page: Callable[..., OpenedPage], corpus: Corpus, shot: Shot
) -> None:
    page = open_page("/#search").page
    search_text(page, "a cat", collection="defualt")
    error = page.locator("#opt-collection-error")
    expect(error).to_be_visible()
    expect(error).to_have_text(re.compile(r"(does not|doesn.t) exist|no collection", re.I))
    # Not the "no good match" advice, which would send people after the wrong option.
    expect(page.locator("#results-empty")).to_be_hidden()
    expect(results(page)).to_have_count(0)
    # Said once, next to the field: the summary line does not repeat it as a failure.
    expect(page.locator("#results-summary")).not_to_have_text(re.compile("fail", re.I))
    shot(page, "error-collection")
    # The next action clears it, and finds.
    set_collection(page, corpus.collection)
    page.locator("#search-button").click()
    expect(results(page).first).to_be_visible()
    expect(error).to_be_hidden()
