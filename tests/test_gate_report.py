"""The PR shows why it waits: after `prgen sync`, each head a deploy gate holds back gets
prgen's pending status (and check run, with an App) saying why, on that head.

Through the real CLI, real HTTP to the fake GitHub, real git to a bare fleet.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from prgen.cli import main
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub
from prgen.testing.fake_github.model import CommitStatus
from test_check_run_report import APP_ID, app_config

from conftest import HEALTH, SHOP, git

Config = Callable[..., Path]
REPO = "acme/shop"
STATUSES = r"/repos/acme/shop/statuses/[0-9a-f]+"


def gated(gate: str) -> str:
    return SHOP + f"    deployWhen: {gate}\n"


def sync(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["sync", "--config", str(config), *args])


def run(config: Path, *args: str, code: int = 0) -> dict[str, Any]:
    result = sync(config, "--output", "json", *args)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def ours(github: FakeGitHub, sha: str) -> list[CommitStatus]:
    """prgen's statuses on a head, oldest first."""
    return [s for s in github.statuses(REPO, sha) if s.context == "prgen/preview"]


def commits(remote: Path) -> int:
    return int(git("rev-list", "--count", "main", cwd=remote))


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo(REPO)
    return github


def test_a_pr_without_environment_says_what_it_waits_for_once_and_again_when_it_changes(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    sha = shop.pull(REPO, number).head_sha
    config = write_config(gated("{checks: [build, test]}"))

    first = run(config)
    ((status),) = ours(shop, sha)
    assert (status.state, status.description) == ("pending", "waiting for checks: build, test")
    assert status.target_url in (None, "")
    assert first["waiting"] == [
        {
            "repository": REPO,
            "pullRequest": number,
            "headSha": sha,
            "reason": "waiting for checks: build, test",
            "writes": 1,
            "reportError": None,
        }
    ]

    # Nothing new: read, not written again. The head's statuses changed by prgen's own
    # write, so this run reads them in full once; from then on each read is a 304, free.
    again = run(config)
    assert again["waiting"][0]["writes"] == 0
    shop.clear_requests()
    idle = run(config)
    assert idle["waiting"][0]["writes"] == 0
    assert shop.count_requests("POST", STATUSES) == 0
    assert shop.count_requests("GET", rf"/repos/acme/shop/commits/{sha}/status") == 2
    assert shop.points_used() == 0
    assert len(ours(shop, sha)) == 1

    # The reason changes: said again.
    shop.add_check_run(REPO, sha, "build")
    run(config)
    assert [s.description for s in ours(shop, sha)] == [
        "waiting for checks: build, test",
        "waiting for checks: test",
    ]

    # It passes and is deployed. No health check, so no probe will report on it: the sync
    # says it passed, or "waiting" would stay pending for ever. Once.
    shop.add_status(REPO, sha, "test", "success")
    deployed = run(config)
    assert deployed["waiting"] == []
    assert [(p["pullRequest"], p["writes"]) for p in deployed["gatePassed"]] == [(number, 1)]
    assert [(s.state, s.description) for s in ours(shop, sha)][-1] == (
        "success",
        "deploy gate passed: the fleet carries this commit",
    )
    assert "waiting" not in run(config)  # nothing deployed, nothing waits: nothing said
    assert len(ours(shop, sha)) == 3


def test_with_a_health_check_the_probe_and_not_the_sync_says_the_gate_passed(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, envs: Environments
) -> None:
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    sha = shop.pull(REPO, number).head_sha
    config = write_config(gated("{checks: [build]}") + HEALTH.format(url=envs.url))
    run(config)
    shop.add_check_run(REPO, sha, "build")
    deployed = run(config)
    assert deployed.get("gatePassed", []) == []
    assert [s.description for s in ours(shop, sha)] == ["waiting for checks: build"]
    run(config, "--probe")
    assert [(s.state, s.description) for s in ours(shop, sha)][-1] == (
        "success",
        "environment is ready",
    )


def test_a_held_environment_says_why_on_the_new_head_only(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    good = shop.pull(REPO, number).head_sha
    shop.add_status(REPO, good, "ci", "success")
    config = write_config(gated("{checks: all}"))
    run(config)
    bad = shop.push(REPO, number)
    shop.add_status(REPO, bad, "ci", "failure")

    held = run(config)
    assert [c["action"] for c in held["changes"]] == ["hold"]
    assert [(s.state, s.description) for s in ours(shop, bad)] == [("pending", "checks failed: ci")]
    # The deployed head keeps what it said when it passed: the hold says nothing there.
    assert [s.description for s in ours(shop, good)] == [
        "deploy gate passed: the fleet carries this commit"
    ]


def test_a_dry_run_says_nothing_on_the_pr(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    config = write_config(gated("{approvals: 1}"))
    shop.clear_requests()
    document = run(config, "--dry-run")
    assert document["skipped"][0]["reason"] == "deploy gate: waiting for 1 approval"
    assert "waiting" not in document
    assert shop.count_requests("POST", r".*") == 0
    assert ours(shop, shop.pull(REPO, number).head_sha) == []


def test_a_long_reason_is_cut_to_githubs_limit(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    names = [f"integration-suite-{n:02d}" for n in range(12)]
    config = write_config(gated("{checks: [" + ", ".join(names) + "]}"))
    run(config)
    (status,) = ours(shop, shop.pull(REPO, number).head_sha)
    assert len(status.description) == 140 and status.description.endswith("…")
    assert status.description.startswith("waiting for checks: integration-suite-00, ")


def test_a_failed_write_is_a_warning_and_exit_1_and_the_fleet_is_what_the_sync_made(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    ready = shop.open_pull(REPO, title="Ready", head_branch="ready")
    shop.add_status(REPO, shop.pull(REPO, ready).head_sha, "ci", "success")
    waits = shop.open_pull(REPO, title="Waits", head_branch="waits")
    config = write_config(gated("{checks: all}"))
    before = commits(fleet_remote)
    shop.inject("POST", STATUSES, status=500, times=100)

    document = run(config, code=1)
    assert [(c["action"], c["pullRequest"]) for c in document["changes"]] == [("create", ready)]
    assert document["commit"] is not None and commits(fleet_remote) == before + 1
    (waiting,) = document["waiting"]
    assert waiting["pullRequest"] == waits and waiting["reportError"].startswith("commit status:")
    assert document["exitCode"] == 1

    text = sync(config)
    assert text.exit_code == 1
    assert f"warning: could not say on {REPO}#{waits} why it waits: commit status:" in text.output
    assert commits(fleet_remote) == before + 1  # nothing new to commit: the failure moved nothing


def test_with_an_app_the_check_run_says_why_it_waits(
    github: FakeGitHub,
    fleet_remote: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    github.add_repo(REPO)
    report = "    report: {deployment: false, comment: false, checkRun: {name: prgen/preview}}\n"
    config = app_config(
        github, fleet_remote, tmp_path, monkeypatch, gated("{checks: [build]}") + report
    )
    number = github.open_pull(REPO, title="Cart", head_branch="cart")
    sha = github.pull(REPO, number).head_sha
    run(config)
    run(config)
    (check,) = [r for r in github.check_runs(REPO, sha) if r.app_id == APP_ID]
    assert (check.name, check.status, check.conclusion) == ("prgen/preview", "in_progress", None)
    title, summary, _ = check.output
    assert title == "Preview environment: ⏸️ waiting for its deploy gate"
    assert summary == "This commit is not deployed yet: `waiting for checks: build`\n"
    assert [s.description for s in ours(github, sha)] == ["waiting for checks: build"]
