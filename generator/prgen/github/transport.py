"""Under PyGithub: the HTTP cache, the rate-limit ledger and the shared wait for secondary limits.

PyGithub's Requester builds its connection from a connection class holding a
`requests.Session`. `Requester.injectConnectionClasses` would swap that class for every client
of the process and turn keep-alive off; instead each client made here gets a class of its own
(`use_transport`), bound to one Transport, whose session reads and fills the cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from github import Github
from github.Requester import (
    HTTPRequestsConnectionClass,
    HTTPSRequestsConnectionClass,
    Requester,
    RequestsResponse,
)
from requests.adapters import HTTPAdapter

from prgen.github.cache import HttpCache
from prgen.github.errors import LimitKind, classify, utc_time

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """What GitHub last said of the rate limit (None: nothing answered yet)."""

    remaining: int | None
    reset: int | None

    def describe(self) -> str:
        when = f", resets at {utc_time(self.reset)}" if self.reset is not None else ""
        return f"{self.remaining} rate-limit points left{when}"

    def below(self, reserve: int) -> str | None:
        """Why nothing more may be asked: no more than `reserve` points left, the reserve
        kept for whoever else uses the credential (None: go on)."""
        if self.remaining is None or self.remaining > reserve:
            return None
        when = f", resets at {utc_time(self.reset)}" if self.reset is not None else ""
        return (
            f"{self.remaining} rate-limit points left, reserve {reserve} "
            f"(github.rateLimitReserve){when}"
        )


class RateLimitLedger:
    """X-RateLimit-Remaining of every answer GitHub gave (a 304's too), and how many were 304."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining: int | None = None
        self._reset: int | None = None
        self.answers = 0
        self.not_modified = 0
        self.by_status: dict[int, int] = {}  # for `prgen serve`'s metrics

    def record(self, status: int, headers: Mapping[str, str]) -> None:
        remaining = headers.get("X-RateLimit-Remaining")
        reset = headers.get("X-RateLimit-Reset")
        resource = headers.get("X-RateLimit-Resource", "core")
        with self._lock:
            self.answers += 1
            self.not_modified += status == 304
            self.by_status[status] = self.by_status.get(status, 0) + 1
            if resource == "core" and remaining is not None and remaining.isdigit():
                # Answers come back out of order under concurrency: the lowest count of the
                # current window is the truest one; a later reset starts a new window.
                new_reset = int(reset) if reset and reset.isdigit() else self._reset
                if self._remaining is None or new_reset != self._reset:
                    self._remaining = int(remaining)
                else:
                    self._remaining = min(self._remaining, int(remaining))
                self._reset = new_reset

    def budget(self) -> Budget:
        with self._lock:
            return Budget(self._remaining, self._reset)


class Gate:
    """One wait every worker keeps: a secondary limit on one request slows all of them down."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._lock = threading.Lock()
        self._open_at = 0.0
        self._clock = clock
        self._sleep = sleep

    def hold(self, seconds: float) -> None:
        with self._lock:
            self._open_at = max(self._open_at, self._clock() + seconds)

    def pass_through(self) -> None:
        while True:
            with self._lock:
                wait = self._open_at - self._clock()
            if wait <= 0:
                return
            self._sleep(wait)


class _RecordingAdapter(HTTPAdapter):
    """Sees every answer that crossed the network, before the cache does."""

    def __init__(self, ledger: RateLimitLedger, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._ledger = ledger

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        response = super().send(request, *args, **kwargs)
        self._ledger.record(response.status_code, response.headers)
        vary = response.headers.get("Vary")
        if vary:
            # The cache file is the credential's own, so answers vary by Authorization by
            # construction; requests-cache, which never stores the token, would otherwise
            # count every entry as a Vary mismatch.
            kept = [v.strip() for v in vary.split(",") if v.strip().lower() != "authorization"]
            response.headers["Vary"] = ", ".join(kept)
        return response


class Transport:
    """What every client of one run shares: the cache, the ledger, the gate and its bound."""

    def __init__(
        self,
        cache: HttpCache | None,
        *,
        max_wait: float,
        write_interval: float = 0.0,
        sleep: Callable[[float], None] = time.sleep,
        ledger: RateLimitLedger | None = None,
        gate: Gate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cache = cache
        self.max_wait = max_wait  # most seconds one request may wait on secondary limits
        self.write_interval = write_interval
        self._write_lock = threading.Lock()
        self._last_write: float | None = None
        self._sleep = sleep
        self.ledger = ledger or RateLimitLedger()
        self.gate = gate or Gate(clock)
        self._clock = clock

    def session(self, adapter: HTTPAdapter) -> requests.Session:
        session = self.cache.session() if self.cache is not None else requests.Session()
        session.auth = Requester.noopAuth  # as PyGithub does: no fallback to ~/.netrc
        recording = _RecordingAdapter(
            self.ledger,
            max_retries=adapter.max_retries,
            pool_connections=adapter._pool_connections,  # type: ignore[attr-defined]
            pool_maxsize=adapter._pool_maxsize,  # type: ignore[attr-defined]
        )
        session.mount("http://", recording)
        session.mount("https://", recording)
        return session

    def send(self, verb: str, send: Callable[[], RequestsResponse]) -> RequestsResponse:
        """A read: `send()` once the gate is open, again after a secondary limit while the
        bound lasts, every worker holding back meanwhile. A write: `send()` once, after every
        other worker's write has ended and `write_interval` has passed (the report channels
        re-read GitHub and retry writes on their own)."""
        if verb.upper() != "GET":
            return self._write(send)
        started = self._clock()
        while True:
            self.gate.pass_through()
            response = send()
            limit = classify(response.status, response.headers, _message(response))
            if limit.kind is not LimitKind.SECONDARY:
                return response
            if self._clock() - started + limit.wait > self.max_wait:
                return response  # PyGithub raises; describe_error says which limit
            log.info("secondary rate limit: every request waits %.0fs", limit.wait)
            self.gate.hold(limit.wait)

    def _write(self, send: Callable[[], RequestsResponse]) -> RequestsResponse:
        # GitHub: writes serially, not concurrently, and at least a second apart. The lock
        # is held through the write, so the interval runs from the end of the last one.
        with self._write_lock:
            if self._last_write is not None:
                wait = self._last_write + self.write_interval - self._clock()
                if wait > 0:
                    self._sleep(wait)
            try:
                return send()
            finally:
                self._last_write = self._clock()


def _message(response: RequestsResponse) -> str | None:
    if response.status not in (403, 429):
        return None
    try:
        data = response.response.json()
    except ValueError:
        return None
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else None


def _connection_class(transport: Transport, https: bool) -> type[Any]:
    base: type[Any] = HTTPSRequestsConnectionClass if https else HTTPRequestsConnectionClass

    class Connection(base):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            plain: requests.Session = getattr(self, "session")  # noqa: B009 - set by the base
            plain.close()
            self.session = transport.session(self.adapter)

        def getresponse(self) -> RequestsResponse:
            return transport.send(self.verb, super().getresponse)

    return Connection


def use_transport(client: Github, transport: Transport) -> Github:
    """Send this client's requests through `transport`: for this client only.

    The Requester picks its connection class once, in its constructor, into a private
    attribute, and builds the connection on the first request: setting that attribute on a
    fresh client changes this client alone and keeps keep-alive.
    """
    requester = client.requester
    https = requester.base_url.lower().startswith("https://")
    attribute = "_Requester__connectionClass"
    if not hasattr(requester, attribute):  # a PyGithub that moved it: fail loudly, not silently
        raise RuntimeError("this PyGithub has no Requester connection class to set")
    setattr(requester, attribute, _connection_class(transport, https))
    return client
