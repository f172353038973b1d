"""Real HTTP servers on 127.0.0.1 that play preview environments.

Behaviours: healthy (200), unhealthy (503), no-content (204), hanging, slow
(0.3 s), drip (the whole answer, status line and headers too, one byte every
0.4 s), drip-body (headers at once, then the body one byte every 0.4 s),
redirect-same (302 to /pr-<N>/ok), redirect-other (302 to another host) and
redirect-to (302 to `location[N]`, whatever it holds). Each environment's last
request headers are kept, to see what a probe sends.

Used by the tests and by `prgen demo`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    # Many probes connect at once; the default backlog of 5 would drop SYNs and
    # turn a healthy environment into a 1 s connect timeout.
    request_queue_size = 128


DRIP_INTERVAL = 0.4


class Environments:
    """`/pr-<N>/healthz` answers as `behaviour[N]` says (default 'healthy')."""

    def __init__(self) -> None:
        self.behaviour: dict[int, str] = {}
        self.body: dict[int, str] = {}
        self.location: dict[int, str] = {}  # for redirect-to
        self.in_flight = 0
        self.max_in_flight = 0
        self.hits: dict[int, int] = {}
        self.headers: dict[int, dict[str, str]] = {}  # of the last request, names in lower case
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.server = _Server(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def _leave(self, handler: BaseHTTPRequestHandler) -> None:
        """`handler`'s request is no longer in flight (once)."""
        with self._lock:
            if getattr(handler, "counted", False):
                handler.counted = False  # type: ignore[attr-defined]
                self.in_flight -= 1

    def _answer(self, handler: BaseHTTPRequestHandler) -> None:
        parts = handler.path.strip("/").split("/")
        number = int(parts[0].removeprefix("pr-")) if parts[0].startswith("pr-") else 0
        with self._lock:
            self.hits[number] = self.hits.get(number, 0) + 1
            self.headers[number] = {k.lower(): v for k, v in handler.headers.items()}
        behaviour = self.behaviour.get(number, "healthy")
        if behaviour == "hanging":
            self._stop.wait(30)  # far beyond any probe timeout; released at shutdown
            return
        if behaviour == "slow":
            time.sleep(0.3)
            # Done working: out of the count before the answer goes out, or the client's next
            # request (sent as soon as this answer arrives) could be counted beside this one.
            self._leave(handler)
        if behaviour in ("drip", "drip-body"):
            self._drip(handler, number, headers_too=behaviour == "drip")
            return
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
        if behaviour == "redirect-to":
            handler.send_response(302)
            handler.send_header("Location", self.location[number])
            handler.end_headers()
            return
        status = {"unhealthy": 503, "no-content": 204}.get(behaviour, 200)
        body = b"" if status == 204 else self.body.get(number, "ok").encode()
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _drip(self, handler: BaseHTTPRequestHandler, number: int, *, headers_too: bool) -> None:
        """Each byte well within any read timeout, the whole far beyond any probe timeout."""
        body = self.body.get(number, "ok").encode()
        head = (
            f"HTTP/1.0 200 {HTTPStatus.OK.phrase}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Cache-Control: no-store, no-cache, must-revalidate\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        dripped = (head.encode() if headers_too else b"") + body
        if not headers_too:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.flush()
        for index in range(len(dripped)):
            if self._stop.wait(DRIP_INTERVAL):
                return  # shutting down
            try:
                handler.wfile.write(dripped[index : index + 1])
                handler.wfile.flush()
            except OSError:
                return  # the probe gave up and closed the connection
        handler.close_connection = True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        environments = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with environments._lock:
                    environments.in_flight += 1
                    environments.max_in_flight = max(
                        environments.max_in_flight, environments.in_flight
                    )
                    self.counted = True
                try:
                    environments._answer(self)
                finally:
                    environments._leave(self)

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
