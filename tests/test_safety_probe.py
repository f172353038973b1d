"""Issue 10, the probe round's safety promises (items 9, 11, 13, 15 and 18).

Real PyGithub against the fake GitHub on 127.0.0.1, environments as real HTTP servers,
a bare fleet repository; most runs are the CLI, as the CronJob runs it.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from github import Auth, Github
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from prgen.config import ProbeSettings, ReportSettings, load_config
from prgen.feedback import REPORT_GRACE, Prober
from prgen.fleet import FleetRepo
from prgen.github.channels import GitHubReporter
from prgen.github.client import make_client
from prgen.github.pulls import GitHubSource
from prgen.inventory import read_inventory
from prgen.probe import GRACE, ProbeResult, ProbeTarget, probe, probe_all
from prgen.report import (
    COMMENT_MARKER,
    NOT_IN_TIME,
    Health,
    Observation,
    comment_body,
    desired_report,
)
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub
from processes import PrgenProcess
from stress import scale

from conftest import HEALTH, SHOP, TOKEN, Cases, run, writes

Config = Callable[..., Path]
REPO = "acme/shop"
COMMENTS = r"/repos/acme/shop/issues/\d+/comments"


@pytest.fixture
def config(github: FakeGitHub, write_config: Config, envs: Environments) -> Path:
    github.add_repo(REPO)
    return write_config(SHOP + HEALTH.format(url=envs.url))


def sync_probe(config: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = run("sync", "--probe", "-c", str(config), "--output", "json", *extra)
    document: dict[str, Any] = json.loads(result.stdout)
    return result.exit_code, document


# -- 10.9 one environment cannot stop the probe round -----------------------------------------


@pytest.mark.reliability("10.9 a malformed redirect or a failing probe stays that environment's")
def test_a_malformed_redirect_is_that_environments_failure_and_the_others_are_reported(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    numbers = [github.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}") for n in range(4)]
    envs.behaviour[numbers[1]] = "redirect-to"
    envs.location[numbers[1]] = "http://[x]/"
    code, document = sync_probe(config)
    assert code == 0, document
    by_number = {e["pullRequest"]: e for e in document["probe"]["environments"]}
    assert by_number[numbers[1]]["state"] == "pending"  # unhealthy, within its deadline
    assert by_number[numbers[1]]["reason"] == "probe failed: ValueError"
    assert {n: by_number[n]["reason"] for n in numbers if n != numbers[1]} == dict.fromkeys(
        [n for n in numbers if n != numbers[1]], "HTTP 200"
    )
    assert all(e["reportError"] is None for e in by_number.values())
    assert all(len(github.comments(REPO, n)) == 1 for n in numbers)


def test_any_exception_inside_one_probe_is_that_environments_failure(
    github: FakeGitHub, config: Path, envs: Environments
) -> None:
    numbers = [github.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}") for n in range(3)]
    assert run("sync", "-c", str(config)).exit_code == 0
    settings = load_config(config)
    client = make_client(settings.github)
    fleet = FleetRepo(settings.fleet, Path(str(config) + ".work"))
    snapshot = fleet.refresh()

    def breaks_on_the_second(target: ProbeTarget) -> ProbeResult:
        if f"/pr-{numbers[1]}/" in target.url:
            raise RuntimeError("a bug in one probe")
        return probe(target)

    result = Prober(
        settings,
        client,
        fleet,
        run_probe=breaks_on_the_second,
        reporter=GitHubReporter(client, sleep=lambda _: None),
    ).run(read_inventory(snapshot.files), [GitHubSource(client).list_open(REPO)])
    reasons = {e.observation.number: e.observation.reason for e in result.environments}
    assert reasons == {
        numbers[0]: "HTTP 200",
        numbers[1]: "probe failed: RuntimeError",
        numbers[2]: "HTTP 200",
    }
    assert all(len(github.comments(REPO, n)) == 1 for n in numbers)


def test_an_invalid_probe_url_is_a_failure_of_its_own() -> None:
    from prgen.config import HealthCheck

    for url in ("http://[x]/healthz", "http://127.0.0.1:99999/", "http://a b/"):
        result = probe(ProbeTarget(url, HealthCheck(url, timeout=1)))
        assert not result.healthy and result.reason == "request failed: InvalidURL", url


def test_sync_probe_prints_the_syncs_result_when_the_probe_half_fails(
    github: FakeGitHub, config: Path, fleet_remote: Path
) -> None:
    # The fleet remote goes away right after the sync's push: the probe's fetch then fails.
    hook = fleet_remote / "hooks" / "post-receive"
    hook.write_text(f'#!/bin/sh\nmv "{fleet_remote}" "{fleet_remote}.gone"\n')
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR)
    github.open_pull(REPO, title="One", head_branch="one")

    result = run("sync", "--probe", "-c", str(config))
    assert result.exit_code == 3, result.output  # the fleet's error, said by the one handler
    assert "committed" in result.stdout and "and pushed" in result.stdout
    assert "acme/shop: 1 open, 1 with an environment" in result.stdout
    assert "prgen: error:" in result.stderr and "fetching" in result.stderr

    # The JSON document has the sync's result too, and the probe's error in its place.
    (fleet_remote.parent / (fleet_remote.name + ".gone")).rename(fleet_remote)
    github.open_pull(REPO, title="Two", head_branch="two")
    code, document = sync_probe(config)
    assert code == 3
    assert document["exitCode"] == 3 and document["commit"]
    assert document["probe"]["exitCode"] == 3
    assert "fetching" in document["probe"]["error"]


# -- 10.11 the probe sends no ambient credentials -------------------------------------------


@pytest.mark.reliability("10.11 a ~/.netrc on the host never reaches a PR's application")
def test_a_netrc_on_the_host_is_not_sent_to_the_environments(
    github: FakeGitHub, config: Path, envs: Environments, cases: Cases
) -> None:
    # HOME is the test's own (conftest); requests reads $HOME/.netrc and $NETRC.
    home = Path(os.environ["HOME"])
    home.mkdir(parents=True, exist_ok=True)
    netrc = home / ".netrc"
    netrc.write_text("machine 127.0.0.1 login alice password s3cret-from-netrc\n")
    netrc.chmod(0o600)
    assert requests.utils.get_netrc_auth(envs.url) == ("alice", "s3cret-from-netrc")
    plain = github.open_pull(REPO, title="Plain", head_branch="plain")
    redirected = github.open_pull(REPO, title="Redirected", head_branch="redirected")
    envs.behaviour[redirected] = "redirect-same"  # the second request, too
    code, document = sync_probe(config)
    assert code == 0, document
    assert [e["reason"] for e in document["probe"]["environments"]] == ["HTTP 200"] * 2
    for number in (plain, redirected):
        assert "authorization" not in envs.headers[number], envs.headers[number]
        cases.add()


# -- 10.13 no duplicate comment after a slow write --------------------------------------------


def with_github_timeout(config: Path, seconds: int) -> Path:
    text = config.read_text()
    assert "  timeout: 5\n" in text, "conftest.config_text changed its github block"
    config.write_text(text.replace("  timeout: 5\n", f"  timeout: {seconds}\n", 1))
    return config


@pytest.mark.reliability("10.13 a comment post answered after the client's timeout")
@pytest.mark.parametrize(
    "applied", [False, True], ids=["completed-after-the-timeout", "answered-after-the-timeout"]
)
def test_a_comment_post_that_times_out_never_leads_to_a_second_comment(
    github: FakeGitHub, config: Path, applied: bool
) -> None:
    with_github_timeout(config, 1)
    number = github.open_pull(REPO, title="One", head_branch="one")
    # GitHub holds the post 2.5 s, well past the client's 1 s, and completes it then (or
    # completed it at once and answers then).
    github.inject("POST", COMMENTS, status=0, delay=2.5, applied=applied)
    start = time.monotonic()
    code, document = sync_probe(config)
    time.sleep(max(0.0, start + 2.5 + 0.3 - time.monotonic()))  # until the slow post is done
    assert len(github.comments(REPO, number)) == 1
    assert github.count_requests("POST", COMMENTS) == 1  # re-read, not re-posted
    [env] = document["probe"]["environments"]
    if env["reportError"] is not None:  # the re-reads came before the comment did
        assert "not posted again" in env["reportError"] and code == 1
    # The next round reads it and leaves it be: one comment, up to date.
    assert run("probe", "-c", str(config)).exit_code == 0
    assert len(github.comments(REPO, number)) == 1


def test_a_comment_post_answered_with_a_502_is_left_to_the_next_round(
    github: FakeGitHub, config: Path
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    github.inject("POST", COMMENTS, status=502, times=1)  # a 502: it may have been made
    code, document = sync_probe(config)
    assert code == 1
    [env] = document["probe"]["environments"]
    assert "not posted again" in env["reportError"]
    assert github.count_requests("POST", COMMENTS) == 1
    assert github.comments(REPO, number) == []
    assert run("probe", "-c", str(config)).exit_code == 0
    assert len(github.comments(REPO, number)) == 1


@pytest.mark.reliability("10.13 two of prgen's own comments: one kept up to date, the rest go")
def test_prgen_keeps_one_of_its_own_comments_and_deletes_the_others(
    github: FakeGitHub, config: Path
) -> None:
    number = github.open_pull(REPO, title="One", head_branch="one")
    alice = github.add_comment(REPO, number, f"{COMMENT_MARKER}\nplanted", user="alice")
    first = github.add_comment(REPO, number, f"{COMMENT_MARKER}\nold", user="prgen-bot")
    github.add_comment(REPO, number, "a review remark", user="bob")
    github.add_comment(REPO, number, f"{COMMENT_MARKER}\nold", user="prgen-bot")
    code, _ = sync_probe(config)
    assert code == 0
    comments = github.comments(REPO, number)
    assert [(c.id, c.user) for c in comments] == [
        (alice.id, "alice"),
        (first.id, "prgen-bot"),
        (comments[2].id, "bob"),
    ]
    assert "✅ ready" in comments[1].body

    # Up to date, and a second one appears (an older prgen's late write): the round that
    # reads the comment anyway removes it, and the next costs one read again.
    github.add_comment(REPO, number, comments[1].body, user="prgen-bot")
    github.clear_requests()
    assert run("probe", "-c", str(config)).exit_code == 0
    assert [c.id for c in github.comments(REPO, number)] == [c.id for c in comments]
    assert writes(github) == 0
    assert github.count_requests("DELETE", r"/repos/acme/shop/issues/comments/\d+") == 1
    github.clear_requests()
    assert run("probe", "-c", str(config)).exit_code == 0
    assert writes(github) == 0 and github.count_requests("DELETE", ".*") == 0
    assert github.count_requests("GET", COMMENTS) == 1


# -- 10.18 PR text in Markdown is inert --------------------------------------------------------

HOSTILE = [
    "@maintainers please look",
    "@acme/security-team",
    "x | y | z",
    "<img src=x onerror=alert(1)>",
    "<script>alert(1)</script><b>bold</b>",
    "[click](https://evil.example)",
    "![pixel](https://evil.example/p.png)",
    "`code` ``two`` ```",
    "a\\|b\\\\|c\\",
    "line1\nline2\n| injected | row |\n\n# Heading",
    "*bold* _it_ ~~gone~~ **x**",
    "closes #1 and GH-2 and acme/shop#3",
    "<!-- hidden -->",
    "\u202eevil\u2066 \x1b[31mred",
    "https://evil.example/autolink www.evil.example",
    "<https://evil.example>",
    "`",
    "|",
    "\\",
    "x" * 500,
]
_MD = MarkdownIt("commonmark").enable(["table", "strikethrough"])
_ALLOWED_TAGS = {"table", "thead", "tbody", "tr", "th", "td", "h3", "p", "sub"}


def assert_inert(body: str, rows: int, link: str | None) -> None:
    """What GitHub would make of the comment: the table as prgen drew it, nothing else active.

    GitHub makes no mention or reference inside code or a link, so outside them there must
    be no '@' and no '#'; and no tag but the layout's, and one link at most: the URL's.
    """
    html = _MD.render(body)
    outside = re.sub(r"<code>.*?</code>", "", html, flags=re.S)
    links = re.findall(r'<a href="([^"]*)">.*?</a>', outside, flags=re.S)
    outside = re.sub(r"<a href=\"[^\"]*\">.*?</a>", "", outside, flags=re.S)
    assert set(re.findall(r"</?([a-zA-Z][a-zA-Z0-9]*)", outside)) <= _ALLOWED_TAGS, html
    assert "@" not in outside and "#" not in re.sub(r"&#\d+;", "", outside), html
    assert links == ([link] if link else []), html
    table_rows = re.findall(r"<tr>(.*?)</tr>", html, flags=re.S)
    assert len(table_rows) == (rows + 1 if rows else 0), html
    assert all(len(re.findall(r"<t[hd]>", row)) == 2 for row in table_rows), html


def hostile_observation(health: Health, text: str, url: str | None) -> Observation:
    return Observation(REPO, 1, "0123456789abcdef", text, url, health, text)


@pytest.mark.reliability("10.18 PR and environment text in a comment or status is inert")
def test_outside_text_in_the_comment_and_status_is_inert(cases: Cases) -> None:
    url = "https://shop-pr-1.preview.example.com/"
    for text in HOSTILE:
        for health, rows in ((Health.FAILED, 4), (Health.READY, 3), (Health.REMOVED, 0)):
            observation = hostile_observation(health, text, url)
            wanted = desired_report(ReportSettings(), observation, "pr-1")
            assert wanted.comment is not None
            assert_inert(wanted.comment, rows, url if rows else None)
            for description in filter(None, (wanted.status, wanted.deployment)):
                assert len(description.description) <= 140
                assert description.description.isprintable()
            cases.add()
    # The environment URL itself, from a template that may hold a branch's slug.
    for text in HOSTILE:
        hostile_url = f"https://x.example/{text}"
        body = comment_body(hostile_observation(Health.READY, "ns", hostile_url))
        href = _MD.render(body).split('<a href="')[1].split('"')[0]
        assert href.startswith("https://x.example/")
        assert_inert(body, 3, href)
        cases.add()


@given(st.text(max_size=300))
@settings(max_examples=200, deadline=None)
def test_any_reason_leaves_the_comment_inert(reason: str) -> None:
    observation = Observation(
        REPO, 1, "abc", "shop-pr-1", "https://x.example/", Health.FAILED, reason
    )
    assert_inert(comment_body(observation), 4, "https://x.example/")
    assert len(desired_report(ReportSettings(), observation, None).status.description) <= 140  # type: ignore[union-attr]


def test_a_hostile_redirect_host_reaches_the_pr_inert(
    github: FakeGitHub, write_config: Config, envs: Environments
) -> None:
    github.add_repo(REPO)
    failing_now = HEALTH.format(url=envs.url).replace("deadline: 15m", "deadline: 0s")
    config = write_config(SHOP + failing_now)
    number = github.open_pull(REPO, title="One", head_branch="one")
    envs.behaviour[number] = "redirect-to"
    envs.location[number] = "http://@maintainers|<img src=x onerror=alert(1)>*x*/"
    code, document = sync_probe(config)
    assert code == 0, document
    [env] = document["probe"]["environments"]
    assert env["state"] == "failure" and "@maintainers|<img" in env["reason"]
    [comment] = github.comments(REPO, number)
    assert_inert(comment.body, 4, f"{envs.url}/pr-{number}/")
    [status] = [s for s in github.statuses(REPO, github.pull(REPO, number).head_sha)]
    assert status.description.startswith("environment is not healthy: HTTP 302 redirect to @")
    assert len(status.description) <= 140


# -- 10.15 a bounded probe round --------------------------------------------------------------


def with_round_timeout(config: Path, seconds: float) -> Path:
    config.write_text(
        config.read_text().replace(
            "fleet:\n", f"probe: {{roundTimeout: {seconds:g}s}}\nfleet:\n", 1
        )
    )
    return config


@pytest.mark.reliability(
    "10.15 every GitHub write failing slowly: the round ends within its budget"
)
def test_a_round_with_every_github_write_failing_slowly_ends_within_its_budget(
    github: FakeGitHub, config: Path, tmp_path: Path, cases: Cases
) -> None:
    budget = 4.0
    with_round_timeout(with_github_timeout(config, 1), budget)
    numbers = [
        github.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}") for n in range(scale(12, 100))
    ]
    assert run("sync", "-c", str(config)).exit_code == 0
    for method in ("POST", "PATCH", "DELETE"):  # each one answered after the client's 1 s
        github.inject(method, r".*", status=502, delay=2.0, times=1_000_000)

    process = PrgenProcess(["probe", "-c", str(config), "--output", "json"], tmp_path / "slow")
    try:
        finished = process.wait(timeout=budget + 30)
    finally:
        process.reap()
    # The budget counts from the probe's start; the process also starts Python and prgen.
    assert finished.seconds < budget + REPORT_GRACE + 3, finished.describe()
    assert finished.returncode == 1, finished.describe()
    document = finished.json()
    late = document["notReportedInTime"]
    assert late, finished.describe()  # 1 s a write: the budget cannot cover them all
    assert all("in time" in e["reason"] for e in late)
    assert {e["pullRequest"] for e in late} | {
        e["pullRequest"] for e in document["environments"]
    } == set(numbers)
    assert all(e["reportError"] for e in document["environments"])  # every write failed
    cases.add(len(numbers))

    # GitHub answers again: the next rounds pick up what was left, and nothing is doubled.
    github.clear_faults()
    for _ in range(5):
        result = run("probe", "-c", str(config), "--output", "json")
        if result.exit_code == 0:
            break
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["notReportedInTime"] == []
    assert all(len(github.comments(REPO, n)) == 1 for n in numbers)


def test_no_probe_starts_after_the_rounds_end_and_one_under_way_is_shut(
    envs: Environments,
) -> None:
    from prgen.config import HealthCheck

    for number in range(1, 4):
        envs.behaviour[number] = "hanging"
    check = HealthCheck(f"{envs.url}/healthz", timeout=3)
    targets = [ProbeTarget(f"{envs.url}/pr-{n}/healthz", check) for n in range(1, 4)]
    start = time.monotonic()
    results = probe_all(targets, concurrency=1, until=start + 0.5)
    elapsed = time.monotonic() - start
    # Neither the probe the round's end cut short nor those never started says anything
    # about its environment: no result, not a timeout.
    assert results == [None, None, None]
    assert elapsed < 0.5 + GRACE + 0.5
    assert envs.hits == {1: 1}


def test_a_back_off_never_outlasts_the_round(github: FakeGitHub) -> None:
    github.add_repo(REPO)
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    github.inject("POST", r".*", status=502, times=100)
    client = Github(base_url=github.base_url, auth=Auth.Token(TOKEN), retry=None, lazy=True)
    sleeps: list[float] = []
    observation = Observation(REPO, number, sha, "shop-pr-1", "http://x/", Health.READY, "HTTP 200")
    wanted = desired_report(ReportSettings(), observation, f"pr-{number}")
    reporter = GitHubReporter(client, sleep=sleeps.append)
    outcome = reporter.report(observation, wanted, until=time.monotonic() + 0.5)
    assert sleeps == []  # the first back-off (1 s) would end after the round
    assert outcome.late and outcome.error == f"commit status: {NOT_IN_TIME}"
    assert github.count_requests("POST", r".*") == 1  # nothing after the round's end
    assert github.count_requests("POST", COMMENTS) == 0  # the marker is not written

    outcome = reporter.report(observation, wanted, until=time.monotonic())
    assert outcome.late and outcome.writes == 0
    assert github.count_requests("POST", r".*") == 1


def test_the_default_round_fits_the_example_cronjobs_deadline_with_the_sync() -> None:
    cronjob = Path(__file__).parents[1] / "fleet-repo-example/infrastructure/prgen/cronjob.yaml"
    document = yaml.safe_load(cronjob.read_text())
    deadline = document["spec"]["jobTemplate"]["spec"]["activeDeadlineSeconds"]
    assert ProbeSettings().round_timeout <= deadline / 2  # the other half for the sync


def test_a_round_timeout_of_nothing_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "prgen.yaml"
    base = (
        "fleet: {url: x, path: p}\nrepositories:\n  - name: a/b\n"
        "    chartRef: {kind: OCIRepository, name: c}\n"
    )
    for value, reason in (("0s", "must be more than zero"), ("soon", "does not match")):
        config.write_text(base + f"probe: {{roundTimeout: {value}}}\n")
        result = run("validate", "-c", str(config))
        assert result.exit_code == 2
        assert "probe.roundTimeout: " in result.stderr and reason in result.stderr


DEPLOYMENTS = r"/repos/acme/shop/deployments"


@pytest.mark.reliability("10.13 a deployment created after the client's timeout")
@pytest.mark.parametrize(
    "applied", [False, True], ids=["completed-after-the-timeout", "answered-after-the-timeout"]
)
def test_a_deployment_post_that_times_out_never_leads_to_a_second_deployment(
    github: FakeGitHub, config: Path, applied: bool
) -> None:
    # The same as for the comment: GitHub may make a deployment whose answer the client never
    # got, and a second one for the same head would stay active beside it.
    with_github_timeout(config, 1)
    github.open_pull(REPO, title="One", head_branch="one")
    github.inject("POST", DEPLOYMENTS, status=0, delay=2.5, applied=applied)
    start = time.monotonic()
    code, document = sync_probe(config)
    time.sleep(max(0.0, start + 2.5 + 0.3 - time.monotonic()))  # until the slow post is done
    assert len(github.deployments(REPO)) == 1
    assert github.count_requests("POST", DEPLOYMENTS) == 1  # re-read, not re-posted
    [env] = document["probe"]["environments"]
    if env["reportError"] is not None:  # the re-reads came before the deployment did
        assert "not created again" in env["reportError"] and code == 1
    # The next round reads it and gives it its status: one deployment, up to date.
    assert run("probe", "-c", str(config)).exit_code == 0
    [deployment] = github.deployments(REPO)
    assert github.deployment_statuses(REPO, deployment.id)
