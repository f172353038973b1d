"""The WSGI application: /webhook, /metrics, /healthz, /readyz, /api/v1/status."""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from prgen.commands.handling import explain
from prgen.config import Config
from prgen.logs import fields
from prgen.serve.metrics import CONTENT_TYPE_LATEST, Metrics
from prgen.serve.runner import SyncRunner
from prgen.serve.webhook import RecentDeliveries, Result, event_label, hint_of, signed_by
from prgen.serve.worker import SyncWorker

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
Environ = dict[str, Any]
JSON = "application/json"

_STATUS_LINES = {
    200: "200 OK",
    202: "202 Accepted",
    400: "400 Bad Request",
    401: "401 Unauthorized",
    404: "404 Not Found",
    405: "405 Method Not Allowed",
    413: "413 Content Too Large",
    503: "503 Service Unavailable",
}
_WEBHOOK_STATUS = {
    Result.ACCEPTED: 202,
    Result.DUPLICATE: 200,
    Result.IGNORED: 202,
    Result.UNCONFIGURED: 202,
    Result.PING: 200,
    Result.UNAUTHORIZED: 401,
    Result.TOO_LARGE: 413,
    Result.MALFORMED: 400,
}
# A full sync older than this many intervals means the server is not doing its job.
READY_INTERVALS = 3


@dataclass(frozen=True)
class Secrets:
    webhook: bytes
    api_token: bytes


class Building(Exception):
    """The status document is being built, and there is none to give meanwhile."""


class StatusCache:
    """The last status document for `ttl` seconds; one build at a time.

    A build waits for the fleet lock (behind a sync in progress): a second caller gets the
    last document, however old, or Building, rather than holding a request thread too.
    """

    def __init__(
        self, build: Callable[[], dict[str, Any]], ttl: float, clock: Callable[[], float]
    ) -> None:
        self._build = build
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._document: bytes | None = None
        self._built_at = 0.0

    def get(self) -> bytes:
        document = self._document
        if document is not None and self._clock() - self._built_at < self._ttl:
            return document
        if not self._lock.acquire(blocking=False):
            if document is None:
                raise Building
            return document
        try:
            if self._document is None or self._clock() - self._built_at >= self._ttl:
                self._document = json.dumps(self._build(), indent=2).encode() + b"\n"
                self._built_at = self._clock()
            return self._document
        finally:
            self._lock.release()


