"""The CLI beside the page (issue 12): ``search --match-mode``, result paths and match kinds
in the table, help texts that speak of ``index_and_run.py`` (never of "the seed"), a
mistyped collection said plainly by every command that names one (against the real API of
the in-process stack), and the message a Ctrl-C while following a batch leaves."""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgsearch_cli import (
    ApiClient,
    CliSettings,
    build_parser,
    format_interrupted,
    format_summary,
    format_table,
    match_words,
    parse_args,
    result_path,
    short_path,
)
from imgsearch_cli.__main__ import run
from imgsearch_cli.args import MATCH_MODES
from imgsearch_cli.commands import COMMANDS
from imgsearch_cli.format import KIND_WORDS
from imgsearch_common.schemas import SearchResult
from imgsearch_devstack.photos import load_photos
from tests.cli.test_cli_format import _batch
from tests.support.handoff import AUTH, UPSERT_URL, image_point
from tests.support.images import jpeg_bytes
from tests.support.inprocess import API_URL, InProcessStack, LoopTransport

SETTINGS = CliSettings(imgsearch_api="http://search.local:8000", api_key=None)
COLLECTION = "cli-parity"
IMAGE_ID = "77777777-0000-0000-0000-000000000001"


def _parse(*argv: str) -> argparse.Namespace:
    return parse_args(list(argv), SETTINGS)


def _result(**overrides: Any) -> SearchResult:
    data: dict[str, Any] = {
        "id": IMAGE_ID,
        "score": 0.9,
        "metadata": {
            "filename": "cat.jpg",
            "original_path": "/photos/cat.jpg",
            "file_size": 1,
            "indexed_at": 0.0,
            "width": 64,
            "height": 64,
            "collection": "default",
        },
        "matched_regions": 0,
        "avg_score": None,
        "match_type": "full",
        "image_url": f"/api/image/{IMAGE_ID}",
    }
    data.update(overrides)
    return SearchResult.model_validate(data)


# --- --match-mode -------------------------------------------------------------------------


