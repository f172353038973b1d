"""HTTP health probes, run concurrently with a bound.

A probe's URL comes from the configuration only (PR text can reach it only
through slug placeholders, checked in config), and it never follows a redirect
to another host. Each probe is bounded by its timeout as a whole, by the wall
clock: requests' own timeout applies to each socket read, so a server that
drips a byte at a time would hold a probe (and the round, which ends with its
last probe) for as long as it likes. So `probe_each` runs each probe on a
daemon thread; at the probe's deadline a watchdog shuts the probe's sockets,
which ends it at once, and a probe still running a moment later is reported as
timed out and left behind (a daemon thread never holds up the process's exit).
One hanging or dripping environment costs one timeout, not the round.

The bound (probe.concurrency, default 128) counts a hanging probe until its timeout:
it is set above the number of environments expected to hang at once (a tenth of a
thousand), so that they wait out their timeout side by side while the others go on.
A probe costs a thread and a socket, nothing more, while it waits.
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager
from urllib3 import poolmanager as urllib3_poolmanager
from urllib3.connection import HTTPConnection, HTTPSConnection

from prgen.config import HealthCheck

MAX_REDIRECTS = 5
MAX_BODY = 1024 * 1024
USER_AGENT = "prgen-probe"
GRACE = 0.5  # after its deadline, how long a probe whose sockets were shut may take to end


@dataclass(frozen=True)
class ProbeTarget:
    url: str
    check: HealthCheck
    contains: str | None = None  # after placeholder substitution


@dataclass(frozen=True)
class ProbeResult:
    healthy: bool
    reason: str  # "HTTP 200", "HTTP 503", "timed out after 5s", "connection refused", ...
    status: int | None = None


# -- the watchdog's handle on a probe's connections -----------------------------------------


class _Watch:
    """The sockets one probe opened, so that they can be shut from outside when its time is up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.fired = False
        self._ended = False  # the probe returned
        self._left_behind = False  # the round stopped waiting for it

    def leave_behind(self) -> bool:
        """Stop waiting for the probe, unless it has just ended (its answer is on the way)."""
        with self._lock:
            self._left_behind = not self._ended
            return self._left_behind

    def left_behind(self) -> bool:
        """The probe has ended: whether the round had stopped waiting for it."""
        with self._lock:
            self._ended = True
            return self._left_behind

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.fired:
                self._sockets.append(sock)
                return
        _shut(sock)  # a redirect's new connection after the deadline

    def fire(self) -> None:
        with self._lock:
            self.fired = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # shutdown, not close: it wakes a thread blocked reading the socket.
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()  # .watch: the _Watch of the probe running on this thread


