"""The whole stack as local processes: Redis + encoder + search API + workers, with their
settings in the environment (``make run``, the tests, the benchmarks)."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from imgsearch_cli.polling import follow_batch
from imgsearch_common.schemas import BatchStatus

from .processes import (
    Proc,
    RedisBinary,
    find_redis,
    free_port,
    port_in_use,
    start_redis,
    start_service,
)
from .supervisor import RestartPolicy, Supervisor

log = logging.getLogger("imgsearch_devstack")

#: How long the encoder may take to answer /health at start (s): its first start on a CPU
#: exports the model's graphs (measured 45-60 s per precision on 2 shared cores).
ENCODER_START_TIMEOUT_S = 600.0


class PortInUse(RuntimeError):
    """A port the stack must listen on is taken (the message says which and what to do)."""


@dataclass
class StackConfig:
    data_dir: Path
    api_port: int = 8000
    api_host: str = "127.0.0.1"
    #: The API's internal listener (INTERNAL_PORT): the workers' hand-off, nothing public.
    internal_port: int = 8002
    encoder_port: int = 8001
    redis_port: int = 6379
    redis_url: str | None = None  # an existing Redis: no redis-server is started
    workers: int = 2
    worker_base_port: int = 0  # 0 = workers without HTTP endpoint
    internal_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    extra_env: dict[str, str] = field(default_factory=dict)
    log_to_files: bool = True
    #: The redis-server to start; None = the system one, else the bundled one.
    redis_binary: RedisBinary | None = None
    #: Restart a child that exits (``make run``): see ``supervisor.py``.
    supervise: bool = False
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    #: An internal port (Redis, encoder, workers) that is taken is replaced by a free one
    #: (logged); off, a taken port is an error naming it. The API's port is never replaced.
    port_fallback: bool = False

    @classmethod
    def on_free_ports(
        cls,
        data_dir: Path,
        *,
        workers: int = 2,
        worker_base_port: int = 0,
        extra_env: dict[str, str] | None = None,
    ) -> StackConfig:
        """A throw-away stack whose API, encoder and Redis listen on ports free right now,
        so that it runs beside anything else on the machine (the benchmarks, the tests)."""
        return cls(
            data_dir=data_dir,
            api_port=free_port(),
            internal_port=free_port(),
            encoder_port=free_port(),
            redis_port=free_port(),
            workers=workers,
            worker_base_port=worker_base_port,
            extra_env=dict(extra_env or {}),
        )


class LocalStack:
    """Redis + encoder + search API + workers as child processes (restarted when they
    crash, with ``supervise``)."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.redis: Proc | None = None
        self.encoder: Proc | None = None
        self.api: Proc | None = None
        self.workers: list[Proc] = []
        self.supervisor: Supervisor | None = None
        self._worker_ports: dict[int, int] = {}

    @property
    def redis_url(self) -> str:
        return self.config.redis_url or f"redis://127.0.0.1:{self.config.redis_port}/0"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.config.api_port}"

    @property
    def api_internal_url(self) -> str:
        return f"http://127.0.0.1:{self.config.internal_port}"

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
            "API_INTERNAL_URL": self.api_internal_url,
            "INTERNAL_TOKEN": c.internal_token,
            "API_PORT": str(c.api_port),
            "INTERNAL_PORT": str(c.internal_port),
            "API_HOST": c.api_host,
            "ENCODER_PORT": str(c.encoder_port),
            **c.extra_env,
        }
        env.update(overrides)
        return env

    def start(self) -> LocalStack:
        self.check_ports()  # may replace ports: self.config changes
        c = self.config
        c.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            if c.redis_url is None:
                self.redis = start_redis(
                    c.data_dir / "redis",
                    c.redis_port,
                    log_dir=self.log_dir,
                    binary=c.redis_binary or find_redis(),
                )
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
        if c.supervise:
            self.supervisor = Supervisor(self.procs, c.restart_policy).start()
        return self

    def check_ports(self) -> None:
        """Before anything starts: the API's port must be free (PortInUse otherwise); a
        taken internal port is replaced (``port_fallback``) or PortInUse."""
        c = self.config
        if port_in_use(c.api_port, c.api_host):
            raise PortInUse(
                f"port {c.api_port} (API_PORT, the web page and REST API) is already in use "
                f"on {c.api_host}: stop the program listening there (`ss -ltnp "
                f"'sport = :{c.api_port}'` shows it), or choose another port, e.g. "
                f"`API_PORT={free_port()} make run`."
            )
        redis_port = c.redis_port
        if c.redis_url is None:
            redis_port = self._port_for("Redis", "REDIS_PORT", c.redis_port)
        encoder_port = self._port_for("the encoder", "ENCODER_PORT", c.encoder_port)
        internal_port = self._port_for("the API's hand-off", "INTERNAL_PORT", c.internal_port)
        self.config = dataclasses.replace(
            c, redis_port=redis_port, encoder_port=encoder_port, internal_port=internal_port
        )
        if c.worker_base_port:
            self._worker_ports = {
                i: self._port_for(f"worker-{i}", "WORKER_BASE_PORT", c.worker_base_port + i)
                for i in range(c.workers)
            }

    def _port_for(self, what: str, setting: str, port: int) -> int:
        if not port_in_use(port):
            return port
        if not self.config.port_fallback:
            raise PortInUse(
                f"port {port} ({setting}, {what}) is already in use on 127.0.0.1: stop what "
                f"listens there or set {setting} to a free port."
            )
        chosen = free_port()
        log.warning(
            "port %d (%s) is taken by another program: %s listens on %d instead",
            port,
            setting,
            what,
            chosen,
        )
        return chosen

    def start_encoder(self) -> Proc:
        # A first start on a CPU exports the model to ONNX (ENCODER_ENGINE=auto): about a
        # minute on 2 cores, more on a loaded machine; later starts load the cached graphs.
        self.encoder = start_service(
            "encoder", "imgsearch_encoder", self.env(), self.encoder_url + "/health",
            log_dir=self.log_dir, timeout=ENCODER_START_TIMEOUT_S,
        )  # fmt: skip
        return self.encoder

    def start_worker(self, index: int, **overrides: str) -> Proc:
        c = self.config
        default = c.worker_base_port + index if c.worker_base_port else 0
        port = self._worker_ports.get(index, default)
        env = self.env(WORKER_NAME=f"worker-{index}", WORKER_PORT=str(port), **overrides)
        url = f"http://127.0.0.1:{port}/health" if port else ""
        proc = start_service(
            f"worker-{index}", "imgsearch_worker", env, url, log_dir=self.log_dir, wait=bool(port)
        )
        self.workers.append(proc)
        return proc

    def stop(self) -> None:
        """The supervisor first (nothing is restarted any more), then the workers, the API,
        the encoder and Redis."""
        if self.supervisor is not None:
            self.supervisor.stop()
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
    the batch is finished; its last status. Raises TimeoutError after ``timeout`` s, and
    ``httpx.HTTPStatusError`` at once on an error answer."""

    def fetch() -> BatchStatus:
        r = client.get(f"/api/index/batches/{batch_id}")
        r.raise_for_status()
        return BatchStatus.model_validate(r.json())

    return follow_batch(fetch, poll_s=poll_s, timeout_s=timeout)
