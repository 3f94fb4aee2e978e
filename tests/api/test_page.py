"""The web page: the controls exist, every control has a label, nothing is loaded from outside.

The page is served at ``/`` from the search-api package; the machines are offline, so a
CDN script or a web font would silently break it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path

import pytest

PAGE = resources.files("imgsearch_api").joinpath("static/index.html").read_text("utf-8")
URL_ATTRIBUTES = {"src", "href", "action", "formaction", "srcset", "poster", "data", "manifest"}
EXTERNAL = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?//", re.IGNORECASE)


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.label_for: set[str] = set()
        self.labelled_inside: set[str] = set()  # ids of controls nested in a <label>
        self.scripts: list[str] = []
        self.styles: list[str] = []
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
        if self._in == "script":
            self.scripts.append(data)
        elif self._in == "style":
            self.styles.append(data)


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


def test_index_panel_exists(page: PageParser) -> None:
    _find(page, "input", id="index-path")
    _find(page, "input", id="index-api-key", type="password")
    assert "multiple" in _find(page, "input", type="file", name="files")


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


def test_nothing_is_loaded_from_outside(page: PageParser) -> None:
    assert "http://" not in PAGE and "https://" not in PAGE
    for tag, attributes in page.elements:
        for name, value in attributes.items():
            if name in URL_ATTRIBUTES:
                assert not EXTERNAL.match(value), f"<{tag} {name}={value!r}>"
        assert not (tag == "script" and "src" in attributes), "scripts are inline"
        assert not (tag == "link" and "stylesheet" in attributes.get("rel", "")), "styles inline"
    css = "\n".join(page.styles)
    assert "@import" not in css and "url(" not in css and "@font-face" not in css


def test_server_data_never_goes_through_innerhtml(page: PageParser) -> None:
    script = "\n".join(page.scripts)
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_script_is_valid_javascript(page: PageParser, tmp_path: Path) -> None:
    script = tmp_path / "page.js"
    script.write_text("\n".join(page.scripts), encoding="utf-8")
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, "--check", str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
