"""The fake GitHub's reviews, CI and branch protection routes, as GitHub serves them (issue 12)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from github import Auth, GithubException, GithubIntegration

from prgen.testing.fake_github import FakeGitHub, app_key

REPO = "acme/shop"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_repo(REPO)
        yield server


@pytest.fixture
def pr(fake: FakeGitHub) -> int:
    return fake.open_pull(REPO, title="Cart", head_branch="feature/cart")


def head(fake: FakeGitHub, number: int) -> str:
    return fake.pull(REPO, number).head_sha


def get(fake: FakeGitHub, path: str, **params: Any) -> requests.Response:
    return requests.get(f"{fake.base_url}/repos/{REPO}{path}", params=params, timeout=5)


def send(method: str, url: str, body: Any, headers: dict[str, str]) -> requests.Response:
    return requests.request(method, url, json=body, headers=headers, timeout=5)


def etag_then_304(fake: FakeGitHub, path: str, **params: Any) -> None:
    """A repeated GET with the answer's ETag is a free 304 without a body."""
    first = get(fake, path, **params)
    assert first.status_code == 200 and first.headers["ETag"].startswith('W/"')
    fake.clear_requests()
    again = requests.get(
        f"{fake.base_url}/repos/{REPO}{path}",
        params=params,
        headers={"If-None-Match": first.headers["ETag"]},
        timeout=5,
    )
    assert (again.status_code, again.content) == (304, b"")
    assert fake.points_used() == 0


# -- requested reviewers and reviews ---------------------------------------------


def test_requested_reviewers_and_teams_are_in_the_pull_request(fake: FakeGitHub, pr: int) -> None:
    fake.request_review(REPO, pr, users=["bob", "carol"], teams=["qa"])
    body = get(fake, f"/pulls/{pr}").json()
    assert [user["login"] for user in body["requested_reviewers"]] == ["bob", "carol"]
    assert [team["slug"] for team in body["requested_teams"]] == ["qa"]
    listed = get(fake, "/pulls").json()[0]
    assert listed["requested_reviewers"] == body["requested_reviewers"]
    assert listed["requested_teams"] == body["requested_teams"]


def test_a_review_answers_the_reviewers_request_as_on_github(fake: FakeGitHub, pr: int) -> None:
    fake.request_review(REPO, pr, users=["bob", "carol"], teams=["qa"])
    fake.add_review(REPO, pr, "bob", "CHANGES_REQUESTED")
    assert fake.pull(REPO, pr).requested_reviewers == ("carol",)
    fake.add_review(REPO, pr, "carol", "PENDING")  # not submitted: still asked
    assert fake.pull(REPO, pr).requested_reviewers == ("carol",)
    fake.add_review(REPO, pr, "carol", "COMMENTED")
    body = get(fake, f"/pulls/{pr}").json()
    assert body["requested_reviewers"] == []
    assert [team["slug"] for team in body["requested_teams"]] == ["qa"]


def test_reviews_are_listed_oldest_first_with_githubs_fields(fake: FakeGitHub, pr: int) -> None:
    sha = head(fake, pr)
    first = fake.add_review(REPO, pr, "bob", "APPROVED")
    fake.push(REPO, pr)
    fake.add_review(REPO, pr, "carol", "PENDING")
    fake.dismiss_review(REPO, pr, first)
    reviews = get(fake, f"/pulls/{pr}/reviews").json()
    assert [(r["user"]["login"], r["state"]) for r in reviews] == [
        ("bob", "DISMISSED"),
        ("carol", "PENDING"),
    ]
    assert reviews[0]["id"] == first and reviews[0]["commit_id"] == sha
    assert reviews[1]["commit_id"] == head(fake, pr)
    assert reviews[0]["submitted_at"].endswith("Z") and "submitted_at" not in reviews[1]
    with pytest.raises(ValueError, match="state"):
        fake.add_review(REPO, pr, "bob", "LGTM")
    assert get(fake, "/pulls/99/reviews").status_code == 404


