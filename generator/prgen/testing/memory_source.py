"""An in-memory pull-request source: the sync driven at any size with no HTTP.

It implements `prgen.github.pulls.PullRequestSource` over plain dicts, for pure tests
and for the fleet benchmark. It counts what it was asked, so a test can assert how
often a run read GitHub, and a repository can be made to fail its listing.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from prgen.commands.validate import example_pull_request
from prgen.model import Listing, PullRequest


def make_pull_request(repository: str, number: int, **changes: Any) -> PullRequest:
    """A plain, eligible PR of `repository` (same-repository head, not a draft): validate's
    example PR, with a title, head and branch of its own for each number."""
    pr = example_pull_request(repository, number)
    mine = {
        "title": f"PR {number}",
        "head_sha": f"{number:040x}",
        "head_branch": f"feature/{number}",
    }
    return replace(pr, **{**mine, **changes})


@dataclass
class MemorySource:
    """Open PRs by lower-cased repository name; `failing` repositories fail their listing."""

    pulls: dict[str, dict[int, PullRequest]] = field(default_factory=dict)
    failing: set[str] = field(default_factory=set)
    listed: int = 0  # list_open calls
    confirmed: int = 0  # PRs read on their own through confirm

    def open(self, pr: PullRequest) -> PullRequest:
        """Open (or replace) `pr`."""
        self.pulls.setdefault(pr.repository.lower(), {})[pr.number] = pr
        return pr

    def open_many(self, prs: Iterable[PullRequest]) -> None:
        for pr in prs:
            self.open(pr)

    def get(self, repository: str, number: int) -> PullRequest:
        return self.pulls[repository.lower()][number]

    def update(self, repository: str, number: int, **changes: Any) -> PullRequest:
        """The PR with `changes` (a push: `head_sha=...`), replacing the old one."""
        return self.open(replace(self.get(repository, number), **changes))

    def close(self, repository: str, number: int) -> None:
        del self.pulls[repository.lower()][number]

    def list_all(
        self,
        repositories: Sequence[str],
        numbers_with_environment: Callable[[str], Collection[int]],
    ) -> list[Listing]:
        return [self.list_open(name, numbers_with_environment(name)) for name in repositories]

    def list_open(self, repository: str, must_confirm: Collection[int] = ()) -> Listing:
        self.listed += 1
        if repository.lower() in self.failing:
            return Listing(repository, (), error=f"listing {repository} failed (MemorySource)")
        found = self.pulls.get(repository.lower(), {})
        ordered = sorted(found.values(), key=lambda pr: pr.number, reverse=True)
        return Listing(repository, tuple(ordered))

    def confirm(self, listing: Listing, numbers: Collection[int]) -> Listing:
        if not numbers or not listing.complete:
            return listing
        self.confirmed += len(numbers)
        if listing.repository.lower() in self.failing:
            return Listing(listing.repository, (), error="confirming failed (MemorySource)")
        found = {pr.number: pr for pr in listing.pull_requests}
        current = self.pulls.get(listing.repository.lower(), {})
        for number in numbers:
            if number in current:
                found[number] = current[number]
            else:
                found.pop(number, None)
        ordered = sorted(found.values(), key=lambda pr: pr.number, reverse=True)
        return Listing(listing.repository, tuple(ordered))
