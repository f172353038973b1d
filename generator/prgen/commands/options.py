"""Options shared by several commands."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from prgen.config import Config, default_config_path, load_config
from prgen.github.cache import CACHE_DIR_ENV, resolve_cache_dir
from prgen.github.client import GitHubClients
from prgen.redact import register_secret

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
    config = load_config(config_path or default_config_path())
    _register_secrets(config)
    return config


def _register_secrets(config: Config) -> None:
    """Every secret the config names is redacted from every line, whatever the command.

    Each is otherwise registered where it is used, so a command that never uses one
    (`render` never touches the fleet) would print it unredacted in an error or traceback.
    """
    app = config.github.app
    for name in (
        config.github.token_env,
        config.fleet.token_env,
        app.private_key_env if app is not None else None,
    ):
        register_secret(os.environ.get(name) if name else None)


def cache_dir_option(command: F) -> F:
    return click.option(
        "--cache-dir",
        "cache_dir",
        envvar=CACHE_DIR_ENV,
        default=None,
        help="Where GitHub's answers are cached, one file per credential, so that reads are "
        "conditional and an unchanged answer costs no rate-limit point (default: "
        "$XDG_CACHE_HOME/prgen/http, else ~/.cache/prgen/http; 'off': no cache; "
        f"${CACHE_DIR_ENV}).",
    )(command)


def github_clients(config: Config, cache_dir: str | None) -> GitHubClients:
    """The run's GitHub clients, on the HTTP cache that --cache-dir / $PRGEN_CACHE_DIR names."""
    return GitHubClients(config.github, cache_dir=resolve_cache_dir(cache_dir))


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