class App:
    def __init__(
        self,
        config: Config,
        secrets: Secrets,
        worker: SyncWorker,
        runner: SyncRunner,
        metrics: Metrics,
        status: Callable[[], dict[str, Any]],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._secrets = secrets
        self.worker = worker
        self.runner = runner
        self.metrics = metrics
        self.deliveries = RecentDeliveries()
        self._status = StatusCache(status, config.server.status_cache_ttl, clock)
        self._configured = frozenset(r.name.lower() for r in config.repositories)
        self._gated = frozenset(
            r.name.lower() for r in config.repositories if r.deploy_when is not None
        )
        self._repo_configs = {
            r.name.lower(): r.repo_config.path for r in config.repositories if r.repo_config
        }
        self._routes: dict[str, tuple[str, Callable[[Environ], tuple[int, str, bytes]]]] = {
            "/webhook": ("POST", self.webhook),
            "/metrics": ("GET", self.prometheus),
            "/healthz": ("GET", self.healthz),
            "/readyz": ("GET", self.readyz),
            "/api/v1/status": ("GET", self.status),
        }

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        route = self._routes.get(environ.get("PATH_INFO", ""))
        method = environ.get("REQUEST_METHOD", "GET")
        if route is None:
            code, content_type, body = _json(404, {"error": "not found"})
        elif method != route[0] and not (method == "HEAD" and route[0] == "GET"):
            code, content_type, body = _json(405, {"error": f"use {route[0]}"})
        else:
            code, content_type, body = route[1](environ)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if code == 405 and route is not None:
            headers.append(("Allow", route[0]))
        start_response(_STATUS_LINES[code], headers)
        return [b"" if method == "HEAD" else body]

    # -- GitHub --------------------------------------------------------------------------

    def webhook(self, environ: Environ) -> tuple[int, str, bytes]:
        event = environ.get("HTTP_X_GITHUB_EVENT") or ""
        delivery = (environ.get("HTTP_X_GITHUB_DELIVERY") or "")[:128]
        result, repository, action = self._deliver(environ, event, delivery)
        self.metrics.webhooks.labels(event_label(event), str(result)).inc()
        self.metrics.pending.set(self.worker.pending)
        # The line names what GitHub's headers and the payload say, never the body itself.
        log.info(
            "delivery %s: %s%s%s: %s",
            delivery or "(no id)",
            event_label(event),
            f".{action}" if action else "",
            f" of {repository}" if repository else "",
            result,
            extra=fields(
                delivery=delivery or None,
                event=event_label(event),
                action=action,
                repository=repository,
                result=str(result),
            ),
        )
        return _json(_WEBHOOK_STATUS[result], {"result": str(result)})

    def _deliver(
        self, environ: Environ, event: str, delivery: str
    ) -> tuple[Result, str | None, str | None]:
        limit = self.config.server.max_body_bytes
        length = _content_length(environ)
        if length is not None and length > limit:
            return Result.TOO_LARGE, None, None
        body = environ["wsgi.input"].read(limit + 1 if length is None else length)
        if len(body) > limit:
            return Result.TOO_LARGE, None, None
        if not signed_by(self._secrets.webhook, body, environ.get("HTTP_X_HUB_SIGNATURE_256")):
            return Result.UNAUTHORIZED, None, None
        if not self.deliveries.first_time(delivery):
            return Result.DUPLICATE, None, None
        hint = hint_of(event, body, self._configured, self._gated, self._repo_configs)
        if hint.result is Result.ACCEPTED and hint.repository is not None:
            # Only a hint: the sync asks GitHub, and never removes on a webhook's word.
            self.worker.mark(hint.repository)
        return hint.result, hint.repository, hint.action

    # -- the cluster ---------------------------------------------------------------------

    def prometheus(self, environ: Environ) -> tuple[int, str, bytes]:
        self.metrics.pending.set(self.worker.pending)
        return 200, CONTENT_TYPE_LATEST, self.metrics.exposition()

    def healthz(self, environ: Environ) -> tuple[int, str, bytes]:
        return _json(200, {"status": "alive"})

    def readyz(self, environ: Environ) -> tuple[int, str, bytes]:
        reasons = []
        if self.runner.fleet_error is not None:
            reasons.append(f"fleet repository: {self.runner.fleet_error}")
        age = self.metrics.seconds_since_full_sync()
        limit = READY_INTERVALS * self.config.server.interval
        if age == float("inf"):
            reasons.append("no full sync has completed yet")
        elif age > limit:
            reasons.append(f"the last full sync completed {age:.0f}s ago (limit {limit:.0f}s)")
        if reasons:
            return _json(503, {"status": "not ready", "reasons": reasons})
        return _json(200, {"status": "ready"})

    def status(self, environ: Environ) -> tuple[int, str, bytes]:
        given = environ.get("HTTP_AUTHORIZATION") or ""
        scheme, _, token = given.partition(" ")
        expected = self._secrets.api_token
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode("utf-8", "replace"), expected
        ):
            return _json(401, {"error": "a bearer token is required"})
        try:
            return 200, JSON, self._status.get()
        except Building:
            return _json(503, {"error": "the status document is being built: ask again shortly"})
        except Exception as exc:
            line, _ = explain(exc)
            log.warning("status document: %s", line)
            return _json(503, {"error": line})


def _content_length(environ: Environ) -> int | None:
    try:
        return int(environ.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None


def _json(code: int, document: dict[str, Any]) -> tuple[int, str, bytes]:
    return code, JSON, json.dumps(document).encode() + b"\n"
