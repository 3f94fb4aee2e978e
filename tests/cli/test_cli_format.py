"""The CLI's pure parts: exact output of the formatters and the argument parsing.

The HTTP side is covered end to end against the real stack (tests/e2e).
"""

from __future__ import annotations

import io
import json
from typing import Any

import httpx
import pytest

from imgsearch_cli import (
    ApiClient,
    CliSettings,
    ProgressPrinter,
    best_box,
    cmd_requeue,
    format_duration,
    format_progress,
    format_search_footer,
    format_status,
    format_summary,
    format_table,
    normalise_extensions,
    parse_args,
    printable,
)
from imgsearch_cli.__main__ import main
from imgsearch_cli.client import _error_text
from imgsearch_common.schemas import BatchStatus, SearchResponse, SearchResult

SETTINGS = CliSettings(imgsearch_api="http://search.local:8000", api_key=None)


def _result(**overrides: Any) -> SearchResult:
    data: dict[str, Any] = {
        "id": "0b9c5c34-8f0e-5a57-9b1e-3f1f2d3c4b5a",
        "score": 0.85432,
        "metadata": {
            "filename": "cat.jpg",
            "original_path": "/photos/cat.jpg",
            "file_size": 245760,
            "indexed_at": 1642345678.0,
            "width": 640,
            "height": 480,
            "collection": "default",
        },
        "matched_regions": 3,
        "avg_score": 0.7821,
        "match_type": "partial_to_full",
        "matched_boxes": [
            {"box": [0, 0, 320, 320], "score": 0.61},
            {"box": [160, 80, 480, 400], "score": 0.83},
        ],
        "image_url": "/api/image/0b9c5c34-8f0e-5a57-9b1e-3f1f2d3c4b5a?collection=default",
    }
    data.update(overrides)
    return SearchResult.model_validate(data)


def _batch(**overrides: Any) -> BatchStatus:
    data: dict[str, Any] = {
        "batch_id": "b1",
        "collection": "default",
        "total": 100,
        "done": 30,
        "failed": 2,
        "pending": 68,
        "finished": False,
        "created_at": 0.0,
    }
    data.update(overrides)
    return BatchStatus.model_validate(data)


# --- formatting -------------------------------------------------------------------------


def test_format_duration() -> None:
    assert format_duration(0) == "0:00"
    assert format_duration(75.4) == "1:15"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(-3) == "0:00"


def test_printable_replaces_control_characters() -> None:
    assert printable("cat\x1b[31m.jpg\n") == "cat?[31m.jpg?"
    assert printable("Käse.jpg") == "Käse.jpg"


def test_best_box_is_the_highest_scoring_box() -> None:
    assert best_box(_result()) == "160,80,480,400"
    assert best_box(_result(matched_boxes=[])) == "-"


def test_format_table_exact() -> None:
    meta = _result().model_dump()["metadata"]
    results = [
        _result(),
        _result(
            score=0.5,
            match_type="full",
            matched_regions=0,
            matched_boxes=[],
            metadata={**meta, "filename": "a.png", "original_path": "/p/a.png"},
        ),
        _result(id="no-metadata", score=-0.01, metadata=None, match_type="full_and_partial"),
    ]
    assert format_table(results) == (
        "#    score  match             regions  path             best box\n"
        "1   0.8543  partial_to_full         3  /photos/cat.jpg  160,80,480,400\n"
        "2   0.5000  full                    0  /p/a.png         -\n"
        "3  -0.0100  full_and_partial        3  no-metadata      160,80,480,400"
    )


def test_format_table_empty() -> None:
    assert format_table([]) == "no results"


def test_format_search_footer() -> None:
    response = SearchResponse(
        results=[_result()],
        processing_time_ms=41.25,
        timings_ms={"decode": 2.0, "encode": 30.14},
    )
    assert format_search_footer(response) == "1 result in 41.2 ms (decode 2.0, encode 30.1)"
    empty = SearchResponse(results=[], processing_time_ms=3.0)
    assert format_search_footer(empty) == "0 results in 3.0 ms"


def test_format_progress_running() -> None:
    # 32 of 100 processed in 16 s: 2 img/s, 68 left -> 34 s.
    assert format_progress(_batch(), elapsed=16.0) == (
        "[#######-----------------] 32/100  32.0% (2 failed)  2.0 img/s  ETA 0:34"
    )


def test_format_progress_no_rate_yet_and_no_failures() -> None:
    status = _batch(done=0, failed=0, pending=100)
    assert format_progress(status, elapsed=0.0) == (
        "[------------------------] 0/100   0.0%  0.0 img/s  ETA --:--"
    )


def test_format_progress_finished_and_empty() -> None:
    done = _batch(done=100, failed=0, pending=0, finished=True)
    assert format_progress(done, elapsed=50.0, width=10) == (
        "[##########] 100/100 100.0%  2.0 img/s  done"
    )
    empty = _batch(total=0, done=0, failed=0, pending=0, finished=True)
    assert format_progress(empty, elapsed=1.0, width=4) == "[####] 0/0 100.0%  0.0 img/s  done"


