"""The single error handler: a known error becomes one clear line and its exit code."""

from __future__ import annotations

import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from prgen.errors import ConfigError, ExitCode, PrgenError
from prgen.redact import redact

F = TypeVar("F", bound=Callable[..., Any])


class JsonPrinted(Exception):
    """Raised by a command that failed after printing its JSON document (which says the
    failure): the handler says `cause` on stderr and exits with its code, and prints no
    second document."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(str(cause))
        self.cause = cause


def handles_errors(command: F) -> F:
    """Known errors become one clear line and their exit code; nothing else leaks a secret."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = kwargs.get("output") == "json"
        try:
            return command(*args, **kwargs)
        except JsonPrinted as done:
            line, code = explain(done.cause)
            click.echo(line, err=True)
            sys.exit(code)
        except PrgenError as exc:
            line, code = explain(exc)
            click.echo(line, err=True)
            if as_json:
                click.echo(error_document(exc, line, code))
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
            if as_json:
                click.echo(error_document(exc, line, code))
            sys.exit(code)

    return wrapper  # type: ignore[return-value]


def error_document(exc: Exception, line: str, code: int) -> str:
    """What `--output json` prints on stdout when a command fails as a whole (exit 2, 3, 70):
    a reader of stdout gets a JSON object whatever happened, never nothing."""
    error: dict[str, Any] = {
        "exitCode": int(code),
        "kind": ExitCode(code).name.lower() if code in ExitCode._value2member_map_ else "error",
        "message": line.removeprefix("prgen: error: ").removeprefix("prgen: "),
    }
    if isinstance(exc, ConfigError):
        error["source"] = exc.source or None
        error["problems"] = [
            {"path": path or None, "reason": redact(reason)} for path, reason in exc.problems
        ]
    return json.dumps({"error": error}, indent=2)


def explain(exc: Exception) -> tuple[str, int]:
    """The one line and the exit code for an error: decided here only, for every command."""
    if isinstance(exc, PrgenError):
        return redact(f"prgen: error: {exc}"), exc.exit_code
    # Never the code of a partial success: a caller must not take a crash for
    # "some repositories failed, the others were synced".
    return redact(f"prgen: unexpected error: {type(exc).__name__}: {exc}"), ExitCode.UNEXPECTED
