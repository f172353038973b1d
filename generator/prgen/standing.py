"""Where an open PR stands: its reviews and checks against its base branch's rules. Pure.

`prgen status` shows it for every open PR; a deploy gate (`deployWhen`) asks it whether a
PR's head may be deployed. The facts come from GitHub (`prgen.github.checks` reads them);
what they mean is decided here, with plain data.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# prgen's own commit status and check run: never a check of its own gate.
OWN_CHECK = "prgen/preview"


class State(StrEnum):
    REVIEWER_PENDING = "REVIEWER_PENDING"
    REVIEW_IN_PROGRESS = "REVIEW_IN_PROGRESS"
    STATUS_CHECK_PENDING = "STATUS_CHECK_PENDING"
    FAILING = "FAILING"
    MERGE_PENDING = "MERGE_PENDING"


class Outcome(StrEnum):
    PASSED = "passed"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True)
class Protection:
    """The rules of a base branch, as far as reviews and checks go."""

    protected: bool
    required_approvals: int = 0  # 0: no required reviews
    required_checks: tuple[str, ...] = ()  # names of required status checks / check runs
    # False when the credentials may not read it (403): treated as unprotected.
    readable: bool = True


UNPROTECTED = Protection(protected=False)


@dataclass(frozen=True)
class Review:
    user: str
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED, PENDING
    commit_id: str | None = None


@dataclass(frozen=True)
class Check:
    """One check on a head: a commit status context or a check run, by its latest run."""

    name: str
    outcome: Outcome
    kind: str = "status"  # "status" or "check_run"


@dataclass(frozen=True)
class HeadFacts:
    """What GitHub says about one PR at one head: reviews, requested reviewers, checks."""

    head_sha: str
    reviews: tuple[Review, ...] = ()
    requested_reviewers: int = 0  # users and teams asked for a review and not yet answered
    checks: tuple[Check, ...] = ()
