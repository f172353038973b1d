"""One sync as the server runs it (the same run as `prgen sync`, scoped or full), and what
it leaves for /readyz and /metrics."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prgen.commands.handling import explain
from prgen.config import Config
from prgen.errors import ExitCode, FleetError
from prgen.feedback import passed_gates, report_waiting
from prgen.github.checks import GitHubHeads
from prgen.github.client import GitHubClients, RenewingClients
from prgen.github.commands import GitHubCommands
from prgen.github.pulls import GitHubSource
from prgen.github.repo_files import GitHubRepoFiles
from prgen.plan import Action
from prgen.repo_config_status import tell_repo_configs
from prgen.serve.metrics import Metrics
from prgen.serve.worker import Scope
from prgen.sync import Syncer
from prgen.sync_result import SyncResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRecord:
    scope: Scope
    outcome: str  # ok, partial, failed
    commit: str | None
    seconds: float
    error: str | None = None


class SyncRunner:
    """Called by the worker thread, one run at a time.

    Runs share one set of GitHub clients for up to 45 minutes (RenewingClients): an App's
    installation token outlives a run, so an idle run's reads are answered 304; beyond the
    clients, nothing of a run outlives it but the HTTP cache on disk and the fleet work
    directory.
    """

    def __init__(
        self, config: Config, workdir: Path, cache_dir: Path | None, metrics: Metrics
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.cache_dir = cache_dir
        self.metrics = metrics
        self._lock = threading.Lock()
        # One set of clients across runs (see RenewingClients), and what their ledger had
        # counted when the metrics last looked, so each run adds only its own requests.
        self.clients = RenewingClients(config.github, cache_dir)
        self._counted: tuple[GitHubClients | None, dict[int, int]] = (None, {})
        self.fleet_error: str | None = "not read yet"
        self.last: RunRecord | None = None
        self.runs = 0

    def __call__(self, scope: Scope) -> None:
        kind = "full" if scope is None else "scoped"
        started = time.monotonic()
        outcome, commit, error = "failed", None, None
        clients: GitHubClients | None = None
        try:
            clients = self.clients.get()
            result = self._sync(clients, scope)
            commit = result.commit
            outcome = "ok" if result.exit_code == ExitCode.OK else "partial"
            self.fleet_error = None
            self._record(result, scope)
            self._report_gates(clients, result)
        except FleetError as exc:
            error = explain(exc)[0]
            self.fleet_error = error
        except Exception as exc:
            error = explain(exc)[0]
            self.clients.drop()  # a bad token or a broken cache: start afresh next run
        finally:
            seconds = time.monotonic() - started
            self.metrics.sync_runs.labels(kind, outcome).inc()
            self.metrics.sync_duration.labels(kind, outcome).observe(seconds)
            if clients is not None:
                ledger = clients.transport.ledger
                self.metrics.record_github(self._new_answers(clients), ledger.budget().remaining)
            if scope is None and outcome != "failed":
                self.metrics.full_sync_succeeded()
            with self._lock:
                self.last = RunRecord(scope, outcome, commit, seconds, error)
                self.runs += 1
        log.info(
            "sync %s: %s%s in %.2fs%s",
            kind if scope is None else f"of {', '.join(sorted(scope))}",
            outcome,
            f", pushed {commit[:12]}" if commit else "",
            seconds,
            f": {error}" if error else "",
        )

    def _new_answers(self, clients: GitHubClients) -> dict[int, int]:
        """The answers by status since the last run of the same clients."""
        counted_for, counted = self._counted
        before = counted if counted_for is clients else {}
        now = dict(clients.transport.ledger.by_status)
        self._counted = (clients, now)
        return {status: n - before.get(status, 0) for status, n in now.items()}

    def _sync(self, clients: GitHubClients, scope: Scope) -> SyncResult:
        syncer = Syncer(
            self.config,
            GitHubSource.for_clients(clients),
            self.workdir,
            heads=GitHubHeads(clients),
            scope=scope,
            # Commands from PR comments: an issue_comment delivery makes its repository sync
            # soon, and that sync reads and applies them, as `prgen sync` does.
            commands=GitHubCommands.for_clients(clients),
            repo_files=GitHubRepoFiles(clients),
        )
        result = syncer.run()
        for warning in tell_repo_configs(syncer, clients.main, result):
            log.warning("%s", warning)
        return result

    def _record(self, result: SyncResult, scope: Scope) -> None:
        self.metrics.sync_repositories.labels("full" if scope is None else "scoped").inc(
            len(result.repositories)
        )
        if result.commit:
            self.metrics.commits.inc()
        self.metrics.record_environments(
            [r.name for r in result.repositories], result.plan.changes, full=scope is None
        )
        for change in result.plan.changes:
            if change.action is not Action.KEEP:
                log.info(
                    "%s %s#%d %s", change.action, change.repository, change.number, change.reason
                )

    def _report_gates(self, clients: GitHubClients, result: SyncResult) -> None:
        """As `prgen sync` does: each head a deploy gate holds back says why on the PR, and
        one that passed says so."""
        passed = passed_gates(self.config, result.plan.changes)
        if not (result.waiting or passed):
            return
        waited = report_waiting(self.config, clients.main, result.waiting, passed)
        for report in (*waited.reports, *waited.passed):
            if report.outcome.error:
                w = report.waiting
                log.warning(
                    "could not report on %s#%d: %s", w.repository, w.number, report.outcome.error
                )
