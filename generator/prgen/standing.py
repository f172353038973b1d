"""Where an open PR stands: its reviews and checks against its base branch's rules. Pure.

`prgen status` shows it for every open PR; a deploy gate (`deployWhen`) asks it whether a
PR's head may be deployed. The facts come from GitHub (`prgen.github.checks` reads them);
what they mean is decided here, with plain data.
"""

from __future__ import annotations

import re
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
class HeadQuery:
    """One PR head to read: what `read_heads` is given for each PR."""

    repository: str
    number: int
    head_sha: str
    requested_reviewers: int = 0  # from the listing (PullRequest.requested_reviewers)
    # The names prgen reports under on this repository (its commit status context, its check
    # run): never a check of its own gate, and what they say is its health report.
    own_checks: frozenset[str] = frozenset({OWN_CHECK})


@dataclass(frozen=True)
class HeadFacts:
    """What GitHub says about one PR at one head: reviews, requested reviewers, checks."""

    head_sha: str
    reviews: tuple[Review, ...] = ()
    requested_reviewers: int = 0  # users and teams asked for a review and not yet answered
    checks: tuple[Check, ...] = ()
    own: Outcome | None = None  # prgen's own last report on this head (its health), if any


@dataclass(frozen=True)
class Standing:
    """Where one PR stands at its head: the state, its approvals, its checks by outcome."""

    state: State
    approvals: int
    approvals_required: int
    passed: tuple[str, ...]
    pending: tuple[str, ...]
    failed: tuple[str, ...]


def approvals_of(reviews: tuple[Review, ...]) -> tuple[int, tuple[str, ...]]:
    """How many reviewers approve, and who requests changes: each reviewer by their latest
    deciding review (a comment decides nothing; a dismissal takes theirs back), as GitHub
    counts them."""
    latest: dict[str, str] = {}
    for review in reviews:  # oldest first, as GitHub lists them
        if review.state in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            latest[review.user.lower()] = review.state
    approving = sum(1 for state in latest.values() if state == "APPROVED")
    blocking = tuple(sorted(user for user, state in latest.items() if state == "CHANGES_REQUESTED"))
    return approving, blocking


def _own(name: str) -> bool:
    return name.lower() == OWN_CHECK


def check_outcomes(
    checks: tuple[Check, ...], required: tuple[str, ...] | None
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The (passed, pending, failed) names among `required` (None: every check reported).

    A required check not reported yet is pending. prgen's own check never counts.
    """
    reported = {check.name: check.outcome for check in checks if not _own(check.name)}
    names = sorted(reported) if required is None else sorted(set(required) - {OWN_CHECK})
    by_outcome: dict[Outcome, list[str]] = {outcome: [] for outcome in Outcome}
    for name in names:
        by_outcome[reported.get(name, Outcome.PENDING)].append(name)
    return (
        tuple(by_outcome[Outcome.PASSED]),
        tuple(by_outcome[Outcome.PENDING]),
        tuple(by_outcome[Outcome.FAILED]),
    )


def standing_of(protection: Protection, facts: HeadFacts) -> Standing:
    """The state of a PR: its reviews first (where the base requires them), then its checks
    (the required ones on a protected base, every reported one on an unprotected base)."""
    approving, blocking = approvals_of(facts.reviews)
    needed = protection.required_approvals if protection.protected else 0
    required = protection.required_checks if protection.protected else None
    passed, pending, failed = check_outcomes(facts.checks, required)
    deciding = [r for r in facts.reviews if r.state != "PENDING"]
    if needed and not deciding and not facts.requested_reviewers:
        state = State.REVIEWER_PENDING
    elif needed and (approving < needed or blocking):
        state = State.REVIEW_IN_PROGRESS
    elif failed:
        state = State.FAILING
    elif pending:
        state = State.STATUS_CHECK_PENDING
    else:
        state = State.MERGE_PENDING
    return Standing(state, approving, needed, passed, pending, failed)


def gate_reason(
    facts: HeadFacts,
    checks: str | tuple[re.Pattern[str], ...] | None,
    approvals: int,
    entries: tuple[str, ...] = (),
) -> str | None:
    """Why the head in `facts` may not be deployed yet (None: it may).

    `checks`: "all" (every check reported on the head passed, and at least one was
    reported: right after a push CI may not have reported anything yet), patterns (each
    matched whole by a reported check, and every check it matches passed), or None (no check
    needed). `approvals`: how many reviewers must approve. prgen's own check never counts.
    """
    reported = {c.name: c.outcome for c in facts.checks if not _own(c.name)}
    waiting: list[str] = []
    failed: list[str] = []
    if isinstance(checks, str):  # "all"
        if not reported:
            waiting.append("any check to report")
        names = sorted(reported)
    elif checks:
        names = []
        for index, pattern in enumerate(checks):
            matched = sorted(name for name in reported if pattern.fullmatch(name))
            if not matched:
                waiting.append(entries[index] if index < len(entries) else pattern.pattern)
            names += matched
    else:
        names = []
    for name in dict.fromkeys(names):
        if reported[name] is Outcome.FAILED:
            failed.append(name)
        elif reported[name] is Outcome.PENDING:
            waiting.append(name)
    if failed:
        return f"checks failed: {', '.join(failed)}"
    approving, _ = approvals_of(facts.reviews)
    reasons = []
    if waiting:
        reasons.append(f"waiting for checks: {', '.join(waiting)}")
    if approving < approvals:
        missing = approvals - approving
        reasons.append(f"waiting for {missing} approval{'s' if missing > 1 else ''}")
    return "; ".join(reasons) or None


def own_checks(context: str | None, check_run: str | None) -> frozenset[str]:
    """The names prgen reports under (report.commitStatus's context, report.checkRun's name),
    in lower case, prgen/preview always among them."""
    return frozenset(name.lower() for name in (OWN_CHECK, context, check_run) if name)
