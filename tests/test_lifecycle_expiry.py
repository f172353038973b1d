"""Expiry, end to end: `prgen sync` through the real CLI, real HTTP to the fake GitHub, real
git to a bare fleet. Time is data: the fleet's commits carry the time of the run that made
them, and each run is put at a moment of its own through PRGEN_NOW (prgen/clock.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import prgen.fleet
from prgen.cli import main
from prgen.lifecycle import EXPIRED_FILE, NOTICE_FILE
from prgen.testing.fake_github import FakeGitHub
from test_pr_commands_sync import MAINTAINER, REPO, annotations, commits, head_of, run, say

from conftest import SHOP, git

Config = Callable[..., Path]
EXPIRING = SHOP + "    expireAfter: 7d\n    keepLabel: preview-keep\n"
WEEK = timedelta(days=7)
DAY = timedelta(days=1)  # expireWarning's default


class Clock:
    """The moment prgen's runs take as now (PRGEN_NOW), moved by the test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, start: datetime) -> None:
        self._monkeypatch = monkeypatch
        self.now = start
        self.set(start)

    def set(self, moment: datetime) -> None:
        self.now = moment
        self._monkeypatch.setenv("PRGEN_NOW", moment.isoformat())


def age(clock: Clock, config: Path, by: timedelta, *args: str, code: int = 0) -> None:
    """Move prgen's clock on by `by`, with a sync where the warning period (a day) begins:
    the environment is told it expires, so it may go once `by` has passed."""
    clock.set(clock.now + by - DAY)
    run(config, *args, code=code)
    clock.set(clock.now + DAY)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, github: FakeGitHub) -> Clock:
    return Clock(monkeypatch, github.now() + timedelta(hours=1))


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo(REPO)
    github.set_permission(REPO, MAINTAINER, "maintain")
    return github


def marker(remote: Path) -> str | None:
    try:
        return git("show", f"main:previews/dev/{EXPIRED_FILE}", cwd=remote)
    except Exception:
        return None


def change(document: dict, number: int = 1) -> dict:  # type: ignore[type-arg]
    (found,) = [c for c in document["changes"] if c["pullRequest"] == number]
    return found  # type: ignore[no-any-return]


@pytest.fixture
def created(shop: FakeGitHub, write_config: Config, fleet_remote: Path, clock: Clock) -> Path:
    """PR 1's environment, made by a run at clock.now (so the fleet carries its head since)."""
    shop.open_pull(REPO, title="Cart", head_branch="cart")
    config = write_config(EXPIRING)
    run(config)
    assert head_of(fleet_remote) == shop.pull(REPO, 1).head_sha
    return config


def test_an_idle_environment_expires_at_the_boundary_and_stays_gone(
    shop: FakeGitHub, created: Path, fleet_remote: Path, clock: Clock
) -> None:
    start = clock.now
    head = shop.pull(REPO, 1).head_sha
    clock.set(start + WEEK - DAY)  # its warning period begins: told, when it goes recorded
    told = run(created)
    assert change(told)["action"] == "keep" and told["commit"] is not None
    notices = git("show", f"main:previews/dev/{NOTICE_FILE}", cwd=fleet_remote)
    assert f'acme.shop.1: "{head} {(start + WEEK).isoformat()}"' in notices
    clock.set(start + WEEK - timedelta(seconds=1))
    before = run(created)
    assert change(before)["action"] == "keep" and before["commit"] is None
    assert head_of(fleet_remote) == head

    clock.set(start + WEEK)
    gone = run(created)
    removal = change(gone)
    assert removal["action"] == "delete"
    assert removal["reason"].startswith("expired: no new commit and no /preview command for 7d")
    assert head_of(fleet_remote) is None
    remembered = marker(fleet_remote)
    assert remembered is not None and f'acme.shop.1: "{head} 0"' in remembered
    assert NOTICE_FILE not in git(
        "ls-tree", "--name-only", "main", "previews/dev/", cwd=fleet_remote
    )
    log = git("log", "-1", "--format=%B", "main", cwd=fleet_remote)
    assert "removed acme/shop#1 from shop-pr-1: expired" in log

    before_idle = commits(fleet_remote)
    again = run(created)  # the next run does not make it again
    assert again["commit"] is None and commits(fleet_remote) == before_idle
    (skip,) = again["skipped"]
    assert skip["reason"].startswith(f"expired at head {head[:7]}")


