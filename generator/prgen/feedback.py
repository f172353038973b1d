"""`prgen probe`: probe every environment in the fleet and report to GitHub.

Inputs are what sync already has (the fleet and the listings), so
`prgen sync --probe` costs no second listing.

A round has a time budget (probe.roundTimeout): no probe and no GitHub call starts
after it, a back-off never outlasts it, and the reports run on worker threads that the
round leaves behind a moment after its end if a call hangs. What was not reported by
then is said so and is picked up next round; the round starts at a different
environment each time, so a budget too small for all never leaves the same ones out.

At scale (a thousand environments, a tenth of them hanging) the round takes about one
probe timeout and the reports' GitHub time divided among their workers: an environment
is reported as soon as its probe ends, on one of a bounded number of workers, each with
its own client; the fleet's history is read only for an environment that is not healthy.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from typing import Any
from urllib.parse import urlsplit

from prgen import clock
from prgen.config import Config, RepositorySettings
from prgen.errors import ExitCode
from prgen.fleet import FleetRepo
from prgen.fleet_history import RemovedEnvironment
from prgen.github.channels import GitHubReporter
from prgen.github.client import Client
from prgen.github.pulls import GitHubSource
from prgen.inventory import CurrentEnvironment, Inventory, union_of
from prgen.lifecycle import (
    EXPIRED_FILE,
    NOTICE_FILE,
    Expired,
    Notice,
    asleep,
    expires_at,
    format_duration,
    last_activity,
    read_expired,
    read_notices,
    uses_activity,
    warns,
)
from prgen.logs import fields, phase
from prgen.model import Listing, PullRequest
from prgen.placeholders import Substitution, pull_request_values
from prgen.plan import Action, Change
from prgen.pr_commands import Controls
from prgen.probe import ProbeResult, ProbeTarget, probe, probe_each
from prgen.redact import redact
from prgen.report import (
    NOT_IN_TIME,
    PASSED,
    DesiredReport,
    Health,
    Observation,
    ReportOutcome,
    desired_report,
    passed_report,
    waiting_report,
)
from prgen.sync_result import Waiting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnvironmentFeedback:
    observation: Observation
    health_url: str | None
    outcome: ReportOutcome


@dataclass(frozen=True)
class Unfinished:
    """An environment the round could not probe or report (in time), and why."""

    repository: str
    number: int
    namespace: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "pullRequest": self.number,
            "namespace": self.namespace,
            "reason": self.reason,
        }


REPORT_GRACE = 1.0  # after the round's end, how long a GitHub call under way may take to end
NOT_PROBED_IN_TIME = (
    "not probed in time: the probe round's time ran out; the next round picks it up"
)


@dataclass
class ProbeRunResult:
    environments: list[EnvironmentFeedback] = field(default_factory=list)
    failed_repositories: dict[str, str] = field(default_factory=dict)
    failed_environments: list[Unfinished] = field(default_factory=list)
    late: list[Unfinished] = field(default_factory=list)  # neither probed nor reported in time

    @property
    def unreported(self) -> list[EnvironmentFeedback]:
        return [e for e in self.environments if e.outcome.error]

    @property
    def exit_code(self) -> ExitCode:
        incomplete = (
            self.failed_repositories or self.failed_environments or self.late or self.unreported
        )
        return ExitCode.PARTIAL if incomplete else ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "exitCode": int(self.exit_code),
            "failedRepositories": self.failed_repositories,
            "failedEnvironments": [e.to_json() for e in self.failed_environments],
            "notReportedInTime": [
                *(e.to_json() for e in self.late),
                *(_late_json(e) for e in self.environments if e.outcome.late),
            ],
            "environments": [
                {
                    "repository": e.observation.repository,
                    "pullRequest": e.observation.number,
                    "headSha": e.observation.head_sha,
                    "namespace": e.observation.namespace,
                    **({"target": e.observation.target} if e.observation.target else {}),
                    "state": str(e.observation.health),
                    "reason": e.observation.reason,
                    "healthUrl": e.health_url,
                    "environmentUrl": e.observation.environment_url,
                    "writes": e.outcome.writes,
                    "reportError": e.outcome.error,
                    "reportedInTime": not e.outcome.late,
                }
                for e in self.environments
            ],
        }


def _late_json(feedback: EnvironmentFeedback) -> dict[str, Any]:
    o = feedback.observation
    return Unfinished(o.repository, o.number, o.namespace, feedback.outcome.error or "").to_json()


def _unexpected(exc: Exception) -> str:
    return redact(f"unexpected error: {type(exc).__name__}: {exc}")


def origin(url: str) -> str:
    """scheme://host[:port] of a URL: the default environment URL, without any user:password@."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # the userinfo must never reach GitHub
    return f"{parts.scheme}://{host}"


