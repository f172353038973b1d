"""Real HTTP servers on 127.0.0.1 that play preview environments: healthy, 503, hanging, slow, redirecting.

Used by the tests and by `prgen demo`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    # Many probes connect at once; the default backlog of 5 would drop SYNs and
    # turn a healthy environment into a 1 s connect timeout.
    request_queue_size = 128


class Environments:
    """`/pr-<N>/healthz` answers as `behaviour[N]` says (default 'healthy')."""

    def __init__(self) -> None:
        self.behaviour: dict[int, str] = {}
        self.body: dict[int, str] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self.hits: dict[int, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = handler.path.strip("/").split("/")
        number = int(parts[0].removeprefix("pr-")) if parts[0].startswith("pr-") else 0
        with self._lock:
            self.hits[number] = self.hits.get(number, 0) + 1
        behaviour = self.behaviour.get(number, "healthy")
        if behaviour == "hanging":
            self._stop.wait(30)  # far beyond any probe timeout; released at shutdown
            return
        if behaviour == "slow":
            time.sleep(0.3)
        if behaviour == "redirect-same" and parts[-1] != "ok":
            handler.send_response(302)
            handler.send_header("Location", f"/pr-{number}/ok")
            handler.end_headers()
            return
        if behaviour == "redirect-other":
            handler.send_response(302)
            handler.send_header("Location", "http://127.0.0.2:9/steal")
            handler.end_headers()
            return
        status = 503 if behaviour == "unhealthy" else 200
        body = self.body.get(number, "ok").encode()
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        environments = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with environments._lock:
                    environments.in_flight += 1
                    environments.max_in_flight = max(
                        environments.max_in_flight, environments.in_flight
                    )
                try:
                    environments._answer(self)
                finally:
                    with environments._lock:
                        environments.in_flight -= 1

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[Environments]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self.server.shutdown()
            self.server.server_close()
