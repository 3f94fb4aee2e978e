"""The whole stack as local processes: Redis + encoder + search API + workers, with their
settings in the environment (``make run``, the tests, the benchmarks)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from imgsearch_cli.polling import follow_batch
from imgsearch_common.schemas import BatchStatus

from .processes import Proc, free_port, start_redis, start_service


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
            encoder_port=free_port(),
            redis_port=free_port(),
            workers=workers,
            worker_base_port=worker_base_port,
            extra_env=dict(extra_env or {}),
        )


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
    the batch is finished; its last status. Raises TimeoutError after ``timeout`` s, and
    ``httpx.HTTPStatusError`` at once on an error answer."""

    def fetch() -> BatchStatus:
        r = client.get(f"/api/index/batches/{batch_id}")
        r.raise_for_status()
        return BatchStatus.model_validate(r.json())

    return follow_batch(fetch, poll_s=poll_s, timeout_s=timeout)
