"""Sleep windows in an IANA timezone, and whether a moment is in one: pure.

A window starts on each of its days at `from` (local time) and ends at `to`: the same day
when `to` is later, else the next day (a night). Without `to` it ends at the end of the
day. Local times are turned into instants with zoneinfo, so summer time moves a window
with the clock on the wall, as people expect; every comparison is between instants.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from prgen.errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # as date.weekday() counts them
# Windows that touch are one sleep: how far back a run of them is followed (two weeks).
_MAX_LINKS = 16


@dataclass(frozen=True)
class SleepWindow:
    days: frozenset[int]  # date.weekday() of the days it starts on
    start: time
    end: time | None  # None: the end of the day


@dataclass(frozen=True)
class SleepSchedule:
    timezone: str
    windows: tuple[SleepWindow, ...]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def compile_schedule(entry: Mapping[str, Any] | None, at: str, source: str) -> SleepSchedule | None:
    """The schema checked the shape; this checks the timezone and each window's times."""
    if entry is None:
        return None
    name = entry["timezone"]
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"unknown timezone {name!r}: use an IANA name such as Europe/Berlin or UTC",
            f"{at}.timezone",
            source,
        ) from None
    windows = []
    for index, window in enumerate(entry["windows"]):
        start = _clock(window.get("from", "00:00"))
        end = _clock(window["to"]) if "to" in window else None
        if end == start:
            raise ConfigError(
                "'from' and 'to' are the same time: leave 'to' out for a window to the end "
                "of the day",
                f"{at}.windows[{index}]",
                source,
            )
        windows.append(
            SleepWindow(frozenset(DAYS.index(day) for day in window["days"]), start, end)
        )
    return SleepSchedule(name, tuple(windows))


def _instant(day: date, clock: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tzinfo=zone).astimezone(UTC)


def _spans(window: SleepWindow, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants the window that starts on `day` begins and ends."""
    start = _instant(day, window.start, zone)
    if window.end is None:
        return start, _instant(day + timedelta(days=1), time(0, 0), zone)
    end_day = day if window.end > window.start else day + timedelta(days=1)
    return start, _instant(end_day, window.end, zone)


def _covering_start(
    windows: Sequence[SleepWindow], zone: ZoneInfo, moment: datetime
) -> datetime | None:
    """The earliest start of the windows that hold `moment`; None when none does."""
    local_day = moment.astimezone(zone).date()
    starts = []
    for window in windows:
        for back in (0, 1):  # a window that began yesterday may still run (a night)
            day = local_day - timedelta(days=back)
            if day.weekday() not in window.days:
                continue
            start, end = _spans(window, day, zone)
            if start <= moment < end:
                starts.append(start)
    return min(starts, default=None)


def sleep_started(schedule: SleepSchedule, moment: datetime) -> datetime | None:
    """When the sleep that holds `moment` began (windows that touch count as one sleep);
    None when `moment` is in no window."""
    zone = schedule.zone
    start = _covering_start(schedule.windows, zone, moment)
    if start is None:
        return None
    for _ in range(_MAX_LINKS):
        before = _covering_start(schedule.windows, zone, start - timedelta(microseconds=1))
        if before is None or before >= start:
            break
        start = before
    return start


def sleep_ends(schedule: SleepSchedule, moment: datetime) -> datetime | None:
    """When the sleep that holds `moment` ends (windows that touch count as one); None when
    `moment` is in no window."""
    zone = schedule.zone
    end: datetime | None = None
    probe = moment
    for _ in range(_MAX_LINKS):
        local_day = probe.astimezone(zone).date()
        ends = [
            span_end
            for window in schedule.windows
            for back in (0, 1)
            if (local_day - timedelta(days=back)).weekday() in window.days
            for span_start, span_end in [_spans(window, local_day - timedelta(days=back), zone)]
            if span_start <= probe < span_end
        ]
        if not ends:
            break
        end = max(ends)
        probe = end
    return end
