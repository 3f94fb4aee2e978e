"""The web page's files: the DOM contract's controls exist, every control has a label,
nothing is loaded from outside, the modules are valid JavaScript and import only each other.

The page (``static/index.html``, served at ``/``) loads its style sheet and its ES modules
from ``/assets/{name}`` (``static/`` too); the machines are offline, so a CDN script, a web
font or an image from another site would silently break it. The browser tests
(``tests/browser``) drive the same ids in a real Chromium.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest

STATIC = resources.files("imgsearch_api").joinpath("static")
PAGE = STATIC.joinpath("index.html").read_text("utf-8")
#: The page's own code and style: every .js and .css file beside it.
ASSETS: dict[str, str] = {
    entry.name: entry.read_text("utf-8")
    for entry in STATIC.iterdir()
    if entry.is_file() and entry.name.endswith((".js", ".css"))
}
SCRIPTS = {name: text for name, text in ASSETS.items() if name.endswith(".js")}
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "srcset", "poster", "data", "manifest"}
EXTERNAL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)
#: A string literal that starts with an address of another host ("https://x", "//x").
EXTERNAL_LITERAL = re.compile(r"""["'`]\s*(?:[a-z][a-z0-9+.-]*:)?//""", re.IGNORECASE)
IMPORT = re.compile(
    r"""(?:^|\s)(?:import|export)\s[^;]*?\sfrom\s+["']([^"']+)["']|import\(\s*["']([^"']+)"""
)

#: Where text would be parsed as HTML or code.
HTML_SINKS = (
    "innerHTML",
    "outerHTML",
    "insertAdjacentHTML",
    "document.write",
    "eval(",
    "Function(",
)
#: The ids the browser tests rely on (the DOM contract of issue 12).
CONTRACT_IDS = {
    "views": ["view-search", "view-library", "view-duplicates"],
    "search": [
        "mode-image", "mode-url", "mode-text", "query-file", "query-url", "query-text",
        "search-button", "opt-full", "opt-partial", "opt-remove-text", "opt-enhance",
        "opt-limit", "opt-collection", "opt-min-score", "opt-match-mode",
    ],
    "results": ["results", "results-empty", "results-summary", "timings"],
    "detail": ["detail", "detail-boxes", "detail-query", "detail-delete", "detail-close"],
    "library": [
        "collections", "confirm", "confirm-yes", "confirm-no", "index-collection",
        "index-api-key", "index-path", "index-sync", "index-recursive", "folder-button",
        "index-files", "upload-button", "index-url", "url-button", "batches",
    ],
    "duplicates": ["find-duplicates", "dup-tier", "dup-collection"],
    "header": ["server-status"],
}  # fmt: skip
#: Errors shown next to their control: role=alert, hidden while empty.
ERROR_IDS = [
    "query-file-error", "query-url-error", "query-text-error", "opt-collection-error",
    "search-error", "index-path-error", "index-files-error", "index-url-error",
]  # fmt: skip


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.label_for: set[str] = set()
        self.labelled_inside: set[str] = set()  # ids of controls nested in a <label>
        self.inline: list[str] = []  # inline <script> and <style> text
        self._label_depth = 0
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.elements.append((tag, attributes))
        if tag == "label":
            self._label_depth += 1
            if attributes.get("for"):
                self.label_for.add(attributes["for"])
        elif tag in ("input", "select", "textarea") and self._label_depth and "id" in attributes:
            self.labelled_inside.add(attributes["id"])
        if tag in ("script", "style"):
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self._label_depth = max(0, self._label_depth - 1)
        if tag in ("script", "style"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in and data.strip():
            self.inline.append(data)

    def by_id(self, element_id: str) -> tuple[str, dict[str, str]]:
        for tag, attributes in self.elements:
            if attributes.get("id") == element_id:
                return tag, attributes
        raise AssertionError(f"no element with id {element_id!r}")


@pytest.fixture(scope="module")
def page() -> PageParser:
    parser = PageParser()
    parser.feed(PAGE)
    parser.close()
    return parser


def _find(page: PageParser, tag: str, **wanted: str) -> dict[str, str]:
    for name, attributes in page.elements:
        if name == tag and all(attributes.get(k) == v for k, v in wanted.items()):
            return attributes
    raise AssertionError(f"no <{tag}> with {wanted}")


def test_every_id_of_the_dom_contract_exists_once(page: PageParser) -> None:
    ids = [a["id"] for _, a in page.elements if "id" in a]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})
    for part, wanted in CONTRACT_IDS.items():
        missing = [i for i in wanted if i not in ids]
        assert not missing, f"{part}: {missing}"


