"""The server's life: secrets, the waitress server, the sync worker, signals.

waitress: a production WSGI server in pure Python (no compiler in the image), threaded
like the rest of prgen, maintained by the Pylons project, with bounds on request bodies
(max_request_body_size) and headers; its request threads never run a sync.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from waitress.server import create_server

from prgen.commands.status import status_document
from prgen.config import Config
from prgen.errors import ConfigError
from prgen.fleet import FleetRepo
from prgen.github.client import RenewingClients
from prgen.github.repo_files import GitHubRepoFiles
from prgen.redact import register_secret
from prgen.repo_config import effective_config
from prgen.serve.app import App, Secrets
from prgen.serve.metrics import Metrics
from prgen.serve.probing import ProbeLoop
from prgen.serve.runner import SyncRunner
from prgen.serve.worker import SyncWorker, Timing

log = logging.getLogger(__name__)

# Request threads: webhooks are answered in microseconds; a status build may hold one.
THREADS = 8
# Bodies a little over the limit reach the app (413, counted in the metrics); larger ones
# waitress refuses itself, before reading them.
BODY_MARGIN = 64 * 1024


def read_secrets(config: Config, environ: Mapping[str, str]) -> Secrets:
    """Both secrets, or a ConfigError naming the field whose variable is not set."""
    settings = config.server
    values = {}
    for field, name in (
        ("server.webhookSecretEnv", settings.webhook_secret_env),
        ("server.apiTokenEnv", settings.api_token_env),
    ):
        value = environ.get(name, "")
        if not value.strip():
            raise ConfigError(
                f"environment variable {name} is not set (prgen serve needs it)",
                field,
                config.source,
            )
        register_secret(value)
        values[field] = value.strip().encode()
    return Secrets(values["server.webhookSecretEnv"], values["server.apiTokenEnv"])


@dataclass
class Server:
    app: App
    worker: SyncWorker
    wsgi: Any  # waitress's server
    prober: ProbeLoop | None = None

    @property
    def port(self) -> int:
        return int(self.wsgi.effective_port)

    def serve(self, install_signals: bool = True) -> None:
        """Serve until SIGTERM or SIGINT (or stop()), then finish the sync in progress."""
        if install_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, _stop_serving)
        self.start_workers()
        log.info("serving on %s:%d", self.app.config.server.host, self.port)
        try:
            self.wsgi.run()  # returns once a signal handler raised SystemExit
        finally:
            if install_signals:
                for signum in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(signum, signal.SIG_IGN)  # a second one waits too
            self.shutdown()

    def start_workers(self) -> None:
        self.worker.start()
        if self.prober is not None:
            self.prober.start()

    def stop_workers(self, timeout: float | None = None) -> bool:
        """No new sync or probe round; the sync in progress finishes. True when it did
        within `timeout`."""
        if self.prober is not None:
            self.prober.stop()
        return self.worker.stop(timeout)

    def shutdown(self) -> None:
        log.info("stopping: no new sync starts; the one in progress finishes")
        self.stop_workers()
        self.wsgi.close()
        log.info("stopped")

    def stop_from_thread(self) -> None:
        """For a server whose wsgi.run() runs on another thread (tests, benchmarks): its
        loop closes every connection and the listening socket, so run() returns."""

        def close_all() -> None:  # on the loop's own thread
            for channel in list(self.wsgi._map.values()):
                channel.close()

        # The request threads first: each pulls the trigger when its answer is ready, and
        # the trigger's pipe is closed with the rest.
        self.wsgi.task_dispatcher.shutdown()
        try:
            self.wsgi.trigger.pull_trigger(close_all)
        except OSError as exc:  # its pipe is closed already: the loop closed everything
            if exc.errno != errno.EBADF:
                raise


def _stop_serving(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def make_server(
    config: Config,
    workdir: Path,
    cache_dir: Path | None,
    environ: Mapping[str, str] | None = None,
) -> Server:
    secrets = read_secrets(config, os.environ if environ is None else environ)
    settings = config.server
    metrics = Metrics()
    runner = SyncRunner(config, workdir, cache_dir, metrics)
    worker = SyncWorker(
        runner, Timing(settings.interval, settings.quiet_period, settings.max_delay)
    )

    status_clients = RenewingClients(config.github, cache_dir)  # one build at a time

    def status() -> dict[str, Any]:
        clients = status_clients.get()
        # As a sync sees them: each repository's own `.prgen.yaml` merged in.
        effective = effective_config(config, GitHubRepoFiles(clients))[0]
        return status_document(
            effective,
            list(effective.repositories),
            clients,
            FleetRepo(config.fleet, workdir),
        )

    app = App(config, secrets, worker, runner, metrics, status)
    prober = None
    if settings.probe_interval > 0:
        # A checkout of its own: a round holds its lock for the round's whole time.
        probe_workdir = workdir.with_name(workdir.name + "-probe")
        prober = ProbeLoop(config, probe_workdir, cache_dir, metrics, settings.probe_interval)
    try:
        wsgi = create_server(
            app,
            host=settings.host,
            port=settings.port,
            threads=THREADS,
            max_request_body_size=settings.max_body_bytes + BODY_MARGIN,
            ident="prgen",
            clear_untrusted_proxy_headers=True,
        )
    except OSError as exc:
        raise ConfigError(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}",
            "server.port",
            config.source,
        ) from exc
    return Server(app, worker, wsgi, prober)
