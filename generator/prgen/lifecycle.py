"""Expiry and sleep of idle environments: pure decisions from time found in data.

Activity is the newest of two facts every runner reads alike:
- when the fleet started carrying the environment's current head (git history of its
  HelmRelease: `FleetRepo.carried_since_each`), which is at or after the moment the head
  was pushed. The head commit's own date is not used: its author sets it (a commit dated
  2099 would never expire), and it is never newer than when the fleet saw the head;
- when the last `/preview` command applied was written (`Controls.last_command_at`,
  recorded in the HelmRelease's annotations).

An expired PR is remembered in the fleet (EXPIRED_FILE, keyed by PR, with the head it
expired at), so the next run does not make it again; a new head, `/preview create` or the PR
leaving the eligible set forgets it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from prgen.config import RepositorySettings
from prgen.filters import Skipped, select
from prgen.model import PullRequest
from prgen.plan import TEMPLATE_CHANGED, Action, Plan
from prgen.pr_commands import Controls
from prgen.render import dump
from prgen.schedule import sleep_ends, sleep_started

# The PRs whose environment expired: a ConfigMap manifest the index never lists.
EXPIRED_FILE = "prgen-expired.yaml"
# The environments told they expire, and when: none expires before its PR was told for a
# whole expireWarning (a ConfigMap manifest the index never lists, as EXPIRED_FILE).
NOTICE_FILE = "prgen-expiry-notices.yaml"

PullKey = tuple[str, int]  # (repository in lower case, PR number)


def format_duration(seconds: float) -> str:
    """'7d', '1d12h', '90m' -> as written in a config, from seconds."""
    left = int(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size:
            parts.append(f"{left // size}{unit}")
            left %= size
    return "".join(parts) or "0s"


def format_time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def command_time(controls: Controls) -> datetime | None:
    """When the last command applied was written; None when none recorded it."""
    if not controls.last_command_at:
        return None
    try:
        return datetime.fromisoformat(controls.last_command_at)
    except ValueError:
        return None


def last_activity(carried_since: datetime | None, controls: Controls) -> datetime | None:
    """The newest of: when the fleet started carrying the head, the last command."""
    moments = [m for m in (carried_since, command_time(controls)) if m is not None]
    return max(moments, default=None)


def keeps(repo: RepositorySettings, labels: Collection[str]) -> bool:
    """Whether the PR carries the repository's keep label (never expires)."""
    if repo.keep_label is None:
        return False
    return repo.keep_label.lower() in {label.lower() for label in labels}


def expires_at(
    repo: RepositorySettings, labels: Collection[str], activity: datetime | None
) -> datetime | None:
    """When the environment expires; None when it never does (no expireAfter, the keep
    label, or no activity known)."""
    if repo.expire_after is None or activity is None or keeps(repo, labels):
        return None
    return activity + timedelta(seconds=repo.expire_after)


def expiry_reason(repo: RepositorySettings, activity: datetime) -> str:
    assert repo.expire_after is not None
    return (
        f"expired: no new commit and no /preview command for {format_duration(repo.expire_after)} "
        f"(last activity {format_time(activity)})"
    )


def warns(repo: RepositorySettings, expiry: datetime | None, now: datetime) -> bool:
    """Whether `now` is within expireWarning of `expiry` (and before it)."""
    return expiry is not None and expiry - timedelta(seconds=repo.expire_warning) <= now < expiry


@dataclass(frozen=True)
class Sleep:
    reason: str  # why it sleeps, for the plan and the PR
    until: datetime | None = None  # when the schedule wakes it; None: the next activity


def asleep(repo: RepositorySettings, activity: datetime | None, now: datetime) -> Sleep | None:
    """Whether the environment sleeps at `now`, and why.

    sleepAfter: idle that long. sleepSchedule: `now` is in a window that began after the
    last activity (a push or a command in a window wakes it until the window ends).
    """
    if activity is None:
        return None
    schedule = repo.sleep_schedule
    if schedule is not None:
        started = sleep_started(schedule, now)
        if started is not None and activity < started:
            until = sleep_ends(schedule, now)
            return Sleep(f"asleep by its schedule ({schedule.timezone})", until)
    if repo.sleep_after is not None and now - activity >= timedelta(seconds=repo.sleep_after):
        return Sleep(
            f"asleep: no new commit and no /preview command for {format_duration(repo.sleep_after)}"
        )
    return None