def test_format_summary_lists_failures_and_unlisted_ones() -> None:
    status = _batch(
        done=97,
        failed=3,
        pending=0,
        finished=True,
        errors=[
            {"path": "/photos/bad.jpg", "reason": "corrupt_image", "message": "truncated"},
            {"path": "/photos/x\x07.png", "reason": "unsupported_image", "message": "not an image"},
        ],
    )
    assert format_summary(status, elapsed=125.0) == (
        "batch b1 (default): 97 indexed, 3 failed, 0 pending of 100 in 2:05 (0.8 img/s)\n"
        "failed files:\n"
        "  /photos/bad.jpg: corrupt_image: truncated\n"
        "  /photos/x?.png: unsupported_image: not an image\n"
        "  ... and 1 more not listed by the server"
    )


def test_format_summary_all_done() -> None:
    status = _batch(done=4, failed=0, pending=0, total=4, finished=True)
    assert format_summary(status, elapsed=2.0) == (
        "batch b1 (default): 4 indexed, 0 failed, 0 pending of 4 in 0:02 (2.0 img/s)"
    )


def test_format_status_exact() -> None:
    data = {
        "status": "ok",
        "indexed_images": {"full_images": 1234, "partial_images": 56789},
        "collections": {
            "default": {"full_images": 1200, "partial_images": 56000},
            "cats": {"full_images": 34, "partial_images": 789},
        },
        "queue": {"pending": 5, "dead_letters": 0},
    }
    assert format_status(data) == (
        "status: ok\n"
        "indexed: 1234 images, 56789 regions\n"
        "  collection  images  regions\n"
        "  cats            34      789\n"
        "  default       1200    56000\n"
        "queue: 5 pending, 0 dead letters"
    )


def test_format_status_tolerates_missing_parts() -> None:
    assert format_status({"status": "ok"}) == "status: ok\nindexed: ? images, ? regions"


def test_error_text_uses_the_common_error_shape() -> None:
    plain = httpx.Response(404, json={"error": {"code": "not_found", "message": "no such batch"}})
    assert _error_text(plain) == "not_found: no such batch"
    detailed = httpx.Response(
        422,
        json={
            "error": {
                "code": "validation_error",
                "message": "request parameters are invalid",
                "details": [{"loc": ["body", "limit"], "msg": "too big"}],
            }
        },
    )
    assert _error_text(detailed) == (
        "validation_error: request parameters are invalid (body.limit: too big)"
    )
    assert _error_text(httpx.Response(502, text="<html>")) == "HTTP 502 Bad Gateway"


# --- progress printing ------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_printer_redraws_on_a_tty() -> None:
    stream = _Tty()
    printer = ProgressPrinter(stream)
    printer.show("12345")
    printer.show("123")
    printer.close()
    assert stream.getvalue() == "\r12345\r123  \n"


def test_progress_printer_prints_a_line_every_few_seconds_elsewhere() -> None:
    now = [100.0]
    stream = io.StringIO()
    printer = ProgressPrinter(stream, clock=lambda: now[0])
    printer.show("a")
    now[0] += 1.0
    printer.show("b")  # too soon: skipped
    now[0] += 5.0
    printer.show("c")
    now[0] += 0.1
    printer.show("d", final=True)  # the last line always shows
    printer.close()
    assert stream.getvalue() == "a\nc\nd\n"


# --- argument parsing -------------------------------------------------------------------


def test_index_seed_spelling() -> None:
    args = parse_args(
        [
            "index",
            "--images-dir",
            "/data/photos",
            "--batch-size",
            "100",
            "--extensions",
            ".jpg",
            "png",
            ".webp",
        ],
        SETTINGS,
    )
    assert args.command == "index"
    assert args.dir == "/data/photos"
    assert args.extensions == [".jpg", ".png", ".webp"]
    assert args.batch_size == 100
    assert args.collection == "default"
    assert args.recursive is True
    assert args.wait is True
    assert args.api == "http://search.local:8000"
    assert args.api_key is None


def test_index_positional_and_flags() -> None:
    args = parse_args(
        ["index", "photos", "--collection", "cats", "--no-recursive", "--no-wait"], SETTINGS
    )
    assert args.dir == "photos"
    assert args.collection == "cats"
    assert args.extensions is None
    assert args.recursive is False
    assert args.wait is False


