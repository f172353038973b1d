"""A command's summary on stdout: plain lines, or JSON lines when logs are JSON.

In a pod, stdout and stderr end up in one log stream. Under `--log-format json` a summary
in words on stdout would be the only lines there a log collector cannot parse, so each
line is then one JSON object: the same words as `message`, and the line's subject
(repository, pull request, environment, action, …) as fields of its own.
"""

from __future__ import annotations

import logging
from typing import Any

import click

from prgen.logs import JsonFormatter, current_format, fields

_formatter = JsonFormatter()


def say(text: str, *, level: int = logging.INFO, **subject: Any) -> None:
    if current_format() != "json":
        click.echo(text)
        return
    record = logging.LogRecord("prgen.summary", level, __file__, 0, text.strip(), None, None)
    record.__dict__.update(fields(**subject))
    click.echo(_formatter.format(record))
