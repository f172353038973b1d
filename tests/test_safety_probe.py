"""Issue 10, the probe round's safety promises (items 9, 11, 13, 15 and 18).

Real PyGithub against the fake GitHub on 127.0.0.1, environments as real HTTP servers,
a bare fleet repository; most runs are the CLI, as the CronJob runs it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from prgen.config import load_config
from prgen.feedback import Prober
from prgen.fleet import FleetRepo
from prgen.inventory import read_inventory
from prgen.probe import ProbeResult, ProbeTarget, probe
from prgen.report import GitHubReporter
from prgen.source import GitHubSource, make_client
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub

from conftest import HEALTH, SHOP, Cases, run

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
    envs.behaviour[numbers[1]] = "redirect-malformed"  # Location: http://[x]/
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
