"""`prgen status` through the real CLI: real HTTP to the fake GitHub (reviews, statuses, check
runs and branch protection as GitHub serves them), real git to a bare fleet repository."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from prgen.cli import main
from prgen.testing.fake_github import FakeGitHub

from conftest import SHOP, as_app

Config = Callable[..., Path]
REPO = "acme/shop"
API = """\
  - name: acme/api
    chart: {chart: api, sourceRef: {kind: HelmRepository, name: charts, namespace: flux-system}}
"""


def status(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["status", "--config", str(config), *args])


def document(config: Path, *args: str, code: int = 0) -> dict[str, Any]:
    result = status(config, "--output", "json", *args)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def rows(doc: dict[str, Any], repository: str = REPO) -> dict[int, dict[str, Any]]:
    (repo,) = [r for r in doc["repositories"] if r["name"] == repository]
    return {pr["number"]: pr for pr in repo["pullRequests"]}


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo(REPO)
    return github


def opened(github: FakeGitHub, title: str, repo: str = REPO) -> tuple[int, str]:
    number = github.open_pull(repo, title=title, head_branch=title.lower().replace(" ", "-"))
    return number, github.pull(repo, number).head_sha


def test_every_state_on_a_protected_base(shop: FakeGitHub, write_config: Config) -> None:
    shop.protect(REPO, "main", approvals=1, checks=["build", "test"])
    nobody, _ = opened(shop, "Nobody asked")
    asked, _ = opened(shop, "Asked")
    shop.request_review(REPO, asked, users=["bob"])
    pending, sha = opened(shop, "Pending")
    shop.add_review(REPO, pending, "bob", "APPROVED")
    shop.add_check_run(REPO, sha, "build")  # a check run (GitHub Actions) ...
    shop.add_status(REPO, sha, "test", "pending")  # ... and a commit status both count
    failing, sha = opened(shop, "Failing")
    shop.add_review(REPO, failing, "bob", "APPROVED")
    shop.add_check_run(REPO, sha, "build", conclusion="timed_out")
    shop.add_status(REPO, sha, "test", "success")
    ready, sha = opened(shop, "Ready")
    shop.add_review(REPO, ready, "bob", "APPROVED")
    shop.add_check_run(REPO, sha, "build")
    shop.add_status(REPO, sha, "test", "success")
    shop.add_status(REPO, sha, "prgen/preview", "failure")  # prgen's own never counts
    shop.add_status(REPO, sha, "lint", "failure")  # not required on a protected base

    doc = document(write_config())
    (repo,) = doc["repositories"]
    assert (repo["protected"], repo["error"]) == (True, None)
    found = rows(doc)
    assert {n: pr["state"] for n, pr in found.items()} == {
        nobody: "REVIEWER_PENDING",
        asked: "REVIEW_IN_PROGRESS",
        pending: "STATUS_CHECK_PENDING",
        failing: "FAILING",
        ready: "MERGE_PENDING",
    }
    assert found[pending]["checks"] == {"passed": ["build"], "pending": ["test"], "failed": []}
    assert found[failing]["checks"]["failed"] == ["build"]
    assert (found[ready]["approvals"], found[ready]["approvalsRequired"]) == (1, 1)
    assert found[ready]["environment"] is None
    assert found[ready]["skipped"] == "no environment yet"


def test_an_unprotected_base_counts_every_check_and_a_synced_pr_shows_its_preview(
    shop: FakeGitHub, write_config: Config
) -> None:
    number, sha = opened(shop, "Cart")
    config = write_config()
    assert CliRunner().invoke(main, ["sync", "--config", str(config)]).exit_code == 0
    shop.add_status(REPO, sha, "prgen/preview", "success")  # what prgen's probe reports
    shop.add_check_run(REPO, sha, "lint", status="in_progress", conclusion=None)
    pr = rows(document(config))[number]
    assert pr["state"] == "STATUS_CHECK_PENDING"
    assert pr["environment"] == {"name": "shop-pr-1", "deployedHead": sha, "health": "success"}
    assert "skipped" not in pr
    doc = document(config)
    assert doc["repositories"][0]["protected"] is False and "note" not in doc["repositories"][0]


def test_more_than_a_hundred_check_runs_all_count(shop: FakeGitHub, write_config: Config) -> None:
    number, sha = opened(shop, "Big CI")
    for index in range(130):
        shop.add_check_run(REPO, sha, f"job-{index:03d}")
    shop.add_check_run(REPO, sha, "job-129", conclusion="failure")  # the latest run counts
    pr = rows(document(write_config()))[number]
    assert len(pr["checks"]["passed"]) == 129 and pr["checks"]["failed"] == ["job-129"]
    assert pr["state"] == "FAILING"


def test_unreadable_protection_is_said_once_and_treated_as_unprotected(
    shop: FakeGitHub, write_config: Config
) -> None:
    shop.protect(REPO, "main", approvals=2)
    shop.forbid_protection_reads(REPO)
    for title in ("One", "Two"):
        opened(shop, title)
    config = write_config()
    doc = document(config)
    (repo,) = doc["repositories"]
    assert repo["protected"] is False and repo["error"] is None
    assert "unreadable with these credentials" in repo["note"]
    assert {pr["state"] for pr in repo["pullRequests"]} == {"MERGE_PENDING"}
    text = status(config).output
    assert text.count("unreadable") == 1
    shop.clear_requests()  # an idle status: the protection is not asked for again, at a cost
    assert document(config) == doc
    assert shop.points_used() == 0


def test_an_app_not_granted_administration_is_told_once_and_never_sent_to_ask(
    shop: FakeGitHub, write_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub says what an App's token may do when it mints it: without Administration: read
    the rules are not asked for (their 403 has no ETag: it would cost a point every run)."""
    shop.protect(REPO, "main", approvals=1)
    opened(shop, "One")
    reads = {"metadata": "read", "pull_requests": "read", "checks": "read", "statuses": "read"}
    config = as_app(write_config(), shop, monkeypatch, permissions=reads)
    doc = document(config)
    (repo,) = doc["repositories"]
    assert repo["protected"] is False and "unreadable with these credentials" in repo["note"]
    assert document(config) == doc
    assert shop.count_requests("GET", r".*/protection") == 0
    assert not [a for a in shop.answers if a.status == 403]


