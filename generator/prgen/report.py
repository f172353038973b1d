"""What GitHub should show for an environment, and the writes that make it so.

`desired_report` is pure. `GitHubReporter` reads what GitHub shows now and
writes only what differs: GitHub keeps at most 1,000 statuses per SHA and
context, so re-posting every run would fill it within a day.

Writes go comment, deployment, commit status, in that order; the commit status
(or the last enabled channel) is written last and read first, so when it
already matches, the others are known to match too and one read suffices.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from github import Github, GithubException
from github.Deployment import Deployment
from github.GithubObject import NotSet
from github.Repository import Repository

from prgen.config import ReportSettings
from prgen.redact import redact
from prgen.source import describe_error

log = logging.getLogger(__name__)

COMMENT_MARKER = "<!-- prgen:preview -->"
DEPLOYMENT_TASK = "deploy:prgen-preview"
DESCRIPTION_LIMIT = 140  # GitHub's limit for status descriptions
_RETRYABLE = frozenset({403, 429, 500, 502, 503, 504})


class Health(StrEnum):
    PENDING = "pending"
    READY = "success"
    FAILED = "failure"
    REMOVED = "removed"


_DEPLOYMENT_STATE = {
    Health.PENDING: "in_progress",
    Health.READY: "success",
    Health.FAILED: "failure",
    Health.REMOVED: "inactive",
}
_HEADLINE = {
    Health.PENDING: "⏳ being deployed",
    Health.READY: "✅ ready",
    Health.FAILED: "❌ not healthy",
    Health.REMOVED: "🗑️ removed",
}


@dataclass(frozen=True)
class Observation:
    """One environment as prgen sees it from outside."""

    repository: str
    number: int
    head_sha: str | None
    namespace: str
    environment_url: str | None
    health: Health
    reason: str  # what the probe saw, or why the environment was removed


@dataclass(frozen=True)
class CommitStatusReport:
    context: str
    state: str
    description: str
    target_url: str | None


@dataclass(frozen=True)
class DeploymentReport:
    environment: str
    state: str
    environment_url: str | None
    description: str


@dataclass(frozen=True)
class DesiredReport:
    status: CommitStatusReport | None
    deployment: DeploymentReport | None
    comment: str | None


def _describe(observation: Observation) -> str:
    text = {
        Health.PENDING: "environment is being deployed",
        Health.READY: "environment is ready",
        Health.FAILED: f"environment is not healthy: {observation.reason}",
        Health.REMOVED: "environment was removed",
    }[observation.health]
    return text if len(text) <= DESCRIPTION_LIMIT else text[: DESCRIPTION_LIMIT - 1] + "…"


def comment_body(observation: Observation) -> str:
    """Deterministic: the same state gives the same text, so an unchanged comment is never edited."""
    lines = [COMMENT_MARKER, f"### Preview environment: {_HEADLINE[observation.health]}", ""]
    if observation.health is Health.REMOVED:
        lines.append(
            f"The environment `{observation.namespace}` was removed ({observation.reason})."
        )
    else:
        lines += [
            "| | |",
            "|---|---|",
            f"| URL | {observation.environment_url or '(none configured)'} |",
            f"| Commit | `{(observation.head_sha or '')[:7]}` |",
            f"| Namespace | `{observation.namespace}` |",
        ]
        if observation.health is Health.FAILED:
            lines.append(f"| Last check | {observation.reason} |")
    lines += ["", "<sub>Maintained by prgen; this comment is edited in place.</sub>"]
    return "\n".join(lines) + "\n"


def desired_report(
    settings: ReportSettings, observation: Observation, deployment_environment: str | None
) -> DesiredReport:
    description = _describe(observation)
    status = None
    if settings.commit_status_context and observation.health is not Health.REMOVED:
        status = CommitStatusReport(
            settings.commit_status_context,
            str(observation.health),
            description,
            observation.environment_url if observation.health is Health.READY else None,
        )
    deployment = None
    if deployment_environment:
        deployment = DeploymentReport(
            deployment_environment,
            _DEPLOYMENT_STATE[observation.health],
            observation.environment_url,
            description,
        )
    return DesiredReport(
        status, deployment, comment_body(observation) if settings.comment else None
    )


def _status_matches(current: Any, wanted: CommitStatusReport) -> bool:
    if current is None or current.state != wanted.state:
        return False
    if wanted.state == Health.FAILED:
        return True  # already failed: a different error text is not worth another status
    return bool(
        (current.description or "") == wanted.description
        and (current.target_url or None) == wanted.target_url
    )


@dataclass
class ReportOutcome:
    writes: int = 0
    error: str | None = None


class GitHubReporter:
    """Reads, compares and writes one environment's report; retries transient GitHub errors."""

    def __init__(
        self, client: Github, *, attempts: int = 3, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self._client = client
        self._attempts = attempts
        self._sleep = sleep

    def report(self, observation: Observation, wanted: DesiredReport) -> ReportOutcome:
        outcome = ReportOutcome()
        for attempt in range(1, self._attempts + 1):
            try:
                self._report_once(observation, wanted, outcome)
                outcome.error = None
                return outcome
            except GithubException as exc:
                outcome.error = redact(describe_error(exc))
                if exc.status not in _RETRYABLE or attempt == self._attempts:
                    break
            except Exception as exc:  # network errors: retried like 5xx
                outcome.error = redact(describe_error(exc))
                if attempt == self._attempts:
                    break
            log.info(
                "reporting %s#%d failed (%s); retrying",
                observation.repository,
                observation.number,
                outcome.error,
            )
            self._sleep(2.0 ** (attempt - 1))
        log.warning(
            "could not report %s#%d: %s", observation.repository, observation.number, outcome.error
        )
        return outcome

    def _report_once(
        self, observation: Observation, wanted: DesiredReport, outcome: ReportOutcome
    ) -> None:
        repo = self._client.get_repo(observation.repository)
        if self._already_reported(repo, observation, wanted):
            return
        if wanted.comment is not None:
            # A removal edits the comment prgen made; it never starts a conversation to say so.
            create = observation.health is not Health.REMOVED
            outcome.writes += self._ensure_comment(repo, observation.number, wanted.comment, create)
        if wanted.deployment is not None:
            outcome.writes += self._ensure_deployment(repo, observation, wanted.deployment)
        if wanted.status is not None and observation.head_sha:
            status = wanted.status
            repo.get_commit(observation.head_sha).create_status(
                status.state,
                target_url=status.target_url or NotSet,
                description=status.description,
                context=status.context,
            )
            outcome.writes += 1

    # -- reading what GitHub shows --

    def _already_reported(
        self, repo: Repository, observation: Observation, wanted: DesiredReport
    ) -> bool:
        if wanted.status is not None and observation.head_sha:
            combined = repo.get_commit(observation.head_sha).get_combined_status()
            current = next(
                (s for s in combined.statuses if s.context == wanted.status.context), None
            )
            return _status_matches(current, wanted.status)
        if wanted.deployment is not None:
            removed = observation.health is Health.REMOVED
            sha = None if removed else observation.head_sha
            deployments = self._our_deployments(repo, wanted.deployment.environment, sha)
            if removed:
                return all(self._latest_state(d)[0] == "inactive" for d in deployments)
            if not deployments:
                return False
            return self._latest_state(deployments[0]) == (
                wanted.deployment.state,
                wanted.deployment.environment_url or "",
            )
        if wanted.comment is not None:
            comment = self._find_comment(repo, observation.number)
            return comment is not None and comment.body == wanted.comment
        return True

    def _find_comment(self, repo: Repository, number: int) -> Any:
        for comment in repo.get_issue(number).get_comments():
            if (comment.body or "").startswith(COMMENT_MARKER):
                return comment
        return None

    def _our_deployments(
        self, repo: Repository, environment: str, sha: str | None
    ) -> list[Deployment]:
        found = repo.get_deployments(environment=environment, task=DEPLOYMENT_TASK)
        mine = [d for d in found if sha is None or d.sha == sha]
        return mine

    @staticmethod
    def _latest_state(deployment: Deployment) -> tuple[str, str]:
        for status in deployment.get_statuses():
            return status.state, status.environment_url or ""
        return "", ""

    # -- writing only what differs --

    def _ensure_comment(self, repo: Repository, number: int, body: str, create: bool) -> int:
        comment = self._find_comment(repo, number)
        if comment is None and not create:
            return 0
        if comment is None:
            repo.get_issue(number).create_comment(body)
            return 1
        if comment.body != body:
            comment.edit(body)
            return 1
        return 0

    def _ensure_deployment(
        self, repo: Repository, observation: Observation, wanted: DeploymentReport
    ) -> int:
        writes = 0
        every = list(repo.get_deployments(environment=wanted.environment, task=DEPLOYMENT_TASK))
        current = (
            [d for d in every if d.sha == observation.head_sha] if observation.head_sha else []
        )
        if observation.health is Health.REMOVED:
            stale = every
        else:
            stale = [d for d in every if d.sha != observation.head_sha]
            if not current:
                current = [
                    repo.create_deployment(
                        observation.head_sha or "",
                        task=DEPLOYMENT_TASK,
                        auto_merge=False,
                        required_contexts=[],  # prgen's own pending status must not block it
                        environment=wanted.environment,
                        description=f"preview of pull request #{observation.number}",
                        transient_environment=True,
                        production_environment=False,
                    )
                ]
                writes += 1
            deployment = current[0]
            if self._latest_state(deployment) != (wanted.state, wanted.environment_url or ""):
                deployment.create_status(
                    wanted.state,
                    description=wanted.description,
                    environment_url=wanted.environment_url or NotSet,
                    auto_inactive=False,
                )
                writes += 1
        for old in stale:  # an older head commit's deployment, or all of them once removed
            if self._latest_state(old)[0] != "inactive":
                old.create_status(
                    "inactive", description="superseded or removed", auto_inactive=False
                )
                writes += 1
        return writes