def test_match_mode_is_the_apis_and_defaults_to_the_servers() -> None:
    assert MATCH_MODES == ("auto", "region", "contains")
    assert _parse("search", "q.jpg").match_mode is None
    for mode in MATCH_MODES:
        assert _parse("search", "q.jpg", "--match-mode", mode).match_mode == mode
        assert _parse("search", "--url", "https://x/a.jpg", "--match-mode", mode).match_mode == (
            mode
        )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["search", "--text", "cat", "--match-mode", "contains"],
            "search: --match-mode applies to image and URL queries only, not to --text",
        ),
        (
            ["search", "--text", "cat", "--enhance", "--match-mode", "auto"],
            "search: --enhance and --match-mode apply to image and URL queries only",
        ),
        (["search", "q.jpg", "--match-mode", "everything"], "invalid choice: 'everything'"),
    ],
)
def test_match_mode_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(*argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


# --- help texts ---------------------------------------------------------------------------


def _every_help() -> dict[str, str]:
    parser = build_parser(SETTINGS)
    helps = {"imgsearch": parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                helps[name] = sub.format_help()
    return helps


def test_every_help_speaks_of_index_and_run_never_of_the_seed() -> None:
    helps = _every_help()
    assert set(helps) == {"imgsearch", *COMMANDS}  # every subcommand was walked
    for name, text in helps.items():
        assert "seed" not in text.lower(), name
        assert "original system" not in text.lower(), name
    assert "compatible with index_and_run.py" in " ".join(helps["index"].split()).lower()
    assert "--match-mode {auto,region,contains}" in helps["search"]


# --- the results table --------------------------------------------------------------------


def test_short_path_keeps_the_file_name_whole() -> None:
    assert short_path("/photos/cat.jpg", 48) == "/photos/cat.jpg"
    # The folders that fit, from the end.
    assert short_path("/srv/photos/2019/summer/trip/beach.jpg", 24) == ".../trip/beach.jpg"
    assert short_path("/a/b/" + "n" * 60 + ".jpg", 20) == ".../" + "n" * 60 + ".jpg"
    assert short_path("https://example.com/very/long/url/of/a/picture.png", 30) == (
        ".../long/url/of/a/picture.png"
    )


def test_result_path_is_the_original_path_and_counts_the_others() -> None:
    assert result_path(_result()) == "/photos/cat.jpg"
    meta = _result().model_dump()["metadata"]
    twice = _result(metadata={**meta, "paths": ["/photos/cat.jpg", "/backup/cat.jpg"]})
    assert result_path(twice) == "/photos/cat.jpg (+1 more)"
    moved = _result(metadata={**meta, "original_path": "", "paths": ["/new/cat.jpg"]})
    assert result_path(moved) == "/new/cat.jpg"
    assert result_path(_result(metadata=None)) == IMAGE_ID
    # A server string cannot drive the terminal.
    assert result_path(_result(metadata={**meta, "original_path": "/p/\x1b[2Jx.jpg"})) == (
        "/p/?[2Jx.jpg"
    )


def test_the_match_column_says_the_kind_in_words_when_the_server_gives_one() -> None:
    assert KIND_WORDS == {
        "same": "same image",
        "contains_query": "contains your query",
        "in_query": "appears in your query",
        "similar": "similar",
    }
    r = _result(match_type="partial_to_full")
    assert match_words(r, None) == "partial_to_full"  # a server without kind: as today
    assert match_words(r, "in_query") == "appears in your query"
    assert match_words(r, "brand_new\x07") == "brand_new?"  # unknown: shown as it came
    results = [_result(score=1.0), _result(score=0.7, match_type="partial_to_full")]
    assert format_table(results, kinds=["same", None]) == (
        "#   score  match            regions  path             best box\n"
        "1  1.0000  same image             0  /photos/cat.jpg  -\n"
        "2  0.7000  partial_to_full        0  /photos/cat.jpg  -"
    )


# --- Ctrl-C and batches -------------------------------------------------------------------


def test_the_interrupted_message_says_what_becomes_of_the_batch() -> None:
    assert format_interrupted("b1", _batch()) == (
        "Stopped waiting: batch b1 (32 of 100 files processed) keeps running on the server. "
        "Check it with: imgsearch batch b1"
    )
    assert format_interrupted("b1", None, "stops with the stack") == (
        "Stopped waiting: batch b1 stops with the stack. Check it with: imgsearch batch b1"
    )


def test_a_batch_looked_at_without_following() -> None:
    assert format_summary(_batch(), None) == (
        "batch b1 (default): 30 indexed, 2 failed, 68 pending of 100 (running)\n"
        "  ... and 2 more not listed by the server"
    )
    done = _batch(done=100, failed=0, pending=0, finished=True)
    assert format_summary(done, None) == (
        "batch b1 (default): 100 indexed, 0 failed, 0 pending of 100"
    )
    # Joined half-way: the rate counts what was processed while watching.
    assert format_summary(done, 10.0, seen_before=20).endswith("in 0:10 (8.0 img/s)")


# --- against the real API -----------------------------------------------------------------


class Recording(httpx.BaseTransport):
    """The in-process app's transport, keeping each request it carried."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.requests: list[httpx.Request] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        return self.inner.handle_request(request)


@pytest.fixture(scope="module")
def transport(inprocess: InProcessStack) -> Iterator[Recording]:
    """The real API, with one forged image in ``cli-parity`` (dropped afterwards)."""
    recording = Recording(LoopTransport(inprocess.api_app, inprocess.loop))
    with httpx.Client(transport=recording.inner) as raw:
        body = {
            "collection": COLLECTION,
            "full": [image_point(IMAGE_ID, "/nowhere/photos/cat.jpg", COLLECTION, seed=3)],
            "windows": [],
        }
        assert raw.post(UPSERT_URL, json=body, headers=AUTH).status_code == 200
        yield recording
        raw.delete(f"{API_URL}/api/collections/{COLLECTION}")


@pytest.fixture(scope="module")
def query_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-parity") / "query.jpg"
    path.write_bytes(jpeg_bytes(load_photos()["coffee"]))
    return path


def _cli(transport: Recording, *argv: str) -> tuple[int, str, str]:
    """``imgsearch ARGV`` as ``main`` runs it (the same error mapping), on the real API."""
    out, err = io.StringIO(), io.StringIO()
    args = _parse(*argv)
    with ApiClient(API_URL, transport=transport) as client:
        code = run(args, client, out, err)
    return code, out.getvalue(), err.getvalue()


def test_match_mode_reaches_the_server_and_changes_the_search(
    transport: Recording, query_file: Path
) -> None:
    answers = {}
    for mode in ("region", "contains"):
        code, out, err = _cli(
            transport, "search", str(query_file), "--collection", COLLECTION,
            "--match-mode", mode, "--min-score", "-1", "--json",
        )  # fmt: skip
        assert code == 0, err
        sent = transport.requests[-1]
        assert sent.url.path == "/api/search/by-image"
        assert f'name="match_mode"\r\n\r\n{mode}\r\n'.encode() in sent.content
        answers[mode] = json.loads(out)["results"]
    # Only a contains search looks for the indexed image inside the query.
    assert [r["contains_score"] for r in answers["region"]] == [None]
    assert answers["contains"][0]["contains_score"] is not None
    # Without the option the server decides: nothing is sent.
    _cli(transport, "search", str(query_file), "--collection", COLLECTION)
    assert b'name="match_mode"' not in transport.requests[-1].content
    _cli(transport, "search", "--url", "https://example.invalid/a.jpg", "--match-mode", "auto",
         "--collection", "nope-parity")  # fmt: skip
    assert json.loads(transport.requests[-1].content)["match_mode"] == "auto"


def test_the_table_shows_the_path_and_the_kind_when_the_server_gives_it(
    transport: Recording,
) -> None:
    code, out, err = _cli(transport, "search", "--text", "a cat", "--collection", COLLECTION)
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert header.split() == ["#", "score", "match", "regions", "path", "best", "box"]
    answer = json.loads(
        _cli(transport, "search", "--text", "a cat", "--collection", COLLECTION, "--json")[1]
    )["results"][0]
    # Tolerant: the kind's words where the server sends one, its match_type where not.
    words = KIND_WORDS[answer["kind"]] if "kind" in answer else answer["match_type"]
    assert f"  {words}  " in row and row.rstrip().endswith("/nowhere/photos/cat.jpg  -")


MISTYPED = "defualt"


@pytest.mark.parametrize(
    "argv",
    [
        ["search", "--text", "cat", "--collection", MISTYPED],
        ["search", "QUERY", "--collection", MISTYPED],
        ["search", "--url", "https://example.invalid/a.jpg", "--collection", MISTYPED],
        ["search", "--text", "cat", "--collections", f"{COLLECTION},{MISTYPED}"],
        ["delete", IMAGE_ID, "--collection", MISTYPED],
        ["duplicates", "--collection", MISTYPED],
        ["reindex", "--collection", MISTYPED],
        # Not `reindex --status`: the API answers a missing collection there with 404
        # not_found "has not been reindexed lately" (its own route's wording).
        ["drop", MISTYPED],
        ["drop", MISTYPED, "--yes"],
    ],
    ids=lambda argv: " ".join(a for a in argv if a != MISTYPED),
)
def test_a_mistyped_collection_is_said_plainly(
    transport: Recording, query_file: Path, argv: list[str]
) -> None:
    argv = [str(query_file) if a == "QUERY" else a for a in argv]
    code, out, err = _cli(transport, *argv)
    assert (code, out) == (2, "")
    # One line, the server's words: which name is wrong and which exist.
    assert err.count("\n") == 1, err
    assert err.startswith(f"imgsearch: error: no collection '{MISTYPED}'; the collections are: ")
    assert f"'{COLLECTION}'" in err
    assert "Traceback" not in err and "failed:" not in err


def test_a_folder_missing_here_and_on_the_server_is_said_plainly(
    transport: Recording, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-folder"  # under the server's INDEX_ROOTS
    code, out, err = _cli(transport, "index", str(missing), "--collection", COLLECTION)
    assert (code, out) == (2, "")
    assert err == (
        f"imgsearch: error: no such folder: {missing} (neither on this machine nor on the "
        f"server at {API_URL})\n"
    )
    # Outside the server's roots: its refusal, and that it is not here either.
    code, _, err = _cli(transport, "index", "/does/not/exist", "--collection", COLLECTION)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("imgsearch: error: POST /api/index/folder failed: forbidden: ")
    assert err.endswith("(and /does/not/exist is not a folder on this machine)\n")


def test_an_unknown_batch_is_one_line(transport: Recording) -> None:
    for batch_id in ("nosuchbatch", "../../collections"):
        code, out, err = _cli(transport, "batch", batch_id, "--no-wait")
        assert (code, out) == (2, "")
        assert err.startswith("imgsearch: error: GET /api/index/batches/") and err.count("\n") == 1
        # Quoted whole: the id reached the batches route, not another one.
        assert transport.requests[-1].url.raw_path.startswith(b"/api/index/batches/")
        assert b"/" not in transport.requests[-1].url.raw_path[len(b"/api/index/batches/") :]
