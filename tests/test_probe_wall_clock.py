"""A probe's timeout is a wall-clock bound: servers that drip a byte at a time cost one timeout.

requests' timeout is per socket read, and a byte every 0.4 s is always within it; the
environments here (real HTTP servers on 127.0.0.1) drip their whole answer, or their body.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from prgen.cli import main
from prgen.config import HealthCheck
from prgen.probe import GRACE, ProbeResult, ProbeTarget, probe, probe_all
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub

from conftest import SHOP

REPO = "acme/shop"
TIMEOUT = 1.0
LONG_BODY = "x" * 100  # dripped at 0.4 s a byte: 40 s, where a probe has 1 s


def target(envs: Environments, number: int, contains: str | None = None) -> ProbeTarget:
    url = f"{envs.url}/pr-{number}/healthz"
    return ProbeTarget(url, HealthCheck(url=url, timeout=TIMEOUT, contains=contains), contains)


def timed(call: Callable[[], list[ProbeResult]]) -> tuple[list[ProbeResult], float]:
    started = time.monotonic()
    results = call()
    return results, time.monotonic() - started


def test_a_dripping_environment_among_several_costs_one_timeout(envs: Environments) -> None:
    envs.behaviour.update({1: "drip", 2: "drip-body", 3: "drip-body", 4: "hanging"})
    for number in (1, 2, 3):
        envs.body[number] = LONG_BODY + "abc1234"
    targets = [
        target(envs, 1),
        target(envs, 2, contains="abc1234"),  # the body is read: it drips
        target(envs, 3),  # no `contains`: the body is never read, the headers came at once
        target(envs, 4),
        *(target(envs, n) for n in range(5, 11)),
    ]
    results, elapsed = timed(lambda: probe_all(targets, concurrency=16))
    reasons = [result.reason for result in results]
    assert reasons[:4] == [
        "timed out after 1s",
        "timed out after 1s",
        "HTTP 200",
        "timed out after 1s",
    ]
    assert reasons[4:] == ["HTTP 200"] * 6
    assert [result.healthy for result in results] == [False, False, True, False] + [True] * 6
    assert elapsed < TIMEOUT + GRACE + 1.0, elapsed  # about one timeout, not 40 s


def test_drippers_hold_their_slots_for_one_timeout_and_the_bound_holds(
    envs: Environments,
) -> None:
    envs.behaviour.update({1: "drip", 2: "drip"})
    envs.body.update({1: LONG_BODY, 2: LONG_BODY})
    lock = threading.Lock()
    in_flight = [0, 0]  # now, most

    def counted(probe_target: ProbeTarget) -> ProbeResult:
        with lock:
            in_flight[0] += 1
            in_flight[1] = max(in_flight)
        try:
            return probe(probe_target)
        finally:
            with lock:
                in_flight[0] -= 1

    targets = [target(envs, n) for n in range(1, 7)]
    results, elapsed = timed(lambda: probe_all(targets, concurrency=2, run=counted))
    assert [r.reason for r in results] == ["timed out after 1s"] * 2 + ["HTTP 200"] * 4
    assert in_flight[1] == 2  # the watchdog ended each dripping probe before its slot was reused
    assert elapsed < TIMEOUT + GRACE + 1.0, elapsed


def test_a_probe_that_ignores_the_watchdog_is_left_behind_and_its_answer_ignored() -> None:
    release = threading.Event()
    answered: list[str] = []

    def stubborn(probe_target: ProbeTarget) -> ProbeResult:
        release.wait(5)
        answered.append(probe_target.url)
        return ProbeResult(True, "HTTP 200", 200)

    check = HealthCheck(url="http://x.invalid/", timeout=0.2)
    targets = [ProbeTarget("http://x.invalid/", check)]
    results, elapsed = timed(lambda: probe_all(targets, concurrency=1, run=stubborn))
    assert results == [ProbeResult(False, "timed out after 0.2s")]
    assert elapsed < 0.2 + GRACE + 0.5, elapsed
    release.set()  # its late answer goes nowhere
    time.sleep(0.1)
    assert answered == ["http://x.invalid/"]


def test_a_left_behind_probe_does_not_hold_up_the_process_exit(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import threading
        from prgen.config import HealthCheck
        from prgen.probe import ProbeResult, ProbeTarget, probe_all

        def forever(target):
            threading.Event().wait()
            return ProbeResult(True, "never")

        check = HealthCheck(url="http://x.invalid/", timeout=0.2)
        [result] = probe_all([ProbeTarget("http://x.invalid/", check)], 4, run=forever)
        print(result.reason)
        """
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "timed out after 0.2s"
    assert time.monotonic() - started < 15


