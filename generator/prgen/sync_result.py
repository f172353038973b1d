"""What a sync did: its result (text and JSON), its commit message and its diff."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prgen.config import Target
from prgen.errors import ExitCode
from prgen.filters import Skipped
from prgen.fleet import Snapshot
from prgen.model import Listing, PullRequest
from prgen.plan import Action, Change, Conflict, ConflictKind, Plan
from prgen.pr_commands import (
    Settled,
)
from prgen.repo_config import RepoConfigOutcome
from prgen.targets import target_label

PullKey = tuple[str, int]  # (repository in lower case, PR number)


@dataclass(frozen=True)
class RepositoryOutcome:
    name: str
    complete: bool
    error: str | None
    open_pull_requests: int
    eligible: int
    config_identity: str = ""  # recorded in each HelmRelease (prgen.io/config)


@dataclass(frozen=True)
class Waiting:
    """A PR whose head its deploy gate keeps from being deployed (held, or not created)."""

    repository: str
    number: int
    head_sha: str
    reason: str


@dataclass
class SyncResult:
    fleet_url: str
    fleet_path: str
    repositories: list[RepositoryOutcome]
    plan: Plan
    skipped: list[Skipped]
    commit: str | None = None
    dry_run: bool = False
    diff: str = ""
    attempts: int = 1
    warnings: list[str] = field(default_factory=list)
    listings: list[Listing] = field(default_factory=list)  # for a probe in the same run
    held_deletions: str | None = None  # why the mass-deletion guard kept environments
    unread_gates: int = 0  # gated PRs whose checks could not be read (held or not created)
    # Gated PRs whose head waits, for the report on that head (not those whose checks could
    # not be read: that is no answer to show on the PR).
    waiting: list[Waiting] = field(default_factory=list)
    commands: list[Settled] = field(default_factory=list)  # answered after the commit
    unread_commands: int = 0  # repositories whose new commands could not be read
    # What each repository's own config file did, and the open PRs of each whose file
    # failed (each is told so on its head: see repo_config_status).
    repo_configs: list[RepoConfigOutcome] = field(default_factory=list)
    repo_config_pulls: dict[str, tuple[PullRequest, ...]] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)  # `targets:`: name -> folder

    def folder_of(self, change: Change) -> str:
        """Where a change is in the fleet repository: its target's folder, and its own."""
        return f"{self.targets.get(change.target, self.fleet_path)}/{change.folder}"

    @property
    def failed_repositories(self) -> list[RepositoryOutcome]:
        return [repo for repo in self.repositories if not repo.complete]

    @property
    def written_by_another_config(self) -> list[Conflict]:
        return [c for c in self.plan.conflicts if c.kind is ConflictKind.OTHER_CONFIG]

    @property
    def exit_code(self) -> ExitCode:
        undone = (
            self.failed_repositories
            or self.held_deletions
            or self.written_by_another_config
            or self.unread_gates
            or self.unread_commands
        )
        return ExitCode.PARTIAL if undone else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "fleet": {
                "url": self.fleet_url,
                "path": self.fleet_path,
                **(
                    {"targets": [{"name": n, "path": p} for n, p in self.targets.items()]}
                    if self.targets
                    else {}
                ),
            },
            "dryRun": self.dry_run,
            "commit": self.commit,
            "attempts": self.attempts,
            "exitCode": int(self.exit_code),
            "repositories": [
                {
                    "name": r.name,
                    "synced": r.complete,
                    "error": r.error,
                    "openPullRequests": r.open_pull_requests,
                    "eligible": r.eligible,
                    "config": r.config_identity,
                }
                for r in self.repositories
            ],
            "changes": [
                {
                    "action": str(c.action),
                    "repository": c.repository,
                    "pullRequest": c.number,
                    "folder": self.folder_of(c),
                    "headSha": c.head_sha,
                    "reason": c.reason,
                    **({"target": c.target} if self.targets else {}),
                }
                for c in self.plan.changes
            ],
            "conflicts": [
                {
                    "repository": c.repository,
                    "pullRequest": c.number,
                    "kind": str(c.kind),
                    "reason": c.reason,
                    **({"target": c.target} if self.targets else {}),
                }
                for c in self.plan.conflicts
            ],
            "skipped": [
                {"repository": s.repository, "pullRequest": s.number, "reason": s.reason}
                for s in self.skipped
            ],
            "commands": [
                {
                    "repository": c.comment.repository,
                    "pullRequest": c.comment.number,
                    "comment": c.comment.comment_id,
                    "author": c.comment.author,
                    "command": str(c.comment.command.verb),
                    "outcome": str(c.outcome.ack),
                    "changed": c.outcome.changed,
                }
                for c in self.commands
            ],
            "repositoryConfigs": [
                {
                    "repository": o.repository,
                    "path": o.path,
                    "state": o.state,
                    "problem": o.problem,
                }
                for o in self.repo_configs
            ],
            "warnings": self.warnings,
            "heldDeletions": self.held_deletions,
            **({"diff": self.diff} if self.dry_run else {}),
        }


