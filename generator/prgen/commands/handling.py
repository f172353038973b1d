"""The single error handler: a known error becomes one clear line and its exit code."""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from prgen.errors import ExitCode, PrgenError
from prgen.redact import redact

F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(command: F) -> F:
    """Known errors become one clear line and their exit code; nothing else leaks a secret."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except PrgenError as exc:
            line, code = explain(exc)
            click.echo(line, err=True)
            sys.exit(code)
        except BrokenPipeError:
            # The reader of stdout went away (`prgen render ... | head`): not an error of
            # prgen's; whatever was done stands. Exit as a shell tool killed by SIGPIPE
            # would, and keep the interpreter's final flush from complaining again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(ExitCode.BROKEN_PIPE)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as exc:
            if logging.getLogger().isEnabledFor(logging.DEBUG):
                click.echo(redact(traceback.format_exc()), err=True)
            line, code = explain(exc)
            click.echo(line, err=True)
            sys.exit(code)

    return wrapper  # type: ignore[return-value]


def explain(exc: Exception) -> tuple[str, int]:
    """The one line and the exit code for an error: decided here only, for every command."""
    if isinstance(exc, PrgenError):
        return redact(f"prgen: error: {exc}"), exc.exit_code
    # Never the code of a partial success: a caller must not take a crash for
    # "some repositories failed, the others were synced".
    return redact(f"prgen: unexpected error: {type(exc).__name__}: {exc}"), ExitCode.UNEXPECTED
