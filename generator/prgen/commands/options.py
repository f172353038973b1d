"""Options shared by several commands."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from prgen.config import Config, default_config_path, load_config

F = TypeVar("F", bound=Callable[..., Any])


def config_option(command: F) -> F:
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Configuration file (default: $PRGEN_CONFIG, else ./prgen.yaml).",
    )(command)


def load(config_path: Path | None) -> Config:
    return load_config(config_path or default_config_path())


def output_option(command: F) -> F:
    return click.option(
        "--output", type=click.Choice(["text", "json"]), default="text", show_default=True
    )(command)


def workdir_option(command: F) -> F:
    return click.option(
        "--workdir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="PRGEN_WORKDIR",
        help="Where the fleet repository is checked out (default: a cache folder; $PRGEN_WORKDIR).",
    )(command)
