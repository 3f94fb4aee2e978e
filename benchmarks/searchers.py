"""Search clients for the fault campaign and the load run: closed-loop searchers that
record every answer (status, latency, ``Retry-After``) or the reason there was none.

Each searcher connects from an address of its own (``127.0.0.<n>``: Linux routes the
whole of 127.0.0.0/8 to the loopback device), so the API's limit per client address sees
one client per searcher, as it would see separate users. A search that has not been
answered within ``deadline_s`` is abandoned and recorded as ``timeout``: a hang.

The searchers run on an event loop of their own, on a thread of their own
(:class:`SearchLoad`), so that the program driving the faults stays synchronous.
"""

from __future__ import annotations

import asyncio
import io
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from imgsearch_common.imaging import decode_image

#: Text queries (random weights: their results mean nothing, their cost is real).
TEXTS = (
    "a cat on a sofa",
    "coins on a table",
    "a rocket on the launch pad",
    "a cup of coffee",
    "an astronaut in a white suit",
    "a red brick wall",
    "a clock tower",
    "the surface of the moon",
)
#: What an answer without an HTTP status is recorded as.
REFUSED, RESET, TIMEOUT = "refused", "reset", "timeout"


@dataclass(frozen=True)
class Outcome:
    kind: str  # "image" or "text"
    phase: str  # what the driver called this part of the run
    started: float  # seconds since the load's start (monotonic clock)
    seconds: float
    status: int | None  # None: no HTTP answer (see error)
    error: str = ""  # "refused", "reset", "timeout" or an exception's name
    retry_after: str | None = None
    #: An error answer's ``error.code`` and the start of its message.
    code: str = ""
    message: str = ""

    @property
    def ended(self) -> float:
        return self.started + self.seconds

    @property
    def label(self) -> str:
        """``"200"``, ``"503"``, ``"refused"``...: what the tables count."""
        return str(self.status) if self.status is not None else self.error


def image_queries(paths: Sequence[Path], count: int, seed: int) -> list[bytes]:
    """``count`` JPEG queries: boxes of 40–90 % of the side of images of ``paths``."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        img = decode_image(rng.choice(paths).read_bytes())
        f = rng.uniform(0.4, 0.9)
        w, h = max(16, round(img.width * f)), max(16, round(img.height * f))
        x0, y0 = rng.randrange(0, img.width - w + 1), rng.randrange(0, img.height - h + 1)
        buf = io.BytesIO()
        img.crop((x0, y0, x0 + w, y0 + h)).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def error_of(response: httpx.Response) -> tuple[str, str]:
    """An error answer's code and the start of its message (our one JSON error shape)."""
    if response.status_code == 200:
        return "", ""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])[:120]
    except (ValueError, KeyError, TypeError):
        return "", response.text[:120]


def classify(exc: BaseException) -> str:
    if isinstance(exc, httpx.ConnectError):
        return REFUSED
    if isinstance(exc, (TimeoutError, httpx.TimeoutException)):
        return TIMEOUT
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return RESET
    return type(exc).__name__


