"""prgen.github.checks against the fake GitHub through real HTTP: reviews, CI and protection.

Every outcome of a commit status and of a check run, more than 100 check runs on one head,
both kinds mixed, one name reported both ways, protection unprotected / unreadable / protected,
a second read of an unchanged head at 0 rate-limit points, malformed answers raising.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from prgen.config import AppSettings, GitHubSettings
from prgen.github.checks import (
    ChecksFailed,
    HeadQuery,
    read_head,
    read_heads,
    read_protection,
    read_protections,
)
from prgen.github.client import GitHubClients
from prgen.github.pulls import GitHubSource
from prgen.standing import OWN_CHECK, UNPROTECTED, Check, Outcome, Protection, Review
from prgen.testing.fake_github import FakeGitHub, app_key

from conftest import TOKEN

REPO = "acme/shop"
PASSED, PENDING, FAILED = Outcome.PASSED, Outcome.PENDING, Outcome.FAILED


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo(REPO)
    return github


@pytest.fixture
def clients(shop: FakeGitHub, tmp_path: Path) -> GitHubClients:
    settings = GitHubSettings(api_url=shop.base_url, retries=0, timeout=5, concurrency=4)
    return GitHubClients(settings, {"GITHUB_TOKEN": TOKEN}, cache_dir=tmp_path / "cache")


def open_pr(shop: FakeGitHub, n: int = 1) -> tuple[int, str]:
    number = shop.open_pull(REPO, title=f"PR {n}", head_branch=f"feature/{n}")
    return number, shop.pull(REPO, number).head_sha


def outcomes(clients: GitHubClients, number: int, sha: str) -> dict[str, Outcome]:
    facts = read_head(clients.main, REPO, number, sha)
    return {check.name: check.outcome for check in facts.checks}


# -- outcomes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "outcome"),
    [("success", PASSED), ("pending", PENDING), ("failure", FAILED), ("error", FAILED)],
)
def test_each_commit_status_state_maps_to_its_outcome(
    shop: FakeGitHub, clients: GitHubClients, state: str, outcome: Outcome
) -> None:
    number, sha = open_pr(shop)
    shop.add_status(REPO, sha, "build", state)
    facts = read_head(clients.main, REPO, number, sha)
    assert facts.checks == (Check("build", outcome, "status"),)


@pytest.mark.parametrize(
    ("status", "conclusion", "outcome"),
    [
        ("completed", "success", PASSED),
        ("completed", "neutral", PASSED),
        ("completed", "skipped", PASSED),
        ("completed", "failure", FAILED),
        ("completed", "timed_out", FAILED),
        ("completed", "cancelled", FAILED),
        ("completed", "startup_failure", FAILED),
        ("completed", "action_required", PENDING),
        ("completed", "stale", PENDING),
        ("queued", None, PENDING),
        ("in_progress", None, PENDING),
        ("waiting", None, PENDING),
        ("requested", None, PENDING),
        ("pending", None, PENDING),
    ],
)
def test_each_check_run_status_and_conclusion_maps_to_its_outcome(
    shop: FakeGitHub,
    clients: GitHubClients,
    status: str,
    conclusion: str | None,
    outcome: Outcome,
) -> None:
    number, sha = open_pr(shop)
    shop.add_check_run(REPO, sha, "test", status=status, conclusion=conclusion)
    facts = read_head(clients.main, REPO, number, sha)
    assert facts.checks == (Check("test", outcome, "check_run"),)


def test_no_ci_at_all_is_no_checks(shop: FakeGitHub, clients: GitHubClients) -> None:
    number, sha = open_pr(shop)
    facts = read_head(clients.main, REPO, number, sha, requested_reviewers=2)
    assert (facts.head_sha, facts.checks, facts.reviews, facts.requested_reviewers) == (
        sha,
        (),
        (),
        2,
    )


def test_only_the_latest_run_of_each_name_and_status_of_each_context_count(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    number, sha = open_pr(shop)
    shop.add_check_run(REPO, sha, "test", conclusion="failure")
    shop.add_check_run(REPO, sha, "test", conclusion="success")  # a re-run passed
    shop.add_status(REPO, sha, "build", "success")
    shop.add_status(REPO, sha, "build", "failure")  # then it broke
    assert outcomes(clients, number, sha) == {"test": PASSED, "build": FAILED}


def test_statuses_and_check_runs_mixed_all_count(shop: FakeGitHub, clients: GitHubClients) -> None:
    number, sha = open_pr(shop)
    shop.add_status(REPO, sha, "ci/jenkins", "success")
    shop.add_status(REPO, sha, "deploy/staging", "pending")
    shop.add_check_run(REPO, sha, "lint", conclusion="success")
    shop.add_check_run(REPO, sha, "e2e", conclusion="failure")
    facts = read_head(clients.main, REPO, number, sha)
    assert facts.checks == (
        Check("ci/jenkins", PASSED, "status"),
        Check("deploy/staging", PENDING, "status"),
        Check("e2e", FAILED, "check_run"),
        Check("lint", PASSED, "check_run"),
    )


def test_a_name_reported_both_ways_counts_by_the_later_report(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    number, sha = open_pr(shop)
    shop.add_status(REPO, sha, "build", "failure")
    shop.add_check_run(REPO, sha, "build", conclusion="success")  # later: counts
    shop.add_check_run(REPO, sha, "test", conclusion="success")
    shop.add_status(REPO, sha, "test", "pending")  # later: counts
    facts = read_head(clients.main, REPO, number, sha)
    assert facts.checks == (Check("build", PASSED, "check_run"), Check("test", PENDING, "status"))


def test_prgens_own_status_and_check_run_never_count(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    number, sha = open_pr(shop)
    shop.add_status(REPO, sha, OWN_CHECK, "pending")
    shop.add_check_run(REPO, sha, OWN_CHECK, status="in_progress")
    shop.add_check_run(REPO, sha, OWN_CHECK.upper(), conclusion="failure")
    shop.add_status(REPO, sha, "build", "success")
    assert outcomes(clients, number, sha) == {"build": PASSED}


def test_more_than_100_check_runs_and_statuses_are_all_read(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    number, sha = open_pr(shop)
    for n in range(230):
        shop.add_check_run(REPO, sha, f"job-{n:03}", conclusion="success")
    shop.add_check_run(REPO, sha, "job-229", conclusion="failure")  # the last one fails
    for n in range(120):
        shop.add_status(REPO, sha, f"ctx-{n:03}", "success")
    shop.clear_requests()
    found = outcomes(clients, number, sha)
    assert len(found) == 350
    assert found["job-229"] is FAILED and found["job-000"] is PASSED
    assert shop.count_requests("GET", rf"/repos/{REPO}/commits/{sha}/check-runs") == 3
    assert shop.count_requests("GET", rf"/repos/{REPO}/commits/{sha}/status") == 2


# -- reviews ---------------------------------------------------------------------


def test_reviews_are_read_in_order_every_page(shop: FakeGitHub, clients: GitHubClients) -> None:
    number, sha = open_pr(shop)
    for n in range(130):
        shop.add_review(REPO, number, f"user{n}", "COMMENTED")
    shop.add_review(REPO, number, "bob", "CHANGES_REQUESTED", sha)
    shop.push(REPO, number)
    new_sha = shop.pull(REPO, number).head_sha
    shop.add_review(REPO, number, "bob", "APPROVED")
    facts = read_head(clients.main, REPO, number, new_sha)
    assert len(facts.reviews) == 132
    assert facts.reviews[-2:] == (
        Review("bob", "CHANGES_REQUESTED", sha),
        Review("bob", "APPROVED", new_sha),
    )
    assert shop.count_requests("GET", rf"/repos/{REPO}/pulls/{number}/reviews") == 2


def test_requested_reviewers_come_with_the_listing(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    asked, _ = open_pr(shop, 1)
    answered, _ = open_pr(shop, 2)
    shop.request_review(REPO, asked, users=["bob"], teams=["qa"])
    shop.request_review(REPO, answered, users=["bob"])
    shop.add_review(REPO, answered, "bob", "APPROVED")
    listing = GitHubSource.for_clients(clients).list_open(REPO)
    counts = {pr.number: pr.requested_reviewers for pr in listing.pull_requests}
    assert counts == {asked: 2, answered: 0}


# -- protection ------------------------------------------------------------------


def test_an_unprotected_base_reads_as_unprotected(shop: FakeGitHub, clients: GitHubClients) -> None:
    open_pr(shop)
    assert read_protection(clients.main, REPO, "main") == UNPROTECTED


def test_a_protected_base_gives_its_approvals_and_required_checks(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    open_pr(shop)
    shop.protect(REPO, "main", approvals=2, checks=["test", "build"], strict=True)
    assert read_protection(clients.main, REPO, "main") == Protection(
        protected=True, required_approvals=2, required_checks=("build", "test")
    )
    shop.protect(REPO, "main", checks=["build"])
    assert read_protection(clients.main, REPO, "main") == Protection(
        protected=True, required_checks=("build",)
    )


def test_required_checks_are_contexts_and_checks_together(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    open_pr(shop)
    shop.protect(REPO, "main", checks=["build"])

    def add_app_check(body: Any) -> Any:
        body["required_status_checks"]["checks"].append({"context": "e2e", "app_id": 15368})
        return body

    shop.inject("GET", rf"/repos/{REPO}/branches/main/protection", status=0, rewrite=add_app_check)
    assert read_protection(clients.main, REPO, "main").required_checks == ("build", "e2e")


def test_a_protection_the_credential_may_not_read_is_unreadable_and_unprotected(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    open_pr(shop)
    shop.protect(REPO, "main", approvals=1)
    shop.forbid_protection_reads(REPO)
    assert read_protection(clients.main, REPO, "main") == Protection(
        protected=False, readable=False
    )


def test_a_token_without_admin_rights_does_not_ask_for_the_rules_and_pays_nothing_again(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    """The repository says a token's rights: without admin, the rules would be a 403 (no
    ETag: a point every run), so they are not asked for; the reads it takes are conditional."""
    open_pr(shop)
    shop.protect(REPO, "main", approvals=1)
    shop.forbid_protection_reads(REPO)
    unreadable = Protection(protected=False, readable=False)
    reads = read_protections(clients, [(REPO, "main")])
    assert reads[0].protection == unreadable
    asked = [answer.request.path for answer in shop.answers]
    assert asked == [f"/repos/{REPO}/branches/main", f"/repos/{REPO}"]
    shop.clear_requests()
    assert read_protections(clients, [(REPO, "main")])[0].protection == unreadable
    assert [answer.status for answer in shop.answers] == [304, 304]
    assert shop.points_used() == 0
    # Not known what the credential may do: the rules are asked for, and the 403 says it.
    assert read_protection(clients.main, REPO, "main") == unreadable
    assert shop.answers[-1].request.path.endswith("/protection")
    assert shop.answers[-1].status == 403


def app_clients(shop: FakeGitHub, tmp_path: Path, permissions: dict[str, str]) -> GitHubClients:
    key = app_key()
    shop.add_app(42, key.public_pem, installation_id=7, permissions=permissions)
    settings = GitHubSettings(
        api_url=shop.base_url, app=AppSettings(42, 7, None, "APP_KEY"), retries=0, timeout=5
    )
    return GitHubClients(settings, {"APP_KEY": key.private_pem}, cache_dir=tmp_path / "app")


READS = {"metadata": "read", "pull_requests": "read", "checks": "read", "statuses": "read"}


def test_an_app_not_granted_administration_does_not_ask_for_the_rules_and_pays_nothing_again(
    shop: FakeGitHub, tmp_path: Path
) -> None:
    """GitHub lists an installation token's permissions when it mints it: without
    Administration: read the rules would be a 403 (no ETag: a point every run)."""
    open_pr(shop)
    shop.protect(REPO, "main", approvals=1)
    clients = app_clients(shop, tmp_path, READS)
    unreadable = Protection(protected=False, readable=False)
    assert read_protections(clients, [(REPO, "main")])[0].protection == unreadable
    asked = [a.request.path for a in shop.answers if a.request.path.startswith("/repos/")]
    assert asked == [f"/repos/{REPO}/branches/main"]
    shop.clear_requests()
    assert read_protections(clients, [(REPO, "main")])[0].protection == unreadable
    assert [answer.status for answer in shop.answers] == [304]
    assert shop.points_used() == 0


def test_an_app_granted_administration_reads_the_rules(shop: FakeGitHub, tmp_path: Path) -> None:
    open_pr(shop)
    shop.protect(REPO, "main", approvals=2, checks=["build"])
    clients = app_clients(shop, tmp_path, {**READS, "administration": "read"})
    (read,) = read_protections(clients, [(REPO, "main")])
    assert read.protection == Protection(
        protected=True, required_approvals=2, required_checks=("build",)
    )
    shop.clear_requests()
    assert read_protections(clients, [(REPO, "main")])[0].protection == read.protection
    assert [answer.status for answer in shop.answers] == [304, 304]


def test_a_token_with_admin_rights_reads_the_rules(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    open_pr(shop)
    shop.protect(REPO, "main", approvals=2, checks=["build"])
    (read,) = read_protections(clients, [(REPO, "main")])
    assert read.protection == Protection(
        protected=True, required_approvals=2, required_checks=("build",)
    )


def test_a_failed_protection_read_raises_never_unprotected(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    open_pr(shop)
    shop.protect(REPO, "main", approvals=1)
    with pytest.raises(ChecksFailed, match="Branch not found"):
        read_protection(clients.main, REPO, "no-such-branch")
    shop.inject("GET", rf"/repos/{REPO}/branches/main/protection", status=500)
    with pytest.raises(ChecksFailed, match="500"):
        read_protection(clients.main, REPO, "main")
    # A 404 that is not GitHub's "Branch not protected" is no statement about protection.
    shop.inject("GET", rf"/repos/{REPO}/branches/main/protection", status=404)
    with pytest.raises(ChecksFailed, match="404"):
        read_protection(clients.main, REPO, "main")
    # A rate limit is a rate limit, not "may not read".
    limited = {"X-RateLimit-Remaining": "0"}
    shop.inject("GET", rf"/repos/{REPO}/branches/main/protection", status=403, headers=limited)
    with pytest.raises(ChecksFailed, match="rate limit"):
        read_protection(clients.main, REPO, "main")


# -- cost ------------------------------------------------------------------------


def test_a_second_read_of_an_unchanged_head_costs_no_point(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    number, sha = open_pr(shop)
    for n in range(150):
        shop.add_check_run(REPO, sha, f"job-{n}")
    shop.add_status(REPO, sha, "build", "success")
    shop.add_review(REPO, number, "bob", "APPROVED")
    shop.protect(REPO, "main", approvals=1, checks=["build"])
    first = read_head(clients.main, REPO, number, sha)
    protection = read_protection(clients.main, REPO, "main")
    shop.clear_requests()
    assert read_head(clients.main, REPO, number, sha) == first
    assert read_protection(clients.main, REPO, "main") == protection
    assert shop.points_used() == 0 and shop.not_modified() == len(shop.answers) == 6
    # A change costs only the answers it changed.
    shop.add_status(REPO, sha, "lint", "pending")
    shop.clear_requests()
    assert len(read_head(clients.main, REPO, number, sha).checks) == 152
    assert shop.points_used() == 1


def test_a_later_run_with_fresh_clients_reads_an_unchanged_head_for_free(
    shop: FakeGitHub, clients: GitHubClients, tmp_path: Path
) -> None:
    number, sha = open_pr(shop)
    shop.add_check_run(REPO, sha, "test")
    shop.add_review(REPO, number, "bob", "APPROVED")
    first = read_heads(clients, [HeadQuery(REPO, number, sha)])
    shop.clear_requests()
    # Another run: new clients, the same cache directory (what a new process has).
    again = GitHubClients(clients.settings, {"GITHUB_TOKEN": TOKEN}, cache_dir=tmp_path / "cache")
    assert read_heads(again, [HeadQuery(REPO, number, sha)]) == first
    assert shop.points_used() == 0 and shop.not_modified() == 3


def test_an_unprotected_base_costs_no_point_the_second_time(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    open_pr(shop)
    read_protection(clients.main, REPO, "main")
    shop.clear_requests()
    assert read_protection(clients.main, REPO, "main") == UNPROTECTED
    assert shop.points_used() == 0


def test_many_heads_are_read_concurrently_and_in_order(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    queries = []
    for n in range(12):
        number, sha = open_pr(shop, n)
        shop.add_check_run(REPO, sha, "test", conclusion="success" if n % 2 else "failure")
        queries.append(HeadQuery(REPO, number, sha, requested_reviewers=n))
    queries.append(HeadQuery(REPO, 999, "0" * 40))  # no such PR: its error, the rest read
    # Each PR read answers late (status 0: the real answer), so that reads in flight at
    # once overlap however busy the machine is.
    shop.inject("GET", rf"/repos/{REPO}/pulls/\d+", status=0, delay=0.2, times=len(queries))
    shop.reset_in_flight_peak()
    reads = read_heads(clients, queries, workers=4)
    assert [read.query for read in reads] == queries
    for n, read in enumerate(reads[:-1]):
        assert read.facts is not None and read.error is None
        assert read.facts.requested_reviewers == n
        assert read.facts.checks[0].outcome is (PASSED if n % 2 else FAILED)
    assert reads[-1].facts is None and reads[-1].error is not None
    assert reads[-1].error.startswith(f"{REPO}#999: HTTP 404")
    assert shop.in_flight_peak > 1
    shop.clear_requests()
    assert read_heads(clients, queries[:-1], workers=4) == reads[:-1]
    assert shop.points_used() == 0


def test_no_head_is_read_once_the_rate_limit_reserve_is_reached(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    number, sha = open_pr(shop)
    shop.set_rate_limit_remaining(150)
    first = read_heads(clients, [HeadQuery(REPO, number, sha)])
    assert first[0].facts is not None  # 150 left > the reserve of 100
    shop.set_rate_limit_remaining(100)
    read_protection(clients.main, REPO, "main")  # the ledger learns it
    shop.clear_requests()
    reads = read_heads(clients, [HeadQuery(REPO, number, sha)] * 3, workers=2)
    assert all(read.facts is None for read in reads)
    assert reads[0].error is not None and "reserve 100 (github.rateLimitReserve)" in reads[0].error
    protections = read_protections(clients, [(REPO, "main")])
    assert protections[0].protection is None and "reserve" in str(protections[0].error)
    assert shop.requests == []


def test_protections_of_many_repositories_each_their_own(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    shop.add_repo("acme/api")
    shop.add_repo("acme/web")
    shop.protect("acme/api", "main", approvals=1)
    shop.protect("acme/web", "main", approvals=1)
    shop.forbid_protection_reads("acme/web")
    reads = read_protections(
        clients, [(REPO, "main"), ("acme/api", "main"), ("acme/web", "main"), (REPO, "x")]
    )
    assert [read.protection for read in reads] == [
        UNPROTECTED,
        Protection(protected=True, required_approvals=1),
        Protection(protected=False, readable=False),
        None,
    ]
    assert reads[3].error is not None and "Branch not found" in reads[3].error


# -- malformed answers -------------------------------------------------------------


def _delete(key: str) -> Any:
    def rewrite(body: Any) -> Any:
        del body[key]
        return body

    return rewrite


def _item(key: str, value: Any) -> Any:
    def rewrite(body: Any) -> Any:
        items = body if isinstance(body, list) else body.get("check_runs", body.get("statuses"))
        if value is _MISSING:
            del items[0][key]
        else:
            items[0][key] = value
        return body

    return rewrite


_MISSING = object()
MALFORMED: dict[str, tuple[str, Any, str]] = {
    "reviews-not-a-list": ("reviews", lambda body: {"reviews": body}, "not a list"),
    "review-state-unknown": ("reviews", _item("state", "LGTM"), "'LGTM'"),
    "review-state-missing": ("reviews", _item("state", _MISSING), "state is missing"),
    "review-user-a-string": ("reviews", _item("user", "bob"), "user is string"),
    "status-total-missing": ("status", _delete("total_count"), "total_count is missing"),
    "status-list-missing": ("status", _delete("statuses"), "statuses is missing"),
    "status-state-unknown": ("status", _item("state", "green"), "'green'"),
    "status-context-null": ("status", _item("context", None), "context is null"),
    "status-of-another-commit": (
        "status",
        lambda body: {**body, "sha": "1" * 40},
        "another commit",
    ),
    "status-total-too-high": ("status", lambda body: {**body, "total_count": 5}, "empty"),
    "runs-total-missing": ("check-runs", _delete("total_count"), "total_count is missing"),
    "runs-total-a-bool": (
        "check-runs",
        lambda body: {**body, "total_count": True},
        "total_count is bool",
    ),
    "runs-a-bare-list": ("check-runs", lambda body: body["check_runs"], "not an object"),
    "run-conclusion-unknown": ("check-runs", _item("conclusion", "green"), "'green'"),
    "run-completed-without-conclusion": (
        "check-runs",
        _item("conclusion", None),
        "conclusion is null",
    ),
    "run-status-unknown": ("check-runs", _item("status", "done"), "'done'"),
    "run-of-another-commit": ("check-runs", _item("head_sha", "1" * 40), "another commit"),
    "run-name-missing": ("check-runs", _item("name", _MISSING), "name is missing"),
    "run-completed-at-not-a-time": (
        "check-runs",
        _item("completed_at", "soon"),
        "not an ISO 8601 time",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_answer_raises_never_no_checks(
    shop: FakeGitHub, clients: GitHubClients, case: str
) -> None:
    number, sha = open_pr(shop)
    shop.add_review(REPO, number, "bob", "APPROVED")
    shop.add_status(REPO, sha, "build", "success")
    shop.add_check_run(REPO, sha, "test")
    route, rewrite, says = MALFORMED[case]
    path = f"/repos/{REPO}/pulls/{number}/reviews" if route == "reviews" else None
    path = path or f"/repos/{REPO}/commits/{sha}/{route}"
    shop.inject("GET", path, status=0, rewrite=rewrite, times=2)
    with pytest.raises(ChecksFailed, match=re.escape(says)):
        read_head(clients.main, REPO, number, sha)


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda body: {**body, "protected": "yes"},
        lambda body: {**body, "name": "other"},
        lambda body: [body],
    ],
)
def test_a_malformed_branch_raises(shop: FakeGitHub, clients: GitHubClients, rewrite: Any) -> None:
    open_pr(shop)
    shop.inject("GET", rf"/repos/{REPO}/branches/main", status=0, rewrite=rewrite)
    with pytest.raises(ChecksFailed):
        read_protection(clients.main, REPO, "main")


@pytest.mark.parametrize(
    "rewrite",
    [
        lambda body: {**body, "required_status_checks": None},
        lambda body: {**body, "required_status_checks": {"strict": True}},
        lambda body: {**body, "required_status_checks": {"contexts": [1], "checks": []}},
        lambda body: {**body, "required_status_checks": {"contexts": [], "checks": [{}]}},
        lambda body: {**body, "required_pull_request_reviews": {}},
        lambda body: {
            **body,
            "required_pull_request_reviews": {"required_approving_review_count": "1"},
        },
        lambda body: "protected",
    ],
)
def test_a_malformed_protection_raises(
    shop: FakeGitHub, clients: GitHubClients, rewrite: Any
) -> None:
    open_pr(shop)
    shop.protect(REPO, "main", approvals=1, checks=["build"])
    shop.inject("GET", rf"/repos/{REPO}/branches/main/protection", status=0, rewrite=rewrite)
    with pytest.raises(ChecksFailed):
        read_protection(clients.main, REPO, "main")


def test_a_page_that_fails_midway_fails_the_read(shop: FakeGitHub, clients: GitHubClients) -> None:
    number, sha = open_pr(shop)
    for n in range(150):
        shop.add_check_run(REPO, sha, f"job-{n}")
    shop.inject("GET", rf"/repos/{REPO}/commits/{sha}/check-runs", status=502, page=2)
    with pytest.raises(ChecksFailed, match="502"):
        read_head(clients.main, REPO, number, sha)
    # A page that comes back empty where total_count promised more is no "fewer checks".
    shop.inject(
        "GET",
        rf"/repos/{REPO}/commits/{sha}/check-runs",
        status=0,
        page=2,
        rewrite=lambda body: {**body, "check_runs": []},
    )
    with pytest.raises(ChecksFailed, match="empty"):
        read_head(clients.main, REPO, number, sha)


def test_a_review_page_linking_elsewhere_fails_the_read(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    number, sha = open_pr(shop)
    elsewhere = {"Link": '<https://evil.example.com/reviews?page=2>; rel="next"'}
    shop.inject("GET", rf"/repos/{REPO}/pulls/{number}/reviews", status=0, headers=elsewhere)
    with pytest.raises(ChecksFailed, match="another place"):
        read_head(clients.main, REPO, number, sha)


def test_ci_reporting_between_two_pages_is_read_again(
    shop: FakeGitHub, clients: GitHubClients
) -> None:
    number, sha = open_pr(shop)
    for n in range(150):
        shop.add_check_run(REPO, sha, f"job-{n}")
    reported = []

    def report_meanwhile(request: Any) -> None:
        if request.path.endswith("/check-runs") and request.page == 2 and not reported:
            reported.append(shop.add_check_run(REPO, sha, "late", conclusion="failure"))

    shop.on_request(report_meanwhile)
    found = outcomes(clients, number, sha)
    assert len(found) == 151 and found["late"] is FAILED
