"""`prgen init`: a commented prgen.yaml and, if asked, a fleet repository to start from."""

from __future__ import annotations

from pathlib import Path

import click

from prgen.commands.handling import handles_errors
from prgen.errors import ConfigError
from prgen.scaffold import (
    DEFAULT_FLEET_URL,
    DEFAULT_REPOSITORY,
    EXAMPLE_PATH,
    scaffold,
    validate,
)


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=Path("."))
@click.option(
    "--repo",
    "repositories",
    multiple=True,
    metavar="OWNER/NAME",
    help=f"A repository whose pull requests get previews (repeatable; default {DEFAULT_REPOSITORY}).",
)
@click.option(
    "--fleet-url",
    default=DEFAULT_FLEET_URL,
    show_default=True,
    help="The fleet repository Flux reconciles (https, ssh, file:// or a local path).",
)
@click.option(
    "--path",
    "fleet_path",
    default=EXAMPLE_PATH,
    show_default=True,
    help="The folder of the fleet repository that prgen owns.",
)
@click.option(
    "--fleet",
    is_flag=True,
    help="Also write a fleet repository laid out like prgen's fleet-repo-example (Flux "
    "Kustomizations, prgen's CronJob, the example chart); prgen.yaml then goes where the "
    "CronJob reads it, infrastructure/prgen/prgen.yaml.",
)
@click.option("--app-id", type=click.IntRange(min=1), help="Authenticate as this GitHub App.")
@click.option(
    "--installation-id", type=click.IntRange(min=1), help="The App's installation (with --app-id)."
)
@click.option("--force", is_flag=True, help="Overwrite files that exist.")
@handles_errors
def command(
    directory: Path,
    repositories: tuple[str, ...],
    fleet_url: str,
    fleet_path: str,
    fleet: bool,
    app_id: int | None,
    installation_id: int | None,
    force: bool,
) -> None:
    """Write a commented prgen.yaml (and with --fleet a fleet repository) into DIRECTORY.

    Everything is validated before anything is written; a file that exists is left alone
    unless --force is given, and then nothing is written at all.
    """
    if (app_id is None) != (installation_id is None):
        raise click.UsageError("--app-id and --installation-id go together")
    app = (app_id, installation_id) if app_id is not None and installation_id is not None else None
    plan = scaffold(
        repositories or (DEFAULT_REPOSITORY,), fleet_url, fleet_path, fleet=fleet, app=app
    )
    target = directory / plan.config
    validate(plan.files[plan.config].decode(), str(target), target.parent)
    existing = sorted(str(directory / p) for p in plan.files if (directory / p).exists())
    if existing and not force:
        which = existing[0] if len(existing) == 1 else f"{existing[0]} and {len(existing) - 1} more"
        raise ConfigError(f"{which} exist: nothing written (--force overwrites)")
    for relative, data in sorted(plan.files.items()):
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if relative in plan.executable:
            path.chmod(path.stat().st_mode | 0o111)
    shown = target if directory.is_absolute() else Path(".") / target
    click.echo(f"wrote {shown}" + (f" and {len(plan.files) - 1} fleet files" if fleet else ""))
    click.echo("next:")
    click.echo(f"  edit {shown}: the repositories, the fleet URL, the image and host names")
    click.echo(f"  prgen validate --config {shown}")
    click.echo(f"  prgen sync --config {shown} --dry-run")
    if fleet:
        click.echo(
            f"  follow {directory}/README.md: encrypt the Secrets with your own age key (step 4: "
            f"the example's are sealed for nobody), push to {fleet_url}, then flux bootstrap"
        )
