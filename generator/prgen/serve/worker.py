"""The one thread that syncs: scoped syncs of the repositories webhooks marked, debounced,
and the full sync every interval. One sync at a time (the fleet is locked anyway)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Scope = frozenset[str] | None  # None: the full sync of every configured repository


@dataclass(frozen=True)
class Timing:
    interval: float  # between the starts of two full syncs
    quiet_period: float  # a burst ends after this much quiet...
    max_delay: float  # ...or this long after its first event, whichever comes first


class SyncWorker:
    """Marks come from the request threads; `run(scope)` is called on this worker's thread.

    A run takes every repository marked so far (marks that arrive during a run wait for the
    next one: that run's listing may have been made before the event). A full sync takes
    them all, since it lists every repository after it starts.
    """

    def __init__(
        self,
        run: Callable[[Scope], None],
        timing: Timing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._run = run
        self._timing = timing
        self._clock = clock
        self._cond = threading.Condition()
        self._dirty: set[str] = set()
        self._first_mark = 0.0
        self._last_mark = 0.0
        self._next_full = clock()  # the first full sync at start
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="prgen-sync", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def mark(self, repository: str) -> None:
        now = self._clock()
        with self._cond:
            if not self._dirty:
                self._first_mark = now
            self._dirty.add(repository.lower())
            self._last_mark = now
            self._cond.notify()

    def request_full(self) -> None:
        with self._cond:
            self._next_full = self._clock()
            self._cond.notify()

    @property
    def pending(self) -> int:
        with self._cond:
            return len(self._dirty)

    def stop(self, timeout: float | None = None) -> bool:
        """No new run starts; the one in progress finishes (its commit and push). True when
        the worker ended within `timeout`."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def _due(self, now: float) -> float:
        """When the next run is due (may be in the past)."""
        due = self._next_full
        if self._dirty:
            burst_end = min(
                self._last_mark + self._timing.quiet_period,
                self._first_mark + self._timing.max_delay,
            )
            due = min(due, burst_end)
        return due

    def _next_scope(self) -> Scope | bool:
        """Wait for the next run; False when stopping."""
        with self._cond:
            while not self._stopping:
                now = self._clock()
                due = self._due(now)
                if due <= now:
                    if self._next_full <= now:
                        self._next_full = now + self._timing.interval
                        self._dirty.clear()
                        return None
                    scope = frozenset(self._dirty)
                    self._dirty.clear()
                    return scope
                self._cond.wait(due - now)
            return False

    def _loop(self) -> None:
        while True:
            scope = self._next_scope()
            if scope is False:
                return
            assert scope is None or isinstance(scope, frozenset)
            try:
                self._run(scope)
            except Exception:  # the run reports its own failures; the server goes on
                log.exception("sync run failed unexpectedly")