class SearchLoad:
    """``searchers`` closed-loop clients of ``api_url`` until :meth:`stop`.

    Each sends by-image searches (``image_share`` of them, a random query of ``images``)
    and by-text searches, one at a time, ``pause_s`` apart; :attr:`phase` labels the
    outcomes recorded from the moment it is set.
    """

    def __init__(
        self,
        api_url: str,
        images: Sequence[bytes],
        *,
        searchers: int,
        collection: str,
        deadline_s: float,
        pause_s: float = 0.0,
        image_share: float = 0.5,
        first_address: int = 10,
        seed: int = 0,
    ) -> None:
        if searchers < 1 or first_address + searchers > 254:
            raise ValueError("1 to 244 searchers, from 127.0.0.<first_address>")
        self.api_url = api_url
        self.images = list(images)
        self.searchers = searchers
        self.collection = collection
        self.deadline_s = deadline_s
        self.pause_s = pause_s
        self.image_share = image_share
        self.first_address = first_address
        self.seed = seed
        self.phase = "run"
        self.outcomes: list[Outcome] = []
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="searchers", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> SearchLoad:
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        # A search in flight ends within its deadline.
        self._thread.join(self.deadline_s + 30)
        return self.snapshot()

    def snapshot(self) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes)

    def now(self) -> float:
        """Seconds since the start, on the outcomes' clock."""
        return time.monotonic() - self.t0

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        await asyncio.gather(*(self._searcher(i) for i in range(self.searchers)))

    async def _searcher(self, index: int) -> None:
        rng = random.Random(self.seed * 1000 + index)
        transport = httpx.AsyncHTTPTransport(local_address=f"127.0.0.{self.first_address + index}")
        # httpx's own timeouts are per read; the deadline bounds the whole exchange.
        async with httpx.AsyncClient(
            base_url=self.api_url, transport=transport, timeout=self.deadline_s + 5
        ) as client:
            while not self._stop.is_set():
                kind = "image" if rng.random() < self.image_share else "text"
                started = self.now()
                phase = self.phase
                try:
                    response = await asyncio.wait_for(
                        self._send(client, kind, rng), timeout=self.deadline_s
                    )
                except Exception as exc:  # recorded, never raised: the load goes on
                    outcome = Outcome(
                        kind, phase, started, self.now() - started, None, classify(exc)
                    )
                else:
                    code, message = error_of(response)
                    outcome = Outcome(
                        kind,
                        phase,
                        started,
                        self.now() - started,
                        response.status_code,
                        retry_after=response.headers.get("retry-after"),
                        code=code,
                        message=message,
                    )
                with self._lock:
                    self.outcomes.append(outcome)
                if outcome.status is None and outcome.error != TIMEOUT:
                    await asyncio.sleep(0.2)  # nobody listens: do not spin
                elif self.pause_s:
                    await asyncio.sleep(self.pause_s)

    async def _send(
        self, client: httpx.AsyncClient, kind: str, rng: random.Random
    ) -> httpx.Response:
        if kind == "text" or not self.images:
            body = {"text": rng.choice(TEXTS), "collection": self.collection, "limit": 10}
            response = await client.post("/api/search/by-text", json=body)
        else:
            data = rng.choice(self.images)
            response = await client.post(
                "/api/search/by-image",
                files={"file": ("query.jpg", data, "image/jpeg")},
                data={"collection": self.collection, "limit": "10"},
            )
        await response.aread()
        return response


def percentiles(values: Sequence[float], points: Sequence[int] = (50, 95, 99)) -> dict[str, float]:
    """Milliseconds, from values in seconds (NaN when there are none)."""
    if not values:
        return {f"p{p}": float("nan") for p in points}
    a = np.asarray(values, dtype=np.float64) * 1000.0
    return {f"p{p}": round(float(np.percentile(a, p)), 1) for p in points}


def summarize(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Counts by status (or error), latency of the answered searches per kind, and whether
    every 429/503 carried ``Retry-After``."""
    by_status = Counter(o.label for o in outcomes)
    busy = [o for o in outcomes if o.status in (429, 503)]
    ok = [o for o in outcomes if o.status == 200]
    out: dict[str, Any] = {
        "searches": len(outcomes),
        "by_status": dict(sorted(by_status.items())),
        "busy_without_retry_after": sum(1 for o in busy if not o.retry_after),
        "server_errors": sum(1 for o in outcomes if o.status is not None and o.status >= 500)
        - sum(1 for o in busy if o.status == 503),
        "latency_ms_200": percentiles([o.seconds for o in ok]),
        "latency_ms_all_answers": percentiles([o.seconds for o in outcomes if o.status]),
        "max_s": round(max((o.seconds for o in outcomes), default=0.0), 2),
    }
    for kind in ("image", "text"):
        mine = [o.seconds for o in ok if o.kind == kind]
        out[f"latency_ms_200_{kind}"] = percentiles(mine)
        out[f"searches_200_{kind}"] = len(mine)
    return out


def outcome_dicts(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    return [asdict(o) for o in outcomes]