# -- end to end: sync --probe reports the dripping environments as timed out --------------


HEALTH = """\
    healthCheck:
      url: '{url}/pr-<<PR_NUMBER>>/healthz'
      timeout: 1s
      deadline: 15m
{contains}"""


@pytest.mark.parametrize("contains", [False, True], ids=["plain", "contains"])
def test_sync_probe_reports_dripping_environments_as_timed_out_within_about_a_timeout(
    github: FakeGitHub,
    write_config: Callable[..., Path],
    envs: Environments,
    contains: bool,
) -> None:
    github.add_repo(REPO)
    line = "      contains: '<<PR_HEAD_SHORT_SHA>>'\n" if contains else ""
    config = write_config(SHOP + HEALTH.format(url=envs.url, contains=line))
    numbers = [github.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}") for n in range(6)]
    for number in numbers:
        envs.body[number] = LONG_BODY + github.pull(REPO, number).head_sha
    envs.behaviour[numbers[0]] = "drip"
    envs.behaviour[numbers[1]] = "drip-body"
    started = time.monotonic()
    result = CliRunner().invoke(main, ["sync", "--probe", "-c", str(config), "--output", "json"])
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.output
    by_number = {e["pullRequest"]: e for e in json.loads(result.stdout)["probe"]["environments"]}
    assert by_number[numbers[0]]["reason"] == "timed out after 1s"
    assert by_number[numbers[0]]["state"] == "pending"
    # The body is read only to look for `contains`; without it the headers say 200 at once.
    assert by_number[numbers[1]]["reason"] == ("timed out after 1s" if contains else "HTTP 200")
    assert {by_number[n]["reason"] for n in numbers[2:]} == {"HTTP 200"}
    assert elapsed < 15, elapsed  # sync, probes and reports; a dripper alone would take 40 s


# -- through a proxy from the environment, as before -------------------------------------


class _Proxy(BaseHTTPRequestHandler):
    """A forward proxy that answers itself: 200, or the same answer dripped for /drip."""

    seen: ClassVar[list[str]] = []
    hung_up = threading.Event()  # the prober closed a dripping connection

    def do_GET(self) -> None:
        _Proxy.seen.append(self.path)
        answer = b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nvia proxy"
        if not self.path.endswith("/drip"):
            self.wfile.write(answer)
            return
        for index in range(len(answer)):
            time.sleep(0.4)
            try:
                self.wfile.write(answer[index : index + 1])
            except OSError:
                _Proxy.hung_up.set()
                return

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_proxy_from_the_environment_is_used_and_a_dripping_one_costs_one_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Proxy)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_address[1]}")
        for name in ("NO_PROXY", "no_proxy", "http_proxy"):
            monkeypatch.delenv(name, raising=False)
        check = HealthCheck(url="http://preview.invalid/healthz", timeout=TIMEOUT)
        targets = [
            ProbeTarget("http://preview.invalid/healthz", check, "via proxy"),
            ProbeTarget("http://preview.invalid/drip", check),
        ]
        results, elapsed = timed(lambda: probe_all(targets, concurrency=2))
        assert [r.reason for r in results] == ["HTTP 200", "timed out after 1s"]
        assert sorted(_Proxy.seen) == [
            "http://preview.invalid/drip",
            "http://preview.invalid/healthz",
        ]
        assert elapsed < TIMEOUT + GRACE + 1.0, elapsed
        # Not merely left behind: the watchdog shut the connection through the proxy too.
        assert _Proxy.hung_up.wait(3)
    finally:
        server.shutdown()
        server.server_close()