def test_a_repository_that_fails_is_reported_and_the_others_still_are(
    shop: FakeGitHub, write_config: Config
) -> None:
    shop.add_repo("acme/api")
    opened(shop, "Shop PR")
    opened(shop, "Api PR", repo="acme/api")
    shop.inject("GET", r"/repos/acme/api/pulls", status=502, times=5)
    doc = document(write_config(SHOP + API), code=1)
    shop_doc, api_doc = doc["repositories"]
    assert shop_doc["error"] is None and len(shop_doc["pullRequests"]) == 1
    assert api_doc["error"] and api_doc["pullRequests"] == []


def test_an_idle_status_costs_no_rate_limit_point(shop: FakeGitHub, write_config: Config) -> None:
    shop.protect(REPO, "main", checks=["build"])
    for title in ("One", "Two", "Three"):
        number, sha = opened(shop, title)
        shop.add_check_run(REPO, sha, "build")
        shop.add_review(REPO, number, "bob", "APPROVED")
    config = write_config()
    first = document(config)
    shop.clear_requests()
    assert document(config) == first
    assert shop.points_used() == 0
    assert all(answer.status == 304 for answer in shop.answers)


def test_repo_chooses_repositories_and_an_unknown_one_is_a_usage_error(
    shop: FakeGitHub, write_config: Config
) -> None:
    shop.add_repo("acme/api")
    opened(shop, "Api PR", repo="acme/api")
    config = write_config(SHOP + API)
    doc = document(config, "--repo", "ACME/api")
    assert [r["name"] for r in doc["repositories"]] == ["acme/api"]
    wrong = status(config, "--repo", "acme/nope")
    assert wrong.exit_code == 2 and "acme/nope is not a repository" in wrong.output


def test_the_table_shows_one_row_per_pr(shop: FakeGitHub, write_config: Config) -> None:
    number, sha = opened(shop, "Cart")
    shop.add_status(REPO, sha, "ci", "failure")
    lines = status(write_config()).output.splitlines()
    assert lines[0].split() == ["PR", "STATE", "REVIEWS", "CHECKS", "PREVIEW", "HEALTH"]
    assert lines[1].startswith(f"{REPO}#{number}") and "FAILING" in lines[1]
    assert "failed: ci" in lines[1] and "none (no environment yet)" in lines[1]
