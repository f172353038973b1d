"""`prgen status`: where every open PR stands, as one JSON document; the table is a view of it.

Pure: the command (commands/status.py) reads GitHub and the fleet, and hands the facts here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prgen.model import PullRequest
from prgen.standing import Protection, Standing

UNREADABLE_PROTECTION = (
    "branch protection of {branches} is unreadable with these credentials (403): "
    "treated as unprotected"
)


@dataclass(frozen=True)
class EnvironmentView:
    """A PR's environment as the fleet holds it, and prgen's last report of its health."""

    name: str
    deployed_head: str | None
    health: str | None  # prgen/preview's state on the deployed head; None: never reported
    paused_at: str | None = None  # the head `/preview pause` keeps it at; None: not paused
    sleeping: bool = False  # asleep (see lifecycle.py): values carry prgen.sleeping
    target: str = ""  # with `targets:`, the target (cluster) it is in


@dataclass(frozen=True)
class PullView:
    pull: PullRequest
    standing: Standing | None  # None: its facts could not be read (the repository's error)
    environment: EnvironmentView | None
    skipped: str | None  # why it has no environment (None when it has one)
    # With `targets:`, its environment in each target that holds one (`environment` is the
    # first of them).
    environments: tuple[EnvironmentView, ...] = ()


def pull_document(view: PullView) -> dict[str, Any]:
    pr, standing = view.pull, view.standing
    document: dict[str, Any] = {
        "number": pr.number,
        "title": pr.title,
        "author": pr.author,
        "head": pr.head_sha,
        "base": pr.base_branch,
        "state": None if standing is None else standing.state.value,
        "approvals": None if standing is None else standing.approvals,
        "approvalsRequired": None if standing is None else standing.approvals_required,
        "checks": None
        if standing is None
        else {
            "passed": list(standing.passed),
            "pending": list(standing.pending),
            "failed": list(standing.failed),
        },
        "environment": None
        if view.environment is None
        else {
            "name": view.environment.name,
            "deployedHead": view.environment.deployed_head,
            "health": view.environment.health,
        },
    }
    if view.environment is None:
        document["skipped"] = view.skipped or "no environment yet"
    else:  # only when so: the shape is otherwise unchanged
        if view.environment.paused_at is not None:
            document["environment"]["pausedAt"] = view.environment.paused_at
        if view.environment.sleeping:
            document["environment"]["sleeping"] = True
    if view.environments:
        document["environments"] = [
            {
                "target": each.target,
                "name": each.name,
                "deployedHead": each.deployed_head,
                "health": each.health,
                **({"pausedAt": each.paused_at} if each.paused_at else {}),
            }
            for each in view.environments
        ]
    return document


def repository_document(
    name: str,
    protections: Mapping[str, Protection],
    views: Sequence[PullView],
    error: str | None,
) -> dict[str, Any]:
    """One repository: `protections` by base branch of its open PRs.

    `protected`: every base branch its open PRs target is protected (none: false);
    an unreadable protection is said once, in `note`.
    """
    unreadable = sorted(branch for branch, p in protections.items() if not p.readable)
    document: dict[str, Any] = {
        "name": name,
        "protected": bool(protections) and all(p.protected for p in protections.values()),
        "protectedBranches": sorted(b for b, p in protections.items() if p.protected),
        "error": error,
        "pullRequests": [pull_document(view) for view in views],
    }
    if unreadable:
        document["note"] = UNREADABLE_PROTECTION.format(branches=", ".join(unreadable))
    return document


def table(document: Mapping[str, Any]) -> str:
    """The status as a table, one PR a row, a repository's error or note as its own line."""
    header = ("PR", "STATE", "REVIEWS", "CHECKS", "PREVIEW", "HEALTH")
    rows: list[tuple[str, ...]] = []
    lines: list[str] = []
    for repository in document["repositories"]:
        if repository["error"]:
            lines.append(f"{repository['name']}: error: {repository['error']}")
        if repository.get("note"):
            lines.append(f"{repository['name']}: {repository['note']}")
        for pr in repository["pullRequests"]:
            rows.append(_row(repository["name"], pr))
    if not rows:
        return "\n".join([*lines, "no open pull requests"])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    out = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join([*lines, *out])


def _row(repository: str, pr: Mapping[str, Any]) -> tuple[str, ...]:
    checks = pr["checks"]
    if checks is None:
        summary = "-"
    else:
        parts = [f"{len(checks['passed'])} passed"]
        if checks["pending"]:
            parts.append("pending: " + ", ".join(checks["pending"]))
        if checks["failed"]:
            parts.append("failed: " + ", ".join(checks["failed"]))
        summary = "; ".join(parts)
    reviews = "-" if pr["approvals"] is None else f"{pr['approvals']}/{pr['approvalsRequired']}"
    environment = pr["environment"]
    if environment is None:
        preview, health = f"none ({pr['skipped']})", "-"
    else:
        deployed = (environment["deployedHead"] or "")[:7]
        behind = "" if environment["deployedHead"] == pr["head"] else " (older head)"
        behind += " (paused)" if environment.get("pausedAt") else ""
        behind += " (asleep)" if environment.get("sleeping") else ""
        preview = f"{environment['name']} @ {deployed}{behind}"
        if pr.get("environments"):
            preview = ", ".join(
                f"{each['target']}/{each['name']} @ {(each['deployedHead'] or '')[:7]}"
                for each in pr["environments"]
            )
        health = environment["health"] or "not reported"
    return (
        f"{repository}#{pr['number']}",
        pr["state"] or "unknown",
        reviews,
        summary,
        preview,
        health,
    )