def test_index_same_folder_twice_is_fine() -> None:
    assert parse_args(["index", "/a", "--images-dir", "/a"], SETTINGS).dir == "/a"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["index"], "a folder is required"),
        (["index", "/a", "--images-dir", "/b"], "either DIR or --images-dir"),
        (["index", "--extensions", ".jpg", "/photos"], "put DIR before --extensions"),
        (["index", "/a", "--batch-size", "0"], "must be at least 1"),
        (["search"], "exactly one of IMAGE, --text or --url"),
        (["search", "q.jpg", "--text", "cat"], "exactly one of IMAGE, --text or --url"),
        (["search", "--text", "cat", "--remove-text"], "image and URL queries only"),
        (["search", "q.jpg", "--no-full", "--no-partial"], "nothing to match"),
        (["search", "q.jpg", "--limit", "0"], "between 1 and 100"),
        (["search", "q.jpg", "--limit", "101"], "between 1 and 100"),
        (["--api", "localhost:8000", "status"], "--api must be an http(s) URL"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, SETTINGS)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_search_options() -> None:
    args = parse_args(
        [
            "search",
            "--url",
            "https://example.org/cat.jpg",
            "--limit",
            "25",
            "--collection",
            "cats",
            "--no-partial",
            "--enhance",
            "--min-score",
            "0.3",
            "--json",
        ],
        SETTINGS,
    )
    assert (args.image, args.text, args.url) == (None, None, "https://example.org/cat.jpg")
    assert args.limit == 25
    assert args.collection == "cats"
    assert (args.full, args.partial, args.remove_text, args.enhance) == (True, False, False, True)
    assert args.min_score == 0.3
    assert args.json is True


def test_connection_options_before_or_after_the_subcommand() -> None:
    before = parse_args(["--api", "http://a:1/", "--api-key", "k", "status"], SETTINGS)
    assert (before.api, before.api_key) == ("http://a:1", "k")
    after = parse_args(["status", "--api", "http://b:2", "--timeout", "5"], SETTINGS)
    assert (after.api, after.timeout) == ("http://b:2", 5.0)
    default = parse_args(["status"], SETTINGS)
    assert (default.api, default.api_key, default.timeout) == (
        "http://search.local:8000",
        None,
        120.0,
    )


def test_defaults_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGSEARCH_API", "http://env-host:9000")
    monkeypatch.setenv("API_KEY", "s3cret")
    args = parse_args(["status"])
    assert (args.api, args.api_key) == ("http://env-host:9000", "s3cret")


def test_normalise_extensions() -> None:
    assert normalise_extensions(None) is None
    assert normalise_extensions(["jpg", " .PNG ", ""]) == [".jpg", ".PNG"]


def test_unreachable_server_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 (discard) on loopback: nothing listens there on a test machine.
    assert main(["--api", "http://127.0.0.1:9", "--timeout", "5", "status"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imgsearch: error: cannot reach the search API at http://127.0.0.1:9")
    assert "Traceback" not in err


# --- requeue ----------------------------------------------------------------------------


def test_requeue_arguments() -> None:
    plain = parse_args(["requeue"], SETTINGS)
    assert (plain.command, plain.reasons, plain.limit) == ("requeue", None, None)
    args = parse_args(
        ["requeue", "--reason", "retries_exhausted", "worker_crashed", "--reason", "missing_file",
         "--limit", "50"],
        SETTINGS,
    )  # fmt: skip
    assert args.reasons == ["retries_exhausted", "worker_crashed", "missing_file"]
    assert args.limit == 50


@pytest.mark.parametrize("argv", [["requeue", "--limit", "0"], ["requeue", "--reason"]])
def test_requeue_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv, SETTINGS)
    assert exc.value.code == 2


def test_requeue_sends_the_filter_and_prints_the_batches() -> None:
    sent: list[tuple[str, str, bytes]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append((request.method, request.url.path, request.content))
        return httpx.Response(
            200,
            json={
                "requeued": 3,
                "batches": [
                    {"batch_id": "b1", "queued": 2, "collection": "cats"},
                    {"batch_id": "b2", "queued": 1, "collection": "dogs"},
                ],
            },
        )

    args = parse_args(["requeue", "--reason", "retries_exhausted", "--limit", "5"], SETTINGS)
    out, err = io.StringIO(), io.StringIO()
    with ApiClient(args.api, transport=httpx.MockTransport(answer)) as client:
        assert cmd_requeue(client, args, out, err) == 0
    ((method, path, content),) = sent
    assert (method, path) == ("POST", "/api/index/dead-letters/requeue")
    assert json.loads(content) == {"reasons": ["retries_exhausted"], "limit": 5}
    assert out.getvalue() == (
        "requeued 3 dead letters\n"
        "batch b1: 2 queued in collection cats\n"
        "batch b2: 1 queued in collection dogs\n"
    )


def test_requeue_of_nothing() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert json.loads(request.content) == {}
        return httpx.Response(200, json={"requeued": 0, "batches": []})

    out = io.StringIO()
    with ApiClient("http://x", transport=httpx.MockTransport(answer)) as client:
        assert cmd_requeue(client, parse_args(["requeue"], SETTINGS), out, io.StringIO()) == 0
    assert out.getvalue() == "requeued 0 dead letters\n"