def test_reviews_come_in_pages_with_link_headers(fake: FakeGitHub, pr: int) -> None:
    for n in range(120):
        fake.add_review(REPO, pr, f"user{n}", "COMMENTED")
    first = get(fake, f"/pulls/{pr}/reviews", per_page=100)
    assert len(first.json()) == 100 and 'rel="next"' in first.headers["Link"]
    second = get(fake, f"/pulls/{pr}/reviews", per_page=100, page=2)
    assert [r["user"]["login"] for r in second.json()] == [f"user{n}" for n in range(100, 120)]
    assert 'rel="next"' not in second.headers["Link"]


# -- commit statuses -------------------------------------------------------------


def test_ci_statuses_are_listed_and_combined_per_context(fake: FakeGitHub, pr: int) -> None:
    sha = head(fake, pr)
    fake.add_status(REPO, sha, "build", "pending")
    fake.add_status(REPO, sha, "lint", "success", "clean")
    fake.add_status(REPO, sha, "build", "success")
    listed = get(fake, f"/commits/{sha}/statuses").json()
    assert [(s["context"], s["state"]) for s in listed] == [
        ("build", "success"),
        ("lint", "success"),
        ("build", "pending"),
    ]
    assert listed[0]["creator"]["login"] == "ci-bot"
    combined = get(fake, f"/commits/{sha}/status").json()
    assert (combined["state"], combined["total_count"]) == ("success", 2)
    assert {s["context"]: s["state"] for s in combined["statuses"]} == {
        "build": "success",
        "lint": "success",
    }
    with pytest.raises(KeyError):
        fake.add_status(REPO, "0" * 40, "build", "success")


def test_the_combined_status_pages_by_per_page_and_page(fake: FakeGitHub, pr: int) -> None:
    sha = head(fake, pr)
    for n in range(130):
        fake.add_status(REPO, sha, f"ctx{n:03}", "success")
    pages = [get(fake, f"/commits/{sha}/status", per_page=100, page=p).json() for p in (1, 2)]
    assert [page["total_count"] for page in pages] == [130, 130]
    contexts = [s["context"] for page in pages for s in page["statuses"]]
    assert sorted(contexts) == [f"ctx{n:03}" for n in range(130)]


# -- check runs ------------------------------------------------------------------


def test_more_than_100_check_runs_on_one_head_come_in_pages(fake: FakeGitHub, pr: int) -> None:
    sha = head(fake, pr)
    for n in range(150):
        fake.add_check_run(REPO, sha, f"job-{n:03}")
    first = get(fake, f"/commits/{sha}/check-runs", per_page=100)
    body = first.json()
    assert set(body) == {"total_count", "check_runs"} and body["total_count"] == 150
    assert len(body["check_runs"]) == 100
    assert 'rel="next"' in first.headers["Link"] and "page=2" in first.headers["Link"]
    second = get(fake, f"/commits/{sha}/check-runs", per_page=100, page=2).json()
    names = [run["name"] for run in body["check_runs"] + second["check_runs"]]
    assert sorted(names) == [f"job-{n:03}" for n in range(150)]
    # per_page is capped at 100, as on GitHub
    assert len(get(fake, f"/commits/{sha}/check-runs", per_page=500).json()["check_runs"]) == 100


