"""Ctrl-C while a batch is being followed, sent as a terminal sends it (SIGINT to the
process group) to real processes: ``imgsearch index`` on the running stack, and
``make run IMAGES_DIR=`` (``python -m imgsearch_devstack``) while it indexes. Each prints
one message that says what becomes of the batch, exits 130, no traceback; and what the
message says is checked: the batch does go on on the server, and after ``make run`` it
does resume when a stack starts again on the same ``DATA_DIR`` (its Redis is append-only)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from imgsearch_common.imaging import decode_image
from imgsearch_devstack import LocalStack, StackConfig, free_port, wait_batch
from tests.conftest import TEST_ENV
from tests.support.inprocess import WORKER_ENV

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

QUEUED = re.compile(r"^batch (\w+): (\d+) files queued")
#: A progress line of a batch not finished yet: ``[###---] 3/12 ...``.
RUNNING = re.compile(r"^\[[#-]+\] (\d+)/(\d+) ")


def _folder(photos_dir: Path, folder: Path, quality: int, count: int = 12) -> Path:
    """``count`` photos re-encoded at ``quality``: content no other test indexed."""
    folder.mkdir()
    for p in sorted(photos_dir.glob("*.jpg"))[:count]:
        decode_image(p.read_bytes()).convert("RGB").save(folder / p.name, quality=quality)
    return folder


class Lines:
    """A child's stdout and stderr read line by line on threads (neither pipe fills up)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.seen: dict[str, list[str]] = {"out": [], "err": []}
        self._new: queue.Queue[tuple[str, str]] = queue.Queue()
        assert proc.stdout is not None and proc.stderr is not None
        self._streams = (proc.stdout, proc.stderr)
        self._readers = [
            threading.Thread(target=self._read, args=(name, stream), daemon=True)
            for name, stream in zip(("out", "err"), self._streams, strict=True)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, name: str, stream: IO[str]) -> None:
        for line in stream:
            self.seen[name].append(line)
            self._new.put((name, line))

    def wait_for(self, name: str, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                which, line = self._new.get(timeout=left)
            except queue.Empty:
                break
            if which == name and (m := pattern.search(line)):
                return m
        raise AssertionError(f"no {pattern.pattern!r} on std{name}: {self.seen}")

    def finish(self, timeout: float, stop: bool = False) -> tuple[int, str, str]:
        """Wait for the child's exit (``stop``: Ctrl-C it first, so that a launcher stops
        its children; SIGKILL after ``timeout``), then for the end of its output."""
        if stop and self.proc.poll() is None:
            _ctrl_c(self.proc)
        try:
            code = self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            for reader in self._readers:
                reader.join(10)
            for stream in self._streams:
                stream.close()
        return code, "".join(self.seen["out"]), "".join(self.seen["err"])


def _ctrl_c(proc: subprocess.Popen[str]) -> None:
    """What Ctrl-C in a terminal does: SIGINT to the foreground process group."""
    os.killpg(proc.pid, signal.SIGINT)


def _start(args: list[str], env: dict[str, str] | None = None) -> Lines:
    proc = subprocess.Popen(
        [sys.executable, "-m", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job
    )
    return Lines(proc)


def test_ctrl_c_of_imgsearch_index_leaves_the_batch_running(
    stack: LocalStack, photos_dir: Path, tmp_path: Path
) -> None:
    folder = _folder(photos_dir, tmp_path / "interrupted", quality=71)
    cli = ["imgsearch_cli", "--api", stack.api_url]
    lines = _start([*cli, "index", str(folder), "--collection", "cli-interrupt"])
    try:
        batch_id, total = lines.wait_for("out", QUEUED, 120).groups()
        processed, _ = lines.wait_for("err", RUNNING, 60).groups()
        assert int(processed) < int(total)  # still running when interrupted
        _ctrl_c(lines.proc)
    except BaseException:
        lines.finish(30, stop=True)
        raise
    code, out, err = lines.finish(30)
    assert code == 130, err
    assert err.count("Stopped waiting") == 1 and "Traceback" not in out + err
    assert "interrupted" not in err  # the one message, not a second generic one
    assert re.search(
        rf"^Stopped waiting: batch {batch_id} \(\d+ of {total} files processed\) keeps running "
        rf"on the server\. Check it with: imgsearch batch {batch_id}$",
        err,
        re.MULTILINE,
    ), err
    # What it says is true: the batch goes on, and `imgsearch batch ID` follows it to the end.
    follow = subprocess.run(
        [sys.executable, "-m", *cli, "batch", batch_id],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert follow.returncode == 0, follow.stderr
    assert f"batch {batch_id} (cli-interrupt): {total} indexed, 0 failed, 0 pending" in (
        follow.stdout
    )


@pytest.fixture
def launcher_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    workers = {name.upper(): str(value) for name, value in WORKER_ENV.items()}
    ports = {
        name: str(free_port())
        for name in ("API_PORT", "INTERNAL_PORT", "ENCODER_PORT", "REDIS_PORT", "WORKER_BASE_PORT")
    }
    yield {
        **os.environ,
        **TEST_ENV,
        **workers,
        **ports,
        "WORKERS": "1",  # slow enough to be interrupted half-way
        "DATA_DIR": str(tmp_path / "data"),
    }


def test_ctrl_c_of_make_run_while_indexing_stops_the_stack_and_the_batch_resumes(
    launcher_env: dict[str, str], photos_dir: Path, tmp_path: Path
) -> None:
    folder = _folder(photos_dir, tmp_path / "make-run", quality=67)
    data_dir = Path(launcher_env["DATA_DIR"])
    lines = _start(
        ["imgsearch_devstack", "--images-dir", str(folder), "--collection", "run-interrupt"],
        env=launcher_env,
    )
    try:
        batch_id, total = lines.wait_for("out", QUEUED, 600).groups()
        processed, _ = lines.wait_for("err", RUNNING, 60).groups()
        assert int(processed) < int(total)
        _ctrl_c(lines.proc)
    except BaseException:
        lines.finish(120, stop=True)
        raise
    code, out, err = lines.finish(120)
    assert code == 130, out + err
    assert "Traceback" not in out + err and "interrupted" not in out + err
    assert (out + err).count("Stopped waiting") == 1  # not the CLI's and the launcher's
    assert re.search(
        rf"^Stopped waiting: batch {batch_id} \(\d+ of {total} files processed\) stops with "
        r"the stack: the files not yet indexed stay queued in Redis's append-only file under "
        rf"{re.escape(str(data_dir / 'redis'))}, and indexing resumes at the next `make run` "
        rf"with the same DATA_DIR\. Check it with: imgsearch batch {batch_id}$",
        err,
        re.MULTILINE,
    ), err
    assert "stopping (workers first) ..." in out and out.rstrip().endswith("stopped.")

    # What it says is true: a stack on the same DATA_DIR finishes the batch, without it
    # being queued again.
    env = {**TEST_ENV, **{k.upper(): str(v) for k, v in WORKER_ENV.items()}}
    config = StackConfig.on_free_ports(
        data_dir, workers=2, extra_env={**env, "INDEX_ROOTS": str(folder)}
    )
    with LocalStack(config) as again, httpx.Client(base_url=again.api_url, timeout=60) as client:
        status = wait_batch(client, batch_id, timeout=300)
        assert (status.done, status.failed, status.total) == (int(total), 0, int(total))
        counts = client.get("/api/status").json()["collections"]["run-interrupt"]
        assert counts["full_images"] == int(total)
