"""Live mode: ``imgsearch watch DIR`` and the search API's ``WATCH_DIRS`` pick up a file
added to a followed folder (``watchfiles``, a short debounce), through the real stack."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from redis import Redis

from imgsearch_api.settings import ApiSettings
from imgsearch_cli.client import ApiClient
from imgsearch_cli.watch import watch_folder
from imgsearch_common.schemas import BatchStatus, FolderIndexRequest
from imgsearch_devstack import find_redis
from tests.conftest import RedisServers
from tests.support.inprocess import API_URL, InProcessStack, LoopTransport

pytestmark = [pytest.mark.slow]


def images_in(client: httpx.Client, collection: str) -> int:
    counts = client.get("/api/status").json()["collections"]
    return int(counts.get(collection, {}).get("full_images", 0))


def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.2)


def test_imgsearch_watch_picks_up_an_added_file(
    inprocess: InProcessStack, photos_dir: Path, tmp_path: Path
) -> None:
    collection = f"watch-cli-{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "followed"
    folder.mkdir()
    shutil.copyfile(photos_dir / "moon.jpg", folder / "moon.jpg")
    stop = threading.Event()
    batches: list[BatchStatus] = []
    out, err = io.StringIO(), io.StringIO()
    failure: list[BaseException] = []
    request = FolderIndexRequest(path=str(folder), collection=collection)

    def run() -> None:
        transport = LoopTransport(inprocess.api_app, inprocess.loop)
        try:
            with ApiClient(API_URL, transport=transport) as api:
                watch_folder(
                    api, request, out, err, debounce_s=0.2, stop=stop, on_batch=batches.append
                )
        except BaseException as exc:  # reported by the test's thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: len(batches) >= 1 or bool(failure), 120, "the first sync")
        assert not failure, failure
        assert (batches[0].new, batches[0].done) == (1, 1)
        time.sleep(0.5)  # the watcher runs
        shutil.copyfile(photos_dir / "rocket.jpg", folder / "rocket.jpg")
        wait_until(lambda: any(b.new == 1 and b.done == 1 for b in batches[1:]), 120, "the add")
        os.unlink(folder / "moon.jpg")
        wait_until(lambda: any(b.removed == 1 for b in batches[1:]), 120, "the deletion")
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive() and not failure, failure
    with inprocess.client() as client:
        assert images_in(client, collection) == 1
    text = out.getvalue()
    assert "1 new, 0 changed, 0 unchanged, 0 moved, 0 removed" in text, text
    assert "0 new, 0 changed, 1 unchanged, 0 moved, 1 removed" in text, text


@pytest.fixture
def watched_stack(
    redis_servers: RedisServers, tmp_path: Path, photos_dir: Path
) -> Iterator[tuple[InProcessStack, Path]]:
    """A stack of its own (one worker, Redis database 7) whose API follows ``photos/``."""
    redis = redis_servers.get(find_redis())
    url = redis.url[:-1] + "7"
    Redis.from_url(url).flushdb()
    folder = tmp_path / "roots" / "photos"
    folder.mkdir(parents=True)
    shutil.copyfile(photos_dir / "coffee.jpg", folder / "coffee.jpg")
    overrides = {"watch_dirs": [folder], "watch_collection": "followed", "watch_debounce_s": 0.2}
    stack = InProcessStack(
        tmp_path / "data",
        url,
        workers=1,
        api_overrides=overrides,
        index_roots=[tmp_path / "roots"],
    )
    with stack:
        yield stack, folder
    Redis.from_url(url).flushdb()


def test_watch_dirs_follow_a_folder_from_the_api(
    watched_stack: tuple[InProcessStack, Path], photos_dir: Path
) -> None:
    stack, folder = watched_stack
    with stack.client() as client:
        # Queued at start-up (the catch-up sync), indexed by the workers.
        wait_until(lambda: images_in(client, "followed") == 1, 120, "the start-up sync")
        shutil.copyfile(photos_dir / "chelsea.jpg", folder / "chelsea.jpg")
        wait_until(lambda: images_in(client, "followed") == 2, 120, "the added file")
        os.rename(folder / "coffee.jpg", folder / "renamed.jpg")
        wait_until(
            lambda: any(
                str(folder / "renamed.jpg") in r["metadata"]["paths"]
                for r in client.post(
                    "/api/search/by-text", json={"text": "x", "collection": "followed"}
                ).json()["results"]
            ),
            120,
            "the move",
        )
        assert images_in(client, "followed") == 2


def test_watch_dirs_outside_index_roots_stop_the_api_at_start(tmp_path: Path) -> None:
    roots, outside = tmp_path / "roots", tmp_path / "elsewhere"
    roots.mkdir()
    outside.mkdir()
    with pytest.raises(ValidationError, match="WATCH_DIRS"):
        ApiSettings(index_roots=[roots], watch_dirs=[outside])
    with pytest.raises(ValidationError, match="WATCH_DIRS"):
        ApiSettings(watch_dirs=[roots])  # no INDEX_ROOTS: nothing may be watched
    os.symlink(outside, roots / "link")
    with pytest.raises(ValidationError, match="WATCH_DIRS"):  # links resolved
        ApiSettings(index_roots=[roots], watch_dirs=[roots / "link"])
    assert ApiSettings(index_roots=[roots], watch_dirs=[roots]).watch_dirs == [roots]
    env = {
        **os.environ,
        "INDEX_ROOTS": str(roots),
        "WATCH_DIRS": f"{roots}:{outside}",
        "DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "imgsearch_api"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert f"WATCH_DIRS: {outside} is not under INDEX_ROOTS" in done.stderr, done.stderr
