"""`prgen validate`: check the configuration and the templates it names, without touching anything."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from prgen.commands.handling import handles_errors
from prgen.commands.options import config_option, load
from prgen.model import PullRequest
from prgen.render import render_environment


def example_pull_request(repository: str, number: int = 1) -> PullRequest:
    """Plausible PR data for rendering without GitHub."""
    when = datetime(2026, 1, 1, tzinfo=UTC)
    return PullRequest(
        repository=repository,
        number=number,
        title="Example pull request",
        head_sha="0123456789abcdef0123456789abcdef01234567",
        head_branch="feature/example",
        head_repository=repository,
        base_branch="main",
        author="octocat",
        author_association="MEMBER",
        labels=(),
        draft=False,
        created_at=when,
        updated_at=when,
        html_url=f"https://github.com/{repository}/pull/{number}",
    )


@click.command("validate")
@config_option
@handles_errors
def command(config_path: Path | None) -> None:
    """Check prgen.yaml against its schema and render every repository's templates once."""
    config = load(config_path)
    for target in config.fleet_targets:
        for repo in target.repositories:
            render_environment(repo, example_pull_request(repo.name))
    click.echo(f"{config.source}: valid ({len(config.repositories)} repositories)")
    for target in config.fleet_targets:
        if target.name:
            click.echo(f"  target {target.name} ({target.path}):")
        for repo in target.repositories:
            # What prgen records in each HelmRelease (prgen.io/config): two configs that
            # show different identities for one repository must not share a fleet path.
            click.echo(f"{'    ' if target.name else '  '}{repo.name}: config {repo.identity}")
