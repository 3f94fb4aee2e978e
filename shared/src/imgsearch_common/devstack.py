"""Start the whole stack as local processes: used by ``make run`` and by the tests.

Real parts only: a real ``redis-server``, the real encoder, search API and
worker processes, each started as ``python -m <package>`` with its settings in
the environment, and considered up once its ``/health`` answers.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

from .schemas import BatchStatus

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


@dataclass
class StackConfig:
    data_dir: Path
    api_port: int = 8000
    api_host: str = "127.0.0.1"
    encoder_port: int = 8001
    redis_port: int = 6379
    redis_url: str | None = None  # an existing Redis: no redis-server is started
    workers: int = 2
    worker_base_port: int = 0  # 0 = workers without HTTP endpoint
    internal_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    extra_env: dict[str, str] = field(default_factory=dict)
    log_to_files: bool = True


class LocalStack:
    """Redis + encoder + search API + workers as child processes."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.redis: Proc | None = None
        self.encoder: Proc | None = None
        self.api: Proc | None = None
        self.workers: list[Proc] = []
        self.redis_url = config.redis_url or f"redis://127.0.0.1:{config.redis_port}/0"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.config.api_port}"

    @property
    def encoder_url(self) -> str:
        return f"http://127.0.0.1:{self.config.encoder_port}"

    @property
    def log_dir(self) -> Path | None:
        return self.config.data_dir / "logs" if self.config.log_to_files else None

    def env(self, **overrides: str) -> dict[str, str]:
        c = self.config
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "DATA_DIR": str(c.data_dir),
            "REDIS_URL": self.redis_url,
            "ENCODER_URL": self.encoder_url,
            "API_INTERNAL_URL": self.api_url,
            "INTERNAL_TOKEN": c.internal_token,
            "API_PORT": str(c.api_port),
            "API_HOST": c.api_host,
            "ENCODER_PORT": str(c.encoder_port),
            **c.extra_env,
        }
        env.update(overrides)
        return env

    def start(self) -> LocalStack:
        c = self.config
        c.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if c.redis_url is None:
                self.redis = start_redis(c.data_dir / "redis", c.redis_port, log_dir=self.log_dir)
            self.start_encoder()
            self.api = start_service(
                "search-api", "imgsearch_api", self.env(), self.api_url + "/health",
                log_dir=self.log_dir,
            )  # fmt: skip
            for i in range(c.workers):
                self.start_worker(i)
        except BaseException:
            self.stop()
            raise
        return self

    def start_encoder(self) -> Proc:
        self.encoder = start_service(
            "encoder", "imgsearch_encoder", self.env(), self.encoder_url + "/health",
            log_dir=self.log_dir,
        )  # fmt: skip
        return self.encoder

    def start_worker(self, index: int, **overrides: str) -> Proc:
        c = self.config
        port = c.worker_base_port + index if c.worker_base_port else 0
        env = self.env(WORKER_NAME=f"worker-{index}", WORKER_PORT=str(port), **overrides)
        url = f"http://127.0.0.1:{port}/health" if port else ""
        proc = start_service(
            f"worker-{index}", "imgsearch_worker", env, url, log_dir=self.log_dir, wait=bool(port)
        )
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.workers):
            proc.stop()
        self.workers.clear()
        for service in (self.api, self.encoder, self.redis):
            if service is not None:
                service.stop()
        self.api = self.encoder = self.redis = None

    def procs(self) -> Iterator[Proc]:
        yield from (p for p in (self.redis, self.encoder, self.api) if p is not None)
        yield from self.workers

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def wait_batch(
    client: httpx.Client, batch_id: str, *, timeout: float = 600.0, poll_s: float = 0.3
) -> BatchStatus:
    """Poll ``GET /api/index/batches/{batch_id}`` on ``client`` (based at the API) until
    the batch is finished; its last status. Raises TimeoutError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        r = client.get(f"/api/index/batches/{batch_id}")
        r.raise_for_status()
        status = BatchStatus.model_validate(r.json())
        if status.finished:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"batch {batch_id} not finished in {timeout:.0f} s: {status}")
        time.sleep(poll_s)
