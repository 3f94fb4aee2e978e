"""Child processes of the local stack: a real ``redis-server`` and our services, each
started as ``python -m <package>`` and considered up once its ``/health`` answers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

REDIS_HELP = (
    "redis-server was not found on the PATH. Install it (Debian/Ubuntu: "
    "`sudo apt-get install redis-server`; macOS: `brew install redis`) or point "
    "REDIS_URL at a running Redis 6.2+ server."
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: no cleanup in the child, as in a crash."""
        with contextlib.suppress(ProcessLookupError):
            self.popen.kill()
        self.popen.wait(10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_redis(data_dir: Path, port: int, *, log_dir: Path | None = None) -> Proc:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError(REDIS_HELP)
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        exe,
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        # The queue must survive a restart: append-only file, fsync every second.
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--protected-mode", "yes",
    ]  # fmt: skip
    proc = _spawn("redis", args, os.environ, f"redis://127.0.0.1:{port}/0", log_dir)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"redis-server exited:\n{proc.log_tail()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return proc
        time.sleep(0.05)
    proc.stop()
    raise RuntimeError("redis-server did not start within 20 s")


def start_service(
    name: str,
    module: str,
    env: Mapping[str, str],
    health_url: str,
    *,
    log_dir: Path | None = None,
    timeout: float = 180.0,
    wait: bool = True,
) -> Proc:
    """Run ``python -m module`` with ``env`` and wait until ``health_url`` answers 200."""
    proc = _spawn(name, [sys.executable, "-m", module], env, health_url, log_dir)
    if wait:
        wait_healthy(proc, timeout)
    return proc


def wait_healthy(proc: Proc, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(
                f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(proc.url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not healthy after {timeout:.0f} s:\n{proc.log_tail()}")


def _spawn(
    name: str, args: list[str], env: Mapping[str, str], url: str, log_dir: Path | None
) -> Proc:
    log_path = None
    log: IO[bytes] | None = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
        log = log_path.open("ab")
    popen = subprocess.Popen(  # noqa: S603 - fixed argument lists, no shell
        args,
        env=dict(env),
        stdout=log if log else None,
        stderr=subprocess.STDOUT if log else None,
        start_new_session=True,  # Ctrl-C in the terminal reaches us, not the children
    )
    return Proc(name, popen, url, log_path, log)
