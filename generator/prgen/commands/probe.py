"""`prgen probe`: probe every environment in the fleet and report to GitHub."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from prgen.commands.handling import handles_errors
from prgen.commands.options import (
    cache_dir_option,
    config_option,
    github_clients,
    load,
    output_option,
    workdir_option,
)
from prgen.commands.output import say
from prgen.feedback import ProbeRunResult, probe_and_report
from prgen.fleet import FleetRepo, default_workdir
from prgen.github.pulls import GitHubSource
from prgen.github.repo_files import GitHubRepoFiles
from prgen.repo_config import effective_config
from prgen.report import Health

_MARK = {
    Health.READY: "✓",
    Health.PENDING: "…",
    Health.FAILED: "✗",
    Health.REMOVED: "-",
    Health.SLEEPING: "z",
}


def print_probe(result: ProbeRunResult) -> None:
    for name, error in sorted(result.failed_repositories.items()):
        say(
            f"  {name}: NOT PROBED ({error})",
            level=logging.WARNING,
            repository=name,
            error=error,
        )
    for failed in result.failed_environments:
        say(
            f"  ! {failed.repository}#{failed.number} {failed.namespace}: "
            f"NOT PROBED ({failed.reason})",
            level=logging.WARNING,
            repository=failed.repository,
            pullRequest=failed.number,
            environment=failed.namespace,
            reason=failed.reason,
        )
    for item in result.environments:
        o = item.observation
        where = o.environment_url or o.namespace
        writes = (
            f"{item.outcome.writes} GitHub write(s)" if item.outcome.writes else "GitHub up to date"
        )
        if item.outcome.error:  # the channels before and after it were still written
            done = f"{item.outcome.writes} GitHub write(s), " if item.outcome.writes else ""
            writes = f"{done}NOT REPORTED: {item.outcome.error}"
        say(
            f"  {_MARK[o.health]} {o.repository}#{o.number} {o.health}: {o.reason}  {where}  [{writes}]",
            level=logging.WARNING if item.outcome.error else logging.INFO,
            repository=o.repository,
            pullRequest=o.number,
            environment=o.namespace,
            health=str(o.health),
            reason=o.reason,
            url=o.environment_url,
            writes=item.outcome.writes,
            error=item.outcome.error,
        )
    for late in result.late:
        say(
            f"  ⌛ {late.repository}#{late.number} {late.namespace}: NOT REPORTED ({late.reason})",
            level=logging.WARNING,
            repository=late.repository,
            pullRequest=late.number,
            environment=late.namespace,
            reason=late.reason,
        )
    if not (
        result.environments
        or result.failed_repositories
        or result.failed_environments
        or result.late
    ):
        say("  no environment with a health check")


@click.command("probe")
@config_option
@output_option
@workdir_option
@cache_dir_option
@handles_errors
def command(
    config_path: Path | None, output: str, workdir: Path | None, cache_dir: str | None
) -> None:
    """Probe every environment's health URL and report to GitHub (status, deployment, comment)."""
    config = load(config_path)
    clients = github_clients(config, cache_dir)
    # What a repository's own `.prgen.yaml` sets (its health check, say) counts here too; a
    # broken one leaves the central entry (the sync tells the PRs what is wrong with it).
    config = effective_config(config, GitHubRepoFiles(clients))[0]
    fleet = FleetRepo(config.fleet, workdir or default_workdir(config.fleet))
    # One client a report worker: a PyGithub client is not thread-safe.
    result = probe_and_report(
        config,
        clients.main,
        fleet,
        source=GitHubSource.for_clients(clients),
        client_factory=clients.new,
        report_concurrency=config.github.concurrency,
    )
    if output == "json":
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        print_probe(result)
    sys.exit(result.exit_code)
