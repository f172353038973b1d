"""A PyGithub client for the configured GitHub: auth, retries, time-outs."""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from github import Auth, Github, GithubException
from urllib3.util.retry import Retry

from prgen.config import GitHubSettings
from prgen.errors import ConfigError
from prgen.redact import register_secret

PER_PAGE = 100


def _read_private_key(settings: GitHubSettings, environ: Mapping[str, str]) -> str:
    app = settings.app
    assert app is not None
    if app.private_key_env:
        key = environ.get(app.private_key_env)
        if not key:
            raise ConfigError(
                f"environment variable {app.private_key_env} is not set", "github.app.privateKeyEnv"
            )
        return key
    assert app.private_key_file is not None
    try:
        return app.private_key_file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read {app.private_key_file}: {exc.strerror}", "github.app.privateKeyFile"
        ) from exc


def _check_private_key(key: str, field: str) -> None:
    """A key that can't sign would fail every repository's listing: it's a config error."""
    try:
        load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The message never quotes the key.
        raise ConfigError("not a PEM private key without a passphrase", field) from None


def make_auth(settings: GitHubSettings, environ: Mapping[str, str]) -> Auth.Auth:
    if settings.app is not None:
        key = _read_private_key(settings, environ)
        register_secret(key)
        _check_private_key(
            key,
            "github.app.privateKeyEnv"
            if settings.app.private_key_env
            else "github.app.privateKeyFile",
        )
        return Auth.AppAuth(settings.app.app_id, key).get_installation_auth(
            settings.app.installation_id
        )
    token = environ.get(settings.token_env)
    if not token:
        raise ConfigError(
            f"environment variable {settings.token_env} is not set (a GitHub token is needed)",
            "github.tokenEnv",
        )
    register_secret(token)
    return Auth.Token(token)


class _NoWaitOnAccepted(Retry):
    """urllib3's retry policy, except that a GET answered 202 Accepted fails at once.

    PyGithub asks again after every 202 (GitHub's "still computing"), with no end: a server
    answering 202 forever would hold the run forever. No call prgen makes waits on a 202.
    """

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code == 202 and method.upper() in ("GET", "HEAD"):
            raise GithubException(
                202, {"message": "Accepted, but no answer yet: not waited for"}, None
            )
        return super().is_retry(method, status_code, has_retry_after)


def make_client(settings: GitHubSettings, environ: Mapping[str, str] | None = None) -> Github:
    retry = _NoWaitOnAccepted(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        backoff_factor=0.5,
        status_forcelist=(500, 502, 503, 504),
        # Reads only: a write that timed out may have happened, so the reporter
        # re-reads GitHub's state before it tries a write again.
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False,  # hand the last answer to PyGithub, which raises with its status
        respect_retry_after_header=False,  # a rate limit fails the run; it does not stall it
    )
    return Github(
        base_url=settings.api_url,
        auth=make_auth(settings, os.environ if environ is None else environ),
        timeout=max(1, round(settings.timeout)),
        retry=retry,
        per_page=PER_PAGE,
        seconds_between_requests=settings.request_interval or None,
        seconds_between_writes=settings.request_interval or None,
        lazy=True,
    )
