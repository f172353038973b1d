"""The `prgen` command. One module per subcommand under `commands/`; one error handler here."""

from __future__ import annotations

import logging
import sys

import click

from prgen import __version__
from prgen.redact import redact


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def configure_logging(verbosity: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(RedactingFormatter("prgen: %(levelname)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(
        logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    )
    if verbosity < 3:  # urllib3 and PyGithub at DEBUG print request headers
        for noisy in ("urllib3", "github"):
            logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="prgen")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
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
    configure_logging(verbose)


def _register() -> None:
    from prgen.commands import demo, probe, render, sync, validate

    for module in (sync, probe, validate, render, demo):
        main.add_command(module.command)


_register()
