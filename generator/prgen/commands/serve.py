"""`prgen serve`: GitHub webhooks make prgen sync within seconds; metrics, health, status."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from prgen.commands.handling import handles_errors
from prgen.commands.options import cache_dir_option, config_option, load, workdir_option
from prgen.fleet import default_workdir
from prgen.github.cache import resolve_cache_dir
from prgen.serve.server import make_server


@click.command("serve")
@config_option
@workdir_option
@cache_dir_option
@handles_errors
def command(config_path: Path | None, workdir: Path | None, cache_dir: str | None) -> None:
    """Serve GitHub webhooks, /metrics, /healthz, /readyz and /api/v1/status.

    \b
    A webhook marks its repository: after a moment of quiet (server.quietPeriod, at the
    latest server.maxDelay) prgen syncs the marked repositories, in one commit. A full sync
    runs at start and every server.interval: it alone removes an environment whose PR
    vanished without a webhook. SIGTERM or SIGINT: the sync in progress finishes (its
    commit and push), then prgen exits 0.
    """
    config = load(config_path)
    # One line per delivery and per sync whatever -v says: a server's log is its record.
    logger = logging.getLogger("prgen.serve")
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    server = make_server(
        config, workdir or default_workdir(config.fleet), resolve_cache_dir(cache_dir)
    )
    server.serve()
