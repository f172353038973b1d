"""Probe and report end to end: real environments on 127.0.0.1, the fake GitHub, a bare fleet repo."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from prgen.config import load_config
from prgen.feedback import Prober, probe_and_report
from prgen.fleet import FleetRepo
from prgen.github.channels import GitHubReporter
from prgen.github.client import make_client
from prgen.github.pulls import GitHubSource
from prgen.inventory import read_inventory
from prgen.report import COMMENT_MARKER
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub

from conftest import HEALTH, SHOP, run, writes

Config = Callable[..., Path]
REPO = "acme/shop"


@pytest.fixture
def config(github: FakeGitHub, write_config: Config, envs: Environments) -> Path:
    github.add_repo(REPO)
    return write_config(SHOP + HEALTH.format(url=envs.url))


def our_status(github: FakeGitHub, sha: str) -> tuple[str, str | None, str | None]:
    status = [s for s in github.statuses(REPO, sha) if s.context == "prgen/preview"][-1]
    return status.state, status.description, status.target_url


def deployment_states(github: FakeGitHub) -> dict[str, str]:
    """Latest state of each deployment, by its SHA."""
    return {
        d.sha: github.deployment_statuses(REPO, d.id)[-1].state for d in github.deployments(REPO)
    }


def test_pending_then_ready_edits_one_comment_and_links_the_environment(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    envs.behaviour[number] = "unhealthy"

    result = run("sync", "--probe", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert our_status(github, sha) == ("pending", "environment is being deployed", None)
    assert deployment_states(github) == {sha: "in_progress"}
    [comment] = github.comments(REPO, number)
    assert comment.body.startswith(COMMENT_MARKER) and "being deployed" in comment.body

    envs.behaviour[number] = "healthy"
    result = run("probe", "-c", str(config))
    assert result.exit_code == 0, result.output
    url = f"{envs.url}/pr-{number}/"
    assert our_status(github, sha) == ("success", "environment is ready", url)
    [deployment] = github.deployments(REPO)
    assert deployment.environment == f"pr-{number}" and deployment.sha == sha
    latest = github.deployment_statuses(REPO, deployment.id)[-1]
    assert (latest.state, latest.environment_url) == ("success", url)
    [edited] = github.comments(REPO, number)
    assert edited.id == comment.id and "ready" in edited.body and url in edited.body


def test_a_second_probe_with_nothing_new_writes_nothing(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    for n in range(3):
        github.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}")
    assert run("sync", "--probe", "-c", str(config)).exit_code == 0
    before = writes(github)
    github.clear_requests()
    result = run("probe", "-c", str(config), "--output", "json")
    assert result.exit_code == 0
    assert writes(github) == 0 and before > 0
    assert all(e["writes"] == 0 for e in json.loads(result.stdout)["environments"])
    # Only the marker, prgen's comment, is read: one page per environment (see test_probe_report).
    assert github.count_requests("GET", r"/repos/acme/shop/issues/\d+/comments") == 3
    assert github.count_requests("GET", r"/repos/acme/shop/commits/[0-9a-f]+/status") == 0


def test_not_healthy_by_the_deadline_is_a_failure_with_the_reason(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    envs.behaviour[number] = "unhealthy"
    assert run("sync", "-c", str(config)).exit_code == 0

    settings = load_config(config)
    client = make_client(settings.github)
    fleet = FleetRepo(settings.fleet, Path(str(config) + ".work"))
    snapshot = fleet.refresh()
    listings = [GitHubSource(client).list_open(REPO)]
    committed = fleet.carried_since(f"shop-pr-{number}", sha)
    assert committed is not None

    def prober(minutes: int) -> Prober:
        return Prober(
            settings,
            client,
            fleet,
            now=lambda: committed + timedelta(minutes=minutes),
            reporter=GitHubReporter(client, sleep=lambda _: None),
        )

    prober(10).run(read_inventory(snapshot.files), listings)
    assert our_status(github, sha)[0] == "pending"
    prober(16).run(read_inventory(snapshot.files), listings)
    state, description, _ = our_status(github, sha)
    assert state == "failure" and description == "environment is not healthy: HTTP 503"
    assert deployment_states(github) == {sha: "failure"}
    assert "HTTP 503" in github.comments(REPO, number)[0].body
    # Still failing, for another reason: no new status.
    envs.behaviour[number] = "hanging"
    count = len(github.statuses(REPO, sha))
    prober(20).run(read_inventory(snapshot.files), listings)
    assert len(github.statuses(REPO, sha)) == count


def test_the_deadline_starts_when_the_fleet_first_carried_the_head(
    github: FakeGitHub, config: Path, fleet_remote: Path
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    before = datetime.now(UTC).replace(microsecond=0)
    assert run("sync", "-c", str(config)).exit_code == 0
    github.set_labels(REPO, number, ["touch"])  # more syncs that change nothing for this head
    assert run("sync", "-c", str(config)).exit_code == 0
    settings = load_config(config)
    fleet = FleetRepo(settings.fleet, Path(str(config) + ".work2"))
    fleet.refresh()
    since = fleet.carried_since(f"shop-pr-{number}", sha)
    assert since is not None and before <= since <= datetime.now(UTC)


def test_a_new_push_mid_deploy_gets_its_own_status_and_deployment(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    old = github.pull(REPO, number).head_sha
    envs.behaviour[number] = "unhealthy"
    assert run("sync", "--probe", "-c", str(config)).exit_code == 0
    new = github.push(REPO, number)
    result = run("sync", "--probe", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert our_status(github, new)[0] == "pending"
    assert deployment_states(github) == {old: "inactive", new: "in_progress"}
    assert len(github.comments(REPO, number)) == 1
    assert new[:7] in github.comments(REPO, number)[0].body


def test_a_closed_pr_gets_inactive_deployments_an_updated_comment_and_no_more_statuses(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    assert run("sync", "--probe", "-c", str(config)).exit_code == 0
    statuses = len(github.statuses(REPO, sha))
    github.close_pull(REPO, number)
    result = run("sync", "--probe", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert deployment_states(github) == {sha: "inactive"}
    [comment] = github.comments(REPO, number)
    assert "removed" in comment.body and "shop-pr-1" in comment.body
    assert len(github.statuses(REPO, sha)) == statuses
    github.clear_requests()
    assert run("probe", "-c", str(config)).exit_code == 0
    assert writes(github) == 0  # the closed report is not repeated


def test_one_hanging_environment_does_not_hold_up_the_others(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    numbers = [github.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}") for n in range(12)]
    envs.behaviour[numbers[0]] = "hanging"
    envs.behaviour[numbers[1]] = "slow"
    result = run("sync", "--probe", "-c", str(config), "--output", "json")
    assert result.exit_code == 0, result.output
    by_number = {e["pullRequest"]: e for e in json.loads(result.stdout)["probe"]["environments"]}
    assert by_number[numbers[0]]["state"] == "pending"
    assert by_number[numbers[0]]["reason"] == "timed out after 1s"
    assert {n: by_number[n]["reason"] for n in numbers[1:]} == dict.fromkeys(
        numbers[1:], "HTTP 200"
    )
    assert 1 < envs.max_in_flight <= 16  # concurrent, and bounded by probe.concurrency


def test_the_concurrency_bound_is_respected(
    github: FakeGitHub, write_config: Config, envs: Environments
) -> None:
    github.add_repo(REPO)
    config = write_config(SHOP + HEALTH.format(url=envs.url), extra="probe: {concurrency: 3}\n")
    for n in range(10):
        number = github.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}")
        envs.behaviour[number] = "slow"
    assert run("sync", "--probe", "-c", str(config)).exit_code == 0
    assert envs.max_in_flight == 3


def test_redirects_are_followed_only_on_the_same_host(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    same = github.open_pull(REPO, title="A", head_branch="a")
    other = github.open_pull(REPO, title="B", head_branch="b")
    envs.behaviour[same] = "redirect-same"
    envs.behaviour[other] = "redirect-other"
    result = run("sync", "--probe", "-c", str(config), "--output", "json")
    by_number = {e["pullRequest"]: e for e in json.loads(result.stdout)["probe"]["environments"]}
    assert by_number[same]["state"] == "success"
    assert by_number[other]["state"] == "pending"
    assert "not followed" in by_number[other]["reason"]


def test_a_connection_refused_is_reported_as_such(github: FakeGitHub, write_config: Config) -> None:
    github.add_repo(REPO)
    config = write_config(SHOP + HEALTH.format(url="http://127.0.0.1:9"))
    github.open_pull(REPO, title="A", head_branch="a")
    result = run("sync", "--probe", "-c", str(config), "--output", "json")
    [env] = json.loads(result.stdout)["probe"]["environments"]
    assert env["reason"] == "connection refused"


def test_a_github_error_while_reporting_is_retried_and_never_stops_the_others(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    first = github.open_pull(REPO, title="A", head_branch="a")
    second = github.open_pull(REPO, title="B", head_branch="b")
    sha_first = github.pull(REPO, first).head_sha
    github.inject("POST", rf"/repos/acme/shop/statuses/{sha_first}", status=502, times=1)
    result = run("sync", "--probe", "-c", str(config))
    assert result.exit_code == 0, result.output  # retried, then reported
    assert our_status(github, sha_first)[0] == "success"

    github.push(REPO, first)
    sha_first = github.pull(REPO, first).head_sha
    github.inject("POST", rf"/repos/acme/shop/statuses/{sha_first}", status=503, times=10)
    github.push(REPO, second)
    result = run("sync", "--probe", "-c", str(config), "--output", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)["probe"]
    errors = {e["pullRequest"]: e["reportError"] for e in report["environments"]}
    assert errors[first] and "503" in errors[first]
    assert errors[second] is None
    assert our_status(github, github.pull(REPO, second).head_sha)[0] == "success"


def test_each_channel_can_be_switched_off(
    github: FakeGitHub, write_config: Config, envs: Environments
) -> None:
    github.add_repo(REPO)
    off = "    report: {commitStatus: false, deployment: false, comment: true}\n"
    config = write_config(SHOP + HEALTH.format(url=envs.url) + off)
    number = github.open_pull(REPO, title="A", head_branch="a")
    assert run("sync", "--probe", "-c", str(config)).exit_code == 0
    assert github.statuses(REPO, github.pull(REPO, number).head_sha) == []
    assert github.deployments(REPO) == []
    assert len(github.comments(REPO, number)) == 1
    github.clear_requests()
    assert run("probe", "-c", str(config)).exit_code == 0
    assert writes(github) == 0


def test_the_health_url_can_never_take_raw_pr_text(tmp_path: Path) -> None:
    config = tmp_path / "prgen.yaml"
    config.write_text(
        "fleet: {url: x, path: p}\nrepositories:\n  - name: a/b\n"
        "    chartRef: {kind: OCIRepository, name: c}\n"
        "    healthCheck: {url: 'https://<<PR_BRANCH>>.example.com/healthz'}\n"
    )
    result = run("validate", "-c", str(config))
    assert result.exit_code == 2
    assert "repositories[0].healthCheck.url: <<PR_BRANCH>> is PR text" in result.stderr


def test_probe_without_a_sync_lists_once_and_reports(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    number = github.open_pull(REPO, title="A", head_branch="a")
    assert run("sync", "-c", str(config)).exit_code == 0
    assert github.comments(REPO, number) == []  # plain sync reports nothing
    settings = load_config(config)
    result = probe_and_report(
        settings, make_client(settings.github), FleetRepo(settings.fleet, Path(str(config) + ".w"))
    )
    assert [e.observation.health for e in result.environments] == ["success"]
    assert github.count_requests("GET", r"/repos/acme/shop/pulls") == 2  # one per command


def test_a_pr_closed_before_any_report_gets_no_removal_comment(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    assert run("sync", "-c", str(config)).exit_code == 0  # no probe: nothing reported yet
    github.close_pull(REPO, number)
    assert run("sync", "--probe", "-c", str(config)).exit_code == 0
    assert github.comments(REPO, number) == []
    assert github.deployments(REPO) == []
