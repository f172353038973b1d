"""Check runs as a report channel (`report.checkRun`, GitHub Apps only), through the real CLI.

Real PyGithub against the fake GitHub on 127.0.0.1 as an App installation, environments as
real HTTP servers, a bare fleet repository. One check run a head, prgen's own app's: created
once, edited when the report changes, left alone when it does not; another app's run of the
same name is never touched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub
from prgen.testing.fake_github.model import CheckRun

from conftest import APP_ID, HEALTH, SHOP, as_app, config_text, run

REPO = "acme/shop"
RUNS = r"/repos/acme/shop/check-runs(/\d+)?"
ONLY_CHECK_RUN = """\
    report:
      commitStatus: false
      deployment: false
      comment: false
      checkRun: {name: prgen/preview}
"""
STATUS_AND_CHECK_RUN = """\
    report:
      deployment: false
      comment: false
      checkRun: {name: prgen/preview}
"""


def app_config(
    github: FakeGitHub,
    fleet_remote: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    repositories: str,
) -> Path:
    """A prgen.yaml that authenticates as a GitHub App installed on the fake."""
    config = tmp_path / "app.yaml"
    config.write_text(config_text(github.base_url, str(fleet_remote), repositories))
    return as_app(config, github, monkeypatch)


def sync_probe(config: Path, code: int = 0) -> dict[str, Any]:
    result = run("sync", "--probe", "-c", str(config), "--output", "json")
    assert result.exit_code == code, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def writes(github: FakeGitHub) -> int:
    """Writes to the repository (an App's run also mints its installation token: not one)."""
    return github.count_requests("POST", r"/repos/.*") + github.count_requests("PATCH", r".*")


def own_runs(github: FakeGitHub, sha: str) -> list[CheckRun]:
    return [r for r in github.check_runs(REPO, sha) if r.app_id == APP_ID]


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo(REPO)
    return github


def test_a_check_run_is_created_then_edited_then_left_alone(
    shop: FakeGitHub,
    fleet_remote: Path,
    tmp_path: Path,
    envs: Environments,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = app_config(
        shop,
        fleet_remote,
        tmp_path,
        monkeypatch,
        SHOP + HEALTH.format(url=envs.url) + ONLY_CHECK_RUN,
    )
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    sha = shop.pull(REPO, number).head_sha

    shop.clear_requests()
    first = sync_probe(config)
    assert [e["reportError"] for e in first["probe"]["environments"]] == [None]
    (ready,) = own_runs(shop, sha)
    assert (ready.name, ready.status, ready.conclusion) == ("prgen/preview", "completed", "success")
    assert ready.details_url == f"{envs.url}/pr-{number}/"
    title, summary, _ = ready.output
    assert title == "Preview environment: ✅ ready"
    assert summary is not None and summary.startswith("The environment is ready.")
    assert f"<{envs.url}/pr-{number}/>" in summary
    assert shop.count_requests("POST", RUNS) == 1 and shop.count_requests("PATCH", RUNS) == 0
    assert shop.statuses(REPO, sha) == []  # commitStatus: false

    # Not answering any more, but within its deadline: back to in progress, the same run.
    envs.behaviour[number] = "unhealthy"
    shop.clear_requests()
    sync_probe(config)
    (pending,) = own_runs(shop, sha)
    assert pending.id == ready.id
    assert (pending.status, pending.conclusion) == ("in_progress", None)
    assert pending.output[0] == "Preview environment: ⏳ being deployed"
    assert shop.count_requests("POST", RUNS) == 0
    assert shop.count_requests("PATCH", rf"/repos/acme/shop/check-runs/{ready.id}") == 1

    # Nothing new: one read of the check run, no write.
    shop.clear_requests()
    sync_probe(config)
    assert writes(shop) == 0
    assert shop.count_requests("GET", rf"/repos/acme/shop/commits/{sha}/check-runs") == 1
    assert len(own_runs(shop, sha)) == 1

    # A new head gets a check run of its own; the old head's is left as it was.
    envs.behaviour[number] = "healthy"
    new = shop.push(REPO, number)
    sync_probe(config)
    (fresh,) = own_runs(shop, new)
    assert fresh.id != ready.id and fresh.conclusion == "success"
    assert own_runs(shop, sha)[0].status == "in_progress"


def test_another_apps_check_run_of_the_same_name_is_left_alone(
    shop: FakeGitHub,
    fleet_remote: Path,
    tmp_path: Path,
    envs: Environments,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = app_config(
        shop,
        fleet_remote,
        tmp_path,
        monkeypatch,
        SHOP + HEALTH.format(url=envs.url) + ONLY_CHECK_RUN,
    )
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    sha = shop.pull(REPO, number).head_sha
    planted = shop.add_check_run(
        REPO, sha, "prgen/preview", status="completed", conclusion="failure", app=(777, "impostor")
    )
    before = [r for r in shop.check_runs(REPO, sha) if r.id == planted]

    sync_probe(config)
    sync_probe(config)
    (ours,) = own_runs(shop, sha)
    assert ours.id != planted and ours.conclusion == "success"
    assert [r for r in shop.check_runs(REPO, sha) if r.id == planted] == before
    assert shop.count_requests("PATCH", rf"/repos/acme/shop/check-runs/{planted}") == 0


def test_with_a_commit_status_too_both_are_written_and_both_are_left_alone_after(
    shop: FakeGitHub,
    fleet_remote: Path,
    tmp_path: Path,
    envs: Environments,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = app_config(
        shop,
        fleet_remote,
        tmp_path,
        monkeypatch,
        SHOP + HEALTH.format(url=envs.url) + STATUS_AND_CHECK_RUN,
    )
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    sha = shop.pull(REPO, number).head_sha
    sync_probe(config)
    (status,) = shop.statuses(REPO, sha)
    assert (status.context, status.state) == ("prgen/preview", "success")
    assert [r.conclusion for r in own_runs(shop, sha)] == ["success"]
    # The check run is written last, so it vouches for the status: one read, no write.
    shop.clear_requests()
    sync_probe(config)
    assert writes(shop) == 0
    assert shop.count_requests("GET", r"/repos/acme/shop/commits/.*/status(es)?") == 0


def test_a_failing_check_run_write_is_an_error_and_the_next_run_writes_it(
    shop: FakeGitHub,
    fleet_remote: Path,
    tmp_path: Path,
    envs: Environments,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = app_config(
        shop,
        fleet_remote,
        tmp_path,
        monkeypatch,
        SHOP + HEALTH.format(url=envs.url) + ONLY_CHECK_RUN,
    )
    number = shop.open_pull(REPO, title="Cart", head_branch="cart")
    sha = shop.pull(REPO, number).head_sha
    shop.inject("POST", r"/repos/acme/shop/check-runs", status=403, times=1)
    failed = sync_probe(config, code=1)
    (environment,) = failed["probe"]["environments"]
    assert environment["reportError"].startswith("check run:")
    assert own_runs(shop, sha) == []
    sync_probe(config)
    assert [r.conclusion for r in own_runs(shop, sha)] == ["success"]
