"""Following an indexing batch until it is finished: the one polling loop of
``GET /api/index/batches/{id}``, used by ``imgsearch index`` and by the launcher's
:func:`imgsearch_devstack.wait_batch` (tests, benchmarks)."""

from __future__ import annotations

import time
from collections.abc import Callable

from imgsearch_common.schemas import BatchStatus

#: How often the CLI asks for a batch's progress (s).
POLL_INTERVAL_S = 1.0
#: Consecutive failed polls the CLI tolerates (a restarting server) before giving up.
MAX_POLL_FAILURES = 10


def _never(exc: Exception) -> bool:
    return False


def follow_batch(
    fetch: Callable[[], BatchStatus],
    *,
    on_status: Callable[[BatchStatus], None] | None = None,
    poll_s: float = POLL_INTERVAL_S,
    timeout_s: float | None = None,
    transient: Callable[[Exception], bool] = _never,
    max_failures: int = MAX_POLL_FAILURES,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> BatchStatus:
    """Call ``fetch`` every ``poll_s`` seconds until the batch is finished; its last status.

    ``on_status`` sees every status fetched, the finished one included. An exception of
    ``fetch`` that ``transient`` accepts is tolerated (the next poll comes after ``poll_s``)
    until ``max_failures`` polls in a row have failed; any other one propagates at once.
    With ``timeout_s``, a batch still unfinished that long after the start raises
    :class:`TimeoutError` (checked after each successful poll, so it carries the status).
    """
    deadline = None if timeout_s is None else clock() + timeout_s
    failures = 0
    while True:
        try:
            status = fetch()
        except Exception as exc:
            failures += 1
            if not transient(exc) or failures >= max_failures:
                raise
            sleep(poll_s)
            continue
        failures = 0
        if on_status is not None:
            on_status(status)
        if status.finished:
            return status
        if deadline is not None and clock() > deadline:
            raise TimeoutError(
                f"batch {status.batch_id} not finished in {timeout_s:.0f} s: {status}"
            )
        sleep(poll_s)