def test_the_contract_elements_have_their_kinds(page: PageParser) -> None:
    kinds = {
        "view-search": "section", "view-library": "section", "view-duplicates": "section",
        "results": "ol", "timings": "details", "detail": "dialog", "confirm": "dialog",
        "opt-match-mode": "select", "dup-tier": "select", "batches": "ul", "collections": "ul",
    }  # fmt: skip
    for element_id, tag in kinds.items():
        assert page.by_id(element_id)[0] == tag, element_id
    assert page.by_id("index-sync")[1]["type"] == "checkbox"
    assert page.by_id("index-recursive")[1]["type"] == "checkbox"
    # Only the search view shows before the script picks the view from the address.
    assert "hidden" not in page.by_id("view-search")[1]
    assert "hidden" in page.by_id("view-library")[1]
    assert "hidden" in page.by_id("view-duplicates")[1]
    for view in ("search", "library", "duplicates"):
        _find(page, "a", href=f"#{view}")


def test_errors_are_alerts_hidden_while_empty(page: PageParser) -> None:
    for element_id in ERROR_IDS:
        _, attributes = page.by_id(element_id)
        assert attributes.get("role") == "alert", element_id
        assert "hidden" in attributes, element_id


def test_query_inputs_exist(page: PageParser) -> None:
    assert _find(page, "input", type="file", name="file")["accept"] == "image/*"
    _find(page, "input", type="url", name="url")
    _find(page, "input", type="text", name="text")
    modes = {a["value"] for t, a in page.elements if t == "input" and a.get("name") == "mode"}
    assert modes == {"image", "url", "text"}


def test_search_options_exist_with_the_api_defaults(page: PageParser) -> None:
    for name in ("use_full_matching", "use_partial_matching"):
        assert "checked" in _find(page, "input", type="checkbox", name=name)
    for name in ("remove_text", "enhance_image"):
        assert "checked" not in _find(page, "input", type="checkbox", name=name)
    limit = _find(page, "input", type="number", name="limit")
    assert (limit["min"], limit["max"], limit["value"]) == ("1", "100", "10")
    assert _find(page, "input", name="collection")["value"] == "default"
    _find(page, "input", type="number", name="min_score")
    modes = {a["value"] for t, a in page.elements if t == "option" and a.get("value")}
    assert {"region", "contains", "auto"} <= modes


def test_index_forms_exist(page: PageParser) -> None:
    _find(page, "input", id="index-path")
    _find(page, "input", id="index-api-key", type="password")
    assert "multiple" in _find(page, "input", type="file", name="files")
    _find(page, "input", id="index-url", type="url")


def test_every_control_has_a_label(page: PageParser) -> None:
    for tag, attributes in page.elements:
        if tag not in ("input", "select", "textarea"):
            continue
        control_id = attributes.get("id", "")
        assert (
            control_id in page.label_for
            or control_id in page.labelled_inside
            or attributes.get("aria-label")
        ), f"<{tag} id={control_id!r}> has no label"


def test_the_page_loads_only_its_own_assets(page: PageParser) -> None:
    assert not page.inline, "no inline script or style: they live in /assets/"
    scripts = [a for t, a in page.elements if t == "script"]
    assert scripts == [{"type": "module", "src": "/assets/app.js"}]
    styles = [a["href"] for t, a in page.elements if t == "link" and a.get("rel") == "stylesheet"]
    assert styles == ["/assets/app.css"]
    for tag, attributes in page.elements:
        for name, value in attributes.items():
            if name in URL_ATTRIBUTES and not value.startswith("#"):
                assert not EXTERNAL.match(value), f"<{tag} {name}={value!r}>"
                assert value.startswith("/assets/"), f"<{tag} {name}={value!r}> is not an asset"
                assert STATIC.joinpath(value.removeprefix("/assets/")).is_file(), value
            # An address may be an example in a placeholder, never something loaded.
            if "://" in value:
                assert name == "placeholder", f"<{tag} {name}={value!r}>"


@pytest.mark.parametrize("name", sorted(ASSETS))
def test_no_asset_reaches_outside(name: str) -> None:
    text = ASSETS[name]
    assert "http://" not in text and "https://" not in text, name
    assert not EXTERNAL_LITERAL.search(text), name
    if name.endswith(".css"):
        assert "@import" not in text and "url(" not in text and "@font-face" not in text


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_modules_import_only_each_other(name: str) -> None:
    for match in IMPORT.finditer(SCRIPTS[name]):
        target = match.group(1) or match.group(2)
        assert target.startswith("./") and "/" not in target[2:], f"{name} imports {target}"
        assert target[2:] in SCRIPTS, f"{name} imports {target}, which is not a page module"


def _reachable(entry: str) -> set[str]:
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for match in IMPORT.finditer(SCRIPTS[name]):
            todo.append((match.group(1) or match.group(2))[2:])
    return seen


def test_every_module_is_used() -> None:
    assert _reachable("app.js") == set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_server_data_never_goes_through_html(name: str) -> None:
    for sink in HTML_SINKS:
        assert sink not in SCRIPTS[name], f"{name} uses {sink}"


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_modules_are_valid_javascript(name: str, tmp_path: Path) -> None:
    # .mjs: checked as an ES module, as the browser loads it.
    module = tmp_path / f"{Path(name).stem}.mjs"
    module.write_text(SCRIPTS[name], encoding="utf-8")
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "--check", str(module)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
