"""Which open pull requests get an environment. Pure; regexes compiled once in config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prgen.config import NamePattern, RepositorySettings
from prgen.model import PullRequest


@dataclass(frozen=True)
class Skipped:
    repository: str
    number: int
    reason: str


# Author associations GitHub gives people with write access (or org membership).
TRUSTED_ASSOCIATIONS = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})


def _untrusted_fork(repo: RepositorySettings, pr: PullRequest) -> str | None:
    if repo.forks is True:
        return None
    if repo.forks != "trusted":
        return "opened from a fork (forks: false)"
    if pr.author_association in TRUSTED_ASSOCIATIONS:
        return None
    if repo.trusted_fork_labels & set(pr.labels):
        return None
    wanted = ", ".join(sorted(repo.trusted_fork_labels)) or "none configured"
    return (
        f"opened from a fork by {pr.author_association.lower()} (forks: trusted needs an owner, "
        f"member or collaborator, or a label: {wanted})"
    )


def _reason_to_skip(repo: RepositorySettings, pr: PullRequest) -> str | None:
    if pr.is_fork:
        reason = _untrusted_fork(repo, pr)
        if reason:
            return reason
    if pr.draft and not repo.drafts:
        return "draft (drafts: false)"
    missing = sorted(repo.labels - set(pr.labels))
    if missing:
        return "missing label " + ", ".join(missing)
    excluded = sorted(repo.exclude_labels & set(pr.labels))
    if excluded:
        return "has excluded label " + ", ".join(excluded)
    if repo.branches is not None and not repo.branches.search(pr.head_branch):
        return f"head branch does not match {repo.branches.pattern!r}"
    if repo.target_branches is not None and not repo.target_branches.search(pr.base_branch):
        return f"base branch does not match {repo.target_branches.pattern!r}"
    if repo.titles is not None or repo.exclude_titles is not None:
        reason = _title_reason(repo, pr)
        if reason:
            return reason
    if repo.authors or repo.exclude_authors:
        return _author_reason(repo, pr)
    return None


# Reasons name the config's entry and never carry a title: a title may hold anything. A
# login is GitHub's, and repr keeps even an odd one on its line.
def _title_reason(repo: RepositorySettings, pr: PullRequest) -> str | None:
    if repo.titles is not None and not repo.titles.search(pr.title):
        return f"title does not match titles {repo.titles.pattern!r}"
    if repo.exclude_titles is not None and repo.exclude_titles.search(pr.title):
        return f"title matches excludeTitles {repo.exclude_titles.pattern!r}"
    return None


def _first_match(names: Sequence[NamePattern], login: str) -> NamePattern | None:
    return next((name for name in names if name.matches(login)), None)


def _author_reason(repo: RepositorySettings, pr: PullRequest) -> str | None:
    if repo.authors and _first_match(repo.authors, pr.author) is None:
        return f"author {pr.author!r} is not in authors"
    excluded = _first_match(repo.exclude_authors, pr.author)
    if excluded is not None:
        return f"author {pr.author!r} matches excludeAuthors {excluded.written!r}"
    return None


def select(
    repo: RepositorySettings, pulls: Sequence[PullRequest]
) -> tuple[list[PullRequest], list[Skipped]]:
    """The eligible PRs, newest first and at most maxEnvironments, and why the rest were left out."""
    eligible: list[PullRequest] = []
    skipped: list[Skipped] = []
    for pr in sorted(pulls, key=lambda p: p.number, reverse=True):
        reason = _reason_to_skip(repo, pr)
        limit = repo.max_environments
        if reason is None and limit is not None and len(eligible) >= limit:
            reason = f"over the limit of {limit} environments (newest first)"
        if reason is None:
            eligible.append(pr)
        else:
            skipped.append(Skipped(repo.name, pr.number, reason))
    return eligible, skipped
