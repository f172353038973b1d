"""HTTP health probes, run concurrently with a bound.

A probe's URL comes from the configuration only (PR text can reach it only
through slug placeholders, checked in config), and it never follows a redirect
to another host. Each probe is bounded by its timeout as a whole, so one
hanging environment costs one timeout, not the round.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import requests

from prgen.config import HealthCheck

MAX_REDIRECTS = 5
MAX_BODY = 1024 * 1024
USER_AGENT = "prgen-probe"


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


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _read_body(response: requests.Response, deadline: float) -> bytes:
    body = b""
    for chunk in response.iter_content(chunk_size=16384):
        body += chunk
        if len(body) >= MAX_BODY or time.monotonic() > deadline:
            break
    return body


def _seconds(value: float) -> str:
    return f"{value:g}s"


def probe(target: ProbeTarget) -> ProbeResult:
    timeout = target.check.timeout
    deadline = time.monotonic() + timeout
    url = target.url
    try:
        for _ in range(MAX_REDIRECTS + 1):
            remaining = max(0.05, deadline - time.monotonic())
            with requests.get(
                url,
                timeout=(remaining, remaining),
                allow_redirects=False,
                stream=True,
                headers={"User-Agent": USER_AGENT},
            ) as response:
                location = response.headers.get("Location")
                if response.is_redirect and location:
                    next_url = urljoin(url, location)
                    if _origin(next_url) != _origin(url):
                        return ProbeResult(
                            False,
                            f"HTTP {response.status_code} redirect to {urlsplit(next_url).netloc} "
                            "not followed (another host)",
                            response.status_code,
                        )
                    url = next_url
                    continue
                status = response.status_code
                if not target.check.accepts(status):
                    return ProbeResult(False, f"HTTP {status}", status)
                if target.contains is not None:
                    body = _read_body(response, deadline)
                    if target.contains.encode() not in body:
                        return ProbeResult(
                            False, f"HTTP {status} without {target.contains!r} in the body", status
                        )
                if time.monotonic() > deadline:
                    return ProbeResult(False, f"timed out after {_seconds(timeout)}", status)
                return ProbeResult(True, f"HTTP {status}", status)
        return ProbeResult(False, f"more than {MAX_REDIRECTS} redirects")
    except requests.Timeout:
        return ProbeResult(False, f"timed out after {_seconds(timeout)}")
    except requests.ConnectionError as exc:
        text = str(exc).lower()
        if "refused" in text:
            return ProbeResult(False, "connection refused")
        if "name or service not known" in text or "nodename nor servname" in text:
            return ProbeResult(False, f"cannot resolve {urlsplit(url).hostname}")
        if "timed out" in text:
            return ProbeResult(False, f"timed out after {_seconds(timeout)}")
        return ProbeResult(False, "connection failed")
    except requests.RequestException as exc:
        return ProbeResult(False, f"request failed: {type(exc).__name__}")


def probe_all(
    targets: Sequence[ProbeTarget],
    concurrency: int,
    run: Callable[[ProbeTarget], ProbeResult] = probe,
) -> list[ProbeResult]:
    """Results in the order of `targets`; at most `concurrency` probes in flight."""
    if not targets:
        return []
    with ThreadPoolExecutor(max_workers=min(concurrency, len(targets))) as pool:
        return list(pool.map(run, targets))
