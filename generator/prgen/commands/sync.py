"""`prgen sync`: make the fleet repository hold one environment per eligible open PR."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from prgen.commands.handling import JsonPrinted, explain, handles_errors
from prgen.commands.options import (
    cache_dir_option,
    config_option,
    github_clients,
    load,
    output_option,
    workdir_option,
)
from prgen.commands.output import say
from prgen.commands.probe import print_probe
from prgen.feedback import (
    ProbeRunResult,
    WaitingReportResult,
    passed_gates,
    probe_and_report,
    report_waiting,
)
from prgen.fleet import default_workdir
from prgen.github.checks import GitHubHeads
from prgen.github.commands import GitHubCommands
from prgen.github.pulls import GitHubSource
from prgen.github.repo_files import GitHubRepoFiles
from prgen.logs import current_format
from prgen.plan import Action
from prgen.repo_config_status import tell_repo_configs
from prgen.shards import Shard
from prgen.sync import Syncer
from prgen.sync_result import SyncResult
from prgen.targets import target_label

log = logging.getLogger(__name__)

_SYMBOLS = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.DELETE: "-",
    Action.KEEP: "=",
    Action.HOLD: "|",
}


def print_result(result: SyncResult, *, verbose_keep: bool = False) -> None:
    if result.targets:
        folders = ", ".join(f"{name} {path}" for name, path in result.targets.items())
        say(f"fleet {result.fleet_url}, targets {folders}", fleet=result.fleet_url)
    else:
        say(f"fleet {result.fleet_url}, folder {result.fleet_path}", fleet=result.fleet_url)
    for repo in result.repositories:
        if repo.complete:
            say(
                f"  {repo.name}: {repo.open_pull_requests} open, {repo.eligible} with an "
                f"environment (config {repo.config_identity})",
                repository=repo.name,
                open=repo.open_pull_requests,
                eligible=repo.eligible,
            )
        else:
            say(
                f"  {repo.name}: NOT SYNCED ({repo.error}); its environments are kept as they are",
                level=logging.WARNING,
                repository=repo.name,
                error=repo.error,
            )
    for change in result.plan.changes:
        if change.action is Action.KEEP and not verbose_keep and change.reason == "up to date":
            continue
        sha = (change.head_sha or "")[:7]
        say(
            f"  {_SYMBOLS[change.action]} {change.action:<6} {change.repository}#{change.number} "
            f"{result.folder_of(change)}{target_label(change.target)} {sha}  {change.reason}",
            repository=change.repository,
            pullRequest=change.number,
            environment=result.folder_of(change),
            action=str(change.action),
            head=change.head_sha,
            reason=change.reason,
        )
    for conflict in result.plan.conflicts:
        say(
            f"  ! conflict {conflict.repository}#{conflict.number}"
            f"{target_label(conflict.target)}: {conflict.reason}",
            level=logging.WARNING,
            repository=conflict.repository,
            pullRequest=conflict.number,
            reason=conflict.reason,
        )
    for skipped in result.skipped:
        say(
            f"  . skipped  {skipped.repository}#{skipped.number}: {skipped.reason}",
            repository=skipped.repository,
            pullRequest=skipped.number,
            reason=skipped.reason,
        )
    for settled in result.commands:
        comment, outcome = settled.comment, settled.outcome
        say(
            f"  > command  {comment.repository}#{comment.number} /preview "
            f"{comment.command.word or comment.command.verb} by {comment.author}: {outcome.ack}"
            + (f" ({outcome.changed})" if outcome.changed else ""),
            repository=comment.repository,
            pullRequest=comment.number,
            command=str(comment.command.word or comment.command.verb),
        )
    for warning in result.warnings:
        say(f"  warning: {warning}", level=logging.WARNING)
    if result.dry_run:
        if result.diff:
            if current_format() == "json":
                say("diff of the fleet repository", diff=result.diff)
            else:
                click.echo(result.diff, nl=False)
        say(
            "dry run: nothing was written"
            + ("" if result.plan.has_changes else " (and nothing would change)")
        )
    elif result.commit:
        say(
            f"committed {result.commit[:12]} and pushed (attempt {result.attempts})",
            commit=result.commit,
            attempts=result.attempts,
        )
    else:
        say("nothing changed: no commit")


def print_gate_warnings(waited: WaitingReportResult) -> None:
    for what, reports in (
        ("why it waits", waited.reports),
        ("that its gate passed", waited.passed),
    ):
        for report in reports:
            if report.outcome.error:
                w = report.waiting
                say(
                    f"  warning: could not say on {w.repository}#{w.number} {what}: "
                    f"{report.outcome.error}",
                    level=logging.WARNING,
                    repository=w.repository,
                    pullRequest=w.number,
                )


@click.command("sync")
@config_option
@click.option(
    "--dry-run", is_flag=True, help="Print the plan and a diff of the fleet repo; write nothing."
)
@click.option(
    "--probe", "then_probe", is_flag=True, help="Then probe every environment and report to GitHub."
)
@click.option(
    "--allow-mass-delete",
    is_flag=True,
    help="Remove environments even beyond safety.maxDeletions in this run.",
)
@click.option(
    "--adopt",
    is_flag=True,
    help="Take over environments a differently configured prgen wrote (another "
    "prgen.io/config): rewrite them with this config, or remove them (through the "
    "mass-deletion guard).",
)
@click.option(
    "--shard",
    "shard_text",
    metavar="I/N",
    envvar="PRGEN_SHARD",
    default=None,
    help="Sync only the repositories of shard I of N (a stable hash of each name), and "
    "touch no other repository's environment: N runners share an organisation ($PRGEN_SHARD).",
)
@output_option
@workdir_option
@cache_dir_option
@click.option("--verbose-keep", is_flag=True, hidden=True)
@handles_errors
def command(
    config_path: Path | None,
    dry_run: bool,
    then_probe: bool,
    allow_mass_delete: bool,
    adopt: bool,
    output: str,
    workdir: Path | None,
    cache_dir: str | None,
    verbose_keep: bool,
    shard_text: str | None,
) -> None:
    """List open pull requests and make the fleet repository match them, in one commit."""
    if dry_run and then_probe:
        raise click.UsageError("--probe reports to GitHub, so it can't go with --dry-run")
    try:
        shard = Shard.parse(shard_text) if shard_text is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--shard") from None
    config = load(config_path)
    scope = shard.of([repo.name for repo in config.repositories]) if shard else None
    if shard is not None:
        log.info(
            "shard %s: %d of %d repositories", shard, len(scope or ()), len(config.repositories)
        )
    clients = github_clients(config, cache_dir)
    source = GitHubSource.for_clients(clients)
    syncer = Syncer(
        config,
        source,
        workdir or default_workdir(config.fleet),
        allow_mass_delete=allow_mass_delete,
        adopt=adopt,
        heads=GitHubHeads(clients),
        commands=GitHubCommands.for_clients(clients),
        scope=scope,
        repo_files=GitHubRepoFiles(clients),
    )
    result = syncer.run(dry_run=dry_run)
    # A repository's broken `.prgen.yaml` is told on its open PRs (and cleared once fixed).
    result.warnings.extend(tell_repo_configs(syncer, clients.main, result))
    # Each head a deploy gate holds back says why on the PR, and one that passed says so
    # where no probe will (never on a dry run).
    waited: WaitingReportResult | None = None
    passed = passed_gates(config, result.plan.changes)
    if (result.waiting or passed) and not dry_run:
        waited = report_waiting(config, clients.main, result.waiting, passed)
    probed: ProbeRunResult | None = None
    probe_failure: Exception | None = None
    if then_probe:
        try:
            probed = probe_and_report(
                syncer.config,  # a shard's probe reports on its own repositories only
                clients.main,
                syncer.fleet,
                result.listings,
                client_factory=clients.new,  # one a report worker
                report_concurrency=config.github.concurrency,
            )
        except Exception as exc:  # the sync is done and pushed: its result is printed all the same
            probe_failure = exc
    exit_code = max(
        result.exit_code,
        waited.exit_code if waited else 0,
        probed.exit_code if probed else 0,
    )
    failure = explain(probe_failure) if probe_failure else None
    if output == "json":
        document = result.to_json()
        if waited:
            document["waiting"] = [report.to_json() for report in waited.reports]
            document["gatePassed"] = [report.to_json() for report in waited.passed]
            document["exitCode"] = int(max(result.exit_code, waited.exit_code))
        if probed:
            document["probe"] = probed.to_json()
            document["exitCode"] = int(exit_code)
        if failure:
            document["probe"] = {"exitCode": failure[1], "error": failure[0]}
            document["exitCode"] = failure[1]
        click.echo(json.dumps(document, indent=2))
    else:
        print_result(result, verbose_keep=verbose_keep)
        if waited:
            print_gate_warnings(waited)
        if probed:
            say("probe:")
            print_probe(probed)
    if probe_failure is not None:  # the single handler says it and exits with its code
        raise JsonPrinted(probe_failure) if output == "json" else probe_failure
    sys.exit(exit_code)