def test_a_push_brings_an_expired_environment_back(
    shop: FakeGitHub, created: Path, fleet_remote: Path, clock: Clock
) -> None:
    age(clock, created, WEEK)
    run(created)
    assert head_of(fleet_remote) is None
    new = shop.push(REPO, 1)
    back = run(created)
    assert change(back)["action"] == "create"
    assert head_of(fleet_remote) == new
    assert marker(fleet_remote) is None  # forgotten with the new head


def test_the_keep_label_never_expires(
    shop: FakeGitHub, created: Path, fleet_remote: Path, clock: Clock
) -> None:
    shop.set_labels(REPO, 1, ["preview-keep"])
    clock.set(clock.now + 10 * WEEK)
    kept = run(created)
    assert change(kept)["action"] == "keep"
    assert head_of(fleet_remote) is not None and marker(fleet_remote) is None


def test_a_command_puts_off_expiry(
    shop: FakeGitHub, created: Path, fleet_remote: Path, clock: Clock
) -> None:
    start = clock.now
    shop.advance(start - shop.now() + timedelta(days=5))
    say(shop, "/preview wake")  # written five days after the environment was made
    clock.set(start + timedelta(days=5, hours=1))
    run(created)
    clock.set(start + WEEK + timedelta(days=1))
    assert change(run(created))["action"] == "keep"
    clock.set(start + timedelta(days=11, hours=1))  # its warning period begins
    assert change(run(created))["action"] == "keep"
    clock.set(start + timedelta(days=12, hours=1))
    assert change(run(created))["action"] == "delete"


def test_dry_run_shows_the_expiry_and_writes_nothing(
    shop: FakeGitHub, created: Path, fleet_remote: Path, clock: Clock
) -> None:
    age(clock, created, WEEK)
    before = commits(fleet_remote)
    shown = run(created, "--dry-run")
    assert change(shown)["action"] == "delete"
    assert change(shown)["reason"].startswith("expired:")
    assert f"+++ b/previews/dev/{EXPIRED_FILE}" in shown["diff"]
    assert commits(fleet_remote) == before and head_of(fleet_remote) is not None


def test_the_mass_deletion_guard_counts_expiries(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, clock: Clock
) -> None:
    for n in range(1, 4):
        shop.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}")
    config = write_config(EXPIRING, "safety:\n  maxDeletions: 2\n")
    run(config)
    age(clock, config, WEEK)
    held = run(config, code=1)
    assert "mass-deletion guard" in held["heldDeletions"]
    assert {c["action"] for c in held["changes"]} == {"keep"}
    assert marker(fleet_remote) is None  # nothing expired is remembered while it stays
    allowed = run(config, "--allow-mass-delete")
    assert [c["action"] for c in allowed["changes"]] == ["delete"] * 3
    assert marker(fleet_remote) is not None


