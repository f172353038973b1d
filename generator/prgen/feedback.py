"""`prgen probe`: probe every environment in the fleet and report to GitHub.

Inputs are what sync already has (the fleet and the listings), so
`prgen sync --probe` costs no second listing.

A round has a time budget (probe.roundTimeout): no probe and no GitHub call starts
after it, a back-off never outlasts it, and the reports run on a worker thread that the
round leaves behind a moment after its end if a call hangs. What was not reported by
then is said so and is picked up next round; the round starts at a different
environment each time, so a budget too small for all never leaves the same ones out.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from github import Github

from prgen.config import Config, RepositorySettings
from prgen.errors import ExitCode
from prgen.fleet import FleetRepo, RemovedEnvironment
from prgen.github.channels import GitHubReporter
from prgen.github.pulls import GitHubSource
from prgen.inventory import CurrentEnvironment, Inventory
from prgen.model import Listing, PullRequest
from prgen.placeholders import Substitution, pull_request_values
from prgen.probe import ProbeResult, ProbeTarget, probe, probe_all
from prgen.redact import redact
from prgen.report import (
    NOT_IN_TIME,
    DesiredReport,
    Health,
    Observation,
    ReportOutcome,
    desired_report,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvironmentFeedback:
    observation: Observation
    health_url: str | None
    outcome: ReportOutcome


@dataclass(frozen=True)
class Unfinished:
    """An environment the round could not probe or report (in time), and why."""

    repository: str
    number: int
    namespace: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "pullRequest": self.number,
            "namespace": self.namespace,
            "reason": self.reason,
        }


REPORT_GRACE = 1.0  # after the round's end, how long a GitHub call under way may take to end
NOT_PROBED_IN_TIME = (
    "not probed in time: the probe round's time ran out; the next round picks it up"
)


@dataclass
class ProbeRunResult:
    environments: list[EnvironmentFeedback] = field(default_factory=list)
    failed_repositories: dict[str, str] = field(default_factory=dict)
    failed_environments: list[Unfinished] = field(default_factory=list)
    late: list[Unfinished] = field(default_factory=list)  # neither probed nor reported in time

    @property
    def unreported(self) -> list[EnvironmentFeedback]:
        return [e for e in self.environments if e.outcome.error]

    @property
    def exit_code(self) -> ExitCode:
        incomplete = (
            self.failed_repositories or self.failed_environments or self.late or self.unreported
        )
        return ExitCode.PARTIAL if incomplete else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "exitCode": int(self.exit_code),
            "failedRepositories": self.failed_repositories,
            "failedEnvironments": [e.to_json() for e in self.failed_environments],
            "notReportedInTime": [
                *(e.to_json() for e in self.late),
                *(_late_json(e) for e in self.environments if e.outcome.late),
            ],
            "environments": [
                {
                    "repository": e.observation.repository,
                    "pullRequest": e.observation.number,
                    "headSha": e.observation.head_sha,
                    "namespace": e.observation.namespace,
                    "state": str(e.observation.health),
                    "reason": e.observation.reason,
                    "healthUrl": e.health_url,
                    "environmentUrl": e.observation.environment_url,
                    "writes": e.outcome.writes,
                    "reportError": e.outcome.error,
                    "reportedInTime": not e.outcome.late,
                }
                for e in self.environments
            ],
        }


def _late_json(feedback: EnvironmentFeedback) -> dict[str, Any]:
    o = feedback.observation
    return Unfinished(o.repository, o.number, o.namespace, feedback.outcome.error or "").to_json()


def _unexpected(exc: Exception) -> str:
    return redact(f"unexpected error: {type(exc).__name__}: {exc}")


def origin(url: str) -> str:
    """scheme://host[:port] of a URL: the default environment URL, without any user:password@."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # the userinfo must never reach GitHub
    return f"{parts.scheme}://{host}"


@dataclass(frozen=True)
class _Job:
    observation: Observation
    url: str | None  # the health URL probed
    wanted: DesiredReport


@dataclass(frozen=True)
class _Live:
    env: CurrentEnvironment
    repo: RepositorySettings
    pr: PullRequest
    target: ProbeTarget
    environment_url: str
    since: datetime | None