def test_check_runs_are_the_latest_per_name_unless_all_are_asked(fake: FakeGitHub, pr: int) -> None:
    sha = head(fake, pr)
    old = fake.add_check_run(REPO, sha, "test", conclusion="failure")
    new = fake.add_check_run(REPO, sha, "test", status="in_progress")
    fake.add_check_run(REPO, sha, "lint", conclusion="neutral")
    latest = get(fake, f"/commits/{sha}/check-runs").json()
    assert latest["total_count"] == 2
    run = next(r for r in latest["check_runs"] if r["name"] == "test")
    assert (run["id"], run["status"], run["conclusion"], run["completed_at"]) == (
        new,
        "in_progress",
        None,
        None,
    )
    assert run["head_sha"] == sha and run["app"]["slug"] == "github-actions"
    assert {"started_at", "details_url", "output"} <= run.keys()
    every = get(fake, f"/commits/{sha}/check-runs", filter="all").json()
    assert every["total_count"] == 3 and old in [r["id"] for r in every["check_runs"]]
    named = get(fake, f"/commits/{sha}/check-runs", check_name="lint").json()
    assert [r["conclusion"] for r in named["check_runs"]] == ["neutral"]
    fake.update_check_run(REPO, new, conclusion="success")
    run = get(fake, f"/check-runs/{new}").json()
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert run["completed_at"] is not None
    assert get(fake, f"/commits/{sha}/check-runs", filter="newest").status_code == 422
    assert get(fake, f"/commits/{'0' * 40}/check-runs").status_code == 422


def test_the_python_api_refuses_check_runs_github_would_not_have(fake: FakeGitHub, pr: int) -> None:
    sha = head(fake, pr)
    with pytest.raises(ValueError, match="status"):
        fake.add_check_run(REPO, sha, "test", status="done")
    with pytest.raises(ValueError, match="conclusion"):
        fake.add_check_run(REPO, sha, "test", conclusion="passed")
    with pytest.raises(KeyError):
        fake.add_check_run(REPO, "0" * 40, "test")


def _app_client(
    fake: FakeGitHub, permissions: dict[str, str] | None = None
) -> tuple[str, dict[str, str]]:
    key = app_key()
    fake.add_app(42, key.public_pem, installation_id=7, slug="prgen", permissions=permissions)
    integration = GithubIntegration(auth=Auth.AppAuth(42, key.private_pem), base_url=fake.base_url)
    token = integration.get_access_token(7).token
    return token, {"Authorization": f"token {token}"}


def test_only_a_github_app_writes_check_runs(fake: FakeGitHub, pr: int) -> None:
    sha = head(fake, pr)
    token, app = _app_client(fake)
    fake.add_token("ghp_personal", "alice")
    url = f"{fake.base_url}/repos/{REPO}/check-runs"
    body = {"name": "prgen/preview", "head_sha": sha}
    personal = send("POST", url, body, {"Authorization": "token ghp_personal"})
    assert personal.status_code == 403
    assert personal.json()["message"] == "You must authenticate via a GitHub App."
    created = requests.post(url, json=body, headers=app, timeout=5)
    assert created.status_code == 201
    run = created.json()
    assert (run["status"], run["conclusion"], run["app"]["id"]) == ("queued", None, 42)
    assert run["started_at"] is not None and run["name"] == "prgen/preview"
    done = {
        "conclusion": "success",
        "details_url": "https://shop-pr-1.preview.example.com/",
        "output": {"title": "Deployed", "summary": "shop-pr-1 is healthy"},
    }
    patched = requests.patch(f"{url}/{run['id']}", json=done, headers=app, timeout=5)
    assert patched.status_code == 200
    run = patched.json()
    assert (run["status"], run["conclusion"]) == ("completed", "success")
    assert run["details_url"] == done["details_url"]
    assert (run["output"]["title"], run["output"]["summary"]) == (
        "Deployed",
        "shop-pr-1 is healthy",
    )
    assert (
        send(
            "PATCH", f"{url}/{run['id']}", done, {"Authorization": "token ghp_personal"}
        ).status_code
        == 403
    )
    # Another app's run is not this app's to change.
    other = fake.add_check_run(REPO, sha, "build")
    assert requests.patch(f"{url}/{other}", json=done, headers=app, timeout=5).status_code == 403
    assert fake.check_runs(REPO, sha)[-1].name == "prgen/preview"
    assert token not in str(fake.check_runs(REPO, sha))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"head_sha": "SHA"}, "name"),
        ({"name": "x"}, "head_sha"),
        ({"name": "", "head_sha": "SHA"}, "name"),
        ({"name": "x", "head_sha": "SHA", "status": "done"}, "status"),
        ({"name": "x", "head_sha": "SHA", "conclusion": "stale"}, "conclusion"),
        ({"name": "x", "head_sha": "SHA", "status": "completed"}, "conclusion"),
        ({"name": "x", "head_sha": "SHA", "completed_at": "2026-01-01T00:00:00Z"}, "conclusion"),
        ({"name": "x", "head_sha": "SHA", "details_url": "not a url"}, "details_url"),
        ({"name": "x", "head_sha": "SHA", "output": {"title": "t"}}, "summary"),
        ({"name": "x", "head_sha": "SHA", "output": {"summary": "s"}}, "title"),
        ({"name": "x", "head_sha": "SHA", "output": "text"}, "output"),
        ({"name": "x", "head_sha": "SHA", "started_at": "yesterday"}, "started_at"),
    ],
)
def test_check_run_writes_are_validated_like_github(
    fake: FakeGitHub, pr: int, body: dict[str, Any], field: str
) -> None:
    _, app = _app_client(fake)
    sent = {key: head(fake, pr) if value == "SHA" else value for key, value in body.items()}
    answer = send("POST", f"{fake.base_url}/repos/{REPO}/check-runs", sent, app)
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == field
    assert fake.check_runs(REPO, head(fake, pr)) == []


