"""The request log and fault injection: answers that replace the real one for chosen requests."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # as sent, without the query and the /api/v3 prefix: "/repos/acme/shop/pulls"
    query: dict[str, str]  # the last value of each parameter
    body: Any  # parsed JSON, or None
    headers: dict[str, str] = field(default_factory=dict, compare=False)  # lower-case names

    @property
    def page(self) -> int:
        """The ?page= parameter; a missing or malformed one means 1, as on GitHub."""
        page = self.query.get("page", "1")
        return int(page) if page.isdigit() and int(page) > 0 else 1


@dataclass(frozen=True)
class Answer:
    """How the fake answered one request: its status (None: dropped) and its rate-limit cost."""

    request: RecordedRequest
    status: int | None
    charged: bool  # whether it cost a rate-limit point (a 304 and a dropped request cost none)


class RequestLog:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._answers: list[Answer] = []

    def append(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def answered(self, answer: Answer) -> None:
        with self._lock:
            self._answers.append(answer)

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def answers(self) -> list[Answer]:
        with self._lock:
            return list(self._answers)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._answers.clear()


@dataclass
class Fault:
    method: str  # upper case, or "*" for any
    pattern: re.Pattern[str]
    status: int  # 0: the real answer, after `delay`
    body: Any  # JSON; None: GitHub's error body for `status`
    headers: Mapping[str, str]
    times: int
    after: int
    delay: float
    drop: bool
    page: int | None
    applied: bool = False  # carry the request out first: a write that happened, answered late
    raw: bytes | None = None  # sent as it is instead of a JSON body (an HTML page)
    rewrite: Callable[[Any], Any] | None = None  # the real answer's JSON -> what is sent

    @property
    def passes_through(self) -> bool:
        """Whether the real answer is given (with `rewrite` and `headers` applied)."""
        return self.status == 0 and not self.drop

    def matches(self, request: RecordedRequest) -> bool:
        return (
            self.method in ("*", request.method)
            and self.pattern.fullmatch(request.path) is not None
            and (self.page is None or self.page == request.page)
        )

    def response_body(self) -> Any:
        if self.body is not None:
            return self.body
        try:
            message = HTTPStatus(self.status).phrase
        except ValueError:
            message = f"HTTP {self.status}"
        return {"message": message, "documentation_url": "https://docs.github.com/rest"}


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> None:
        if fault.times < 1 or fault.after < 0 or fault.delay < 0:
            raise ValueError("times must be at least 1; after and delay must not be negative")
        if not (fault.status == 0 or 100 <= fault.status <= 599):
            raise ValueError(f"status {fault.status} is neither 0 nor an HTTP status")
        changes = fault.delay or fault.drop or fault.rewrite or fault.headers
        if fault.status == 0 and not changes:
            raise ValueError(
                "status=0 (the real answer) only makes sense with delay, drop, rewrite or headers"
            )
        if fault.status == 0 and fault.raw is not None:
            raise ValueError("raw is a body of its own: give it a status")
        if fault.status != 0 and fault.rewrite is not None:
            raise ValueError("rewrite changes the real answer: it goes with status=0")
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, request: RecordedRequest) -> Fault | None:
        """The first fault due for this request, counting it as used."""
        with self._lock:
            for fault in self._faults:
                if not fault.matches(request):
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    continue
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None
