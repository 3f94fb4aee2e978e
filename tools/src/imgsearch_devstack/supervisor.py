"""Restart what crashes, as compose's ``restart: unless-stopped`` does.

A :class:`Supervisor` watches the children of a stack on a thread of its own. One that
exits without being asked to is started again (same command, same environment, its log
appended to) after a delay that doubles from :attr:`RestartPolicy.base_s` up to
:attr:`RestartPolicy.max_s` and falls back to the base once a child has stayed up
:attr:`RestartPolicy.stable_s`. Each crash is logged with its exit code or signal and the
last lines of the child's log. A child that crashes :attr:`RestartPolicy.burst` times
within :attr:`RestartPolicy.window_s` gets one clear "crash loop" message; the supervisor
keeps trying with the capped delay (a service waiting for something else, e.g. a GPU or
a port, comes back by itself once that is there) until it is stopped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .processes import Proc, wait_healthy

log = logging.getLogger("imgsearch_devstack")


@dataclass(frozen=True)
class RestartPolicy:
    base_s: float = 0.5  # the first restart's delay; doubles after each crash
    max_s: float = 30.0  # the cap of that delay
    stable_s: float = 30.0  # up this long: the next crash starts again from base_s
    burst: int = 5  # this many crashes within window_s is a crash loop (reported)
    window_s: float = 60.0
    start_timeout_s: float = 180.0  # a restarted child not up by then counts as crashed
    poll_s: float = 0.2  # how often the children are looked at
    log_lines: int = 10  # lines of a crashed child's log shown


@dataclass
class _Child:
    delay_s: float
    crashes: deque[float] = field(default_factory=deque)
    restart_at: float | None = None  # when it is down: when it is started again
    in_loop: bool = False


class Supervisor:
    """Restarts the dead among ``children()`` (looked up again each round, so the stack's
    lists may change) until :meth:`stop`; :attr:`restarts` counts them by name."""

    def __init__(
        self, children: Callable[[], Iterable[Proc]], policy: RestartPolicy | None = None
    ) -> None:
        self.policy = policy or RestartPolicy()
        self._children = children
        self._state: dict[str, _Child] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.restarts: dict[str, int] = {}

    def start(self) -> Supervisor:
        self._thread = threading.Thread(target=self._run, name="devstack-supervisor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop watching (a restart under way is abandoned; the caller stops the children)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def restart_count(self, name: str) -> int:
        with self._lock:
            return self.restarts.get(name, 0)

    def _run(self) -> None:
        while not self._stop.wait(self.policy.poll_s):
            for proc in list(self._children()):
                if self._stop.is_set():
                    return
                try:
                    self._look_at(proc)
                except Exception:  # the supervisor itself must not die of one child
                    log.exception("supervisor: restarting %s failed", proc.name)

    def _look_at(self, proc: Proc) -> None:
        p = self.policy
        state = self._state.setdefault(proc.name, _Child(delay_s=p.base_s))
        now = time.monotonic()
        if proc.alive():
            if now - proc.started_at >= p.stable_s:
                state.delay_s, state.in_loop = p.base_s, False
            return
        if state.restart_at is None:  # newly found dead
            self._crashed(proc, state, now, "exited")
        if now >= (state.restart_at or now):
            self._restart(proc, state)

    def _crashed(self, proc: Proc, state: _Child, now: float, what: str) -> None:
        p = self.policy
        if now - proc.started_at >= p.stable_s:
            state.delay_s = p.base_s
        state.crashes.append(now)
        while state.crashes and now - state.crashes[0] > p.window_s:
            state.crashes.popleft()
        delay = state.delay_s
        state.delay_s = min(state.delay_s * 2, p.max_s)
        state.restart_at = now + delay
        tail = proc.log_tail(p.log_lines)
        log.warning(
            "%s %s (%s) after %.1f s; restarting it in %g s. %s",
            proc.name,
            what,
            proc.exit_reason(),
            now - proc.started_at,
            delay,
            f"Last lines of {proc.log_path}:\n{_indent(tail)}" if tail else "(no log)",
        )
        if len(state.crashes) >= p.burst and not state.in_loop:
            state.in_loop = True
            log.error(
                "%s crashed %d times within %.0f s: it keeps failing, most likely at start "
                "(see %s). Still restarting it, every %g s at most; Ctrl-C stops everything.",
                proc.name,
                len(state.crashes),
                p.window_s,
                proc.log_path or "its output",
                p.max_s,
            )

    def _restart(self, proc: Proc, state: _Child) -> None:
        state.restart_at = None
        proc.respawn()
        with self._lock:
            self.restarts[proc.name] = self.restarts.get(proc.name, 0) + 1
        try:
            wait_healthy(proc, self.policy.start_timeout_s, cancel=self._stop)
        except RuntimeError:
            # Died (or never answered) while starting: one more crash, and its delay.
            self._crashed(proc, state, time.monotonic(), "failed to start")
            return
        if not self._stop.is_set():
            log.info(
                "%s is up again (pid %d, restart %d)",
                proc.name,
                proc.pid,
                self.restart_count(proc.name),
            )


def _indent(text: str) -> str:
    return "\n".join(f"    | {line}" for line in text.splitlines())
