"""What counts as healthy (expectStatus) and where the PR links to (environmentUrl's default)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from prgen.cli import main
from prgen.config import load_config
from prgen.feedback import origin
from prgen.probe import ProbeResult, ProbeTarget, probe_all
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub

from conftest import SHOP

REPO = "acme/shop"
Config = Callable[..., Path]


def health(url: str, expect: str | None) -> str:
    line = f"      expectStatus: {expect}\n" if expect else ""
    return (
        f"    healthCheck:\n      url: '{url}/pr-<<PR_NUMBER>>/healthz'\n      timeout: 2s\n{line}"
    )


def probed(
    write_config: Config, envs: Environments, expect: str | None, behaviour: str
) -> ProbeResult:
    """Probe one environment with the health check as `prgen.yaml` gives it."""
    config = load_config(write_config(SHOP + health(envs.url, expect)))
    check = config.repositories[0].health_check
    assert check is not None
    envs.behaviour[1] = behaviour
    url = check.url.replace("<<PR_NUMBER>>", "1")
    [result] = probe_all([ProbeTarget(url, check)], concurrency=1)
    return result


@pytest.mark.parametrize(
    ("expect", "behaviour", "healthy", "reason"),
    [
        ("[200, 204]", "no-content", True, "HTTP 204"),
        ("[200]", "no-content", False, "HTTP 204"),
        (None, "no-content", True, "HTTP 204"),  # default: any 2xx
        ("'200-399'", "redirect-other", True, "HTTP 302"),  # a sign-in page elsewhere
        ("[200, 302]", "redirect-same", True, "HTTP 302"),  # judged as it is, not followed
        ("'200-299'", "redirect-same", True, "HTTP 200"),  # followed on the same host
        (
            None,
            "redirect-other",
            False,
            "HTTP 302 redirect to 127.0.0.2:9 not followed (another host)",
        ),
        ("'300-399'", "healthy", False, "HTTP 200"),
        ("'500-503'", "unhealthy", True, "HTTP 503"),
    ],
)
def test_expect_status_lists_and_ranges_decide_what_is_healthy(
    github: FakeGitHub,
    write_config: Config,
    envs: Environments,
    expect: str | None,
    behaviour: str,
    healthy: bool,
    reason: str,
) -> None:
    result = probed(write_config, envs, expect, behaviour)
    assert result.healthy is healthy
    assert result.reason == reason


def test_the_origin_never_keeps_user_and_password() -> None:
    assert origin("https://user:pa%40ss@Shop.example.com:8443/healthz?x=1") == (
        "https://Shop.example.com:8443"
    )
    assert origin("https://token@shop.example.com/healthz") == "https://shop.example.com"
    assert origin("http://[::1]:8080/healthz") == "http://[::1]:8080"
    assert origin("http://127.0.0.1:9/pr-1/healthz") == "http://127.0.0.1:9"


def test_without_environment_url_the_pr_links_to_the_health_urls_origin(
    github: FakeGitHub, write_config: Config, envs: Environments
) -> None:
    github.add_repo(REPO)
    config = write_config(SHOP + health(envs.url, None))
    number = github.open_pull(REPO, title="One", head_branch="one")
    sha = github.pull(REPO, number).head_sha
    result = CliRunner().invoke(main, ["sync", "--probe", "-c", str(config), "--output", "json"])
    assert result.exit_code == 0, result.output
    [env] = json.loads(result.stdout)["probe"]["environments"]
    assert (env["state"], env["environmentUrl"]) == ("success", envs.url)
    [status] = [s for s in github.statuses(REPO, sha) if s.context == "prgen/preview"]
    assert (status.state, status.target_url) == ("success", envs.url)
    [deployment] = github.deployments(REPO)
    assert github.deployment_statuses(REPO, deployment.id)[-1].environment_url == envs.url
    [comment] = github.comments(REPO, number)
    assert f"| URL | <{envs.url}> |" in comment.body  # an autolink: nothing in it can end it
