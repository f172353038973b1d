"""The `prgen status` document (the JSON contract) and its table, from plain data."""

from __future__ import annotations

from datetime import UTC, datetime

from prgen.model import PullRequest
from prgen.standing import UNPROTECTED, Protection, Standing, State
from prgen.status import EnvironmentView, PullView, repository_document, table

SHA, OLD = "b" * 40, "a" * 40
NOW = datetime(2026, 12, 3, tzinfo=UTC)


def pull(number: int) -> PullRequest:
    return PullRequest(
        "acme/shop",
        number,
        f"PR {number}",
        SHA,
        f"b{number}",
        "acme/shop",
        "main",
        "alice",
        "MEMBER",
        (),
        False,
        NOW,
        NOW,
        f"https://github.com/acme/shop/pull/{number}",
    )


STANDING = Standing(State.STATUS_CHECK_PENDING, 1, 1, ("build",), ("test",), ())


def test_the_document_follows_the_contract() -> None:
    views = [
        PullView(pull(42), STANDING, EnvironmentView("shop-pr-42", OLD, "success"), None),
        PullView(pull(41), STANDING, None, "waiting for checks: test"),
    ]
    protected = Protection(protected=True, required_approvals=1, required_checks=("build",))
    document = repository_document("acme/shop", {"main": protected}, views, None)
    assert document["name"] == "acme/shop" and document["protected"] is True
    assert document["error"] is None and "note" not in document
    first, second = document["pullRequests"]
    assert first == {
        "number": 42,
        "title": "PR 42",
        "author": "alice",
        "head": SHA,
        "base": "main",
        "state": "STATUS_CHECK_PENDING",
        "approvals": 1,
        "approvalsRequired": 1,
        "checks": {"passed": ["build"], "pending": ["test"], "failed": []},
        "environment": {"name": "shop-pr-42", "deployedHead": OLD, "health": "success"},
    }
    assert second["environment"] is None and second["skipped"] == "waiting for checks: test"


def test_unreadable_protection_is_said_once_per_repository() -> None:
    unreadable = Protection(protected=False, readable=False)
    views = [PullView(pull(n), STANDING, None, None) for n in (1, 2)]
    document = repository_document(
        "acme/shop", {"main": unreadable, "dev": UNPROTECTED}, views, None
    )
    assert document["protected"] is False
    assert document["note"].startswith("branch protection of main is unreadable")
    text = table({"repositories": [document]})
    assert text.count("unreadable") == 1
    assert "none (no environment yet)" in text


def test_the_table_shows_each_pr_and_a_failed_repository() -> None:
    views = [PullView(pull(42), STANDING, EnvironmentView("shop-pr-42", OLD, None), None)]
    ok = repository_document("acme/shop", {}, views, None)
    failed = repository_document("acme/api", {}, [], "listing failed: 502")
    lines = table({"repositories": [ok, failed]}).splitlines()
    assert lines[0] == "acme/api: error: listing failed: 502"
    assert lines[1].split() == ["PR", "STATE", "REVIEWS", "CHECKS", "PREVIEW", "HEALTH"]
    row = lines[2]
    assert row.startswith("acme/shop#42") and "STATUS_CHECK_PENDING" in row and "1/1" in row
    assert "pending: test" in row and "shop-pr-42 @ aaaaaaa (older head)" in row
    assert row.endswith("not reported")
