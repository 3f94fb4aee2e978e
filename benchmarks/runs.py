"""Small helpers of the campaign programs (``chaos``, ``load``): the machine they ran on,
a tolerant GET, a bounded wait."""

from __future__ import annotations

import os
import platform
import signal
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import httpx


def machine() -> dict[str, Any]:
    """Where and under what load a run happened (the load average is the machine's, other
    people's work included)."""
    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }


def get_json(url: str, timeout: float = 10.0) -> Any:
    """The JSON of a 200 answer; None for any other answer or none at all."""
    try:
        r = httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def until(condition: Callable[[], bool], timeout: float, poll_s: float = 0.1) -> bool:
    """Whether ``condition`` became true within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return False


def interrupt_on_signals() -> None:
    """SIGTERM and SIGINT raise KeyboardInterrupt, so that the stack a program started is
    stopped on the way out (its children run in sessions of their own: nothing else stops
    them). SIGINT too, because a shell starts background jobs with SIGINT ignored."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
