"""Where a PR stands, from plain facts: every state, reviews as GitHub counts them, the gate."""

from __future__ import annotations

import re

import pytest

from prgen.standing import (
    OWN_CHECK,
    UNPROTECTED,
    Check,
    HeadFacts,
    Outcome,
    Protection,
    Review,
    State,
    approvals_of,
    gate_reason,
    standing_of,
)

SHA = "a" * 40
PASS, WAIT, FAIL = Outcome.PASSED, Outcome.PENDING, Outcome.FAILED
REVIEWED = Protection(protected=True, required_approvals=1, required_checks=("build", "test"))


def facts(
    *checks: tuple[str, Outcome], reviews: tuple[Review, ...] = (), requested: int = 0
) -> HeadFacts:
    return HeadFacts(
        SHA,
        reviews=reviews,
        requested_reviewers=requested,
        checks=tuple(Check(name, outcome) for name, outcome in checks),
    )


def approved(user: str = "bob") -> Review:
    return Review(user, "APPROVED", SHA)


@pytest.mark.parametrize(
    ("protection", "head", "state"),
    [
        # Required reviews: nobody asked, nobody reviewed.
        (REVIEWED, facts(("build", PASS), ("test", PASS)), State.REVIEWER_PENDING),
        # Asked, not answered yet; or answered with a comment only.
        (REVIEWED, facts(requested=1), State.REVIEW_IN_PROGRESS),
        (REVIEWED, facts(reviews=(Review("bob", "COMMENTED"),)), State.REVIEW_IN_PROGRESS),
        # Approved, but someone else asks for changes.
        (
            REVIEWED,
            facts(reviews=(approved(), Review("carol", "CHANGES_REQUESTED"))),
            State.REVIEW_IN_PROGRESS,
        ),
        # Approved; the checks decide: a required one missing is pending.
        (REVIEWED, facts(("build", PASS), reviews=(approved(),)), State.STATUS_CHECK_PENDING),
        (
            REVIEWED,
            facts(("build", PASS), ("test", WAIT), reviews=(approved(),)),
            State.STATUS_CHECK_PENDING,
        ),
        (REVIEWED, facts(("build", FAIL), ("test", WAIT), reviews=(approved(),)), State.FAILING),
        (
            REVIEWED,
            facts(("build", PASS), ("test", PASS), reviews=(approved(),)),
            State.MERGE_PENDING,
        ),
        # A check that is not required does not hold a protected base back.
        (
            REVIEWED,
            facts(("build", PASS), ("test", PASS), ("lint", FAIL), reviews=(approved(),)),
            State.MERGE_PENDING,
        ),
        # Unprotected: every reported check counts, reviews do not.
        (UNPROTECTED, facts(("lint", FAIL)), State.FAILING),
        (UNPROTECTED, facts(("lint", WAIT), ("build", PASS)), State.STATUS_CHECK_PENDING),
        (UNPROTECTED, facts(), State.MERGE_PENDING),
        # prgen's own status never counts toward anything.
        (UNPROTECTED, facts((OWN_CHECK, FAIL)), State.MERGE_PENDING),
        # Unreadable protection is treated as unprotected.
        (
            Protection(protected=False, readable=False),
            facts(("x", WAIT)),
            State.STATUS_CHECK_PENDING,
        ),
    ],
)
def test_every_state(protection: Protection, head: HeadFacts, state: State) -> None:
    assert standing_of(protection, head).state is state


def test_the_standing_lists_the_checks_that_count_by_outcome() -> None:
    head = facts(("build", PASS), ("lint", FAIL), reviews=(approved(),))
    standing = standing_of(REVIEWED, head)
    assert (standing.passed, standing.pending, standing.failed) == (("build",), ("test",), ())
    assert (standing.approvals, standing.approvals_required) == (1, 1)


def test_each_reviewer_counts_once_by_their_latest_deciding_review() -> None:
    reviews = (
        Review("bob", "CHANGES_REQUESTED"),
        Review("bob", "COMMENTED"),  # decides nothing
        Review("Bob", "APPROVED"),  # logins are case-insensitive
        Review("carol", "APPROVED"),
        Review("carol", "DISMISSED"),  # taken back
        Review("dave", "PENDING"),  # not submitted
    )
    assert approvals_of(reviews) == (1, ())
    assert approvals_of((approved(), Review("bob", "CHANGES_REQUESTED"))) == (0, ("bob",))


def test_the_gate_waits_for_checks_and_approvals_and_names_them() -> None:
    names = (re.compile("build"), re.compile("test.*"))
    assert gate_reason(facts(("build", PASS), ("test-unit", PASS)), names, 0) is None
    assert gate_reason(facts(("build", PASS)), names, 0) == "waiting for checks: test.*"
    assert (
        gate_reason(facts(("build", WAIT), ("test-unit", PASS)), names, 2)
        == "waiting for checks: build; waiting for 2 approvals"
    )
    assert gate_reason(facts(("build", PASS), reviews=(approved(),)), None, 1) is None
    assert gate_reason(facts(), None, 1) == "waiting for 1 approval"
    assert gate_reason(facts(("build", FAIL), ("x", WAIT)), "all", 0) == "checks failed: build"


def test_all_checks_means_at_least_one_reported_and_prgens_own_never_counts() -> None:
    # Right after a push CI may not have reported yet: that is no pass.
    assert gate_reason(facts(), "all", 0) == "waiting for checks: any check to report"
    assert gate_reason(facts((OWN_CHECK, PASS)), "all", 0) == (
        "waiting for checks: any check to report"
    )
    assert gate_reason(facts(("ci", PASS), (OWN_CHECK, FAIL)), "all", 0) is None
    assert gate_reason(facts(("ci", PASS)), (re.compile("prgen/preview"),), 0) == (
        "waiting for checks: prgen/preview"
    )
