"""`prgen render`: one environment's manifests on stdout, for template authors."""

from __future__ import annotations

from pathlib import Path

import click

from prgen.commands.handling import handles_errors
from prgen.commands.options import cache_dir_option, config_option, github_clients, load
from prgen.commands.validate import example_pull_request
from prgen.config import Config, RepositorySettings
from prgen.errors import PrgenError
from prgen.filters import select
from prgen.github.pulls import GitHubSource, ListingFailed
from prgen.render import HELMRELEASE_FILE, NAMESPACE_FILE, render_environment


@click.command("render")
@config_option
@click.option("--repo", "repository", required=True, help="owner/name, as configured.")
@click.option("--pr", "number", type=int, required=True, help="Pull request number.")
@click.option("--offline", is_flag=True, help="Use example PR data instead of asking GitHub.")
@click.option(
    "--target",
    "target",
    default=None,
    help="With targets: in prgen.yaml, the target to render for (default: the first with --repo).",
)
@cache_dir_option
@handles_errors
def command(
    config_path: Path | None,
    repository: str,
    number: int,
    offline: bool,
    target: str | None,
    cache_dir: str | None,
) -> None:
    """Print the manifests prgen would write for one pull request."""
    config = load(config_path)
    repo = config.repository(repository)
    if config.targets or target is not None:
        repo = _in_target(config, repo.name, target)
    if offline:
        pr = example_pull_request(repo.name, number)
    else:
        source = GitHubSource.for_settings(github_clients(config, cache_dir).main, config.github)
        try:
            pr = source.read(repo.name, number)
        except ListingFailed as exc:
            raise PrgenError(f"cannot read {repo.name}#{number}: {exc}") from None
    if not offline:
        _, skipped = select(repo, [pr])
        for left_out in skipped:
            # Rendered anyway, for the template author; a sync would not write it.
            click.echo(f"note: a sync gives #{number} no environment: {left_out.reason}", err=True)
    env = render_environment(repo, pr)
    if repo.target:
        click.echo(f"note: rendered for target {repo.target}", err=True)
    documents = [env.files[name].decode() for name in (NAMESPACE_FILE, HELMRELEASE_FILE)]
    click.echo("---\n".join(documents), nl=False)


def _in_target(config: Config, name: str, target: str | None) -> RepositorySettings:
    """`name`'s settings in `target`, or in the first target that has it."""
    names = [each.name for each in config.fleet_targets]
    for each in config.fleet_targets:
        if target is not None and each.name != target:
            continue
        for repo in each.repositories:
            if repo.name.lower() == name.lower():
                return repo
    if target is not None and target not in names:
        raise click.BadParameter(
            f"{target!r} is not a target of prgen.yaml (targets: {', '.join(names) or 'none'})",
            param_hint="--target",
        )
    raise click.BadParameter(f"{name} does not go to target {target}", param_hint="--target")
