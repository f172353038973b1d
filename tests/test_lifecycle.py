"""Expiry and sleep as pure functions: config, decisions, the marker file, sleep windows."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from prgen.config import ReportSettings, parse_config
from prgen.errors import ConfigError
from prgen.lifecycle import (
    Expired,
    Notice,
    asleep,
    decide,
    expires_at,
    read_expired,
    read_notices,
    removal_time,
    render_expired,
    render_notices,
    warns,
)
from prgen.pr_commands import Controls
from prgen.render import HELMRELEASE_FILE, render_environment
from prgen.report import Health, Observation, desired_report
from prgen.schedule import sleep_ends, sleep_started

from factories import pull_request, repository
from manifest_validation import validate_documents

CHART = "chart: {chart: c, sourceRef: {kind: HelmRepository, name: r, namespace: f}}"
T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)  # a Monday
HEAD, NEW = "a" * 40, "b" * 40


def config(fields: str) -> str:
    return f"fleet: {{url: x, path: p}}\nrepositories: [{{name: a/b, {CHART}, {fields}}}]"


@pytest.mark.parametrize(
    ("fields", "path", "reason"),
    [
        ("expireAfter: 7 days", "repositories[0].expireAfter", "does not match"),
        ("expireAfter: 0d", "repositories[0].expireAfter", "more than zero"),
        ("expireWarning: soon", "repositories[0].expireWarning", "does not match"),
        ("sleepAfter: -1h", "repositories[0].sleepAfter", "does not match"),
        ("keepLabel: ''", "repositories[0].keepLabel", "should be non-empty"),
        (
            "sleepSchedule: {timezone: Mars/Olympus, windows: [{days: [mon]}]}",
            "repositories[0].sleepSchedule.timezone",
            "unknown timezone 'Mars/Olympus'",
        ),
        (
            "sleepSchedule: {timezone: UTC, windows: [{days: [someday]}]}",
            "repositories[0].sleepSchedule.windows[0].days[0]",
            "is not one of",
        ),
        (
            "sleepSchedule: {timezone: UTC, windows: [{days: [mon], from: '25:00'}]}",
            "repositories[0].sleepSchedule.windows[0].from",
            "does not match",
        ),
        (
            "sleepSchedule: {timezone: UTC, windows: [{days: [mon], from: '08:00', to: '08:00'}]}",
            "repositories[0].sleepSchedule.windows[0]",
            "the same time",
        ),
    ],
)
def test_a_bad_lifecycle_field_is_named_with_its_reason(
    fields: str, path: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config(fields), base_dir=Path("/nonexistent"))
    assert caught.value.path == path
    assert reason in str(caught.value)


def test_lifecycle_fields_come_from_defaults_and_repositories() -> None:
    text = (
        "fleet: {url: x, path: p}\n"
        "defaults: {expireAfter: 7d, keepLabel: preview-keep, sleepAfter: 12h}\n"
        f"repositories: [{{name: a/b, {CHART}}}, {{name: a/c, {CHART}, expireAfter: 1d12h}}]"
    )
    first, second = parse_config(text, base_dir=Path("/nonexistent")).repositories
    assert (first.expire_after, first.expire_warning, first.keep_label) == (
        604800,
        86400,
        "preview-keep",
    )
    assert first.sleep_after == 43200
    assert second.expire_after == 129600 and second.keep_label == "preview-keep"


def test_expiry_warning_and_keep_label() -> None:
    repo = repository("    expireAfter: 7d\n    keepLabel: preview-keep\n")
    expiry = expires_at(repo, (), T0)
    assert expiry == T0 + timedelta(days=7)
    assert expires_at(repo, ("Preview-Keep",), T0) is None
    assert not warns(repo, expiry, T0 + timedelta(days=6) - timedelta(seconds=1))
    assert warns(repo, expiry, T0 + timedelta(days=6))
    assert not warns(repo, expiry, expiry)  # expired, not warned
    assert expires_at(repository(), (), T0) is None


def test_decide_expires_at_the_boundary_only_at_the_carried_head() -> None:
    repo = repository("    expireAfter: 7d\n")
    week = T0 + timedelta(days=7)
    told = Notice(HEAD, week)  # told when its warning period began, a day before
    just_before = decide(repo, (), HEAD, HEAD, T0, None, None, week - timedelta(seconds=1), told)
    assert just_before.expired is None and just_before.controls is None
    assert just_before.notice == told
    assert decide(repo, (), HEAD, HEAD, T0, None, None, week, told).expired is not None
    assert decide(repo, (), NEW, HEAD, T0, None, None, week, told).expired is None  # pushed
    command = Controls(5, last_command_at=(T0 + timedelta(days=3)).isoformat())
    assert decide(repo, (), HEAD, HEAD, T0, command, None, week, told).expired is None
    gone = decide(repo, (), HEAD, None, None, None, Expired(HEAD, 0), week)
    assert gone.gone is not None and HEAD[:7] in gone.gone
    assert decide(repo, (), NEW, None, None, None, Expired(HEAD, 0), week).gone is None


def test_a_future_commit_date_cannot_keep_an_environment() -> None:
    # Activity is what the fleet saw (carried since) and commands, never the commit's date.
    repo = repository("    expireAfter: 1d\n")
    told = Notice(HEAD, T0 + timedelta(days=1))
    assert decide(repo, (), HEAD, HEAD, T0, None, None, T0 + timedelta(days=1), told).expired


def test_no_environment_expires_before_its_pr_was_told_for_a_whole_warning_period() -> None:
    """expireAfter turned on (or shortened, or the keep label taken off) for an environment
    idle far longer: it is told now and goes a day later, not at once."""
    repo = repository("    expireAfter: 7d\n")
    now = T0 + timedelta(days=30)
    first = decide(repo, (), HEAD, HEAD, T0, None, None, now)
    assert first.expired is None and first.notice == Notice(HEAD, now + timedelta(days=1))
    later = now + timedelta(hours=23)
    assert decide(repo, (), HEAD, HEAD, T0, None, None, later, first.notice).expired is None
    gone = decide(repo, (), HEAD, HEAD, T0, None, None, now + timedelta(days=1), first.notice)
    assert gone.expired is not None
    # A notice of an earlier head, or one an activity since made too early, counts for nothing.
    assert removal_time(repo, T0 + timedelta(days=7), NEW, first.notice, now) == now + timedelta(
        days=1
    )
    # Before its warning period nothing is recorded.
    assert decide(repo, (), HEAD, HEAD, T0, None, None, T0 + timedelta(days=5)).notice is None


def test_the_notices_read_back_what_they_wrote() -> None:
    entries = {("acme/shop", 1): Notice(HEAD, T0), ("my-org/a.b", 30): Notice(NEW, T0)}
    assert read_notices(render_notices(entries)) == entries
    assert render_notices({}) is None and read_notices(b"not: [yaml") == {}


def test_the_marker_reads_back_what_it_wrote() -> None:
    entries = {("acme/shop", 1): Expired(HEAD, 12), ("my-org/a.b", 30): Expired(NEW, 0)}
    assert read_expired(render_expired(entries)) == entries
    assert render_expired({}) is None
    assert read_expired(b"not: [yaml") == {}


def test_sleep_after_idle_and_a_wake_by_activity() -> None:
    repo = repository("    sleepAfter: 12h\n")
    assert asleep(repo, T0, T0 + timedelta(hours=12) - timedelta(seconds=1)) is None
    assert asleep(repo, T0, T0 + timedelta(hours=12)) is not None
    slept = Controls(sleeping=True)
    woken = decide(repo, (), NEW, HEAD, T0, slept, None, T0 + timedelta(days=2))
    assert woken.controls is not None and not woken.controls.sleeping  # a push wakes it
    still = decide(repo, (), HEAD, HEAD, T0, slept, None, T0 + timedelta(days=2))
    assert still.controls == slept and still.said is None
    falls = decide(repo, (), HEAD, HEAD, T0, None, None, T0 + timedelta(days=2))
    assert falls.controls == Controls(sleeping=True) and falls.said is not None


BERLIN_NIGHTS = """\
    sleepSchedule:
      timezone: Europe/Berlin
      windows:
        - {days: [sun, mon, tue, wed, thu, fri], from: '20:00', to: '07:00'}
        - {days: [sat, sun]}