def test_a_check_run_on_an_unknown_commit_is_refused(fake: FakeGitHub, pr: int) -> None:
    _, app = _app_client(fake)
    body = {"name": "x", "head_sha": "0" * 40}
    answer = send("POST", f"{fake.base_url}/repos/{REPO}/check-runs", body, app)
    assert answer.status_code == 422 and "No commit found" in answer.json()["message"]


# -- branch protection -----------------------------------------------------------


def test_an_unprotected_branch_is_404_branch_not_protected(fake: FakeGitHub, pr: int) -> None:
    answer = get(fake, "/branches/main/protection")
    assert (answer.status_code, answer.json()["message"]) == (404, "Branch not protected")
    assert get(fake, "/branches/nope/protection").status_code == 404
    assert get(fake, "/branches/nope/protection").json()["message"] == "Branch not found"


def test_a_protection_shows_required_checks_and_reviews(fake: FakeGitHub, pr: int) -> None:
    fake.protect(REPO, "main", approvals=2, checks=["build", "test"], strict=True)
    body = get(fake, "/branches/main/protection").json()
    checks = body["required_status_checks"]
    assert (checks["strict"], checks["contexts"]) == (True, ["build", "test"])
    assert [check["context"] for check in checks["checks"]] == ["build", "test"]
    reviews = body["required_pull_request_reviews"]
    assert reviews["required_approving_review_count"] == 2
    assert reviews["dismiss_stale_reviews"] is False
    assert reviews["require_code_owner_reviews"] is False
    # A rule left out is absent, as on GitHub.
    fake.protect(REPO, "main", approvals=1)
    body = get(fake, "/branches/main/protection").json()
    assert "required_status_checks" not in body and "required_pull_request_reviews" in body
    fake.protect(REPO, "main", checks=["build"])
    assert "required_pull_request_reviews" not in get(fake, "/branches/main/protection").json()
    fake.unprotect(REPO, "main")
    assert get(fake, "/branches/main/protection").status_code == 404


def test_a_branch_says_whether_it_is_protected_to_anyone_who_reads(
    fake: FakeGitHub, pr: int
) -> None:
    assert get(fake, "/branches/main").json()["protected"] is False
    fake.protect(REPO, "main", checks=["build"])
    fake.forbid_protection_reads(REPO)
    body = get(fake, "/branches/main").json()
    assert (body["name"], body["protected"]) == ("main", True)
    assert body["protection"]["required_status_checks"]["contexts"] == ["build"]
    assert body["protection_url"].endswith("/branches/main/protection")
    assert get(fake, "/branches/feature/cart").json()["name"] == "feature/cart"
    assert get(fake, "/branches/nope").status_code == 404


