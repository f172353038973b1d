"""Probe rounds in the server, as `prgen sync --probe` does after each CronJob sync.

On a thread of their own and a fleet checkout of their own: a round holds its work
directory's lock for its whole time (up to probe.roundTimeout), and a sync must never wait
for it. A probe or report that hangs is left behind by its round (probe.py, feedback.py);
in a process that lives for weeks those threads must not pile up, so a round starts only
while fewer than `leftover_limit` of them are still alive, and says so when it skips.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from prgen.commands.handling import explain
from prgen.config import Config
from prgen.errors import ExitCode
from prgen.feedback import ProbeRunResult, probe_and_report
from prgen.fleet import FleetRepo
from prgen.github.client import RenewingClients
from prgen.github.repo_files import GitHubRepoFiles
from prgen.repo_config import effective_config
from prgen.serve.metrics import Metrics

log = logging.getLogger(__name__)

# The names probe.py and feedback.py give the threads of a round.
ROUND_THREADS = ("prgen-probe-", "prgen-report-")


def leftover_threads() -> int:
    """Threads of earlier rounds still alive (a probe or a GitHub call that hangs)."""
    return sum(
        1
        for thread in threading.enumerate()
        if thread.is_alive() and thread.name.startswith(ROUND_THREADS)
    )


class ProbeLoop:
    def __init__(
        self,
        config: Config,
        workdir: Path,
        cache_dir: Path | None,
        metrics: Metrics,
        interval: float,
    ) -> None:
        self.config = config
        self.workdir = workdir
        self.cache_dir = cache_dir
        self.metrics = metrics
        self.interval = interval
        # A round of its own needs up to probe.concurrency probe threads and
        # github.concurrency report threads; more than that left over means they pile up.
        self.leftover_limit = config.probe.concurrency + config.github.concurrency
        self.rounds = 0
        self.clients = RenewingClients(config.github, cache_dir)  # across rounds: see there
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="prgen-prober", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """No new round; a round in progress writes only reports, which the next start
        writes again, so it is waited for a short while only."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.run_round()

    def run_round(self) -> ProbeRunResult | None:
        leftover = leftover_threads()
        self.metrics.probe_leftover_threads.set(leftover)
        if leftover >= self.leftover_limit:
            log.warning(
                "probe round skipped: %d probe and report threads of earlier rounds still hang "
                "(limit %d)",
                leftover,
                self.leftover_limit,
            )
            self.metrics.probe_rounds.labels("skipped").inc()
            return None
        started = time.monotonic()
        outcome, result = "failed", None
        try:
            clients = self.clients.get()
            # A repository's own `.prgen.yaml` counts here as in a sync (see commands/probe.py).
            config = effective_config(self.config, GitHubRepoFiles(clients))[0]
            result = probe_and_report(
                config,
                clients.main,
                FleetRepo(self.config.fleet, self.workdir),
                client_factory=clients.new,
                report_concurrency=self.config.github.concurrency,
            )
            outcome = "ok" if result.exit_code == ExitCode.OK else "partial"
            self.metrics.record_probe(result)
        except Exception as exc:
            log.warning("probe round failed: %s", explain(exc)[0])
            self.clients.drop()
        finally:
            seconds = time.monotonic() - started
            self.metrics.probe_rounds.labels(outcome).inc()
            self.metrics.probe_duration.observe(seconds)
            self.rounds += 1
        log.info(
            "probe round: %s in %.2fs%s",
            outcome,
            seconds,
            f", {len(result.environments)} environments reported" if result else "",
        )
        return result
