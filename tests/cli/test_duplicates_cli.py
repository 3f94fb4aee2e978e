"""``imgsearch duplicates``: its arguments, the exact output of its formatter, and the
command against the real search API of the in-process stack (a point forged through the
internal hand-off: one image held by two files)."""

from __future__ import annotations

import io
from typing import Any

import httpx
import pytest

from imgsearch_cli import ApiClient, CliSettings, parse_args
from imgsearch_cli.duplicates import cmd_duplicates, format_duplicates
from imgsearch_common.schemas import DuplicatesResponse
from tests.support.handoff import AUTH, UPSERT_URL, image_point
from tests.support.inprocess import API_URL, InProcessStack, LoopTransport

SETTINGS = CliSettings(imgsearch_api="http://search.local:8000", api_key=None)


def _parse(*argv: str) -> Any:
    return parse_args(list(argv), SETTINGS)


def test_arguments_and_their_defaults() -> None:
    args = _parse("duplicates")
    assert (args.collection, args.tier, args.limit, args.json) == ("default", None, 100, False)
    args = _parse("duplicates", "--tier", "near", "--collection", "c", "--limit", "5", "--json")
    assert (args.collection, args.tier, args.limit, args.json) == ("c", "near", 5, True)


@pytest.mark.parametrize(
    "argv",
    [
        ["duplicates", "--tier", "similar"],
        ["duplicates", "--limit", "0"],
        ["duplicates", "--limit", "1001"],
        ["duplicates", "--limit", "x"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parse(*argv)
    assert exc.value.code == 2
    assert "duplicates" in capsys.readouterr().err


RESPONSE = {
    "collection": "photos",
    "tiers": ["near", "contained"],
    "images": 7,
    "truncated": True,
    "processing_time_ms": 1530.0,
    "groups": [
        {
            "tier": "near",
            "items": [
                {"id": "a", "path": "/p/cat.jpg", "width": 800, "height": 600, "file_size": 9},
                {
                    "id": "b",
                    "path": "/p/cat-small.jpg",
                    "width": 400,
                    "height": 300,
                    "file_size": 3,
                },
            ],
            "pairs": [
                {
                    "a": 0,
                    "b": 1,
                    "score": 0.998,
                    "evidence": {
                        "check": "thumbnail",
                        "correlation": 0.998,
                        "detail": 0.991,
                        "clip_score": 0.97,
                    },
                }
            ],
        },
        {
            "tier": "contained",
            "items": [
                {"id": "c", "path": "/p/rocket.jpg", "width": 640, "height": 427, "file_size": 9},
                {"id": "d", "path": "/p/\x1bcrop.jpg", "width": 300, "height": 220, "file_size": 2},
            ],
            "pairs": [
                {
                    "a": 0,
                    "b": 1,
                    "score": 0.99,
                    "evidence": {
                        "check": "located",
                        "correlation": 0.99,
                        "detail": 0.97,
                        "box": [130, 60, 430, 280],
                        "area": 0.2414,
                        "source": "file",
                    },
                }
            ],
        },
    ],
}


def test_the_listing_shows_files_pairs_and_their_evidence() -> None:
    text = format_duplicates(DuplicatesResponse.model_validate(RESPONSE))
    assert text.splitlines() == [
        "near #1: 2 files",
        "  [0] /p/cat.jpg  (800x600)",
        "  [1] /p/cat-small.jpg  (400x300)",
        "      [0] ~ [1]: thumbnail, corr 0.998, detail 0.991, clip 0.970",
        "contained #1: 2 files",
        "  [0] parent /p/rocket.jpg  (640x427)",
        "  [1] /p/?crop.jpg  (300x220)",  # a control character cannot drive the terminal
        "      [0] contains [1]: located, corr 0.990, detail 0.970, box 130,60,430,280, "
        "24% of it, from the files",
        "7 images in 'photos': 1 near, 1 contained groups (1.5 s); "
        "a tier stopped at --limit groups: there may be more",
    ]


def test_the_command_asks_the_real_api(inprocess: InProcessStack) -> None:
    collection = "cli-dups"
    point = image_point("77777777-0000-4000-8000-000000000001", "/srv/a.jpg", collection)
    second = {**point["payload"], "stored_path": "/srv/b.jpg", "original_path": "/srv/b.jpg"}
    files = [
        {"stored_path": p["stored_path"], "original_path": p["original_path"], "name": n, "size": 1}
        for p, n in ((point["payload"], "a.jpg"), (second, "b.jpg"))
    ]
    point["payload"] = {**point["payload"], "files": files, "paths": ["/srv/a.jpg", "/srv/b.jpg"]}
    internal = httpx.Client(
        transport=LoopTransport(inprocess.api_app, inprocess.loop),
        base_url=UPSERT_URL.rsplit("/internal", 1)[0],
    )
    with internal:
        body = {"collection": collection, "full": [point], "windows": []}
        assert internal.post(UPSERT_URL, json=body, headers=AUTH).status_code == 200
    transport = LoopTransport(inprocess.api_app, inprocess.loop)
    out, err = io.StringIO(), io.StringIO()
    with ApiClient(API_URL, transport=transport) as client:
        args = _parse("duplicates", "--collection", collection, "--tier", "exact")
        assert cmd_duplicates(client, args, out, err) == 0
    assert out.getvalue().splitlines() == [
        "exact #1: 2 files",
        "  [0] /srv/a.jpg  (64x64)",
        "  [1] /srv/b.jpg  (64x64)",
        "      [0] ~ [1]: content",
        f"1 images in '{collection}': 1 exact groups (" + out.getvalue().split("groups (")[1][:-1],
    ]