def test_protection_without_the_right_to_read_it_is_403(fake: FakeGitHub, pr: int) -> None:
    fake.protect(REPO, "main", approvals=1)
    fake.forbid_protection_reads(REPO)
    answer = get(fake, "/branches/main/protection")
    assert (answer.status_code, answer.json()["message"]) == (
        403,
        "Must have admin rights to Repository.",
    )
    assert "ETag" not in answer.headers
    fake.forbid_protection_reads(REPO, False)
    assert get(fake, "/branches/main/protection").status_code == 200


def test_an_app_reads_protection_only_when_granted_administration(
    fake: FakeGitHub, pr: int
) -> None:
    """An installation token may do what the installation was granted, and says so when minted."""
    fake.protect(REPO, "main", approvals=1)
    key = app_key()
    fake.add_app(42, key.public_pem, installation_id=7, permissions={"metadata": "read"})
    integration = GithubIntegration(auth=Auth.AppAuth(42, key.private_pem), base_url=fake.base_url)
    minted = integration.get_access_token(7)
    assert minted.permissions == {"metadata": "read"}
    url = f"{fake.base_url}/repos/{REPO}/branches/main/protection"
    answer = send("GET", url, None, {"Authorization": f"token {minted.token}"})
    assert (answer.status_code, answer.json()["message"]) == (
        403,
        "Resource not accessible by integration",
    )
    with pytest.raises(GithubException) as refused:  # more than the installation was granted
        integration.get_access_token(7, permissions={"administration": "read"})
    assert refused.value.status == 422
    _, granted = _app_client(fake)  # by default: everything prgen uses, administration too
    assert requests.get(url, headers=granted, timeout=5).status_code == 200


# -- every route: ETags and 304s -------------------------------------------------


def test_every_new_route_answers_an_unchanged_etag_with_a_free_304(
    fake: FakeGitHub, pr: int
) -> None:
    sha = head(fake, pr)
    fake.request_review(REPO, pr, users=["bob"])
    fake.add_review(REPO, pr, "carol", "APPROVED")
    fake.add_status(REPO, sha, "build", "success")
    run = fake.add_check_run(REPO, sha, "test")
    fake.protect(REPO, "main", approvals=1, checks=["build"])
    etag_then_304(fake, f"/pulls/{pr}/reviews")
    etag_then_304(fake, f"/commits/{sha}/statuses")
    etag_then_304(fake, f"/commits/{sha}/status")
    etag_then_304(fake, f"/commits/{sha}/check-runs", per_page=100)
    etag_then_304(fake, f"/check-runs/{run}")
    etag_then_304(fake, "/branches/main/protection")
    etag_then_304(fake, "/branches/main")


def test_a_change_gives_each_route_a_new_etag(fake: FakeGitHub, pr: int) -> None:
    sha = head(fake, pr)
    routes = [
        f"/pulls/{pr}",
        f"/pulls/{pr}/reviews",
        f"/commits/{sha}/status",
        f"/commits/{sha}/check-runs",
        "/branches/main/protection",
    ]
    fake.protect(REPO, "main", approvals=1)
    before = {route: get(fake, route).headers.get("ETag") for route in routes}
    fake.request_review(REPO, pr, users=["bob"])
    fake.add_review(REPO, pr, "bob", "APPROVED")
    fake.add_status(REPO, sha, "build", "success")
    fake.add_check_run(REPO, sha, "test")
    fake.protect(REPO, "main", approvals=2)
    after = {route: get(fake, route).headers.get("ETag") for route in routes}
    assert all(before[route] != after[route] for route in routes)