@dataclass(frozen=True)
class _Job:
    observation: Observation
    url: str | None  # the health URL probed
    wanted: DesiredReport


@dataclass(frozen=True)
class _Live:
    env: CurrentEnvironment
    repo: RepositorySettings
    pr: PullRequest
    target: ProbeTarget
    environment_url: str


@dataclass(frozen=True)
class _Failed:
    """Judging an environment failed: no report, the environment counts as failed."""

    reason: str


@dataclass(frozen=True)
class _Reported:
    job: _Job
    outcome: ReportOutcome


REPORT_CONCURRENCY = 8  # GitHub requests in flight in a round's reports, by default
# A job ready to report, or what judges an environment on a report worker (it may read git
# history, which is better not done on the thread that runs the probes).
_Task = _Job | Callable[[], _Job]


class _Reports:
    """A round's reports, on a bounded number of worker threads, each with its own reporter.

    Tasks are handed in as probes end, so the quick environments are reported while slow
    ones are still probed. No task starts once the round's time ran out; `finish` waits
    until then (and `REPORT_GRACE`), and a worker still inside a GitHub call after that is
    left behind: its environment has no outcome, so it counts as not reported in time.
    """

    def __init__(self, reporters: Sequence[GitHubReporter], until: float) -> None:
        self._until = until
        self._tasks: queue.SimpleQueue[tuple[int, _Task] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._done: dict[int, _Reported | _Failed] = {}
        self._workers = [
            threading.Thread(
                target=self._work, args=(reporter,), name=f"prgen-report-{n}", daemon=True
            )
            for n, reporter in enumerate(reporters)
        ]
        for worker in self._workers:
            worker.start()

    def submit(self, key: int, task: _Task) -> None:
        self._tasks.put((key, task))

    def close(self) -> None:
        """No more tasks: each worker ends after those queued (or at the round's end)."""
        for _ in self._workers:
            self._tasks.put(None)

    def finish(self) -> dict[int, _Reported | _Failed]:
        """What was done by the round's end (and the grace), by key; the rest is late."""
        self.close()
        for worker in self._workers:
            worker.join(max(0.0, self._until + REPORT_GRACE - time.monotonic()))
        with self._lock:
            return dict(self._done)

    def _work(self, reporter: GitHubReporter) -> None:
        while (item := self._tasks.get()) is not None:
            if time.monotonic() >= self._until:
                return  # what is still queued is not reported in time
            key, task = item
            done: _Reported | _Failed
            try:
                job = task if isinstance(task, _Job) else task()
            except Exception as exc:
                done = _Failed(_unexpected(exc))
            else:
                done = _Reported(job, _report(reporter, job, self._until))
            with self._lock:
                self._done[key] = done


def _report(reporter: GitHubReporter, job: _Job, until: float) -> ReportOutcome:
    try:
        return reporter.report(job.observation, job.wanted, until)
    except Exception as exc:  # this environment's report failed; the others' go on
        return ReportOutcome(error=_unexpected(exc))


class Prober:
    """One probe round: probe the live environments, judge each, report what differs.

    With `client_factory`, reports run on up to `report_concurrency` threads, one client
    each (a PyGithub client is not thread-safe); without it, or with github.requestInterval,
    on one thread.
    """

    def __init__(
        self,
        config: Config,
        client: Client,
        fleet: FleetRepo,
        *,
        now: Callable[[], datetime] = clock.now,
        run_probe: Callable[[ProbeTarget], ProbeResult] = probe,
        reporter: GitHubReporter | None = None,
        start_at: Callable[[int], int] = random.randrange,
        client_factory: Callable[[], Client] | None = None,
        report_concurrency: int = REPORT_CONCURRENCY,
    ) -> None:
        self.config = config
        # Each target's folder, by its name ("" for fleet.path): environments and removals
        # carry their target's name, and are judged by that target's settings.
        self.paths = {target.name: target.path for target in config.fleet_targets}
        self.client = client
        self.fleet = fleet
        self._now = now
        self._run_probe = run_probe
        self.reporter = reporter or GitHubReporter(client)
        self._start_at = start_at  # where in the list of n environments a round begins
        self._client_factory = client_factory
        # github.requestInterval asks for strictly serial calls, this far apart: one worker
        # (each client keeps its own interval, so several would not keep it).
        serial = config.github.request_interval > 0
        self._report_concurrency = 1 if serial else max(1, report_concurrency)
        self._by_name: dict[tuple[str, str], RepositorySettings] = {}
        for target in config.fleet_targets:
            for repo in target.repositories:
                self._by_name.setdefault((target.name, repo.name.lower()), repo)
        # FleetRepo reads history through one long-running `git cat-file --batch`: one
        # worker at a time.
        self._history = threading.Lock()
        # Lifecycle facts of a round (see `run`): since when each folder's head is carried,
        # and the PRs whose environment expired.
        self._carried: Mapping[str, datetime | None] = {}
        self._expired: Mapping[tuple[str, int], Expired] = {}

    def _configured(self, name: str, target: str = "") -> RepositorySettings | None:
        return self._by_name.get((target, name.lower()))

    def _live_environments(
        self,
        inventory: Inventory,
        listings: Mapping[str, Listing],
        result: ProbeRunResult,
        asleep: list[_Live] | None = None,
    ) -> list[_Live]:
        """The environments to probe; sleeping ones go to `asleep` instead."""
        asleep = asleep if asleep is not None else []
        live = []
        open_pulls: dict[str, dict[int, PullRequest]] = {}
        for env in inventory.environments:
            repo = self._configured(env.repository, env.target)
            if repo is None or repo.health_check is None:
                continue
            listing = listings.get(repo.name.lower())
            if listing is None or not listing.complete:
                result.failed_repositories[repo.name] = (
                    listing.error if listing else None
                ) or "not listed"
                continue
            pulls = open_pulls.get(repo.name.lower())
            if pulls is None:
                pulls = open_pulls[repo.name.lower()] = {
                    p.number: p for p in reversed(listing.pull_requests)
                }  # reversed: the first of a number wins, as a search from the front would
            pr = pulls.get(env.number)
            if pr is None or pr.head_sha != env.head_sha:
                continue  # closed, or the fleet does not carry its head yet: the next sync will
            try:
                prepared = self._prepare(env, repo, pr)
                if Controls.decode(env.controls).sleeping:
                    asleep.append(prepared)  # scaled to zero: reported, never probed
                else:
                    live.append(prepared)
            except Exception as exc:  # this environment's failure; the others are still probed
                result.failed_environments.append(
                    Unfinished(repo.name, env.number, env.folder, _unexpected(exc))
                )
        return live

    @staticmethod
    def _prepare(env: CurrentEnvironment, repo: RepositorySettings, pr: PullRequest) -> _Live:
        assert repo.health_check is not None
        subst = Substitution(pull_request_values(pr, env.folder, repo.target))
        check = repo.health_check
        url = subst.text(check.url)
        target = ProbeTarget(url, check, subst.text(check.contains) if check.contains else None)
        environment_url = subst.text(repo.environment_url) if repo.environment_url else origin(url)
        return _Live(env, repo, pr, target, environment_url)

    def _judge(self, item: _Live, probed: ProbeResult) -> Observation:
        assert item.repo.health_check is not None
        if probed.healthy:
            health = Health.READY
        else:
            # Only an unhealthy environment is judged against its deadline, so only it
            # costs a look at the fleet's history.
            with self._history:
                folder, head = item.env.folder, item.pr.head_sha
                since = (
                    self.fleet.carried_since(folder, head, self.paths[item.env.target])
                    if item.env.target
                    else self.fleet.carried_since(folder, head)
                )
            elapsed = (self._now() - since).total_seconds() if since else 0.0
            health = Health.FAILED if elapsed >= item.repo.health_check.deadline else Health.PENDING
        return self._observed(item, health, probed.reason)

    def _observed(self, item: _Live, health: Health, reason: str) -> Observation:
        controls = Controls.decode(item.env.controls)
        expiry = expires_at(
            item.repo,
            item.pr.labels,
            last_activity(self._carried.get(item.env.folder), controls),
        )
        notice = self._notices.get((item.repo.name.lower(), item.pr.number))
        # What the sync recorded: the removal waits a whole warning period after the PR was
        # first due to be told (see lifecycle.removal_time).
        if (
            expiry is not None
            and notice is not None
            and notice.head_sha == item.pr.head_sha
            and notice.until >= expiry
        ):
            expiry = notice.until
        return Observation(
            item.repo.name,
            item.pr.number,
            item.pr.head_sha,
            item.env.folder,
            item.environment_url,
            health,
            reason,
            paused=controls.paused_at is not None,
            expires_at=expiry if warns(item.repo, expiry, self._now()) else None,
            keep_label=item.repo.keep_label,
            target=item.repo.target,
        )

    def _asleep_job(self, item: _Live) -> _Job:
        observation = self._observed(item, Health.SLEEPING, "asleep")
        activity = last_activity(
            self._carried.get(item.env.folder), Controls.decode(item.env.controls)
        )
        sleep = asleep(item.repo, activity, self._now())
        if sleep is not None and sleep.until is not None:
            observation = dataclasses.replace(observation, wakes_at=sleep.until)
        values = pull_request_values(item.pr, item.env.folder)
        wanted = desired_report(
            item.repo.report, observation, self._deployment_environment(item.repo, values)
        )
        return _Job(observation, None, wanted)

    def _job(self, item: _Live, probed: ProbeResult) -> _Job:
        observation = self._judge(item, probed)
        values = pull_request_values(item.pr, item.env.folder, item.repo.target)
        wanted = desired_report(
            item.repo.report, observation, self._deployment_environment(item.repo, values)
        )
        return _Job(observation, item.target.url, wanted)

    def _deployment_environment(
        self, repo: RepositorySettings, values: dict[str, str]
    ) -> str | None:
        template = repo.report.deployment_environment
        return Substitution(values).text(template) if template else None

    def run(
        self,
        inventory: Inventory,
        listings: Iterable[Listing],
        removed: Iterable[RemovedEnvironment] = (),
        *,
        until: float | None = None,
        carried: Mapping[str, datetime | None] | None = None,
        expired: Mapping[tuple[str, int], Expired] | None = None,
        notices: Mapping[tuple[str, int], Notice] | None = None,
    ) -> ProbeRunResult:
        """One round; `until` (time.monotonic) is its end, by default probe.roundTimeout from now.

        Each environment is reported as soon as its probe ends, while the others are
        still probed; removed ones (no probe) first.
        """
        if until is None:
            until = time.monotonic() + self.config.probe.round_timeout
        result = ProbeRunResult()
        self._carried, self._expired = carried or {}, expired or {}
        self._notices = notices or {}
        by_name = {listing.repository.lower(): listing for listing in listings}
        asleep: list[_Live] = []
        live = self._live_environments(inventory, by_name, result, asleep)
        removals = self._removals(inventory, removed)
        removals += [self._asleep_job(item) for item in asleep]
        reports = _Reports(self._reporters(len(live) + len(removals)), until)
        # Keys: 0..len(live)-1 the live environments, then the removals.
        for offset in self._rotation(len(removals)):
            reports.submit(len(live) + offset, removals[offset])
        try:
            not_probed = self._probe(live, reports, until)
        except BaseException:
            reports.close()  # its workers end, instead of waiting for tasks that never come
            raise
        self._account(result, live, removals, not_probed, reports.finish())
        return result

    def _probe(self, live: Sequence[_Live], reports: _Reports, until: float) -> set[int]:
        """Probes every live environment, each handed to the reports as it ends; the indexes
        of those not probed in time."""
        order = self._rotation(len(live))
        not_probed: set[int] = set()
        probed = probe_each(
            [live[i].target for i in order],
            self.config.probe.concurrency,
            self._run_probe,
            until=until,
        )
        for position, answer in probed:
            index = order[position]
            if answer is None:
                not_probed.add(index)
            else:
                reports.submit(index, partial(self._job, live[index], answer))
        return not_probed

    def _account(
        self,
        result: ProbeRunResult,
        live: Sequence[_Live],
        removals: Sequence[_Job],
        not_probed: set[int],
        done: Mapping[int, _Reported | _Failed],
    ) -> None:
        """Each environment in the result, in the order of `live` then `removals`."""
        jobs: list[tuple[int, _Job | None]] = []
        for index, item in enumerate(live):
            if index in not_probed:
                result.late.append(
                    Unfinished(item.repo.name, item.pr.number, item.env.folder, NOT_PROBED_IN_TIME)
                )
            elif isinstance(failed := done.get(index), _Failed):
                result.failed_environments.append(
                    Unfinished(item.repo.name, item.pr.number, item.env.folder, failed.reason)
                )
            else:
                jobs.append((index, None))
        jobs += [(len(live) + offset, job) for offset, job in enumerate(removals)]
        for key, job in jobs:
            reported = done.get(key)
            if isinstance(reported, _Reported):
                result.environments.append(
                    EnvironmentFeedback(
                        reported.job.observation, reported.job.url, reported.outcome
                    )
                )
            else:
                result.late.append(self._not_reported(live[key] if job is None else job))

    @staticmethod
    def _not_reported(item: _Live | _Job) -> Unfinished:
        if isinstance(item, _Job):
            o = item.observation
            return Unfinished(o.repository, o.number, o.namespace, NOT_IN_TIME)
        return Unfinished(item.repo.name, item.pr.number, item.env.folder, NOT_IN_TIME)

    def _reporters(self, jobs: int) -> list[GitHubReporter]:
        """One reporter a worker: as many as the jobs need, up to the bound, one client each."""
        if self._client_factory is None:
            return [self.reporter]
        count = max(1, min(self._report_concurrency, jobs))
        return [self.reporter.for_client(self._client_factory()) for _ in range(count)]

    def _rotation(self, count: int) -> list[int]:
        """0..count-1, from where this round begins: a round cut short leaves others out next."""
        start = self._start_at(count) if count else 0
        return [(start + offset) % count for offset in range(count)]

    def _removals(self, inventory: Inventory, removed: Iterable[RemovedEnvironment]) -> list[_Job]:
        jobs = []
        present = {(env.target, *env.key) for env in inventory.environments}
        for gone in self._unique(removed):
            repo = self._configured(gone.repository, gone.target)
            if (
                repo is None
                or repo.health_check is None
                or (gone.target, gone.repository.lower(), gone.number) in present
            ):
                continue
            expiry = self._expired.get((gone.repository.lower(), gone.number))
            expired = expiry is not None and expiry.head_sha == gone.head_sha
            observation = Observation(
                repo.name,
                gone.number,
                gone.head_sha,
                gone.folder,
                None,
                Health.REMOVED,
                f"expired: no new commit and no /preview command for "
                f"{format_duration(repo.expire_after or 0)}"
                if expired
                else "pull request closed or no longer eligible",
                expired=expired,
                opt_in_labels=tuple(sorted(repo.labels)),
                target=repo.target,
            )
            values = {
                "PR_NUMBER": str(gone.number),
                "PR_HEAD_SHA": gone.head_sha or "",
                "PR_HEAD_SHORT_SHA": (gone.head_sha or "")[:7],
                "REPO_OWNER": repo.owner,
                "REPO_NAME": repo.short_name,
                "NAMESPACE": gone.folder,
                **({"TARGET": repo.target} if repo.target else {}),
            }
            wanted = desired_report(
                repo.report, observation, self._deployment_environment(repo, values)
            )
            jobs.append(_Job(observation, None, wanted))
        return jobs

    @staticmethod
    def _unique(removed: Iterable[RemovedEnvironment]) -> list[RemovedEnvironment]:
        seen: set[tuple[str, str, int]] = set()
        unique = []
        for gone in removed:  # newest first: the latest removal of each PR counts
            key = (gone.target, gone.repository.lower(), gone.number)
            if key not in seen:
                seen.add(key)
                unique.append(gone)
        return unique


def _of_target(inventory: Inventory, target: str) -> Inventory:
    """`inventory` with each environment saying it is in `target` (with `targets:`)."""
    if not target:
        return inventory
    environments = tuple(replace(env, target=target) for env in inventory.environments)
    return replace(inventory, environments=environments)


def probe_and_report(
    config: Config,
    client: Client,
    fleet: FleetRepo,
    listings: Sequence[Listing] | None = None,
    *,
    source: GitHubSource | None = None,
    client_factory: Callable[[], Client] | None = None,
    report_concurrency: int = REPORT_CONCURRENCY,
) -> ProbeRunResult:
    """Probe what the fleet holds now; list PRs first (through `source`) unless a sync just did.

    `client_factory` makes a client for each report worker (see `Prober`).
    """
    until = time.monotonic() + config.probe.round_timeout  # the fetch and listing count too
    targets = config.fleet_targets
    with fleet.locked():
        with phase("read the fleet") as counts:
            snapshots = fleet.refresh_all()
            removed = [
                replace(gone, target=target.name)
                for target in targets
                for gone in fleet.recently_removed(config.probe.closed_lookback, target.path)
            ]
            inventory = union_of([_of_target(snapshots[t.path].inventory, t.name) for t in targets])
            counts["environments"] = len(inventory.environments)
            counts["recentlyRemoved"] = len(removed)
        if listings is None:
            with phase("list pull requests") as counts:
                source = source or GitHubSource.for_settings(client, config.github)
                listings = source.list_all(
                    [repo.name for repo in config.repositories], inventory.numbers_of
                )
                counts["repositories"] = len(listings)
                counts["failed"] = sum(not listing.complete for listing in listings)
        prober = Prober(
            config,
            client,
            fleet,
            client_factory=client_factory,
            report_concurrency=report_concurrency,
        )
        # Expiry and sleep, as the sync judges them: each target's record of expired PRs and
        # since when its folder carries each head (one commit writes every target, so a
        # folder of two targets is carried alike; where not, the later time counts).
        expired: dict[tuple[str, int], Expired] = {}
        notices: dict[tuple[str, int], Notice] = {}
        for target in reversed(targets):
            files = snapshots[target.path].files
            expired.update(read_expired(files.get(EXPIRED_FILE) if EXPIRED_FILE in files else None))
            notices.update(read_notices(files.get(NOTICE_FILE) if NOTICE_FILE in files else None))
        carried: dict[str, datetime | None] = {}
        if any(uses_activity(repo) for repo in config.repositories):
            with phase("read activity") as counts:
                for target in targets:
                    heads = _lifecycle_heads(
                        target.repositories, snapshots[target.path].inventory, listings
                    )
                    for folder, since in fleet.carried_since_each(heads, target.path).items():
                        before = carried.get(folder)
                        carried[folder] = (
                            max(before, since) if before and since else before or since
                        )
                counts["environments"] = len(carried)
        with phase("probe and report") as counts:
            # One round over every target's environments: each is reported as its target's.
            result = prober.run(
                inventory,
                listings,
                removed,
                until=until,
                carried=carried,
                expired=expired,
                notices=notices,
            )
            counts["reported"] = len(result.environments)
            counts["healthy"] = sum(
                e.observation.health is Health.READY for e in result.environments
            )
            counts["githubWrites"] = sum(e.outcome.writes for e in result.environments)
            counts["notInTime"] = len(result.late)
            counts["failed"] = len(result.failed_environments) + len(result.unreported)
        return result


def _lifecycle_heads(
    repositories: Iterable[RepositorySettings], inventory: Inventory, listings: Iterable[Listing]
) -> dict[str, str]:
    """The folder and head of each environment whose expiry or sleep depends on its
    activity: of a repository with a lifecycle, its open PR still at that head (the same
    set a sync reads, so the two share the cache of the fleet's history)."""
    heads: dict[str, str] = {}
    by_pull = {env.key: env for env in inventory.environments}
    by_name = {listing.repository.lower(): listing for listing in listings}
    for repo in repositories:
        listing = by_name.get(repo.name.lower())
        if not uses_activity(repo) or listing is None:
            continue
        for pr in listing.pull_requests:
            env = by_pull.get((repo.name.lower(), pr.number))
            if env is not None and env.head_sha == pr.head_sha:
                heads[env.folder] = pr.head_sha
    return heads


# -- heads a deploy gate holds back ---------------------------------------------------------


@dataclass(frozen=True)
class WaitingFeedback:
    waiting: Waiting
    outcome: ReportOutcome

    def to_json(self) -> dict[str, Any]:
        w = self.waiting
        return {
            "repository": w.repository,
            "pullRequest": w.number,
            "headSha": w.head_sha,
            "reason": w.reason,
            "writes": self.outcome.writes,
            "reportError": self.outcome.error,
        }


@dataclass
class WaitingReportResult:
    reports: list[WaitingFeedback] = field(default_factory=list)  # heads that wait
    passed: list[WaitingFeedback] = field(default_factory=list)  # see `passed_gates`

    @property
    def unreported(self) -> list[WaitingFeedback]:
        return [r for r in (*self.reports, *self.passed) if r.outcome.error]

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PARTIAL if self.unreported else ExitCode.OK


def passed_gates(config: Config, changes: Iterable[Change]) -> list[Waiting]:
    """The heads a sync just deployed in a gated repository that has no health check: no
    probe will report on them, so the sync says they passed (see `report_waiting`)."""
    by_name = {repo.name.lower(): repo for repo in reversed(config.repositories)}
    passed: dict[tuple[str, int, str], Waiting] = {}  # a head once, in however many targets
    for change in changes:
        repo = by_name.get(change.repository.lower())
        if (
            change.action in (Action.CREATE, Action.UPDATE)
            and change.head_sha
            and repo is not None
            and repo.deploy_when is not None
            and repo.health_check is None
        ):
            key = (repo.name.lower(), change.number, change.head_sha)
            passed.setdefault(key, Waiting(repo.name, change.number, change.head_sha, PASSED))
    return list(passed.values())


def _settings_by_name(config: Config) -> dict[str, list[RepositorySettings]]:
    """Each repository's settings in every target (each reports under its own names)."""
    found: dict[str, list[RepositorySettings]] = {}
    for target in config.fleet_targets:
        for repo in target.repositories:
            found.setdefault(repo.name.lower(), []).append(repo)
    return found


def report_waiting(
    config: Config,
    client: Client,
    waiting: Sequence[Waiting],
    passed: Sequence[Waiting] = (),
    *,
    reporter: GitHubReporter | None = None,
) -> WaitingReportResult:
    """Say on each waiting head why its gate holds it: read first, write only what differs.

    A failed write is this head's error (a warning, exit 1); the fleet is already what the
    sync made of it. Bounded in time by probe.roundTimeout, as a probe round's reports.
    """
    until = time.monotonic() + config.probe.round_timeout
    reporter = reporter or GitHubReporter(client)
    by_name = _settings_by_name(config)
    result = WaitingReportResult()
    heads = [(wait, False) for wait in waiting] + [(wait, True) for wait in passed]
    each = [(w, d, r) for w, d in heads for r in by_name.get(w.repository.lower(), [])]
    for wait, done, repo in each:
        wanted = passed_report(repo.report) if done else waiting_report(repo.report, wait.reason)
        if wanted.status is None and wanted.check_run is None:
            continue  # nothing configured that could say it
        observation = Observation(
            repo.name, wait.number, wait.head_sha, "", None, Health.PENDING, wait.reason
        )
        try:
            outcome = reporter.report(observation, wanted, until)
        except Exception as exc:  # this head's report failed; the others' go on
            outcome = ReportOutcome(error=_unexpected(exc))
        if outcome.error:
            log.warning(
                "could not say why %s#%d waits: %s",
                repo.name,
                wait.number,
                outcome.error,
                extra=fields(repository=repo.name, pullRequest=wait.number),
            )
        (result.passed if done else result.reports).append(WaitingFeedback(wait, outcome))
    return result
