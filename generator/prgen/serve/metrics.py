"""The server's Prometheus metrics, in a registry of its own (nothing global)."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from prgen.feedback import ProbeRunResult
from prgen.plan import Action, Change
from prgen.report import Health

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

# A sync's duration, from a scoped run of one repository to a full run of an organisation.
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def environment_state(change: Change) -> str | None:
    """What the fleet holds for a PR after a run (None: nothing any more)."""
    if change.action is Action.DELETE:
        return None
    if change.action is Action.HOLD:
        return "held"  # at the last head its deploy gate passed
    if change.action is Action.KEEP and change.reason != "up to date":
        return "kept"  # kept as it is: a failed listing, the mass-deletion guard
    return "current"


class Metrics:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, dict[str, int]] = {}  # repository -> state -> environments
        self.last_full_success: float | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sync_runs = Counter(
            "prgen_sync_runs",
            "Sync runs, by scope (full: every repository; scoped: after webhooks) and outcome "
            "(ok; partial: some repositories or gates unread; failed: nothing was done)",
            ["scope", "outcome"],
            registry=r,
        )
        self.sync_duration = Histogram(
            "prgen_sync_duration_seconds",
            "Duration of a sync run, by scope and outcome",
            ["scope", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.sync_repositories = Counter(
            "prgen_sync_repositories",
            "Repositories synced, summed over runs, by scope",
            ["scope"],
            registry=r,
        )
        self.commits = Counter(
            "prgen_fleet_commits", "Commits prgen pushed to the fleet repository", registry=r
        )
        self.environments = Gauge(
            "prgen_environments",
            "Environments in the fleet after the last run that looked at their repository, "
            "by state (current; held by a deploy gate; kept as they are)",
            ["state"],
            registry=r,
        )
        self.github_requests = Counter(
            "prgen_github_requests",
            "Answers GitHub gave to prgen's requests, by HTTP status (304: a cached answer "
            "confirmed, at no rate-limit point)",
            ["status"],
            registry=r,
        )
        self.rate_limit_remaining = Gauge(
            "prgen_github_rate_limit_remaining",
            "Rate-limit points left, as GitHub said in its last answer",
            registry=r,
        )
        self.webhooks = Counter(
            "prgen_webhook_deliveries",
            "Webhook deliveries, by event and result",
            ["event", "result"],
            registry=r,
        )
        self.pending = Gauge(
            "prgen_pending_repositories",
            "Repositories marked by webhooks that wait for their sync",
            registry=r,
        )
        self.last_full_timestamp = Gauge(
            "prgen_last_full_sync_success_timestamp_seconds",
            "When the last full sync that completed ended (Unix time; 0: none yet)",
            registry=r,
        )
        since = Gauge(
            "prgen_seconds_since_last_full_sync",
            "Seconds since the last full sync that completed ended (+Inf: none yet)",
            registry=r,
        )
        since.set_function(self.seconds_since_full_sync)
        self.probe_rounds = Counter(
            "prgen_probe_rounds",
            "Probe rounds, by outcome (ok; partial: some environments not probed or reported "
            "in time; failed; skipped: threads of earlier rounds still hang)",
            ["outcome"],
            registry=r,
        )
        self.probe_duration = Histogram(
            "prgen_probe_duration_seconds",
            "Duration of a probe round",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.probe_results = Gauge(
            "prgen_probe_environments",
            "Environments by health in the last probe round (success, failure, pending, "
            "removed: reported closed)",
            ["health"],
            registry=r,
        )
        self.probe_leftover_threads = Gauge(
            "prgen_probe_leftover_threads",
            "Probe and report threads of earlier rounds still alive when a round was due",
            registry=r,
        )
        for state in ("current", "held", "kept"):
            self.environments.labels(state).set(0)

    def seconds_since_full_sync(self) -> float:
        last = self.last_full_success
        return math.inf if last is None else max(0.0, self._clock() - last)

    def full_sync_succeeded(self) -> None:
        self.last_full_success = self._clock()
        self.last_full_timestamp.set(self.last_full_success)

    def record_environments(
        self, repositories: Iterable[str], changes: Iterable[Change], *, full: bool
    ) -> None:
        """The state of the environments of `repositories` after a run that looked at them
        (a full run replaces every repository's count)."""
        counted: dict[str, dict[str, int]] = {name.lower(): {} for name in repositories}
        for change in changes:
            state = environment_state(change)
            per_repo = counted.setdefault(change.repository.lower(), {})
            if state is not None:
                per_repo[state] = per_repo.get(state, 0) + 1
        with self._lock:
            if full:
                self._states = counted
            else:
                self._states.update(counted)
            totals: dict[str, int] = {"current": 0, "held": 0, "kept": 0}
            for states in self._states.values():
                for state, count in states.items():
                    totals[state] = totals.get(state, 0) + count
            for state, count in totals.items():
                self.environments.labels(state).set(count)

    def record_probe(self, result: ProbeRunResult) -> None:
        counts = {str(health): 0 for health in Health}
        for feedback in result.environments:
            counts[str(feedback.observation.health)] += 1
        for health, count in counts.items():
            self.probe_results.labels(health).set(count)

    def record_github(self, by_status: Mapping[int, int], remaining: int | None) -> None:
        for status, count in by_status.items():
            self.github_requests.labels(str(status)).inc(count)
        if remaining is not None:
            self.rate_limit_remaining.set(remaining)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