def test_create_command_and_the_opt_in_label_bring_it_back(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, clock: Clock
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    config = write_config(EXPIRING + "    labels: [preview]\n")
    run(config)
    age(clock, config, WEEK)
    run(config)
    assert head_of(fleet_remote) is None

    shop.set_labels(REPO, 1, [])  # no longer eligible: forgotten
    run(config)
    assert marker(fleet_remote) is None
    shop.set_labels(REPO, 1, ["preview"])
    assert change(run(config))["action"] == "create"

    age(clock, config, 2 * WEEK)
    run(config)
    assert head_of(fleet_remote) is None
    shop.advance(clock.now - shop.now())
    say(shop, "/preview create")
    back = run(config)
    assert change(back)["action"] == "create" and head_of(fleet_remote) is not None
    assert marker(fleet_remote) is None
    clock.set(clock.now + timedelta(days=6))
    assert change(run(config))["action"] == "keep"  # the command is fresh activity


def test_an_idle_run_with_a_lifecycle_costs_no_rate_limit_and_reads_no_history(
    shop: FakeGitHub,
    write_config: Config,
    fleet_remote: Path,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for n in range(1, 4):
        shop.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}")
    config = write_config(EXPIRING + "    sleepAfter: 12h\n")
    run(config)
    run(config)  # learns since when the fleet carries each head, at the new tip
    histories: list[object] = []
    real = prgen.fleet.FleetRepo._carried_walk

    def counted(fleet: prgen.fleet.FleetRepo, *args: Any) -> dict[str, int]:
        histories.append(args)
        return real(fleet, *args)

    monkeypatch.setattr(prgen.fleet.FleetRepo, "_carried_walk", counted)
    shop.clear_requests()
    clock.set(clock.now + timedelta(hours=1))
    idle = run(config)
    assert idle["commit"] is None and {c["action"] for c in idle["changes"]} == {"keep"}
    assert histories == []
    assert shop.points_used() == 0
    paths = {answer.request.path for answer in shop.answers}
    assert paths == {f"/repos/{REPO}/pulls", f"/repos/{REPO}/issues/comments"}


def test_a_schedule_window_puts_it_to_sleep_and_its_end_wakes_it(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, clock: Clock
) -> None:
    start = clock.now.replace(minute=0, second=0, microsecond=0)
    window = start + timedelta(hours=1)
    day = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[window.weekday()]
    shop.open_pull(REPO, title="Cart", head_branch="cart")
    config = write_config(
        SHOP + "    sleepSchedule:\n      timezone: UTC\n      windows:\n"
        f"        - {{days: [{day}], from: '{window:%H}:00', to: '{window:%H}:30'}}\n"
    )
    run(config)
    clock.set(window + timedelta(minutes=10))
    slept = change(run(config))
    assert slept["action"] == "update" and slept["reason"] == "asleep by its schedule (UTC)"
    assert annotations(fleet_remote)["prgen.io/sleeping"] == "true"
    clock.set(window + timedelta(minutes=30))
    woken = change(run(config))
    assert woken["action"] == "update" and woken["reason"].startswith("woken")
    assert "prgen.io/sleeping" not in annotations(fleet_remote)


def test_a_failed_listing_expires_nothing(
    shop: FakeGitHub, created: Path, fleet_remote: Path, clock: Clock
) -> None:
    age(clock, created, 2 * WEEK)
    shop.inject("GET", rf"/repos/{REPO}/pulls", status=502, times=10)
    failed = run(created, code=1)
    assert [c["action"] for c in failed["changes"]] == ["keep"]
    assert head_of(fleet_remote) is not None and marker(fleet_remote) is None
    shop.clear_faults()
    assert change(run(created))["action"] == "delete"  # the next complete listing may


def test_an_environment_asleep_wakes_when_the_config_stops_sleeping(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, clock: Clock
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart")
    config = write_config(SHOP + "    sleepAfter: 1h\n")
    run(config)
    clock.set(clock.now + timedelta(hours=2))
    run(config)
    assert annotations(fleet_remote)["prgen.io/sleeping"] == "true"
    write_config(SHOP)
    woken = change(run(config))
    assert woken["action"] == "update" and woken["reason"].startswith("woken")
    assert "prgen.io/sleeping" not in annotations(fleet_remote)


def test_an_expired_pr_takes_no_place_under_max_environments(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, clock: Clock
) -> None:
    shop.open_pull(REPO, title="Old", head_branch="old", number=5)
    config = write_config(EXPIRING + "    maxEnvironments: 1\n")
    run(config)
    age(clock, config, WEEK)
    run(config)
    assert head_of(fleet_remote, "shop-pr-5") is None
    # PR 2 comes after 5 under maxEnvironments (newest first), but 5 expired: 2 gets the place.
    shop.open_pull(REPO, title="New", head_branch="new", number=2)
    document = run(config)
    assert change(document, 2)["action"] == "create"
    assert head_of(fleet_remote, "shop-pr-2") is not None
    assert marker(fleet_remote) is not None  # PR 1 is still remembered as expired


def test_preview_sleep_lasts_until_a_push_or_preview_wake(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, clock: Clock
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart")
    config = write_config()  # no lifecycle configured: the command alone
    run(config)
    say(shop, "/preview sleep")
    slept = change(run(config))
    assert slept["action"] == "update" and slept["reason"] == "asleep by /preview sleep"
    marks = annotations(fleet_remote)
    assert marks["prgen.io/sleeping"] == "true"
    assert marks["prgen.io/sleep-requested-at"] == shop.pull(REPO, 1).head_sha
    clock.set(clock.now + timedelta(days=3))
    assert run(config)["commit"] is None  # still asleep, nothing new

    shop.push(REPO, 1)
    run(config)
    marks = annotations(fleet_remote)
    assert "prgen.io/sleeping" not in marks and "prgen.io/sleep-requested-at" not in marks

    say(shop, "/preview sleep")
    run(config)
    assert annotations(fleet_remote)["prgen.io/sleeping"] == "true"
    say(shop, "/preview wake")
    woken = change(run(config))
    assert woken["reason"] == "woken by /preview wake"
    assert "prgen.io/sleeping" not in annotations(fleet_remote)


def test_status_says_a_pr_expired_and_an_environment_sleeps(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, clock: Clock
) -> None:
    shop.open_pull(REPO, title="Old", head_branch="old")
    shop.open_pull(REPO, title="Idle", head_branch="idle", labels=["preview-keep"])
    config = write_config(EXPIRING + "    sleepAfter: 12h\n")
    run(config)
    age(clock, config, WEEK)
    run(config)
    status = CliRunner().invoke(main, ["status", "--config", str(config), "--output", "json"])
    assert status.exit_code == 0, status.output
    pulls = json.loads(status.stdout)["repositories"][0]["pullRequests"]
    old, idle = sorted(pulls, key=lambda pull: int(pull["number"]))
    assert old["environment"] is None and old["skipped"].startswith("expired at head")
    assert idle["environment"]["sleeping"] is True
    table = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert "(asleep)" in table.output


def test_a_closed_pr_is_forgotten(
    shop: FakeGitHub, created: Path, fleet_remote: Path, clock: Clock
) -> None:
    age(clock, created, WEEK)
    run(created)
    assert marker(fleet_remote) is not None
    shop.close_pull(REPO, 1)
    run(created)
    assert marker(fleet_remote) is None
    shop.reopen_pull(REPO, 1)  # reopened at the same head: a new environment
    assert change(run(created))["action"] == "create"


@pytest.mark.parametrize("verb", ["wake", "redeploy"])
def test_a_command_that_asks_for_an_expired_environment_brings_it_back(
    shop: FakeGitHub, created: Path, fleet_remote: Path, clock: Clock, verb: str
) -> None:
    """Not the refusal `needs a preview environment, and it has none yet`: the reviewer who
    asks to wake an expired preview wants it back."""
    age(clock, created, WEEK)
    run(created)
    assert head_of(fleet_remote) is None
    shop.advance(clock.now - shop.now())
    say(shop, f"/preview {verb}")

    back = run(created)

    assert change(back)["action"] == "create" and head_of(fleet_remote) is not None
    assert marker(fleet_remote) is None
    (answered,) = back["commands"]
    assert (answered["command"], answered["outcome"]) == (verb, "done")
    assert answered["changed"] == f"created again by /preview {verb} (it had expired)"


def test_turning_expiry_on_tells_first_and_removes_a_warning_period_later(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, clock: Clock
) -> None:
    """An organisation turns expireAfter on with environments idle for a month: none goes
    at once; each PR is told, and its environment goes a day (expireWarning) later."""
    shop.open_pull(REPO, title="Cart", head_branch="cart")
    config = write_config()  # no expiry yet
    run(config)
    clock.set(clock.now + 30 * DAY)
    assert run(config)["commit"] is None
    write_config(EXPIRING)

    told = run(config)

    assert change(told)["action"] == "keep" and head_of(fleet_remote) is not None
    notices = git("show", f"main:previews/dev/{NOTICE_FILE}", cwd=fleet_remote)
    assert (clock.now + DAY).isoformat() in notices
    clock.set(clock.now + DAY - timedelta(seconds=1))
    assert change(run(config))["action"] == "keep"
    clock.set(clock.now + timedelta(seconds=1))
    assert change(run(config))["action"] == "delete"