def uses_activity(repo: RepositorySettings) -> bool:
    """Whether anything of the repository's lifecycle needs its environments' activity."""
    return (
        repo.expire_after is not None
        or repo.sleep_after is not None
        or repo.sleep_schedule is not None
    )


# -- the fleet's memory of expired PRs -------------------------------------------------------


@dataclass(frozen=True)
class Expired:
    head_sha: str  # the head it expired at: a new one brings the environment back
    last_command: int  # the last command applied before (older ones never replay)


def _key(repository: str, number: int) -> str:
    # A ConfigMap key ([-._a-zA-Z0-9]+): a GitHub owner has no dot, so this reads back.
    owner, _, name = repository.lower().partition("/")
    return f"{owner}.{name}.{number}"


def _render_by_pull(name: str, about: str, values: Mapping[PullKey, str]) -> bytes | None:
    """A ConfigMap manifest of one text per PR (never applied: the index lists only
    environment folders); None when there is none (the file goes)."""
    if not values:
        return None
    document = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name},
        "data": {
            _key(repository, number): value
            for (repository, number), value in sorted(values.items())
        },
    }
    return dump(document, about)


def _read_by_pull(content: bytes | None) -> dict[PullKey, tuple[str, str]]:
    """Each PR's text of a file `_render_by_pull` wrote, as (head, the rest); raises
    ValueError (or TypeError, AttributeError) on anything else."""
    if not content:
        return {}
    try:
        document = YAML(typ="safe", pure=True).load(content.decode("utf-8"))
    except (UnicodeDecodeError, YAMLError) as exc:
        raise ValueError(str(exc)) from exc
    entries: dict[PullKey, tuple[str, str]] = {}
    for key, value in (document.get("data") or {}).items():
        owner, _, rest = str(key).partition(".")
        name, _, number = rest.rpartition(".")
        head, _, more = str(value).partition(" ")
        entries[(f"{owner}/{name}", int(number))] = (head, more)
    return entries


_UNREADABLE = (ValueError, AttributeError, TypeError)


def render_expired(expired: Mapping[PullKey, Expired]) -> bytes | None:
    """The marker file of expired PRs; None when there are none (the file goes)."""
    return _render_by_pull(
        "prgen-expired",
        "pull requests whose environment expired, and at which head; not applied",
        {key: f"{entry.head_sha} {entry.last_command}" for key, entry in expired.items()},
    )


def read_expired(content: bytes | None) -> dict[PullKey, Expired]:
    """The marker file's entries (empty when it is missing or unreadable)."""
    try:
        return {
            key: Expired(head, int(last or 0))
            for key, (head, last) in _read_by_pull(content).items()
        }
    except _UNREADABLE:
        return {}


@dataclass(frozen=True)
class Notice:
    """An environment in its warning period: at `head_sha`, removed at `until` (never
    earlier than a whole expireWarning after prgen first found it due for a warning)."""

    head_sha: str
    until: datetime


def render_notices(notices: Mapping[PullKey, Notice]) -> bytes | None:
    """The file of expiry notices; None when there are none (the file goes)."""
    return _render_by_pull(
        "prgen-expiry-notices",
        "environments told they expire, and when; not applied",
        {key: f"{notice.head_sha} {notice.until.isoformat()}" for key, notice in notices.items()},
    )


def read_notices(content: bytes | None) -> dict[PullKey, Notice]:
    """The notice file's entries (empty when it is missing or unreadable)."""
    try:
        return {
            key: Notice(head, datetime.fromisoformat(until))
            for key, (head, until) in _read_by_pull(content).items()
        }
    except _UNREADABLE:
        return {}


