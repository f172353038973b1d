"""The probe round at scale (issue 11): reports on a bounded pool of workers, one client each,
probes on threads that serve probe after probe, the fleet's history read only when needed.

Real PyGithub against the fake GitHub on 127.0.0.1, environments as real HTTP servers, a bare
fleet repository. Counts, never timings: requests in flight, writes, threads, git reads.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import pytest
from github import Github

from prgen.config import Config, HealthCheck, load_config, parse_config
from prgen.feedback import REPORT_GRACE, Prober, ProbeRunResult
from prgen.fleet import FleetRepo
from prgen.github.channels import GitHubReporter, ReportRun
from prgen.github.client import make_client
from prgen.github.pulls import GitHubSource
from prgen.inventory import read_inventory
from prgen.probe import ProbeResult, ProbeTarget, probe, probe_each
from prgen.report import NOT_IN_TIME, Health, Observation, desired_report
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub
from prgen.testing.fake_github.faults import RecordedRequest

from conftest import HEALTH, SHOP, run, writes

REPO = "acme/shop"
COMMENTS = r"/repos/acme/shop/issues/\d+/comments"


class InFlight:
    """Counts the requests the fake GitHub is answering at once (each held `hold` seconds)."""

    def __init__(self, hold: float) -> None:
        self._hold = hold
        self._lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __call__(self, _: RecordedRequest) -> None:
        with self._lock:
            self.now += 1
            self.most = max(self.most, self.now)
        try:
            time.sleep(self._hold)
        finally:
            with self._lock:
                self.now -= 1


class CountingFleet(FleetRepo):
    """A fleet that notes each question about its history (the questions go to git as ever)."""

    asked: list[str]

    def carried_since(self, folder: str, head_sha: str) -> datetime | None:
        self.asked.append(folder)
        return super().carried_since(folder, head_sha)


@dataclass
class Setup:
    config: Config
    fleet: CountingFleet
    numbers: list[int]

    def factory(self) -> Callable[[], Github]:
        return lambda: make_client(self.config.github)

    def round(self, github_client: Github | None = None, **options: object) -> ProbeRunResult:
        client = github_client or make_client(self.config.github)
        snapshot = self.fleet.refresh()
        listings = [GitHubSource(client).list_open(REPO)]
        prober = Prober(
            self.config,
            client,
            self.fleet,
            reporter=GitHubReporter(client, sleep=lambda _: None),
            **options,  # type: ignore[arg-type]
        )
        return prober.run(read_inventory(snapshot.files), listings)


@pytest.fixture
def synced(github: FakeGitHub, write_config: Callable[..., Path], envs: Environments) -> Setup:
    github.add_repo(REPO)
    path = write_config(SHOP + HEALTH.format(url=envs.url))
    numbers = [github.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}") for n in range(12)]
    assert run("sync", "-c", str(path)).exit_code == 0
    config = load_config(path)
    fleet = CountingFleet(config.fleet, Path(str(path) + ".work"))
    fleet.asked = []
    return Setup(config, fleet, numbers)


def test_reports_run_concurrently_and_never_more_than_the_bound_at_once(
    github: FakeGitHub, synced: Setup
) -> None:
    in_flight = InFlight(hold=0.05)
    github.on_request(in_flight)
    result = synced.round(client_factory=synced.factory(), report_concurrency=3)
    assert [e.outcome.error for e in result.environments] == [None] * len(synced.numbers)
    assert 1 < in_flight.most <= 3, in_flight.most


def test_without_a_client_factory_reports_run_one_at_a_time_on_the_one_client(
    github: FakeGitHub, synced: Setup
) -> None:
    in_flight = InFlight(hold=0.02)
    github.on_request(in_flight)
    result = synced.round(report_concurrency=8)
    assert len(result.environments) == len(synced.numbers)
    assert in_flight.most == 1


def test_a_request_interval_keeps_the_reports_serial(github: FakeGitHub, synced: Setup) -> None:
    config = replace(synced.config, github=replace(synced.config.github, request_interval=0.01))
    in_flight = InFlight(hold=0.02)
    github.on_request(in_flight)
    result = Setup(config, synced.fleet, synced.numbers).round(
        client_factory=synced.factory(), report_concurrency=8
    )
    assert len(result.environments) == len(synced.numbers)
    assert in_flight.most == 1


def test_every_environment_gets_exactly_its_writes_and_the_login_is_asked_once(
    github: FakeGitHub, synced: Setup
) -> None:
    github.clear_requests()
    result = synced.round(client_factory=synced.factory(), report_concurrency=4)
    assert result.exit_code == 0 and not result.late
    assert {e.observation.number for e in result.environments} == set(synced.numbers)
    # A status, a deployment and its status, a comment: each environment's own, once.
    assert [e.outcome.writes for e in result.environments] == [4] * len(synced.numbers)
    assert writes(github) == 4 * len(synced.numbers)
    for number in synced.numbers:
        sha = github.pull(REPO, number).head_sha
        [comment] = github.comments(REPO, number)
        assert f"pr-{number}/" in comment.body
        [status] = [s for s in github.statuses(REPO, sha) if s.context == "prgen/preview"]
        assert status.state == "success"
        [deployment] = [d for d in github.deployments(REPO) if d.sha == sha]
        assert deployment.environment == f"pr-{number}"
    # Four workers, four clients: who prgen is was asked once for all of them.
    assert github.count_requests("GET", "/user") == 1

    github.clear_requests()
    again = synced.round(client_factory=synced.factory(), report_concurrency=4)
    assert again.exit_code == 0 and writes(github) == 0
    assert github.count_requests("GET", COMMENTS) == len(synced.numbers)  # the marker alone


def test_a_hanging_github_call_leaves_the_round_on_time_and_the_others_reported(
    github: FakeGitHub, synced: Setup
) -> None:
    # One environment's comment read hangs far past the round; the client's own timeout is
    # longer than the round too, so only the round's budget can end it.
    github.inject("GET", COMMENTS, status=0, delay=30, times=1)
    budget = 3.0
    started = time.monotonic()
    client = make_client(synced.config.github)
    prober = Prober(
        synced.config,
        client,
        synced.fleet,
        reporter=GitHubReporter(client, sleep=lambda _: None),
        client_factory=synced.factory(),
        report_concurrency=4,
    )
    snapshot = synced.fleet.refresh()
    result = prober.run(
        read_inventory(snapshot.files),
        [GitHubSource(client).list_open(REPO)],
        until=started + budget,
    )
    assert time.monotonic() - started < budget + REPORT_GRACE + 1.0
    [late] = result.late
    assert late.reason == NOT_IN_TIME
    reported = {e.observation.number for e in result.environments}
    assert reported | {late.number} == set(synced.numbers) and late.number not in reported
    assert all(e.outcome.error is None for e in result.environments)


def test_the_fleet_history_is_read_only_for_environments_that_are_not_healthy(
    synced: Setup, envs: Environments
) -> None:
    sick = synced.numbers[2:5]
    for number in sick:
        envs.behaviour[number] = "unhealthy"
    result = synced.round(client_factory=synced.factory(), report_concurrency=4)
    states = {e.observation.number: e.observation.health for e in result.environments}
    assert {n for n, state in states.items() if state is Health.PENDING} == set(sick)
    assert sorted(synced.fleet.asked) == sorted(f"shop-pr-{n}" for n in sick)


def test_a_failing_history_read_is_that_environments_failure_only(
    synced: Setup, envs: Environments
) -> None:
    class BrokenHistory(CountingFleet):
        def carried_since(self, folder: str, head_sha: str) -> datetime | None:
            raise RuntimeError("history unreadable")

    broken = BrokenHistory(synced.config.fleet, synced.fleet.workdir)
    sick = synced.numbers[0]
    envs.behaviour[sick] = "unhealthy"
    result = Setup(synced.config, broken, synced.numbers).round(
        client_factory=synced.factory(), report_concurrency=4
    )
    [failed] = result.failed_environments
    assert failed.number == sick and "history unreadable" in failed.reason
    assert {e.observation.number for e in result.environments} == set(synced.numbers) - {sick}


def test_workers_share_the_run_so_an_unsettled_post_is_not_made_again_by_another(
    github: FakeGitHub,
) -> None:
    github.add_repo(REPO)
    number = github.open_pull(REPO, title="One", head_branch="one")
    github.inject("POST", COMMENTS, status=502, times=1)  # a 502: it may have been made
    settings = load_config_text(github)
    first = GitHubReporter(make_client(settings.github), sleep=lambda _: None, run=ReportRun())
    second = first.for_client(make_client(settings.github))
    observation = Observation(REPO, number, "a" * 40, "shop-pr-1", None, Health.PENDING, "x")
    wanted = desired_report(settings.repositories[0].report, observation, None)
    assert "comment" in (first.report(observation, wanted).error or "")
    outcome = second.report(observation, wanted)
    assert "not posted again" in (outcome.error or "")
    assert github.count_requests("POST", COMMENTS) == 1


def load_config_text(github: FakeGitHub) -> Config:
    return parse_config(
        f"github: {{apiUrl: '{github.base_url}', retries: 0, requestInterval: 0, writeInterval: 0}}\n"
        "fleet: {url: /nowhere, path: previews/dev}\n"
        "repositories:\n"
        "  - name: acme/shop\n"
        "    chart: {chart: shop, sourceRef: {kind: HelmRepository, name: c, namespace: f}}\n"
        "    healthCheck: {url: 'http://127.0.0.1:9/pr-<<PR_NUMBER>>'}\n"
        "    report: {commitStatus: false, deployment: false, comment: true}\n"
    )


def test_a_round_of_many_probes_uses_no_more_threads_than_its_bound(
    envs: Environments,
) -> None:
    names: set[str] = set()
    lock = threading.Lock()

    def noted(target: ProbeTarget) -> ProbeResult:
        with lock:
            names.add(threading.current_thread().name)
        return probe(target)

    check = HealthCheck(url="x", timeout=2)
    targets = [ProbeTarget(f"{envs.url}/pr-{n}/healthz", check) for n in range(60)]
    results = dict(probe_each(targets, 4, noted))
    assert sorted(results) == list(range(60))
    assert {r.reason for r in results.values() if r is not None} == {"HTTP 200"}
    assert 1 < len(names) <= 4, names


def test_a_left_behind_probe_gives_its_slot_and_thread_to_the_next() -> None:
    release = threading.Event()

    def stubborn_first(target: ProbeTarget) -> ProbeResult:
        if target.url.endswith("/0"):
            release.wait(10)  # ignores the watchdog
        return ProbeResult(True, "HTTP 200", 200)

    check = HealthCheck(url="x", timeout=0.2)
    targets = [ProbeTarget(f"http://x.invalid/{n}", check) for n in range(5)]
    try:
        results = dict(probe_each(targets, 1, stubborn_first))
    finally:
        release.set()
    assert results[0] == ProbeResult(False, "timed out after 0.2s")
    assert [results[n] for n in range(1, 5)] == [ProbeResult(True, "HTTP 200", 200)] * 4
