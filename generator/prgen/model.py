"""Plain typed data passed between the steps of a sync."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class PullRequest:
    """An open pull request, as far as filters and templates need it.

    Everything here comes from the list call: no extra API call per PR.
    Every string is untrusted input from whoever opened the PR.
    """

    repository: str  # "owner/name" of the base repository
    number: int
    title: str
    head_sha: str
    head_branch: str
    head_repository: str | None  # None when the fork was deleted
    base_branch: str
    author: str
    author_association: str
    labels: tuple[str, ...]
    draft: bool
    created_at: datetime
    updated_at: datetime
    html_url: str
    # As GitHub names it in the PR itself: after a rename or transfer it differs from the
    # configured name that `repository` carries (GitHub redirects the old one).
    base_repository: str | None = None
    # Users and teams asked for a review and not yet answered (requested_reviewers and
    # requested_teams): `prgen status` tells "no reviewer yet" from "review in progress" by it.
    requested_reviewers: int = 0

    @property
    def is_fork(self) -> bool:
        # A deleted fork has no head repository: still a fork.
        base = self.base_repository or self.repository
        return (self.head_repository or "").lower() != base.lower()


@dataclass(frozen=True)
class Listing:
    """The outcome of listing one repository's open pull requests.

    `complete` is True only when every page was read successfully; anything
    else means "unknown", and no environment of the repository may be removed.
    """

    repository: str
    pull_requests: tuple[PullRequest, ...]
    error: str | None = None

    @property
    def complete(self) -> bool:
        return self.error is None