# A commit message lists at most this many changes: readable in `git log` at any size.
MESSAGE_CHANGES = 200


def commit_message(plan: Plan, commands: Sequence[str] = ()) -> str:
    created, updated, deleted = (plan.of(a) for a in (Action.CREATE, Action.UPDATE, Action.DELETE))
    counts = [f"{len(created)} created", f"{len(updated)} updated", f"{len(deleted)} removed"]
    lines = [f"prgen: {', '.join(counts)}", ""]
    changes = _change_lines(created, updated, deleted)
    lines.extend(changes[:MESSAGE_CHANGES])
    if len(changes) > MESSAGE_CHANGES:
        lines.append(f"... and {len(changes) - MESSAGE_CHANGES} more")
    lines.extend(list(commands)[:MESSAGE_CHANGES])
    if not (created or updated or deleted or commands):
        lines.append("refreshed the environment index")
    return "\n".join(lines) + "\n"


def _change_lines(created: list[Change], updated: list[Change], deleted: list[Change]) -> list[str]:
    lines = []
    for change in created:
        where = change.folder + target_label(change.target)
        lines.append(f"created {change.repository}#{change.number} in {where} at {change.head_sha}")
    for change in updated:
        where = change.folder + target_label(change.target)
        lines.append(
            f"updated {change.repository}#{change.number} in {where} at {change.head_sha}: "
            f"{change.reason}"
        )
    for change in deleted:
        where = change.folder + target_label(change.target)
        lines.append(f"removed {change.repository}#{change.number} from {where}: {change.reason}")
    return lines


def unified_diff(fleet_path: str, snapshot: Snapshot, plan: Plan) -> str:
    chunks: list[str] = []
    for relative, content in sorted(plan.writes.items()):
        path = f"{fleet_path}/{relative}"
        before = snapshot.files.get(relative)
        chunks.extend(
            difflib.unified_diff(
                (before or b"").decode("utf-8", "replace").splitlines(keepends=True),
                (content or b"").decode("utf-8", "replace").splitlines(keepends=True),
                fromfile=f"a/{path}" if before is not None else "/dev/null",
                tofile=f"b/{path}" if content is not None else "/dev/null",
            )
        )
    return "".join(chunks)


def combined_results(
    targets: Sequence[Target], plans: Mapping[str, Plan], results: Sequence[SyncResult]
) -> tuple[Plan, SyncResult]:
    """The plans and results of several targets as one: changes and conflicts in target
    order, writes by their path in the fleet repository, each repository and PR once."""
    plan = Plan(
        changes=tuple(c for p in plans.values() for c in p.changes),
        conflicts=tuple(c for p in plans.values() for c in p.conflicts),
        writes={
            f"{path}/{relative}": content
            for path, p in plans.items()
            for relative, content in p.writes.items()
        },
        rendered=tuple(env for p in plans.values() for env in p.rendered),
    )
    first = results[0]
    outcomes: dict[str, RepositoryOutcome] = {}
    for result in results:
        for outcome in result.repositories:
            outcomes.setdefault(outcome.name.lower(), outcome)
    skipped = {(s.repository.lower(), s.number, s.reason): s for r in results for s in r.skipped}
    waiting = {(w.repository.lower(), w.number): w for r in results for w in r.waiting}
    held = [r.held_deletions for r in results if r.held_deletions]
    combined = SyncResult(
        first.fleet_url,
        first.fleet_path,
        list(outcomes.values()),
        plan,
        list(skipped.values()),
        listings=first.listings,
        waiting=list(waiting.values()),
        held_deletions="; ".join(held) or None,
        targets={target.name: target.path for target in targets},
    )
    combined.warnings = list(dict.fromkeys(w for r in results for w in r.warnings))
    return plan, combined
