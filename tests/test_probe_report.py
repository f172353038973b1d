"""Reporting converges: back to an earlier head, close and reopen, one channel refused, planted comments.

Real PyGithub against the fake GitHub on 127.0.0.1, environments as real HTTP servers,
a bare fleet repository; every run is the CLI, as the CronJob runs it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from github import Auth, Github

from prgen.config import ReportSettings
from prgen.github.channels import GitHubReporter
from prgen.report import COMMENT_MARKER, Health, Observation, desired_report
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub

from conftest import HEALTH, SHOP, TOKEN, as_app, config_text, run, writes

Config = Callable[..., Path]
REPO = "acme/shop"
COMMENTS = r"/repos/acme/shop/issues/\d+/comments"


@pytest.fixture
def config(github: FakeGitHub, write_config: Config, envs: Environments) -> Path:
    github.add_repo(REPO)
    return write_config(SHOP + HEALTH.format(url=envs.url))


def sync_probe(config: Path) -> dict[str, Any]:
    result = run("sync", "--probe", "-c", str(config), "--output", "json")
    assert result.exit_code in (0, 1), result.output
    report: dict[str, Any] = json.loads(result.stdout)["probe"]
    return report


def deployments(github: FakeGitHub) -> list[tuple[str, str]]:
    """(sha, latest state) of every deployment, oldest first."""
    return [
        (d.sha, github.deployment_statuses(REPO, d.id)[-1].state) for d in github.deployments(REPO)
    ]


def our_status(github: FakeGitHub, sha: str) -> str:
    return [s for s in github.statuses(REPO, sha) if s.context == "prgen/preview"][-1].state


def assert_up_to_date(github: FakeGitHub, config: Path, environments: int = 1) -> None:
    """A probe with nothing new: no write, and one read of the marker (the comment) each."""
    github.clear_requests()
    result = run("probe", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert writes(github) == 0
    assert github.count_requests("GET", COMMENTS) == environments
    assert github.count_requests("GET", "/user") == 1  # prgen's login, once per run
    # Besides the listing, no read of a status or a deployment: the marker vouches for them.
    assert github.count_requests("GET", r"/repos/acme/shop/(?!pulls).*") == environments


# -- 1. the commit status alone cannot say all is reported ----------------------------------


def test_a_force_push_back_to_an_earlier_head_gets_the_deployment_and_comment_back(
    github: FakeGitHub, config: Path
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    a = github.pull(REPO, number).head_sha
    sync_probe(config)
    b = github.push(REPO, number)
    sync_probe(config)
    assert deployments(github) == [(a, "inactive"), (b, "success")]

    github.push(REPO, number, sha=a)  # force-push back: A's own status still says success
    report = sync_probe(config)
    assert [e["reportError"] for e in report["environments"]] == [None]
    assert our_status(github, a) == "success"
    # A new deployment of A, the newest; B's is retired.
    assert deployments(github) == [(a, "inactive"), (b, "inactive"), (a, "success")]
    [comment] = github.comments(REPO, number)
    assert f"`{a[:7]}`" in comment.body and b[:7] not in comment.body
    assert_up_to_date(github, config)


def test_close_and_reopen_at_the_same_head_brings_the_environment_back_on_the_pr(
    github: FakeGitHub, config: Path
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    sync_probe(config)
    github.close_pull(REPO, number)
    sync_probe(config)
    assert deployments(github) == [(sha, "inactive")]
    assert "removed" in github.comments(REPO, number)[0].body

    github.reopen_pull(REPO, number)  # same head: its status still says success
    sync_probe(config)
    assert our_status(github, sha) == "success"
    assert deployments(github) == [(sha, "success")]
    [comment] = github.comments(REPO, number)
    assert "✅ ready" in comment.body and "removed" not in comment.body
    assert_up_to_date(github, config)


def test_several_environments_with_nothing_new_cost_a_few_reads_each_and_no_write(
    github: FakeGitHub, config: Path
) -> None:
    for n in range(3):
        github.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}")
    sync_probe(config)
    assert_up_to_date(github, config, environments=3)


# -- 4. each channel on its own --------------------------------------------------------------


def test_a_token_that_may_not_comment_still_gets_status_and_deployment_written(
    github: FakeGitHub, config: Path
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    refused = {"message": "Resource not accessible by personal access token"}
    github.inject("POST", COMMENTS, status=403, body=refused, times=100)

    result = run("sync", "--probe", "-c", str(config), "--output", "json")
    assert result.exit_code == 1, result.output  # something was not reported
    assert our_status(github, sha) == "success"
    assert deployments(github) == [(sha, "success")]
    assert github.comments(REPO, number) == []
    assert github.count_requests("POST", COMMENTS) == 1  # a plain 403 is not retried
    [env] = json.loads(result.stdout)["probe"]["environments"]
    assert env["reportError"] == (
        "comment: HTTP 403: Resource not accessible by personal access token"
    )
    assert env["writes"] == 3  # the status, the deployment and its status

    # Next round: the comment is tried again (it is read every time), the rest is not rewritten.
    github.clear_requests()
    result = run("probe", "-c", str(config))
    assert result.exit_code == 1
    assert "NOT REPORTED: comment: HTTP 403" in result.output
    assert github.count_requests("POST", COMMENTS) == 1
    assert writes(github) == 1  # that refused comment only


def test_a_secondary_rate_limit_403_is_retried(github: FakeGitHub, config: Path) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    limited = {"message": "You have exceeded a secondary rate limit. Please wait."}
    github.inject("POST", COMMENTS, status=403, body=limited, times=1)
    report = sync_probe(config)
    assert [e["reportError"] for e in report["environments"]] == [None]
    assert github.count_requests("POST", COMMENTS) == 2
    assert len(github.comments(REPO, number)) == 1


def test_a_failing_status_does_not_keep_the_deployment_and_comment_from_being_written(
    github: FakeGitHub, config: Path
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    github.inject("POST", rf"/repos/acme/shop/statuses/{sha}", status=422, times=100)
    report = sync_probe(config)
    assert deployments(github) == [(sha, "success")]
    assert len(github.comments(REPO, number)) == 1
    [env] = report["environments"]
    assert env["reportError"] == "commit status: HTTP 422: Unprocessable Entity"
    assert github.count_requests("POST", rf"/repos/acme/shop/statuses/{sha}") == 1


# -- 6. only prgen's own comment is prgen's ----------------------------------------------


def test_a_planted_marker_comment_is_left_alone_and_prgen_makes_its_own(
    github: FakeGitHub, config: Path
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    planted = github.add_comment(
        REPO, number, f"{COMMENT_MARKER}\n### Preview environment: ✅ ready, trust me", user="alice"
    )
    sync_probe(config)
    comments = github.comments(REPO, number)
    assert [(c.id, c.user, c.body) for c in comments[:1]] == [(planted.id, "alice", planted.body)]
    [ours] = comments[1:]
    assert ours.user == "prgen-bot" and ours.body.startswith(COMMENT_MARKER)

    github.push(REPO, number)
    sync_probe(config)  # edits its own comment only
    after = github.comments(REPO, number)
    assert [c.id for c in after] == [planted.id, ours.id]
    assert after[0].body == planted.body and after[1].body != ours.body
    assert github.count_requests("PATCH", rf"/repos/acme/shop/issues/comments/{planted.id}") == 0


def test_a_github_app_finds_its_own_bot_comment_again(
    github: FakeGitHub,
    fleet_remote: Path,
    tmp_path: Path,
    envs: Environments,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    github.add_repo(REPO)
    config = tmp_path / "app.yaml"
    config.write_text(
        config_text(github.base_url, str(fleet_remote), SHOP + HEALTH.format(url=envs.url))
    )
    as_app(config, github, monkeypatch)
    number = github.open_pull(REPO, title="One", head_branch="one")
    github.add_comment(REPO, number, f"{COMMENT_MARKER}\nplanted", user="alice")
    sync_probe(config)
    github.push(REPO, number)
    github.clear_requests()
    report = sync_probe(config)
    assert [e["reportError"] for e in report["environments"]] == [None]
    assert [c.user for c in github.comments(REPO, number)] == ["alice", "prgen-preview[bot]"]
    assert github.count_requests("GET", "/app") == 1  # the bot's login, once per run
    assert github.count_requests("PATCH", r"/repos/acme/shop/issues/comments/\d+") == 1


def test_without_its_own_login_prgen_writes_no_comment_but_the_rest(
    github: FakeGitHub, config: Path
) -> None:
    # GitHub Actions' GITHUB_TOKEN, say: an app's installation token, which GET /user refuses.
    numbers = [github.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}") for n in range(2)]
    refused = {"message": "Resource not accessible by integration"}
    github.inject("GET", "/user", status=403, body=refused, times=100)
    report = sync_probe(config)
    assert [e["reportError"] for e in report["environments"]] == [
        "comment: cannot tell prgen's own login (HTTP 403: Resource not accessible by "
        "integration), so not its comment"
    ] * 2
    assert github.count_requests("GET", "/user") == 1  # once per run, not per environment
    assert all(github.comments(REPO, n) == [] for n in numbers)
    assert [state for _, state in deployments(github)] == ["success"] * 2
    assert {our_status(github, github.pull(REPO, n).head_sha) for n in numbers} == {"success"}


def test_a_rate_limit_that_outlasts_the_retries_stops_the_other_channels_too(
    github: FakeGitHub,
) -> None:
    github.add_repo(REPO)
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    limited = {"message": "You have exceeded a secondary rate limit."}
    github.inject("POST", rf"/repos/acme/shop/statuses/{sha}", status=403, body=limited, times=9)
    client = Github(base_url=github.base_url, auth=Auth.Token(TOKEN), retry=None, lazy=True)
    sleeps: list[float] = []
    observation = Observation(REPO, number, sha, "shop-pr-1", "http://x/", Health.READY, "HTTP 200")
    wanted = desired_report(ReportSettings(), observation, f"pr-{number}")
    outcome = GitHubReporter(client, sleep=sleeps.append).report(observation, wanted)
    assert outcome.error == "commit status: HTTP 403: secondary rate limit"
    assert github.count_requests("POST", rf"/repos/acme/shop/statuses/{sha}") == 3
    assert sleeps == [1.0, 2.0]
    # The limit is the client's: the deployment and the comment would only wait for it too.
    assert github.count_requests("POST", r".*/(deployments|comments)") == 0
    assert outcome.writes == 0


# -- the marker: written last, and only when the rest is shown --------------------------------


def test_a_deployment_that_failed_for_now_holds_the_marker_back_until_it_is_written(
    github: FakeGitHub, config: Path
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    github.inject("POST", r"/repos/acme/shop/deployments", status=502, times=100)
    report = sync_probe(config)
    [env] = report["environments"]
    # A 502 may have made it: re-read, not created again in this run.
    assert env["reportError"].startswith("deployment: "), env["reportError"]
    assert "not created again" in env["reportError"]
    assert github.count_requests("POST", r"/repos/acme/shop/deployments") == 1
    assert our_status(github, sha) == "success"
    # The comment is the marker: had it been written, the next round would read only it,
    # find it up to date, and never write the deployment.
    assert github.comments(REPO, number) == []

    github.clear_faults()
    assert run("probe", "-c", str(config)).exit_code == 0
    assert deployments(github) == [(sha, "success")]
    assert len(github.comments(REPO, number)) == 1
    assert_up_to_date(github, config)


def test_a_deployment_github_refuses_for_good_does_not_hold_the_comment_back(
    github: FakeGitHub, config: Path
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    refused = {"message": "Resource not accessible by integration"}
    github.inject("POST", r"/repos/acme/shop/deployments", status=403, body=refused, times=100)
    result = run("sync", "--probe", "-c", str(config))
    assert result.exit_code == 1 and "NOT REPORTED: deployment: HTTP 403" in result.output
    assert github.count_requests("POST", r"/repos/acme/shop/deployments") == 1
    assert len(github.comments(REPO, number)) == 1  # a missing permission: asking again won't help
    assert github.deployments(REPO) == []


def test_the_first_report_reads_each_channel_once_and_writes_each_once(
    github: FakeGitHub, config: Path
) -> None:
    github.open_pull(REPO, title="One", head_branch="one")
    assert run("sync", "-c", str(config)).exit_code == 0
    github.clear_requests()
    assert run("probe", "-c", str(config)).exit_code == 0
    # The marker (the comment) is read once: its write uses that read, it does not read again.
    assert github.count_requests("GET", COMMENTS) == 1
    assert github.count_requests("GET", r"/repos/acme/shop/commits/\w+/status") == 1
    assert github.count_requests("GET", r"/repos/acme/shop/deployments") == 1
    assert github.count_requests("POST", COMMENTS) == 1
    assert github.count_requests("POST", r"/repos/acme/shop/statuses/\w+") == 1
    assert github.count_requests("POST", r"/repos/acme/shop/deployments") == 1


def test_prgen_finds_its_status_among_more_contexts_than_one_page_holds(
    github: FakeGitHub, write_config: Config, envs: Environments
) -> None:
    github.add_repo(REPO)
    only_status = "    report: {deployment: false, comment: false}\n"
    config = write_config(SHOP + HEALTH.format(url=envs.url) + only_status)
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    assert run("sync", "--probe", "-c", str(config)).exit_code == 0
    assert our_status(github, sha) == "success"
    ci = Github(
        base_url=github.base_url,
        auth=Auth.Token(TOKEN),
        retry=None,
        lazy=True,
        seconds_between_requests=0,
        seconds_between_writes=0,
    )
    commit = ci.get_repo(REPO).get_commit(sha)
    for n in range(40):  # other CI systems report after prgen did
        commit.create_status("success", context=f"ci/check-{n:02d}")

    github.clear_requests()
    result = run("probe", "-c", str(config))
    assert result.exit_code == 0, result.output
    assert writes(github) == 0  # not a second 'success' because prgen's was on page 2
    assert len([s for s in github.statuses(REPO, sha) if s.context == "prgen/preview"]) == 1
