"""The fault campaign's and the load run's own logic (benchmarks.chaos, benchmarks.load and
their helpers): the files they write, the reconciliation, the rules searches are judged
by. The programs themselves run the stack for minutes (``make chaos``, ``make load``);
``tests/e2e/test_chaos.py`` runs a short campaign."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.campaign_data import lying_png, write_bad_files, write_corpus
from benchmarks.chaos import Kill, by_outage, in_outage, kill_plan, violations
from benchmarks.load import broken, by_design
from benchmarks.reconcile import check_dead_letters, reconcile_index
from benchmarks.searchers import Outcome, summarize
from imgsearch_common.errors import ImgSearchError
from imgsearch_common.ids import image_id
from imgsearch_common.imaging import open_image
from imgsearch_common.jobs import Job
from imgsearch_common.vectorstore import EdgeVectorStore, PointRecord
from imgsearch_common.vectorstore.writes import write_images
from imgsearch_common.windows import WindowLayout
from imgsearch_worker.pipeline import prepare_image
from imgsearch_worker.points import image_points


def _photos() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    return {
        name: Image.fromarray(rng.integers(0, 256, (300, 420, 3), dtype=np.uint8))
        for name in ("a", "b", "c")
    }


def test_corpus_is_distinct_small_and_the_same_on_every_run(tmp_path: Path) -> None:
    folders = [tmp_path / "one" / "p0", tmp_path / "one" / "p1"]
    files = write_corpus(_photos(), folders, 30, seed=3)
    again = write_corpus(_photos(), [tmp_path / "two" / "p0", tmp_path / "two" / "p1"], 30, 3)
    assert [f.sha256 for f in files] == [f.sha256 for f in again]
    assert len({f.sha256 for f in files}) == 30
    assert {f.path.parent for f in files} == set(folders)
    for f in files:
        size = open_image(f.path.read_bytes()).size
        assert size == (f.width, f.height)
        assert 160 <= max(size) <= 320


def test_bad_files_fail_with_the_reasons_they_are_written_for(tmp_path: Path) -> None:
    (good,) = write_corpus(_photos(), [tmp_path / "good"], 1, seed=1)
    bad = write_bad_files(tmp_path / "bad", good.path.read_bytes())
    assert len(bad) >= 5
    for path, reason in bad.items():
        with pytest.raises(ImgSearchError) as caught:
            prepare_image(
                str(path),
                image_size=224,
                max_bytes=10**8,
                max_pixels=80_000_000,
                layout=WindowLayout(),
            )
        assert caught.value.code == reason, path.name


def test_lying_png_claims_the_size_it_is_given() -> None:
    data = lying_png(9_000, 8_000)
    assert len(data) < 200
    assert open_image(data, max_pixels=10**8).size == (9_000, 8_000)


def test_kill_plan_spreads_every_kill_over_the_run() -> None:
    plan = kill_plan(1000, {"worker": 50, "encoder": 3, "redis": 3}, random.Random(0))
    assert len(plan) == 56
    assert plan == sorted(plan)
    assert all(30 <= at <= 900 for at, _ in plan)
    assert [k for _, k in plan].count("encoder") == 3


def _o(started: float, seconds: float, status: int | None, **kw: str) -> Outcome:
    return Outcome("text", "run", started, seconds, status, **kw)


KILLS = [
    Kill("encoder", "encoder", 1, at=10.0, handled=5, back_at=20.0),
    Kill("search-api", "search-api", 2, at=40.0, handled=9, back_at=45.0),
]


def test_outages_are_matched_by_overlap() -> None:
    assert in_outage(_o(19.0, 3.0, 503), KILLS, "encoder")
    assert in_outage(_o(9.7, 0.1, 200), KILLS, "encoder")  # within the margin
    assert not in_outage(_o(21.0, 1.0, 200), KILLS, "encoder")
    assert not in_outage(_o(15.0, 1.0, 200), KILLS, "search-api")


def test_the_rules_searches_are_judged_by() -> None:
    fine = [
        _o(0.0, 1.0, 200),
        _o(12.0, 0.1, 503, retry_after="2"),
        _o(30.0, 0.1, 429, retry_after="1"),
        _o(41.0, 0.0, None, error="refused"),
        _o(39.9, 0.5, None, error="reset"),
    ]
    assert violations(fine, KILLS) == []
    bad = [
        _o(12.0, 0.1, 503),  # no Retry-After
        _o(25.0, 0.1, 500),
        _o(30.0, 0.0, None, error="refused"),  # nobody listening, but the API was up
        _o(41.0, 30.0, None, error="timeout"),  # a hang, even during an outage
        _o(50.0, 0.1, 422),
    ]
    assert len(violations(bad, KILLS)) == len(bad)
    assert by_outage(fine, KILLS) == {
        "encoder": {"503": 1},
        "nothing down": {"200": 1, "429": 1},
        "search-api": {"refused": 1, "reset": 1},
    }


def test_load_counts_only_the_admission_refusals_as_by_design() -> None:
    admission = _o(0, 1, 503, retry_after="3", message="too many searches in progress (...)")
    cpu = _o(0, 1, 503, retry_after="1", message="the server's CPU queue is full (9 tasks)")
    per_client = _o(0, 1, 429, retry_after="1", message="too many searches in progress")
    encoder_down = _o(0, 1, 503, retry_after="2", message="encoder unreachable")
    assert all(by_design(o) for o in (admission, cpu, per_client))
    assert not by_design(encoder_down)
    assert not by_design(_o(0, 1, 503, message="too many searches in progress"))
    assert len(broken([admission, cpu, per_client, encoder_down, _o(0, 1, 200)])) == 1


def test_summary_counts_statuses_and_latencies() -> None:
    s = summarize([_o(0, 0.1, 200), _o(0, 0.3, 200), _o(0, 0.1, 503, retry_after="1")])
    assert s["by_status"] == {"200": 2, "503": 1}
    assert s["latency_ms_200"]["p50"] == pytest.approx(200.0)
    assert s["busy_without_retry_after"] == 0
    assert s["server_errors"] == 0


def test_dead_letters_must_be_exactly_the_bad_files() -> None:
    bad = {Path("/x/a.jpg"): "corrupt_image", Path("/x/b.png"): "unsupported_image"}

    def letter(path: str, reason: str) -> dict[str, object]:
        return {"job": {"path": path}, "reason": reason}

    exact = [letter("/x/a.jpg", "corrupt_image"), letter("/x/b.png", "unsupported_image")]
    assert check_dead_letters(exact, bad)["exact"]
    wrong = check_dead_letters(
        [*exact, letter("/x/a.jpg", "corrupt_image"), letter("/x/c.jpg", "worker_crashed")], bad
    )
    assert not wrong["exact"]
    assert wrong["more_than_once"] == ["a.jpg"]
    assert wrong["unexpected"] == ["c.jpg: worker_crashed"]
    assert check_dead_letters(exact[:1], bad)["missing"] == ["b.png"]


def test_reconciliation_finds_missing_extra_and_wrong_points(tmp_path: Path) -> None:
    """The worker's own points written in the write order, then broken on purpose."""
    layout = WindowLayout(max_windows=3)
    files = write_corpus(_photos(), [tmp_path / "images"], 4, seed=5)
    root = tmp_path / "index"
    rng = np.random.default_rng(0)

    async def fill() -> None:
        store = EdgeVectorStore(root, optimize_threshold=None)
        try:
            for f in files:
                prepared = prepare_image(
                    str(f.path), image_size=32, max_bytes=10**8, max_pixels=10**8, layout=layout
                )
                job = Job(f.sha256[:8], "b", "c", str(f.path), name=f.path.name)
                vectors = rng.standard_normal((1 + len(prepared.boxes), 8)).astype(np.float32)
                await write_images(store, image_points(job, prepared, vectors))
        finally:
            await store.close()

    asyncio.run(fill())
    check = reconcile_index(root, "c", files, layout)
    assert check.ok, check.as_dict()
    assert (check.full_points, check.window_points) == (4, check.expected_windows)
    assert check.expected_windows == sum(len(layout.boxes(f.width, f.height)) for f in files)

    async def break_it() -> None:
        store = EdgeVectorStore(root, optimize_threshold=None)
        try:
            await store.delete_image("c", image_id(files[0].sha256))
            vector = np.ones(8, dtype=np.float32) / np.sqrt(8)
            phantom = PointRecord("00000000-0000-4000-8000-000000000001", vector, {"x": 1})
            await store.upsert("c", "full", [phantom])
            await store.upsert("c", "window", [phantom])
        finally:
            await store.close()

    asyncio.run(break_it())
    broken_check = reconcile_index(root, "c", files, layout)
    d = broken_check.as_dict()
    assert not broken_check.ok
    assert (d["missing"], d["duplicates_or_phantoms"]) == (1, 1)
    assert d["missing_windows"] == len(layout.boxes(files[0].width, files[0].height))
    assert d["extra_windows"] == 1
