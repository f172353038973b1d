"""`prgen serve` on a thread of the test process, against the fake GitHub and a bare fleet."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from prgen.commands.options import load
from prgen.serve.server import Server, make_server
from prgen.testing.fake_github import FakeGitHub
from prgen.testing.fake_github.webhooks import Sent, pull_request_payload, send_delivery

from conftest import git

SECRET = "whsec-test-0123456789abcdef"
API_TOKEN = "api-token-test-0123456789abcdef"
SECRETS = {"PRGEN_WEBHOOK_SECRET": SECRET, "PRGEN_API_TOKEN": API_TOKEN}
_BRANCHES = itertools.count(1)


def server_section(
    interval: str = "10m",
    quiet: str = "0.3s",
    max_delay: str = "2s",
    probe: str = "0s",
    **more: Any,
) -> str:
    lines = [
        "server:",
        "  host: 127.0.0.1",
        "  port: 0",
        f"  interval: {interval}",
        f"  quietPeriod: {quiet}",
        f"  maxDelay: {max_delay}",
        f"  probeInterval: {probe}",
    ]
    lines += [f"  {key}: {value}" for key, value in more.items()]
    return "\n".join(lines) + "\n"


def open_pull(github: FakeGitHub, repository: str, labels: tuple[str, ...] = ("preview",)) -> int:
    return github.open_pull(
        repository, title="change", head_branch=f"feature/{next(_BRANCHES)}", labels=labels
    )


def commits(remote: Path) -> int:
    return int(git("rev-list", "--count", "main", cwd=remote))


def wait_for(what: Callable[[], Any], timeout: float = 30, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = what()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(step)


@dataclass
class Served:
    server: Server
    url: str
    session: requests.Session

    @property
    def runs(self) -> int:
        return self.server.app.runner.runs

    def deliver(self, event: str, payload: Mapping[str, Any] | bytes, **options: Any) -> Sent:
        options.setdefault("session", self.session)
        secret = options.pop("secret", SECRET)
        return send_delivery(f"{self.url}/webhook", secret, event, payload, **options)

    def synchronize(
        self, repository: str, number: int, sha: str, action: str = "synchronize"
    ) -> Sent:
        return self.deliver("pull_request", pull_request_payload(repository, number, action, sha))

    def get(self, path: str, **headers: str) -> requests.Response:
        return self.session.get(f"{self.url}{path}", headers=headers, timeout=30)

    def wait_runs(self, count: int, timeout: float = 30) -> None:
        wait_for(lambda: self.runs >= count, timeout)

    def settle(self, timeout: float = 30) -> None:
        """Until nothing is marked and no run is due (quiet for a while)."""
        settings = self.server.app.config.server
        while True:
            before = self.runs
            wait_for(lambda: self.server.worker.pending == 0, timeout)
            time.sleep(settings.max_delay + 0.3)
            if self.runs == before and self.server.worker.pending == 0:
                return


@contextlib.contextmanager
def serving_prgen(
    config: Path,
    workdir: Path,
    environ: Mapping[str, str] | None = None,
    *,
    first_run: bool = True,
    cache_dir: Path | None = None,
) -> Iterator[Served]:
    """The server on threads of this process; `first_run`: wait for the full sync at start."""
    secrets = dict(SECRETS if environ is None else environ)
    server = make_server(load(config), workdir, cache_dir, secrets)
    thread = threading.Thread(target=server.wsgi.run, name="waitress")
    server.start_workers()
    thread.start()
    session = requests.Session()
    served = Served(server, f"http://127.0.0.1:{server.port}", session)
    try:
        if first_run:
            served.wait_runs(1)
        yield served
    finally:
        session.close()
        server.stop_from_thread()
        thread.join(10)
        server.stop_workers(60)
