"""`prgen probe`: probe every environment in the fleet and report to GitHub.

Inputs are what sync already has (the fleet and the listings), so
`prgen sync --probe` costs no second listing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from github import Github

from prgen.config import Config, RepositorySettings
from prgen.errors import ExitCode
from prgen.fleet import FleetRepo, RemovedEnvironment
from prgen.inventory import CurrentEnvironment, Inventory, read_inventory
from prgen.model import Listing, PullRequest
from prgen.placeholders import Substitution, pull_request_values
from prgen.probe import ProbeResult, ProbeTarget, probe, probe_all
from prgen.report import GitHubReporter, Health, Observation, ReportOutcome, desired_report
from prgen.source import GitHubSource

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvironmentFeedback:
    observation: Observation
    health_url: str | None
    outcome: ReportOutcome


@dataclass
class ProbeRunResult:
    environments: list[EnvironmentFeedback] = field(default_factory=list)
    failed_repositories: dict[str, str] = field(default_factory=dict)

    @property
    def unreported(self) -> list[EnvironmentFeedback]:
        return [e for e in self.environments if e.outcome.error]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PARTIAL if self.failed_repositories or self.unreported else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "exitCode": int(self.exit_code),
            "failedRepositories": self.failed_repositories,
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
                }
                for e in self.environments
            ],
        }


def origin(url: str) -> str:
    """scheme://host[:port] of a URL: the default environment URL, without any user:password@."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # the userinfo must never reach GitHub
    return f"{parts.scheme}://{host}"


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
    ) -> None:
        self.config = config
        self.client = client
        self.fleet = fleet
        self._now = now
        self._run_probe = run_probe
        self.reporter = reporter or GitHubReporter(client)

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
            subst = Substitution(pull_request_values(pr, env.folder))
            check = repo.health_check
            url = subst.text(check.url)
            target = ProbeTarget(url, check, subst.text(check.contains) if check.contains else None)
            environment_url = (
                subst.text(repo.environment_url) if repo.environment_url else origin(url)
            )
            since = self.fleet.carried_since(env.folder, pr.head_sha)
            live.append(_Live(env, repo, pr, target, environment_url, since))
        return live

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
    ) -> ProbeRunResult:
        result = ProbeRunResult()
        by_name = {listing.repository.lower(): listing for listing in listings}
        live = self._live_environments(inventory, by_name, result)
        probed = probe_all(
            [item.target for item in live], self.config.probe.concurrency, self._run_probe
        )
        for item, answer in zip(live, probed, strict=True):
            observation = self._judge(item, answer)
            values = pull_request_values(item.pr, item.env.folder)
            wanted = desired_report(
                item.repo.report, observation, self._deployment_environment(item.repo, values)
            )
            outcome = self.reporter.report(observation, wanted)
            result.environments.append(EnvironmentFeedback(observation, item.target.url, outcome))
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
            outcome = self.reporter.report(observation, wanted)
            result.environments.append(EnvironmentFeedback(observation, None, outcome))
        return result

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
    with fleet.locked():
        snapshot = fleet.refresh()
        removed = fleet.recently_removed(config.probe.closed_lookback)
        inventory = read_inventory(snapshot.files)
        if listings is None:
            source = GitHubSource.for_settings(client, config.github)
            listings = [
                source.list_open(
                    repo.name,
                    [
                        e.number
                        for e in inventory.environments
                        if e.repository.lower() == repo.name.lower()
                    ],
                )
                for repo in config.repositories
            ]
        return Prober(config, client, fleet).run(inventory, listings, removed)