def removal_time(
    repo: RepositorySettings, expiry: datetime, head_sha: str, notice: Notice | None, now: datetime
) -> datetime:
    """When an environment due to expire at `expiry` goes, once its warning period began
    (now >= expiry - expireWarning): at `expiry` if prgen found it due for a warning a whole
    expireWarning before, else that long after it first did (the notice says when). So
    turning expireAfter on, shortening it or taking the keep label off never removes an
    environment its PR was not told about first."""
    if notice is not None and notice.head_sha == head_sha and notice.until >= expiry:
        return notice.until
    return max(expiry, now + timedelta(seconds=repo.expire_warning))


# -- what one run makes of an eligible PR ----------------------------------------------------


@dataclass(frozen=True)
class Decision:
    controls: Controls | None  # what its environment records (sleeping set), as given if None
    expired: str | None = None  # it expires now: removed, with this reason
    gone: str | None = None  # it expired at this head before: no environment, with this reason
    said: str | None = None  # it falls asleep or wakes at the same head: the reason
    notice: Notice | None = None  # in its warning period: when it goes (kept in NOTICE_FILE)


def decide(
    repo: RepositorySettings,
    labels: Collection[str],
    head_sha: str,
    environment_head: str | None,
    carried_since: datetime | None,
    controls: Controls | None,
    marked: Expired | None,
    now: datetime,
    notice: Notice | None = None,
) -> Decision:
    """Expiry and sleep for one eligible PR.

    `environment_head`: the head its environment is at (None: it has none);
    `marked`: its entry in EXPIRED_FILE (None when there is none, or /preview create
    cleared it this run); `notice`: its entry in NOTICE_FILE (see removal_time).
    """
    if environment_head is None:
        if marked is not None and marked.head_sha == head_sha:
            return Decision(controls, gone=gone_reason(head_sha))
        return Decision(controls)  # a new environment: awake
    recorded = controls or Controls()
    if environment_head != head_sha:  # a push wakes it (and puts off its expiry)
        return Decision(_sleeping(controls, False))
    activity = last_activity(carried_since, recorded)
    expiry = expires_at(repo, labels, activity)
    told = None
    if (
        expiry is not None
        and activity is not None
        and now >= expiry - timedelta(seconds=repo.expire_warning)
    ):
        told = Notice(head_sha, removal_time(repo, expiry, head_sha, notice, now))
        if now >= told.until:
            return Decision(controls, expired=expiry_reason(repo, activity))
    sleep = asleep(repo, activity, now)
    if recorded.sleep_head == head_sha:
        sleep = Sleep("asleep by /preview sleep")
    said = None
    if bool(sleep) != recorded.sleeping:
        said = sleep.reason if sleep else "woken: a new commit, a /preview command or its schedule"
    return Decision(_sleeping(controls, sleep is not None), said=said, notice=told)


def gone_reason(head_sha: str) -> str:
    return (
        f"expired at head {head_sha[:7]}: a push, /preview create, or removing and adding "
        "its preview label again brings it back"
    )


def _sleeping(controls: Controls | None, sleeping: bool) -> Controls | None:
    """`controls` with `sleeping`; a request of /preview sleep ends with the sleep."""
    if controls is None and not sleeping:
        return None
    recorded = controls or Controls()
    if recorded.sleeping == sleeping and (sleeping or recorded.sleep_head is None):
        return controls
    return replace(
        recorded, sleeping=sleeping, sleep_head=recorded.sleep_head if sleeping else None
    )


# -- one sync run's lifecycle: its facts, what it decided, what the plan makes of it ----------


