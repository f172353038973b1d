"""What a failed GitHub call means: one line for people, and whether trying again can help.

One classifier (`classify`) reads GitHub's signals; `describe_error`, `rate_limited` and the
transport's wait for a secondary limit all ask it, so they never disagree.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from github import GithubException, RateLimitExceededException

# GitHub asks for at least a minute's wait after a secondary limit that names no Retry-After.
SECONDARY_LIMIT_DEFAULT_WAIT = 60.0


class LimitKind(enum.Enum):
    NONE = "none"
    SECONDARY = "secondary"  # too fast or too many at once: waiting a little helps
    PRIMARY = "primary"  # the hourly budget is spent: only its reset helps


@dataclass(frozen=True)
class Limit:
    kind: LimitKind
    retry_after: float | None = None  # seconds GitHub asked for (a secondary limit)
    reset: int | None = None  # epoch seconds the hourly budget resets (a primary limit)

    @property
    def wait(self) -> float:
        """How long to wait before the same request may succeed (secondary limits)."""
        return self.retry_after if self.retry_after is not None else SECONDARY_LIMIT_DEFAULT_WAIT


NO_LIMIT = Limit(LimitKind.NONE)


def _seconds(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86400 else None


def classify(
    status: int, headers: Mapping[str, str] | None, message: str | None, *, exhausted: bool = False
) -> Limit:
    """Whether an answer is a rate limit, and which: the one place GitHub's signals are read.

    Secondary limits come as 403 or 429 with Retry-After or a message naming them; the
    primary one as 403 or 429 with X-RateLimit-Remaining 0 (`exhausted`: PyGithub said so).
    """
    if status not in (403, 429):
        return NO_LIMIT
    lower = {key.lower(): value for key, value in (headers or {}).items()}
    text = (message or "").lower()
    retry_after = lower.get("retry-after")
    if retry_after is not None or "secondary rate limit" in text:
        return Limit(LimitKind.SECONDARY, retry_after=_seconds(retry_after))
    reset = lower.get("x-ratelimit-reset")
    if exhausted or lower.get("x-ratelimit-remaining") == "0" or "rate limit" in text:
        return Limit(LimitKind.PRIMARY, reset=int(reset) if reset and reset.isdigit() else None)
    return NO_LIMIT


def _message(data: Any) -> str | None:
    message = data.get("message") if isinstance(data, dict) else None
    return message if isinstance(message, str) else None


def classify_exception(exc: GithubException) -> Limit:
    return classify(
        exc.status,
        exc.headers,
        _message(exc.data),
        exhausted=isinstance(exc, RateLimitExceededException),
    )


def utc_time(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class Asking:
    """Who asks GitHub: what a message names so the reader knows what to fix."""

    credential: str  # "the token in $GITHUB_TOKEN", "GitHub App 42 (installation 7)"


def describe_error(
    exc: BaseException, asking: Asking | None = None, repository: str | None = None
) -> str:
    """One line for a failed GitHub call, rate limits told apart by what applies to them.

    `asking`: the credential, named when GitHub refuses it (401); `repository`: the
    repository whose listing failed, named when GitHub says it is not there (404).
    """
    if isinstance(exc, GithubException):
        limit = classify_exception(exc)
        if limit.kind is LimitKind.SECONDARY:
            wait = f", retry after {limit.retry_after:g}s" if limit.retry_after is not None else ""
            return f"HTTP {exc.status}: secondary rate limit{wait}"
        if limit.kind is LimitKind.PRIMARY:
            when = f" (quota resets {utc_time(limit.reset)})" if limit.reset is not None else ""
            return f"HTTP {exc.status}: rate limited by GitHub{when}"
        message = _message(exc.data)
        said = f"HTTP {exc.status}" + (f": {message}" if message else "")
        if exc.status == 401 and asking is not None:
            return f"{said}: GitHub refused {asking.credential}"
        if exc.status == 404 and repository is not None:
            who = asking.credential if asking is not None else "the token"
            return f"{said}: {repository} does not exist or {who} cannot see it"
        return said
    unreachable = _unreachable(exc)
    if unreachable is not None:
        return unreachable
    return f"{type(exc).__name__}: {exc}"


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _unreachable(exc: BaseException) -> str | None:
    """`cannot reach https://ghe.example.com: connection refused`: one line naming where, in
    place of urllib3's retry dump; None for anything but a failed connection or time-out."""
    if not isinstance(
        exc, (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError)
    ):
        return None
    text = str(exc)
    found = _ERRNO.search(text)
    if found:
        reason = found.group(1).strip().rstrip(".").lower()
    elif isinstance(exc, requests.Timeout) or "timed out" in text.lower():
        reason = "timed out"
    else:
        reason = "the connection failed"
    return f"cannot reach {_origin(exc) or 'GitHub'}: {reason}"


def _origin(exc: BaseException) -> str | None:
    """scheme://host[:port] the failed request went to, from what requests or urllib3 kept."""
    request = getattr(exc, "request", None)
    url = getattr(request, "url", None)
    if isinstance(url, str) and url:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}"
    pool = getattr(exc, "pool", None)
    host = getattr(pool, "host", None)
    if isinstance(host, str):
        port = getattr(pool, "port", None)
        scheme = getattr(pool, "scheme", "https")
        default = {"http": 80, "https": 443}.get(scheme)
        return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")
    return None


def rate_limited(exc: GithubException) -> bool:
    """A 403 or 429 that a later try can get past: the signals describe_error reads."""
    return classify_exception(exc).kind is not LimitKind.NONE
