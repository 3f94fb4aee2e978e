"""``imgsearch reindex``: it starts the reindex, follows it until the switch and prints the
outcome; ``--status`` shows it without starting one. Against the in-process stack, whose
workers re-embed the files of two images forged in through the internal hand-off."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imgsearch_cli import ApiClient, CliSettings, parse_args
from imgsearch_cli.reindex import cmd_reindex, format_reindex
from imgsearch_common.schemas import ReindexStatus
from tests.support.handoff import AUTH, UPSERT_URL, image_point
from tests.support.inprocess import API_URL, InProcessStack, LoopTransport

pytestmark = [pytest.mark.slow]
SETTINGS = CliSettings(imgsearch_api="http://search.local:8000", api_key=None)
NAME = "cli-reindex"


def test_the_line_says_the_step_and_the_progress() -> None:
    status = ReindexStatus(
        collection="cats", source="cats.r0", target="cats.r1", state="filling", queued=10, done=4
    )
    assert format_reindex(status) == "cats: filling, cats.r0 -> cats.r1, 4/10 files re-embedded"
    failed = status.model_copy(update={"state": "failed", "failed": 2, "error": "boom"})
    assert format_reindex(failed).endswith(
        "2 failed (imgsearch status shows the reasons); error: boom"
    )


@pytest.fixture
def client(inprocess: InProcessStack, photos_dir: Path) -> Iterator[ApiClient]:
    transport = LoopTransport(inprocess.api_app, inprocess.loop)
    photos = sorted(photos_dir.iterdir())[:2]
    full = [
        image_point(f"77777777-0000-0000-0000-{n:012x}", path, NAME, seed=n)
        for n, path in enumerate(photos)
    ]
    with httpx.Client(transport=transport) as raw:
        body = {"collection": NAME, "full": full, "windows": []}
        assert raw.post(UPSERT_URL, json=body, headers=AUTH).status_code == 200
    with ApiClient(API_URL, transport=transport) as api:
        yield api
        api.drop_collection(NAME)


def test_reindex_follows_the_reindex_to_the_switch(client: ApiClient) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = cmd_reindex(client, parse_args(["reindex", "--collection", NAME], SETTINGS), out, err)
    assert code == 0, (out.getvalue(), err.getvalue())
    assert out.getvalue() == f"{NAME}: done, {NAME}.r0 -> {NAME}.r1, 2/2 files re-embedded\n"
    shown = io.StringIO()
    args = parse_args(["reindex", "--collection", NAME, "--status"], SETTINGS)
    assert cmd_reindex(client, args, shown, io.StringIO()) == 0
    assert shown.getvalue() == out.getvalue()
    summary = {c.name: c for c in client.collections().collections}[NAME]
    assert summary.images == 2 and summary.model is not None