def _watched(sock: socket.socket) -> socket.socket:
    watch: _Watch | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.add(sock)
    return sock


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        return _watched(super()._new_conn())


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def _watch_pools(manager: PoolManager) -> None:
    # Plain and HTTP(S)-proxy managers; a SOCKS manager keeps its own classes (and its
    # probes, if they hang, are left behind at the deadline instead).
    if manager.pool_classes_by_scheme is urllib3_poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _Adapter(HTTPAdapter):
    """requests' adapter, its connections known to the watchdog; proxies from the environment work."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _watch_pools(manager)
        return manager


class _NoCredentials(AuthBase):
    """An explicit "no credentials" for every probe request.

    Given none, requests looks the host up in ~/.netrc (or $NETRC) and sends what it finds:
    the credentials of whoever runs prgen would go to a PR's application. The rest of what
    requests takes from the environment stays: HTTP(S)_PROXY, NO_PROXY and CA bundles.
    """

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


# -- one probe --------------------------------------------------------------------------------


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _quoted_host(netloc: str) -> str:
    """A host as an environment named it, for the output and GitHub: printable ASCII, bounded."""
    shown = "".join(c if c.isascii() and c.isprintable() else "?" for c in netloc)
    return shown if len(shown) <= 100 else shown[:99] + "…"


def _read_body(response: requests.Response, deadline: float) -> bytes:
    body = b""
    for chunk in response.iter_content(chunk_size=16384):
        body += chunk
        if len(body) >= MAX_BODY or time.monotonic() > deadline:
            break
    return body


def _seconds(value: float) -> str:
    return f"{value:g}s"


def timed_out(check: HealthCheck) -> ProbeResult:
    return ProbeResult(False, f"timed out after {_seconds(check.timeout)}")


def probe_failed(exc: Exception) -> ProbeResult:
    # The type only: the message may quote what the environment sent.
    return ProbeResult(False, f"probe failed: {type(exc).__name__}")


def _check(session: requests.Session, target: ProbeTarget, deadline: float) -> ProbeResult:
    url = target.url
    for _ in range(MAX_REDIRECTS + 1):
        remaining = max(0.05, deadline - time.monotonic())
        with session.get(
            url,
            timeout=(remaining, remaining),
            allow_redirects=False,
            stream=True,
            headers={"User-Agent": USER_AGENT},
        ) as response:
            status = response.status_code
            location = response.headers.get("Location")
            # A redirect expectStatus accepts (say '200-399' before a sign-in page) is
            # judged as it is; any other is followed, on the same host only.
            if response.is_redirect and location and not target.check.accepts(status):
                next_url = urljoin(url, location)
                if _origin(next_url) != _origin(url):
                    return ProbeResult(
                        False,
                        f"HTTP {status} redirect to {_quoted_host(urlsplit(next_url).netloc)} "
                        "not followed (another host)",
                        status,
                    )
                url = next_url
                continue
            if not target.check.accepts(status):
                return ProbeResult(False, f"HTTP {status}", status)
            if target.contains is not None:
                body = _read_body(response, deadline)
                if time.monotonic() > deadline:
                    return timed_out(target.check)
                if target.contains.encode() not in body:
                    return ProbeResult(
                        False, f"HTTP {status} without {target.contains!r} in the body", status
                    )
            if time.monotonic() > deadline:
                return timed_out(target.check)
            return ProbeResult(True, f"HTTP {status}", status)
    return ProbeResult(False, f"more than {MAX_REDIRECTS} redirects")


def probe(target: ProbeTarget) -> ProbeResult:
    """GET the health URL. Run by `probe_all`, its timeout is a wall-clock bound."""
    deadline = time.monotonic() + target.check.timeout
    session = requests.Session()
    session.auth = _NoCredentials()
    session.mount("http://", _Adapter())
    session.mount("https://", _Adapter())
    try:
        return _check(session, target, deadline)
    except requests.Timeout:
        return timed_out(target.check)
    except requests.ConnectionError as exc:
        text = str(exc).lower()
        if "refused" in text:
            return ProbeResult(False, "connection refused")
        if "name or service not known" in text or "nodename nor servname" in text:
            return ProbeResult(False, f"cannot resolve {urlsplit(target.url).hostname}")
        if "timed out" in text or time.monotonic() > deadline:
            return timed_out(target.check)
        return ProbeResult(False, "connection failed")
    except requests.RequestException as exc:
        if time.monotonic() > deadline:
            return timed_out(target.check)
        return ProbeResult(False, f"request failed: {type(exc).__name__}")
    except Exception as exc:
        # Whatever an environment answers (a redirect to 'http://[x]/' makes requests raise
        # ValueError), its probe ends in a result of its own.
        return probe_failed(exc)
    finally:
        session.close()


# -- a round ----------------------------------------------------------------------------------


@dataclass
class _Running:
    deadline: float
    watch: _Watch
    cut: bool  # its deadline is the round's end, before its own timeout


_Finished = tuple[int, ProbeResult | BaseException, bool]  # index, answer, after the deadline
_Task = tuple[int, ProbeTarget, _Watch]


class _Threads:
    """The threads that run a round's probes, each probe after probe.

    A thread per probe would do, but `Thread.start` waits for the new thread to run: with
    a thousand probes and the reports beside them, that wait held the last probes back by
    seconds, and a probe that starts late ends late. A probe left behind keeps its thread;
    that thread ends with the probe, and another takes its place.
    """

    def __init__(
        self,
        run: Callable[[ProbeTarget], ProbeResult],
        finished: queue.SimpleQueue[_Finished],
    ) -> None:
        self._run = run
        self._finished = finished
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0  # threads waiting for a task
        self._count = 0  # threads started, for their names
        self._stopped = False

    def give(self, task: _Task) -> None:
        with self._lock:
            idle = self._idle > 0
            if idle:
                self._idle -= 1  # taken by this task: the next one needs another
        if not idle:
            self._count += 1
            name = f"prgen-probe-{self._count}"
            threading.Thread(target=self._serve, name=name, daemon=True).start()
        self._tasks.put(task)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            idle, self._idle = self._idle, 0
        for _ in range(idle):
            self._tasks.put(None)

    def _serve(self) -> None:
        while (task := self._tasks.get()) is not None:
            index, target, watch = task
            _current.watch = watch
            try:
                outcome: ProbeResult | BaseException = self._run(target)
            except BaseException as exc:  # handed to the caller's thread
                outcome = exc
            finally:
                _current.watch = None
            if watch.left_behind():
                return  # its slot went to another probe, on another thread
            with self._lock:
                stopped = self._stopped
                self._idle += 0 if stopped else 1  # before its answer: a task may come at once
            self._finished.put((index, outcome, watch.fired))
            if stopped:
                return


def probe_all(
    targets: Sequence[ProbeTarget],
    concurrency: int,
    run: Callable[[ProbeTarget], ProbeResult] = probe,
    *,
    until: float | None = None,
) -> list[ProbeResult | None]:
    """Results in the order of `targets`; at most `concurrency` probes in flight.

    See `probe_each`, which this collects.
    """
    results: list[ProbeResult | None] = [None] * len(targets)
    for index, result in probe_each(targets, concurrency, run, until=until):
        results[index] = result
    return results


def probe_each(
    targets: Sequence[ProbeTarget],
    concurrency: int,
    run: Callable[[ProbeTarget], ProbeResult] = probe,
    *,
    until: float | None = None,
) -> Iterator[tuple[int, ProbeResult | None]]:
    """(index into `targets`, result) of each probe as it ends; at most `concurrency` in flight.

    As they end, so that a caller can report the quick ones while slow ones still run.
    Each probe gets its timeout by the wall clock: at its deadline its sockets are
    shut and it counts as timed out; if it has not ended `GRACE` seconds later it
    is left to end on its own thread (its answer is ignored) and frees its slot.
    With `until` (the round's end, by time.monotonic) no probe starts after it and a
    probe still running then is shut like one timed out: neither has a result (None),
    for they say nothing about the environment. Every index comes out exactly once.
    """
    waiting = deque(range(len(targets)))
    running: dict[int, _Running] = {}
    finished: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
    threads = _Threads(run, finished)
    try:
        while waiting or running:
            if until is not None and time.monotonic() >= until:
                while waiting:  # not probed in time
                    yield waiting.popleft(), None
            while waiting and len(running) < max(1, concurrency):
                index = waiting.popleft()
                watch = _Watch()
                own = time.monotonic() + targets[index].check.timeout
                deadline = own if until is None else min(own, until)
                running[index] = _Running(deadline, watch, cut=deadline < own)
                threads.give((index, targets[index], watch))
            if not running:
                break
            yield from _collect(targets, running, finished)
    finally:
        threads.stop()


def _collect(
    targets: Sequence[ProbeTarget],
    running: dict[int, _Running],
    finished: queue.SimpleQueue[_Finished],
) -> Iterator[tuple[int, ProbeResult | None]]:
    """Waits for the next probe to end or fall due; yields what ended, drops what is overdue."""
    next_due = min(r.deadline + (GRACE if r.watch.fired else 0.0) for r in running.values())
    try:
        answers = [finished.get(timeout=max(0.0, next_due - time.monotonic()))]
    except queue.Empty:
        answers = []
    while not finished.empty():
        answers.append(finished.get_nowait())
    for index, outcome, late in answers:
        item = running.pop(index, None)
        if item is None:
            continue  # left behind already: its answer came too late
        if isinstance(outcome, Exception):
            outcome = probe_failed(outcome)  # that environment's failure, not the round's
        elif isinstance(outcome, BaseException):
            raise outcome
        yield index, _shut_at_deadline(targets[index], item) if late else outcome
    now = time.monotonic()
    for index, item in list(running.items()):
        if not item.watch.fired and now >= item.deadline:
            item.watch.fire()
        elif item.watch.fired and now >= item.deadline + GRACE and item.watch.leave_behind():
            del running[index]
            yield index, _shut_at_deadline(targets[index], item)


def _shut_at_deadline(target: ProbeTarget, item: _Running) -> ProbeResult | None:
    return None if item.cut else timed_out(target.check)
