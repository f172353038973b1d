"""Expiry said on the PR, and sleep and wake, end to end: `prgen sync --probe` through the
real CLI, the fake GitHub, environments as real HTTP servers and a bare fleet. Each run is
put at a moment of its own through PRGEN_NOW (prgen/clock.py); comments' times are the fake
GitHub's clock, moved with it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from prgen.report import COMMENT_MARKER
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub
from test_lifecycle_expiry import Clock
from test_pr_commands_sync import MAINTAINER, REPO, annotations, release, say

from conftest import HEALTH, SHOP, as_app, run, writes

Config = Callable[..., Path]


def sync_probe(config: Path) -> dict[str, Any]:
    result = run("sync", "--probe", "-c", str(config), "--output", "json")
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def sticky(github: FakeGitHub) -> str:
    (comment,) = [c for c in github.comments(REPO, 1) if c.body.startswith(COMMENT_MARKER)]
    return comment.body


def our_status(github: FakeGitHub, sha: str) -> tuple[str, str]:
    status = [s for s in github.statuses(REPO, sha) if s.context == "prgen/preview"][-1]
    return status.state, status.description or ""


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, github: FakeGitHub) -> Clock:
    return Clock(monkeypatch, github.now() + timedelta(hours=1))


@pytest.fixture
def lifecycle(
    github: FakeGitHub, write_config: Config, envs: Environments
) -> Callable[[str], Path]:
    github.add_repo(REPO)
    github.set_permission(REPO, MAINTAINER, "maintain")
    github.open_pull(REPO, title="Cart", head_branch="cart")

    def configure(fields: str) -> Path:
        return write_config(SHOP + HEALTH.format(url=envs.url) + fields)

    return configure


def test_the_expiry_warning_is_said_once_then_the_removal_says_how_to_get_it_back(
    github: FakeGitHub, lifecycle: Callable[[str], Path], clock: Clock
) -> None:
    config = lifecycle("    expireAfter: 7d\n    keepLabel: preview-keep\n")
    start = clock.now
    sync_probe(config)
    clock.set(start + timedelta(days=5))
    sync_probe(config)
    assert "expires" not in sticky(github)

    clock.set(start + timedelta(days=6))  # its warning period begins: told
    sync_probe(config)
    warned = sticky(github)
    expiry = (start + timedelta(days=7)).strftime("%Y-%m-%d at %H:%M UTC")
    assert f"expires on {expiry}" in warned
    assert "push a commit" in warned and "`/preview wake`" in warned
    assert "`preview-keep`" in warned

    github.clear_requests()
    clock.set(start + timedelta(days=6, hours=12))
    sync_probe(config)  # still within the warning: the same words, no second write
    assert writes(github) == 0 and sticky(github) == warned

    clock.set(start + timedelta(days=7))
    document = sync_probe(config)
    (removal,) = document["changes"]
    assert removal["action"] == "delete" and removal["reason"].startswith("expired:")
    (reported,) = document["probe"]["environments"]
    assert reported["state"] == "removed"
    gone = sticky(github)
    assert "🗑️ removed" in gone and "expired" in gone
    assert "push a commit" in gone and "`/preview create`" in gone
    assert "label" not in gone  # this repository needs no label for an environment


def test_sleep_after_idle_wakes_on_push_and_on_preview_wake(
    github: FakeGitHub, lifecycle: Callable[[str], Path], clock: Clock, fleet_remote: Path
) -> None:
    config = lifecycle("    sleepAfter: 12h\n")
    start = clock.now
    sync_probe(config)
    assert "prgen" not in (release(fleet_remote) or {})["spec"]["values"]

    clock.set(start + timedelta(hours=12))
    slept = sync_probe(config)
    (change,) = slept["changes"]
    assert change["action"] == "update" and change["reason"].startswith("asleep:")
    found = release(fleet_remote)
    assert found is not None and found["spec"]["values"]["prgen"] == {"sleeping": True}
    assert annotations(fleet_remote)["prgen.io/sleeping"] == "true"
    (reported,) = slept["probe"]["environments"]
    assert reported["state"] == "sleeping"
    head = github.pull(REPO, 1).head_sha
    state, description = our_status(github, head)
    assert state == "success" and "asleep" in description
    assert "💤 asleep" in sticky(github) and "`/preview wake`" in sticky(github)
    deployment = github.deployments(REPO)[-1]
    assert github.deployment_statuses(REPO, deployment.id)[-1].state == "inactive"

    again = sync_probe(config)  # asleep and said so: nothing new
    assert again["commit"] is None

    github.push(REPO, 1)  # a push wakes it
    woken = sync_probe(config)
    assert "prgen" not in (release(fleet_remote) or {})["spec"]["values"]
    assert "prgen.io/sleeping" not in annotations(fleet_remote)
    assert woken["probe"]["environments"][0]["state"] == "success"

    clock.set(start + timedelta(days=2))
    sync_probe(config)
    assert annotations(fleet_remote)["prgen.io/sleeping"] == "true"
    github.advance(clock.now - github.now())
    say(github, "/preview wake")
    clock.set(clock.now + timedelta(minutes=5))
    document = sync_probe(config)
    assert [c["reason"] for c in document["changes"]] == ["woken by /preview wake"]
    assert "prgen.io/sleeping" not in annotations(fleet_remote)
    assert document["probe"]["environments"][0]["state"] == "success"


def test_a_scheduled_sleep_says_when_the_schedule_wakes_it(
    github: FakeGitHub, lifecycle: Callable[[str], Path], clock: Clock
) -> None:
    window = clock.now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[window.weekday()]
    config = lifecycle(
        "    sleepSchedule:\n      timezone: UTC\n      windows:\n"
        f"        - {{days: [{day}], from: '{window:%H}:00', to: '{window:%H}:30'}}\n"
    )
    sync_probe(config)
    clock.set(window + timedelta(minutes=5))
    document = sync_probe(config)
    assert document["probe"]["environments"][0]["state"] == "sleeping"
    wakes = (window + timedelta(minutes=30)).strftime("%Y-%m-%d at %H:%M UTC")
    assert f"its schedule wakes it on {wakes}" in sticky(github)
    github.clear_requests()
    clock.set(window + timedelta(minutes=20))
    sync_probe(config)
    assert writes(github) == 0  # the same words all through the window
    clock.set(window + timedelta(minutes=30))
    assert sync_probe(config)["probe"]["environments"][0]["state"] == "success"


def test_as_an_app_a_sleeping_environment_shows_a_neutral_check_run(
    github: FakeGitHub,
    lifecycle: Callable[[str], Path],
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Neutral, not failing nor in progress: a required check does not block the PR, and the
    Checks tab says it sleeps."""
    config = as_app(
        lifecycle("    sleepAfter: 12h\n    report: {checkRun: {name: preview}}\n"),
        github,
        monkeypatch,
    )
    sync_probe(config)
    clock.set(clock.now + timedelta(hours=12))
    slept = sync_probe(config)
    assert slept["probe"]["environments"][0]["state"] == "sleeping"
    head = github.pull(REPO, 1).head_sha
    run_ = [r for r in github.check_runs(REPO, head) if r.name == "preview"][-1]
    assert (run_.status, run_.conclusion) == ("completed", "neutral")
    assert "asleep" in (run_.output[0] or "") + (run_.output[1] or "")

    github.push(REPO, 1)  # awake again: the new head's check run is no longer neutral
    sync_probe(config)
    new = github.pull(REPO, 1).head_sha
    (woken,) = [r for r in github.check_runs(REPO, new) if r.name == "preview"]
    assert woken.conclusion != "neutral"