"""


def berlin(text: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Europe/Berlin"))


def test_a_night_window_crosses_midnight_in_local_time() -> None:
    repo = repository(BERLIN_NIGHTS)
    schedule = repo.sleep_schedule
    assert schedule is not None
    assert sleep_started(schedule, berlin("2026-03-03T19:59")) is None  # a Tuesday
    assert sleep_started(schedule, berlin("2026-03-03T20:00")) == berlin("2026-03-03T20:00")
    assert sleep_started(schedule, berlin("2026-03-04T06:59")) == berlin("2026-03-03T20:00")
    assert sleep_started(schedule, berlin("2026-03-04T07:00")) is None
    # Friday night, the weekend and Monday morning are one sleep (windows are named by the
    # day they start on: Monday morning is Sunday's night).
    assert sleep_started(schedule, berlin("2026-03-08T12:00")) == berlin("2026-03-06T20:00")
    assert sleep_ends(schedule, berlin("2026-03-07T03:00")) == berlin("2026-03-09T07:00")


def test_windows_follow_the_wall_clock_across_a_summer_time_change() -> None:
    # Berlin moves its clocks from 02:00 to 03:00 on Sunday 2026-03-29, and back from 03:00
    # to 02:00 on Sunday 2026-10-25: the weekday window still ends at 07:00 local time.
    repo = repository(BERLIN_NIGHTS)
    schedule = repo.sleep_schedule
    assert schedule is not None
    monday_spring = berlin("2026-03-30T07:00")
    assert sleep_ends(schedule, berlin("2026-03-29T01:30")) == monday_spring
    assert monday_spring.astimezone(UTC) == datetime(2026, 3, 30, 5, 0, tzinfo=UTC)  # CEST
    monday_autumn = berlin("2026-10-26T07:00")
    assert sleep_ends(schedule, berlin("2026-10-25T01:30")) == monday_autumn
    assert monday_autumn.astimezone(UTC) == datetime(2026, 10, 26, 6, 0, tzinfo=UTC)  # CET
    # A night across the change is an hour shorter in instants, the same on the wall.
    friday = berlin("2026-03-27T20:00")
    assert sleep_started(schedule, berlin("2026-03-29T02:30").astimezone(UTC)) == friday
    weekday = repository(
        "    sleepSchedule: {timezone: Europe/Berlin, windows: [{days: [sat], from: '22:00', to: '06:00'}]}\n"
    ).sleep_schedule
    assert weekday is not None
    start = sleep_started(weekday, datetime(2026, 3, 29, 3, 0, tzinfo=UTC))
    end = sleep_ends(weekday, datetime(2026, 3, 29, 3, 0, tzinfo=UTC))
    assert start is not None and end is not None
    assert end - start == timedelta(hours=7)  # 22:00 CET to 06:00 CEST
    assert end.astimezone(UTC) == datetime(2026, 3, 29, 4, 0, tzinfo=UTC)


def test_a_schedule_sleeps_until_activity_inside_the_window() -> None:
    repo = repository(BERLIN_NIGHTS)
    night = berlin("2026-03-03T23:00")
    assert asleep(repo, berlin("2026-03-03T15:00"), night) is not None
    assert asleep(repo, berlin("2026-03-03T21:00"), night) is None  # pushed inside the window
    assert asleep(repo, berlin("2026-03-03T15:00"), berlin("2026-03-04T08:00")) is None


def test_timezones_work_on_an_image_without_system_zone_data(tmp_path: Path) -> None:
    # zoneinfo falls back to the tzdata package (a dependency) when the system has none.
    script = (
        "from prgen.config import parse_config\n"
        f"parse_config({config(BERLIN_FIELDS)!r})\n"
        "print('ok')\n"
    )
    empty = tmp_path / "no-zones"
    empty.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONTZPATH": str(empty)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


BERLIN_FIELDS = "sleepSchedule: {timezone: Europe/Berlin, windows: [{days: [sat]}]}"


def test_a_sleeping_environment_renders_the_switch_and_validates() -> None:
    repo = repository("    values: {prgen: {other: 1}, image: {tag: x}}\n")
    pr = pull_request()
    awake = render_environment(repo, pr)
    asleep_env = render_environment(repo, pr, controls=Controls(sleeping=True))
    assert render_environment(repo, pr, controls=Controls(sleeping=True)).files == asleep_env.files
    assert asleep_env.inputs != awake.inputs
    release = yaml.safe_load(asleep_env.files[HELMRELEASE_FILE].decode())
    assert release["spec"]["values"]["prgen"] == {"other": 1, "sleeping": True}
    assert release["metadata"]["annotations"]["prgen.io/sleeping"] == "true"
    assert (
        "sleeping"
        not in yaml.safe_load(awake.files[HELMRELEASE_FILE].decode())["spec"]["values"]["prgen"]
    )
    assert validate_documents(asleep_env.files[HELMRELEASE_FILE].decode()) == []


def test_a_sleeping_report_is_no_failure() -> None:
    observation = Observation(
        "acme/shop", 1, HEAD, "shop-pr-1", "https://x.example", Health.SLEEPING, "asleep"
    )
    settings = ReportSettings(check_run="prgen/preview")
    wanted = desired_report(settings, observation, "pr-1")
    assert wanted.status is not None and wanted.status.state == "success"
    assert "asleep" in wanted.status.description
    assert wanted.check_run is not None and wanted.check_run.conclusion == "neutral"
    assert wanted.deployment is not None and wanted.deployment.state == "inactive"
    assert wanted.comment is not None and "`/preview wake`" in wanted.comment


def test_the_removal_of_an_expired_environment_says_how_to_get_it_back() -> None:
    gone = Observation(
        "acme/shop",
        1,
        HEAD,
        "shop-pr-1",
        None,
        Health.REMOVED,
        "expired: no new commit and no /preview command for 7d",
        expired=True,
        opt_in_labels=("preview",),
    )
    body = desired_report(ReportSettings(), gone, "pr-1").comment
    assert body is not None
    assert "`expired: no new commit and no /preview command for 7d`" in body
    assert "push a commit, comment `/preview create` or remove the label `preview`" in body


def test_controls_encode_as_before_without_lifecycle_and_read_back_with_it() -> None:
    plain = Controls(7, HEAD, "2026-01-01T00:00:00Z")
    assert plain.encode() == f'[7, "{HEAD}", "2026-01-01T00:00:00Z"]'  # as prgen wrote it
    for controls in (
        plain,
        Controls(7, last_command_at="2026-01-02T00:00:00Z"),
        Controls(sleeping=True),
        Controls(8, sleeping=True, sleep_head=HEAD),
    ):
        assert Controls.decode(controls.encode()) == controls
