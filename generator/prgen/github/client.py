"""PyGithub clients for the configured GitHub: auth, retries, time-outs, the HTTP cache."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from github import Auth, Github, GithubException
from github.InstallationAuthorization import InstallationAuthorization
from urllib3.util.retry import Retry

from prgen.config import GitHubSettings
from prgen.errors import ConfigError
from prgen.github.cache import HttpCache, credential_key
from prgen.github.transport import Transport, use_transport
from prgen.redact import register_secret

PER_PAGE = 100
# A client of the configured GitHub: modules outside this package name its type by this, so
# that only prgen.github imports PyGithub.
Client = Github


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


class _InstallationAuth(Auth.AppInstallationAuth):
    """An App installation's auth that keeps what GitHub says each minted token may do."""

    granted: Mapping[str, str] | None = None

    def _get_installation_authorization(self) -> InstallationAuthorization:
        minted = super()._get_installation_authorization()
        permissions = minted.permissions
        self.granted = (
            {str(name): str(level) for name, level in permissions.items()}
            if isinstance(permissions, dict)
            else None
        )
        return minted


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
        return _InstallationAuth(
            Auth.AppAuth(settings.app.app_id, key), settings.app.installation_id
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


def make_client(
    settings: GitHubSettings,
    environ: Mapping[str, str] | None = None,
    *,
    transport: Transport | None = None,
    auth: Auth.Auth | None = None,
) -> Github:
    """A client; with `transport`, its requests go through that cache, ledger and gate."""
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
    client = Github(
        base_url=settings.api_url,
        auth=auth or make_auth(settings, os.environ if environ is None else environ),
        timeout=max(1, round(settings.timeout)),
        retry=retry,
        per_page=PER_PAGE,
        seconds_between_requests=settings.request_interval or None,
        seconds_between_writes=settings.request_interval or None,
        lazy=True,
    )
    return use_transport(client, transport) if transport is not None else client


class GitHubClients:
    """The clients of one run: `main` for the calling thread, `new()` for each worker thread.

    A PyGithub Requester is not thread-safe (its connection keeps the request in attributes
    between request() and getresponse()), so every thread gets a client of its own; all share
    one Transport: one cache file, one rate-limit ledger, one gate for secondary limits.
    """

    def __init__(
        self,
        settings: GitHubSettings,
        environ: Mapping[str, str] | None = None,
        *,
        cache_dir: Path | None = None,
        cache_max_bytes: int | None = None,
    ) -> None:
        self.settings = settings
        self._environ = os.environ if environ is None else environ
        self._auth = make_auth(settings, self._environ)
        self._lock = threading.Lock()
        cache = None
        if cache_dir is not None:
            token = self._environ.get(settings.token_env) if settings.app is None else None
            cache = HttpCache.open(
                cache_dir,
                credential_key(settings, token),
                cache_max_bytes
                if cache_max_bytes is not None
                else settings.cache_max_mb * 1024 * 1024,
            )
        self.transport = Transport(
            cache, max_wait=settings.listing_timeout, write_interval=settings.write_interval
        )
        self.main = make_client(settings, self._environ, transport=self.transport, auth=self._auth)

    def granted(self) -> Mapping[str, str] | None:
        """What the App installation's token may do (GitHub says so when it mints one, which
        this does if none was minted yet); None for a token, whose rights GitHub does not list
        up front, or when GitHub did not say."""
        auth = self._auth
        if not isinstance(auth, _InstallationAuth):
            return None
        with self._lock:
            auth.token  # noqa: B018 - minted on first use
            return auth.granted

    def new(self) -> Github:
        """Another client on the same credential and transport, for another thread."""
        auth = self._auth
        if isinstance(auth, Auth.AppInstallationAuth):
            # One installation token for the run (minted once, through the main client's
            # auth), rather than one per worker.
            with self._lock:
                token = auth.token
            register_secret(token)
            auth = Auth.Token(token)
        return make_client(self.settings, self._environ, transport=self.transport, auth=auth)


#: How long a long-running process keeps one set of clients (GitHub App installation tokens
#: last an hour; this leaves them a quarter of it).
CLIENTS_MAX_AGE = 45 * 60.0


class RenewingClients:
    """A long-running process's GitHubClients, kept for `max_age` seconds, then made anew.

    GitHub's ETags are specific to the token that fetched them, so an App installation token
    minted for every sync would have every read answered in full; one kept across syncs has
    an idle sync answered 304 (free). Making them anew renews the token before it expires and
    trims the HTTP cache, which GitHubClients does when it opens it. Not thread-safe: each
    thread that syncs, probes or builds the status has one of its own.
    """

    def __init__(
        self,
        settings: GitHubSettings,
        cache_dir: Path | None,
        *,
        max_age: float = CLIENTS_MAX_AGE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._cache_dir = cache_dir
        self._max_age = max_age
        self._clock = clock
        self._clients: GitHubClients | None = None
        self._made = 0.0
        self.made = 0  # how many were made, for tests and logs

    def get(self) -> GitHubClients:
        now = self._clock()
        if self._clients is None or now - self._made >= self._max_age:
            self._clients = GitHubClients(self._settings, cache_dir=self._cache_dir)
            self._made = now
            self.made += 1
        return self._clients

    def drop(self) -> None:
        """Make new ones next time (after a failure that may have come from these)."""
        self._clients = None


T = TypeVar("T")
R = TypeVar("R")


def each_on_own_client(
    new_client: Callable[[], Github],
    items: Sequence[T],
    work: Callable[[Github, T], R],
    workers: int,
    name: str,
) -> list[R]:
    """`work(client, item)` for each item, in order, up to `workers` at a time.

    A PyGithub client is not thread-safe: each worker thread makes one of its own with
    `new_client` (GitHubClients.new: the run's one transport, cache and ledger).
    """
    local = threading.local()

    def one(item: T) -> R:
        if not hasattr(local, "client"):
            local.client = new_client()
        client: Github = local.client
        return work(client, item)

    with ThreadPoolExecutor(workers, thread_name_prefix=name) as pool:
        return list(pool.map(one, items))
