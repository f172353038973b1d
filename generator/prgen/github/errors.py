"""What a failed GitHub call means: one line for people, and whether trying again can help."""

from __future__ import annotations

from datetime import UTC, datetime

from github import GithubException, RateLimitExceededException


def _header(exc: GithubException, name: str) -> str | None:
    headers = {key.lower(): value for key, value in (exc.headers or {}).items()}
    return headers.get(name)


def describe_error(exc: BaseException) -> str:
    """One line for a failed GitHub call, rate limits told apart by what applies to them."""
    if isinstance(exc, GithubException):
        message = exc.data.get("message") if isinstance(exc.data, dict) else None
        retry_after = _header(exc, "retry-after") if exc.status in (403, 429) else None
        if retry_after or "secondary rate limit" in (message or "").lower():
            wait = f", retry after {retry_after}s" if retry_after else ""
            return f"HTTP {exc.status}: secondary rate limit{wait}"
        if (
            isinstance(exc, RateLimitExceededException)
            or _header(exc, "x-ratelimit-remaining") == "0"
        ):
            reset = _header(exc, "x-ratelimit-reset")
            when = (
                datetime.fromtimestamp(int(reset), UTC).strftime(
                    " (quota resets %Y-%m-%d %H:%M:%S UTC)"
                )
                if reset and reset.isdigit()
                else ""
            )
            return f"HTTP {exc.status}: rate limited by GitHub{when}"
        return f"HTTP {exc.status}" + (f": {message}" if message else "")
    return f"{type(exc).__name__}: {exc}"


def rate_limited(exc: GithubException) -> bool:
    """A 403 or 429 that a later try can get past: the signals describe_error reads."""
    if exc.status not in (403, 429):
        return False
    message = exc.data.get("message") if isinstance(exc.data, dict) else None
    return bool(
        isinstance(exc, RateLimitExceededException)
        or _header(exc, "retry-after")
        or "rate limit" in str(message or "").lower()
        or _header(exc, "x-ratelimit-remaining") == "0"
    )
