"""The `prgen` command. One module per subcommand under `commands/`; one error handler here."""

from __future__ import annotations

import functools
from typing import Any

import click

from prgen import __version__
from prgen.logs import LOG_FORMATS, configure


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="prgen")
@click.option(
    "-v", "--verbose", count=True, help="More logging (-v phases and timings, -vv debug)."
)
@click.option(
    "--log-format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    envvar="PRGEN_LOG_FORMAT",
    show_default=True,
    help="Log lines as text, or one JSON object per line ($PRGEN_LOG_FORMAT).",
)
def main(verbose: int, log_format: str) -> None:
    """Preview environments for pull requests, the GitOps way.

    \b
    Exit codes:
      0  done
      1  some repositories (or reports) failed; the others were synced
      2  bad configuration, templates or usage
      3  the fleet repository could not be read or updated, or the work
         directory could not be used (not prgen's, read-only, full)
     70  unexpected error (a bug): nothing can be said about what was done
    """
    configure(verbose, log_format)


def _logging_options_after(command: click.Command) -> click.Command:
    """`prgen sync -v` as well as `prgen -v sync`: a command takes -v and --log-format too,
    adding to (or replacing) what was given before it."""
    command.params.extend(
        [
            click.Option(
                ["-v", "--verbose", "verbose_after"],
                count=True,
                help="More logging (-v phases and timings, -vv debug); as before the command.",
            ),
            click.Option(
                ["--log-format", "log_format_after"],
                type=click.Choice(LOG_FORMATS),
                default=None,
                help="Log lines as text or JSON; as before the command.",
            ),
        ]
    )
    callback = command.callback
    assert callback is not None

    @functools.wraps(callback)
    def run(*args: Any, verbose_after: int, log_format_after: str | None, **kwargs: Any) -> Any:
        if verbose_after or log_format_after:
            before = click.get_current_context().find_root().params
            configure(before["verbose"] + verbose_after, log_format_after or before["log_format"])
        return callback(*args, **kwargs)

    command.callback = run
    return command


def _register() -> None:
    from prgen.commands import demo, init, probe, render, serve, status, sync, validate

    for module in (sync, serve, status, probe, validate, render, init, demo):
        main.add_command(_logging_options_after(module.command))


_register()
