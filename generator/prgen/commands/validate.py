"""`prgen validate`: check the configuration and the templates it names, without touching anything."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from prgen.commands.handling import handles_errors
from prgen.commands.options import config_option, load
from prgen.config import Config
from prgen.errors import ConfigError
from prgen.model import PullRequest
from prgen.render import render_environment
from prgen.repo_config import RepoConfigError, apply_repo_config, repo_fields


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
@click.option(
    "--repo-config",
    "repo_config",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also check a repository's own .prgen.yaml (a local copy) as a sync would; "
    "needs --repository.",
)
@click.option(
    "--repository",
    "repository",
    metavar="OWNER/NAME",
    help="The configured repository the --repo-config file belongs to.",
)
@handles_errors
def command(config_path: Path | None, repo_config: Path | None, repository: str | None) -> None:
    """Check prgen.yaml against its schema and render every repository's templates once.

    With --repo-config and --repository, check a repository's `.prgen.yaml` too (before it is
    merged: in the application repository's CI, say), exit 2 naming its line and field.
    """
    config = load(config_path)
    if (repo_config is None) != (repository is None):
        raise click.UsageError("--repo-config and --repository go together")
    if repo_config is not None and repository is not None:
        _check_repo_config(config, repo_config, repository)
        return
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


def _check_repo_config(config: Config, path: Path, repository: str) -> None:
    repo = config.repository(repository)
    if repo.repo_config is None:
        raise ConfigError(
            f"{repo.name} has no repoConfig: prgen reads no file of it", source=config.source
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", source=str(path)) from exc
    try:
        merged = apply_repo_config(repo, text, config.repositories, config.reserved_namespaces)
    except RepoConfigError as exc:
        raise ConfigError.many(exc.problems, source=repo.name) from exc
    render_environment(merged, example_pull_request(merged.name))
    click.echo(f"{path}: valid for {repo.name} (sets {', '.join(sorted(repo_fields(text)))})")
