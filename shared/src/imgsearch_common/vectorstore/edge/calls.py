"""The one Edge thread: every call into qdrant-edge runs here.

Measured with qdrant-edge-py 0.9.0 (2 cores, Python 3.11): **every call holds the GIL for
its whole duration.** A pure-Python thread ticking every millisecond stalled for 141 ms
during a 140 ms ``query_batch`` and for 7.1 s during a 7.1 s ``optimize()``. Running a call
in a worker thread therefore keeps the event loop from *starting* it inline, but not from
being frozen while it runs. Queries and upserts issued while ``optimize()`` runs in another
thread do not deadlock: they wait until it returns. Consequences: all Edge calls go through
ONE worker thread (a second thread would only contend for the GIL; it also orders the
calls, so no shard needs a read/write lock there), and the HNSW build runs in a **child
process** by default (see :mod:`.optimizer`).

Edge raises plain ``Exception``s; :meth:`EdgeThread.call` turns the ones a caller can act on
into our errors.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ...errors import BadRequest, ImgSearchError
from .._util import dimension_error
from .lock import StoreLocked

T = TypeVar("T")


class EdgeThread:
    """The single worker thread, and whether the store using it is closing."""

    def __init__(self) -> None:
        # One thread for every Edge call: the library holds the GIL anyway (measured), and
        # one thread orders the calls, so swaps and closes never race a query.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-edge")
        self._closing = False
        self._closed = False

    @property
    def closing(self) -> bool:
        """True from :meth:`begin_close` on: no new work should start."""
        return self._closing or self._closed

    def check_open(self) -> None:
        if self._closing or self._closed:
            raise RuntimeError("the vector store is closed")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run an Edge call on the Edge thread; refuse once closing, translate errors."""
        self.check_open()
        try:
            return await self.run(fn, *args)
        except ImgSearchError:
            raise
        except Exception as exc:
            translated = _translate(exc)
            if translated is exc:
                raise
            raise translated from exc

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Run on the Edge thread even while closing (internal steps that must finish)."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, functools.partial(fn, *args))

    def begin_close(self) -> None:
        self._closing = True

    def shutdown(self) -> None:
        """Mark closed and wait for the thread to finish what was queued."""
        self._closed = True
        self._executor.shutdown(wait=True)


def _translate(exc: Exception) -> Exception:
    """Edge raises plain ``Exception``s; map the ones a caller can act on."""
    text = str(exc)
    if "WouldBlock" in text:
        return StoreLocked(
            "the vector index is open in another process; Qdrant Edge allows only one"
        )
    if "Vector dimension error" in text:
        return dimension_error(text.split("Vector dimension error:", 1)[1].strip())
    if "as UUID" in text:
        return BadRequest("point ids must be UUIDs")
    return exc