@dataclass
class LifecycleRun:
    """Expiry and sleep in one sync: the facts they are decided from, and what was decided
    (the sync asks `set_aside` and `judge` as it goes through each repository's PRs, then
    `finish` says it in the plan)."""

    now: datetime
    carried: Mapping[str, datetime | None]  # folder -> since when the fleet carries its head
    expired: Mapping[PullKey, Expired]  # EXPIRED_FILE as the fleet holds it now
    marker: bytes | None  # EXPIRED_FILE's bytes
    recreated: Collection[PullKey] = ()  # /preview create this run: the expiry is forgotten
    notices: Mapping[PullKey, Notice] = field(default_factory=dict)  # NOTICE_FILE as it is
    notice_marker: bytes | None = None  # NOTICE_FILE's bytes
    noticed: dict[PullKey, Notice] = field(default_factory=dict)  # this run's notices
    expiring: dict[PullKey, tuple[str, Expired]] = field(default_factory=dict)
    still_expired: set[PullKey] = field(default_factory=set)
    said: dict[PullKey, str] = field(default_factory=dict)  # fell asleep or woke

    def set_aside(
        self, repo: RepositorySettings, pulls: Sequence[PullRequest], environments: Collection[int]
    ) -> tuple[list[PullRequest], list[Skipped]]:
        """`pulls` without those whose environment expired at the head they have now (and
        have none): they take no place under maxEnvironments. Each that would still be
        eligible stays remembered, and skipped with the reason."""
        name = repo.name.lower()
        aside = [
            pr
            for pr in pulls
            if (entry := self.expired.get((name, pr.number))) is not None
            and entry.head_sha == pr.head_sha
            and (name, pr.number) not in self.recreated
            and pr.number not in environments
        ]
        if not aside:
            return list(pulls), []
        skipped = []
        for pr in select(dataclasses.replace(repo, max_environments=None), aside)[0]:
            self.still_expired.add((name, pr.number))
            skipped.append(Skipped(repo.name, pr.number, gone_reason(pr.head_sha)))
        return [pr for pr in pulls if pr not in aside], skipped

    def judge(
        self,
        repo: RepositorySettings,
        pr: PullRequest,
        environment: tuple[str, str | None] | None,
        controls: Controls | None,
    ) -> Decision:
        """`decide` for an eligible PR (`environment`: its folder and head, if it has one),
        remembered for `finish`."""
        key = (repo.name.lower(), pr.number)
        folder, head = environment if environment is not None else ("", None)
        decision = decide(
            repo,
            pr.labels,
            pr.head_sha,
            head,
            self.carried.get(folder) if environment is not None else None,
            controls,
            None if key in self.recreated else self.expired.get(key),
            self.now,
            self.notices.get(key),
        )
        if decision.notice is not None:
            self.noticed[key] = decision.notice
        if decision.gone is not None:
            self.still_expired.add(key)
        if decision.expired is not None:
            last = (controls or Controls()).last_command
            self.expiring[key] = (decision.expired, Expired(pr.head_sha, last))
        if decision.said is not None:
            self.said[key] = decision.said
        return decision

    def finish(self, plan: Plan, complete: Collection[str]) -> Plan:
        """The plan with expiry and sleep said as reasons, and EXPIRED_FILE written where it
        changed: the PRs that expire now (only those the guard let go), and those that
        expired before and stay gone. An entry of a completely listed repository whose PR was
        not found expired again (closed, no longer eligible, a new head, /preview create) is
        forgotten; the other repositories' entries stay as they are."""
        changes = []
        removed: set[PullKey] = set()
        for change in plan.changes:
            key = (change.repository.lower(), change.number)
            if key in self.expiring and change.action is Action.DELETE and not change.replaced_by:
                change = dataclasses.replace(change, reason=self.expiring[key][0])
                removed.add(key)
            elif (
                key in self.said
                and change.action is Action.UPDATE
                and change.reason == TEMPLATE_CHANGED
            ):
                change = dataclasses.replace(change, reason=self.said[key])
            changes.append(change)
        marker = {
            key: entry
            for key, entry in self.expired.items()
            if key[0] not in complete or key in self.still_expired
        }
        marker.update({key: self.expiring[key][1] for key in removed})
        # Notices: this run's, and those of repositories not completely listed; one that
        # expired but was held by the guard keeps its time (it goes once the guard lets it).
        notices = {key: n for key, n in self.notices.items() if key[0] not in complete}
        notices.update(self.noticed)
        for key in self.expiring:
            if key not in removed and key in self.notices:
                notices[key] = self.notices[key]
        writes = dict(plan.writes)
        for name, wanted, found in (
            (EXPIRED_FILE, render_expired(marker), self.marker),
            (NOTICE_FILE, render_notices(notices), self.notice_marker),
        ):
            if wanted != found:
                writes[name] = wanted
        return dataclasses.replace(plan, changes=tuple(changes), writes=writes)
