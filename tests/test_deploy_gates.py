"""Deploy gates (`deployWhen`), end to end: `prgen sync` through the real CLI, real HTTP to the
fake GitHub (check runs, statuses, reviews as GitHub serves them), real git to a bare fleet.

A PR whose head has not passed its gate gets no environment yet; an environment stays at the
last head that passed, never deleted and never moved to an unverified head.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from prgen.cli import main
from prgen.testing.fake_github import FakeGitHub

from conftest import SHOP, git

Config = Callable[..., Path]
REPO = "acme/shop"
FOLDER = "shop-pr-1"


def gated(gate: str) -> str:
    return SHOP + f"    deployWhen: {gate}\n"


def sync(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["sync", "--config", str(config), "--output", "json", *args])


def run(config: Path, *args: str, code: int = 0) -> dict[str, Any]:
    result = sync(config, *args)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def deployed_head(remote: Path, folder: str = FOLDER) -> str | None:
    try:
        release = git("show", f"main:previews/dev/{folder}/helmrelease.yaml", cwd=remote)
    except Exception:
        return None
    for line in release.splitlines():
        if "tag:" in line:
            return line.split("tag:")[1].strip().strip("'\"")
    raise AssertionError(release)


def changes(document: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [c for c in document["changes"] if c["action"] == action]


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo(REPO)
    return github


def test_a_pr_waits_for_its_checks_then_deploys(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    sha = shop.pull(REPO, number).head_sha
    config = write_config(gated("{checks: [build, '/test-.*/']}"))

    first = run(config)
    assert deployed_head(fleet_remote) is None
    assert first["skipped"] == [
        {
            "repository": REPO,
            "pullRequest": number,
            "reason": "deploy gate: waiting for checks: build, /test-.*/",
        }
    ]

    shop.add_check_run(REPO, sha, "build")
    shop.add_check_run(REPO, sha, "test-unit", status="in_progress", conclusion=None)
    waiting = run(config)
    assert waiting["skipped"][0]["reason"] == "deploy gate: waiting for checks: test-unit"

    shop.add_check_run(REPO, sha, "test-unit")  # the latest run of that name counts
    deployed = run(config)
    assert [c["pullRequest"] for c in changes(deployed, "create")] == [number]
    assert deployed_head(fleet_remote) == sha


def test_an_environment_stays_at_the_last_head_that_passed(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    good = shop.pull(REPO, number).head_sha
    shop.add_status(REPO, good, "ci", "success")
    config = write_config(gated("{checks: all}"))
    assert changes(run(config), "create")
    assert deployed_head(fleet_remote) == good

    bad = shop.push(REPO, number)
    shop.add_status(REPO, bad, "ci", "failure")
    commits = git("rev-list", "--count", "main", cwd=fleet_remote)
    held = run(config)
    (hold,) = changes(held, "hold")
    assert hold["pullRequest"] == number and hold["headSha"] == good
    assert hold["reason"] == f"checks failed: ci (head {bad[:7]} waits)"
    assert held["commit"] is None and held["exitCode"] == 0
    assert git("rev-list", "--count", "main", cwd=fleet_remote) == commits
    assert deployed_head(fleet_remote) == good  # never moved to the failing head

    # The dry run and the text output say it as a change of its own kind.
    text = CliRunner().invoke(main, ["sync", "--config", str(config), "--dry-run"])
    assert f"| hold   {REPO}#{number} previews/dev/{FOLDER} {good[:7]}" in text.output

    fixed = shop.push(REPO, number)
    shop.add_status(REPO, fixed, "ci", "success")
    updated = run(config)
    assert [c["pullRequest"] for c in changes(updated, "update")] == [number]
    assert deployed_head(fleet_remote) == fixed


def test_a_gate_never_keeps_a_closed_pr_and_the_deletion_guard_is_unaffected(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    shop.add_status(REPO, shop.pull(REPO, number).head_sha, "ci", "success")
    config = write_config(gated("{checks: all}"))
    run(config)
    shop.push(REPO, number)  # no check on the new head: held
    assert changes(run(config), "hold")
    shop.close_pull(REPO, number)
    closed = run(config)
    assert [c["pullRequest"] for c in changes(closed, "delete")] == [number]
    assert deployed_head(fleet_remote) is None


def test_approvals_gate_counts_reviews_as_github_does(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    config = write_config(gated("{approvals: 1}"))
    assert run(config)["skipped"][0]["reason"] == "deploy gate: waiting for 1 approval"
    shop.add_review(REPO, number, "bob", "COMMENTED")
    assert run(config)["skipped"][0]["reason"] == "deploy gate: waiting for 1 approval"
    shop.add_review(REPO, number, "bob", "APPROVED")
    assert changes(run(config), "create")


def test_unreadable_checks_keep_the_environment_and_say_so(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    good = shop.pull(REPO, number).head_sha
    shop.add_status(REPO, good, "ci", "success")
    config = write_config(gated("{checks: all}"))
    run(config)
    new = shop.push(REPO, number)
    shop.add_status(REPO, new, "ci", "success")
    shop.inject("GET", rf"/repos/{REPO}/commits/{new}/check-runs", status=502, times=10)
    document = run(config, code=1)
    (hold,) = changes(document, "hold")
    assert hold["reason"].startswith("checks could not be read")
    assert any("could not be read" in warning for warning in document["warnings"])
    assert deployed_head(fleet_remote) == good


def test_a_deployed_head_is_not_asked_about_again(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    """An idle sync with gates makes no request beyond the listing: a head that was
    deployed passed its gate then."""
    for n in range(3):
        number = shop.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}")
        shop.add_check_run(REPO, shop.pull(REPO, number).head_sha, "build")
    config = write_config(gated("{checks: [build]}"))
    assert len(changes(run(config), "create")) == 3
    shop.clear_requests()
    assert run(config)["commit"] is None
    paths = {answer.request.path for answer in shop.answers}
    # The listing and the conditional read of PR commands (commands from PR comments).
    assert paths == {f"/repos/{REPO}/pulls", f"/repos/{REPO}/issues/comments"}
    assert shop.points_used() == 0


def test_prgens_own_report_never_passes_its_gate_whatever_its_name(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    sha = shop.pull(REPO, number).head_sha
    own = "    report: {commitStatus: {context: previews/shop}}\n"
    config = write_config(gated("{checks: all}") + own)
    shop.add_status(REPO, sha, "previews/shop", "success")  # prgen's, under its own name
    shop.add_status(REPO, sha, "prgen/preview", "success")  # and under the default one
    skipped = run(config)["skipped"]
    assert skipped[0]["reason"] == "deploy gate: waiting for checks: any check to report"
    shop.add_status(REPO, sha, "ci", "success")
    assert changes(run(config), "create")