class Prober:
    def __init__(
        self,
        config: Config,
        client: Github,
        fleet: FleetRepo,
        *,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        run_probe: Callable[[ProbeTarget], ProbeResult] = probe,
        reporter: GitHubReporter | None = None,
        start_at: Callable[[int], int] = random.randrange,
    ) -> None:
        self.config = config
        self.client = client
        self.fleet = fleet
        self._now = now
        self._run_probe = run_probe
        self.reporter = reporter or GitHubReporter(client)
        self._start_at = start_at  # where in the list of n environments a round begins

    def _configured(self, name: str) -> RepositorySettings | None:
        return next((r for r in self.config.repositories if r.name.lower() == name.lower()), None)

    def _live_environments(
        self, inventory: Inventory, listings: Mapping[str, Listing], result: ProbeRunResult
    ) -> list[_Live]:
        live = []
        for env in inventory.environments:
            repo = self._configured(env.repository)
            if repo is None or repo.health_check is None:
                continue
            listing = listings.get(repo.name.lower())
            if listing is None or not listing.complete:
                result.failed_repositories[repo.name] = (
                    listing.error if listing else None
                ) or "not listed"
                continue
            pr = next((p for p in listing.pull_requests if p.number == env.number), None)
            if pr is None or pr.head_sha != env.head_sha:
                continue  # closed, or the fleet does not carry its head yet: the next sync will
            try:
                live.append(self._prepare(env, repo, pr))
            except Exception as exc:  # this environment's failure; the others are still probed
                result.failed_environments.append(
                    Unfinished(repo.name, env.number, env.folder, _unexpected(exc))
                )
        return live

    def _prepare(self, env: CurrentEnvironment, repo: RepositorySettings, pr: PullRequest) -> _Live:
        assert repo.health_check is not None
        subst = Substitution(pull_request_values(pr, env.folder))
        check = repo.health_check
        url = subst.text(check.url)
        target = ProbeTarget(url, check, subst.text(check.contains) if check.contains else None)
        environment_url = subst.text(repo.environment_url) if repo.environment_url else origin(url)
        since = self.fleet.carried_since(env.folder, pr.head_sha)
        return _Live(env, repo, pr, target, environment_url, since)

    def _judge(self, item: _Live, probed: ProbeResult) -> Observation:
        assert item.repo.health_check is not None
        if probed.healthy:
            health = Health.READY
        else:
            elapsed = (self._now() - item.since).total_seconds() if item.since else 0.0
            health = Health.FAILED if elapsed >= item.repo.health_check.deadline else Health.PENDING
        return Observation(
            item.repo.name,
            item.pr.number,
            item.pr.head_sha,
            item.env.folder,
            item.environment_url,
            health,
            probed.reason,
        )

    def _deployment_environment(
        self, repo: RepositorySettings, values: dict[str, str]
    ) -> str | None:
        template = repo.report.deployment_environment
        return Substitution(values).text(template) if template else None

    def run(
        self,
        inventory: Inventory,
        listings: Iterable[Listing],
        removed: Iterable[RemovedEnvironment] = (),
        *,
        until: float | None = None,
    ) -> ProbeRunResult:
        """One round; `until` (time.monotonic) is its end, by default probe.roundTimeout from now."""
        if until is None:
            until = time.monotonic() + self.config.probe.round_timeout
        result = ProbeRunResult()
        by_name = {listing.repository.lower(): listing for listing in listings}
        live = self._live_environments(inventory, by_name, result)
        order = self._rotation(len(live))
        probed = probe_all(
            [live[i].target for i in order],
            self.config.probe.concurrency,
            self._run_probe,
            until=until,
        )
        answers = dict(zip(order, probed, strict=True))
        jobs: list[_Job] = []
        for index, item in enumerate(live):
            answer = answers[index]
            if answer is None:
                result.late.append(
                    Unfinished(item.repo.name, item.pr.number, item.env.folder, NOT_PROBED_IN_TIME)
                )
                continue
            try:
                observation = self._judge(item, answer)
                values = pull_request_values(item.pr, item.env.folder)
                wanted = desired_report(
                    item.repo.report, observation, self._deployment_environment(item.repo, values)
                )
            except Exception as exc:
                result.failed_environments.append(
                    Unfinished(item.repo.name, item.pr.number, item.env.folder, _unexpected(exc))
                )
                continue
            jobs.append(_Job(observation, item.target.url, wanted))
        jobs += self._removals(inventory, removed)
        outcomes = self._report_all(jobs, self._rotation(len(jobs)), until)
        for job, outcome in zip(jobs, outcomes, strict=True):
            if outcome is None:
                o = job.observation
                result.late.append(Unfinished(o.repository, o.number, o.namespace, NOT_IN_TIME))
            else:
                result.environments.append(EnvironmentFeedback(job.observation, job.url, outcome))
        return result

    def _rotation(self, count: int) -> list[int]:
        """0..count-1, from where this round begins: a round cut short leaves others out next."""
        start = self._start_at(count) if count else 0
        return [(start + offset) % count for offset in range(count)]

    def _removals(self, inventory: Inventory, removed: Iterable[RemovedEnvironment]) -> list[_Job]:
        jobs = []
        present = {env.key for env in inventory.environments}
        for gone in self._unique(removed):
            repo = self._configured(gone.repository)
            if (
                repo is None
                or repo.health_check is None
                or (gone.repository.lower(), gone.number) in present
            ):
                continue
            observation = Observation(
                repo.name,
                gone.number,
                gone.head_sha,
                gone.folder,
                None,
                Health.REMOVED,
                "pull request closed or no longer eligible",
            )
            values = {
                "PR_NUMBER": str(gone.number),
                "PR_HEAD_SHA": gone.head_sha or "",
                "PR_HEAD_SHORT_SHA": (gone.head_sha or "")[:7],
                "REPO_OWNER": repo.owner,
                "REPO_NAME": repo.short_name,
                "NAMESPACE": gone.folder,
            }
            wanted = desired_report(
                repo.report, observation, self._deployment_environment(repo, values)
            )
            jobs.append(_Job(observation, None, wanted))
        return jobs

    def _report_all(
        self, jobs: Sequence[_Job], order: Sequence[int], until: float
    ) -> list[ReportOutcome | None]:
        """Each job's outcome, None for those not reported by `until` (and `REPORT_GRACE`).

        On a worker thread, so that a GitHub call that hangs past the round's end (a slow
        read with the client's own retries, say) cannot hold the round: it is left behind,
        its environment counts as not reported, and the next round reads it afresh.
        """
        outcomes: list[ReportOutcome | None] = [None] * len(jobs)
        lock = threading.Lock()

        def work() -> None:
            for index in order:
                if time.monotonic() >= until:
                    return
                outcome = self._report(jobs[index].observation, jobs[index].wanted, until)
                with lock:
                    outcomes[index] = outcome

        worker = threading.Thread(target=work, name="prgen-report", daemon=True)
        worker.start()
        worker.join(max(0.0, until - time.monotonic()) + REPORT_GRACE)
        with lock:
            return list(outcomes)

    def _report(
        self, observation: Observation, wanted: DesiredReport, until: float
    ) -> ReportOutcome:
        try:
            return self.reporter.report(observation, wanted, until)
        except Exception as exc:  # this environment's report failed; the others' go on
            return ReportOutcome(error=_unexpected(exc))

    @staticmethod
    def _unique(removed: Iterable[RemovedEnvironment]) -> list[RemovedEnvironment]:
        seen: set[tuple[str, int]] = set()
        unique = []
        for gone in removed:  # newest first: the latest removal of each PR counts
            key = (gone.repository.lower(), gone.number)
            if key not in seen:
                seen.add(key)
                unique.append(gone)
        return unique


def probe_and_report(
    config: Config, client: Github, fleet: FleetRepo, listings: Sequence[Listing] | None = None
) -> ProbeRunResult:
    """Probe what the fleet holds now; list PRs first unless a sync just did."""
    until = time.monotonic() + config.probe.round_timeout  # the fetch and listing count too
    with fleet.locked():
        snapshot = fleet.refresh()
        removed = fleet.recently_removed(config.probe.closed_lookback)
        inventory = snapshot.inventory
        if listings is None:
            source = GitHubSource.for_settings(client, config.github)
            listings = [
                source.list_open(repo.name, inventory.numbers_of(repo.name))
                for repo in config.repositories
            ]
        return Prober(config, client, fleet).run(inventory, listings, removed, until=until)
