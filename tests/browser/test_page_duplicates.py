"""The duplicates view finds a planted near-copy: one group, both side by side."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import NEAR_COPY, Corpus, OpenedPage
from tests.browser.pageflow import choose

pytestmark = [pytest.mark.browser, pytest.mark.e2e]

Shot = Callable[[Page, str], Path]


def test_the_duplicates_view_groups_a_planted_near_copy_with_its_original(
    open_page: Callable[..., OpenedPage], corpus: Corpus, shot: Shot
) -> None:
    page = open_page("/#duplicates").page
    expect(page.locator("#view-duplicates")).to_be_visible()
    choose(page.locator("#dup-collection"), corpus.collection)
    choose(page.locator("#dup-tier"), "near")
    page.locator("#find-duplicates").click()
    original = f'.dup-item[data-id="{corpus.id_of("coffee")}"]'
    copy = f'.dup-item[data-id="{corpus.id_of(NEAR_COPY)}"]'
    group = page.locator(".dup-group").filter(has=page.locator(original))
    expect(group).to_have_count(1)
    expect(group.locator(copy)).to_have_count(1)
    # Each with its thumbnail, and a button that keeps it.
    expect(group.locator(".dup-item img")).to_have_count(2)
    expect(group.locator(".dup-item .keep")).to_have_count(2)
    shot(page, "duplicates")
