"""`prgen status`: where every open PR of every configured repository stands."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click

from prgen.commands.handling import handles_errors
from prgen.commands.options import (
    cache_dir_option,
    config_option,
    github_clients,
    load,
    workdir_option,
)
from prgen.config import Config, RepositorySettings
from prgen.errors import ExitCode
from prgen.filters import select
from prgen.fleet import FleetRepo, default_workdir
from prgen.github.checks import HeadRead, ProtectionRead, read_heads, read_protections
from prgen.github.client import GitHubClients
from prgen.github.pulls import GitHubSource
from prgen.github.repo_files import GitHubRepoFiles
from prgen.inventory import CurrentEnvironment
from prgen.lifecycle import EXPIRED_FILE, Expired, gone_reason, read_expired
from prgen.logs import phase
from prgen.model import Listing
from prgen.pr_commands import Controls
from prgen.repo_config import effective_config
from prgen.standing import (
    UNPROTECTED,
    HeadQuery,
    Outcome,
    Protection,
    gate_reason,
    own_checks,
    standing_of,
)
from prgen.status import EnvironmentView, PullView, repository_document, table
from prgen.targets import own_check_names

HEALTH = {Outcome.PASSED: "success", Outcome.FAILED: "failure", Outcome.PENDING: "pending"}


@click.command("status")
@config_option
@click.option(
    "--repo",
    "only",
    multiple=True,
    metavar="OWNER/NAME",
    help="Only this configured repository (repeatable).",
)
@click.option(
    "--output",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="A table, or the JSON document it shows.",
)
@workdir_option
@cache_dir_option
@handles_errors
def command(
    config_path: Path | None,
    only: tuple[str, ...],
    output: str,
    workdir: Path | None,
    cache_dir: str | None,
) -> None:
    """Where every open PR stands: reviews, checks, and its preview environment.

    One state per PR: REVIEWER_PENDING, REVIEW_IN_PROGRESS (where the base branch requires
    reviews), STATUS_CHECK_PENDING, FAILING or MERGE_PENDING. Every read is conditional:
    run it as often as you like, what did not change costs no rate-limit point.
    Exit 1 when some repository could not be read (the others are still shown).
    """
    config = load(config_path)
    _chosen(config, only)  # a wrong --repo is named before anything is read
    clients = github_clients(config, cache_dir)
    # As a sync sees them: a repository's own `.prgen.yaml` (its labels, say) merged in.
    config = effective_config(config, GitHubRepoFiles(clients))[0]
    repositories = _chosen(config, only)
    document = status_document(
        config,
        repositories,
        clients,
        FleetRepo(config.fleet, workdir or default_workdir(config.fleet)),
    )
    if output == "json":
        click.echo(json.dumps(document, indent=2))
    else:
        click.echo(table(document))
    failed = any(repository["error"] for repository in document["repositories"])
    sys.exit(ExitCode.PARTIAL if failed else ExitCode.OK)


def _chosen(config: Config, only: Sequence[str]) -> list[RepositorySettings]:
    if not only:
        return list(config.repositories)
    known = {repo.name.lower(): repo for repo in config.repositories}
    unknown = [name for name in only if name.lower() not in known]
    if unknown:
        raise click.UsageError(
            f"--repo {unknown[0]} is not a repository of {config.source} "
            f"(configured: {', '.join(sorted(repo.name for repo in config.repositories))})"
        )
    return [known[name.lower()] for name in dict.fromkeys(only)]


def status_document(
    config: Config,
    repositories: Sequence[RepositorySettings],
    clients: GitHubClients,
    fleet: FleetRepo,
) -> dict[str, Any]:
    """Every open PR of `repositories` with its state and environment: the JSON contract."""
    source = GitHubSource.for_clients(clients)
    with ThreadPoolExecutor(1, thread_name_prefix="prgen-list") as pool:
        listed = pool.submit(source.list_all, [repo.name for repo in repositories], lambda _: ())
        with fleet.locked(), phase("read the fleet"):
            snapshots = fleet.refresh_all()
        # Each target's environments (`targets:`; else the one folder's), and of each PR the
        # first target's.
        held = [
            (target.name, {env.key: env for env in snapshots[target.path].inventory.environments})
            for target in config.fleet_targets
        ]
        environments: dict[tuple[str, int], CurrentEnvironment] = {}
        for _, found in reversed(held):
            environments.update(found)
        expired: dict[tuple[str, int], Expired] = {}
        for target in reversed(config.fleet_targets):
            files = snapshots[target.path].files
            marker = files.get(EXPIRED_FILE) if EXPIRED_FILE in files else None
            expired.update(read_expired(marker))
        listings = listed.result()
    complete = [listing for listing in listings if listing.complete]
    with phase("read branch protections") as counts:
        branches = sorted(
            {(found.repository, pr.base_branch) for found in complete for pr in found.pull_requests}
        )
        protections = {(r.repository, r.branch): r for r in read_protections(clients, branches)}
        counts["branches"] = len(branches)
    with phase("read reviews and checks") as counts:
        own = own_check_names(config) if config.targets else None
        heads = _heads(repositories, listings, environments, own)
        if config.targets:  # the heads other targets' environments are at, too
            every = [*heads, *(h for _, f in held for h in _heads(repositories, listings, f, own))]
            heads = list({_key(head): head for head in every}.values())
        reads = {_key(read.query): read for read in read_heads(clients, heads)}
        counts["heads"] = len(heads)
    return {
        "repositories": [
            _repository(
                repo,
                listing,
                protections,
                reads,
                environments,
                held if config.targets else (),
                expired,
            )
            for repo, listing in zip(repositories, listings, strict=True)
        ]
    }


def _environment_view(
    env: CurrentEnvironment, reads: dict[tuple[str, int, str], HeadRead], target: str = ""
) -> EnvironmentView:
    deployed = reads.get((env.repository.lower(), env.number, env.head_sha or ""))
    own = deployed.facts.own if deployed is not None and deployed.facts else None
    controls = Controls.decode(env.controls)
    return EnvironmentView(
        env.folder,
        env.head_sha,
        None if own is None else HEALTH[own],
        controls.paused_at,
        sleeping=controls.sleeping,
        target=target,
    )


def _key(query: HeadQuery) -> tuple[str, int, str]:
    return (query.repository.lower(), query.number, query.head_sha)


Environments = Mapping[tuple[str, int], CurrentEnvironment]  # by (repository lower, PR)


def _heads(
    repositories: Sequence[RepositorySettings],
    listings: Sequence[Listing],
    environments: Environments,
    own_of: Mapping[str, frozenset[str]] | None = None,
) -> list[HeadQuery]:
    """Each open PR's head; and, for an environment at another head, that one (its health).
    `own_of`: with `targets:`, what prgen reports under for each repository, in every target."""
    heads = []
    for repo, listing in zip(repositories, listings, strict=True):
        own = (own_of or {}).get(repo.name.lower()) or own_checks(
            repo.report.commit_status_context, repo.report.check_run
        )
        for pr in listing.pull_requests:
            heads.append(
                HeadQuery(listing.repository, pr.number, pr.head_sha, pr.requested_reviewers, own)
            )
            env = environments.get((listing.repository.lower(), pr.number))
            if env is not None and env.head_sha and env.head_sha != pr.head_sha:
                heads.append(HeadQuery(listing.repository, pr.number, env.head_sha, 0, own))
    return heads


def _repository(
    repo: RepositorySettings,
    listing: Listing,
    protections: dict[tuple[str, str], ProtectionRead],
    reads: dict[tuple[str, int, str], HeadRead],
    environments: Environments,
    held: Sequence[tuple[str, Environments]] = (),
    expired: Mapping[tuple[str, int], Expired] | None = None,
) -> dict[str, Any]:
    """`held`: with `targets:`, each target's environments (by its name)."""
    if not listing.complete:
        return repository_document(repo.name, {}, [], listing.error)
    errors: list[str] = []
    by_branch: dict[str, Protection] = {}
    for pr in listing.pull_requests:
        rules = protections[(listing.repository, pr.base_branch)]
        if rules.error is not None:
            errors.append(rules.error)
        by_branch[pr.base_branch] = rules.protection or UNPROTECTED
    _, skipped = select(repo, listing.pull_requests)
    why_not = {s.number: s.reason for s in skipped}
    heads = {pr.number: pr.head_sha for pr in listing.pull_requests}
    for (name, number), entry in (expired or {}).items():
        if name == repo.name.lower() and heads.get(number) == entry.head_sha:
            why_not.setdefault(number, gone_reason(entry.head_sha))
    views = []
    for pr in listing.pull_requests:
        read = reads[(repo.name.lower(), pr.number, pr.head_sha)]
        if read.facts is None:
            errors.append(read.error or f"#{pr.number}: not read")
            standing = None
        else:
            standing = standing_of(by_branch[pr.base_branch], read.facts)
        env = environments.get((repo.name.lower(), pr.number))
        view = None
        reason = why_not.get(pr.number)
        in_targets = tuple(
            _environment_view(found[key], reads, target)
            for target, found in held
            if (key := (repo.name.lower(), pr.number)) in found
        )
        if env is not None:
            view = _environment_view(env, reads)
        elif reason is None and repo.deploy_when is not None and read.facts is not None:
            gate = repo.deploy_when
            waiting = gate_reason(read.facts, gate.checks, gate.approvals, gate.check_entries)
            reason = None if waiting is None else f"deploy gate: {waiting}"
        views.append(PullView(pr, standing, view, reason, in_targets))
    error = "; ".join(dict.fromkeys(errors)) or None
    return repository_document(repo.name, by_branch, views, error)
