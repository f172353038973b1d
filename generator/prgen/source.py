"""Open pull requests from GitHub (or any GitHub-compatible API) through PyGithub.

One listing per repository, 100 per page, every page. Anything short of a
complete, successful listing comes back as an error, never as "no PRs".
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Protocol

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from github import (
    Auth,
    Github,
    GithubException,
    RateLimitExceededException,
    UnknownObjectException,
)
from github.PullRequest import PullRequest as GithubPullRequest
from urllib3.util.retry import Retry

from prgen.config import GitHubSettings
from prgen.errors import ConfigError
from prgen.model import Listing, PullRequest
from prgen.redact import redact, register_secret

log = logging.getLogger(__name__)
PER_PAGE = 100


class PullRequestSource(Protocol):
    def list_open(self, repository: str, must_confirm: Collection[int] = ()) -> Listing:
        """All open PRs of `repository`.

        `must_confirm`: PR numbers that have an environment. Any of them missing
        from the listing is looked up on its own before it may count as closed,
        because a PR closing mid-pagination shifts later PRs onto pages already read.
        """
        ...


def _clean(text: str | None) -> str:
    # JSON may carry lone surrogates; they could not be written as UTF-8.
    return (text or "").encode("utf-8", "replace").decode("utf-8")


def convert(repository: str, pr: GithubPullRequest) -> PullRequest:
    head_repo = pr.head.repo
    return PullRequest(
        repository=repository,
        number=pr.number,
        title=_clean(pr.title),
        head_sha=pr.head.sha,
        head_branch=_clean(pr.head.ref),
        head_repository=head_repo.full_name if head_repo is not None else None,
        base_branch=_clean(pr.base.ref),
        author=_clean(pr.user.login if pr.user else "ghost"),
        author_association=pr.author_association or "NONE",
        labels=tuple(sorted(_clean(label.name) for label in pr.labels)),
        draft=bool(pr.draft),
        created_at=pr.created_at,
        updated_at=pr.updated_at or pr.created_at,
        html_url=pr.html_url,
        base_repository=pr.base.repo.full_name if pr.base.repo is not None else None,
    )


def _header(exc: GithubException, name: str) -> str | None:
    headers = {key.lower(): value for key, value in (exc.headers or {}).items()}
    return headers.get(name)


def describe_error(exc: BaseException) -> str:
    """One line for a failed GitHub call, rate limits told apart by what applies to them."""
    if isinstance(exc, GithubException):
        message = exc.data.get("message") if isinstance(exc.data, dict) else None
        retry_after = _header(exc, "retry-after") if exc.status in (403, 429) else None
        if retry_after or "secondary rate limit" in (message or "").lower():
            wait = f", retry after {retry_after}s" if retry_after else ""
            return f"HTTP {exc.status}: secondary rate limit{wait}"
        if (
            isinstance(exc, RateLimitExceededException)
            or _header(exc, "x-ratelimit-remaining") == "0"
        ):
            reset = _header(exc, "x-ratelimit-reset")
            when = (
                datetime.fromtimestamp(int(reset), UTC).strftime(
                    " (quota resets %Y-%m-%d %H:%M:%S UTC)"
                )
                if reset and reset.isdigit()
                else ""
            )
            return f"HTTP {exc.status}: rate limited by GitHub{when}"
        return f"HTTP {exc.status}" + (f": {message}" if message else "")
    return f"{type(exc).__name__}: {exc}"


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


def make_client(settings: GitHubSettings, environ: Mapping[str, str] | None = None) -> Github:
    retry = Retry(
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


class GitHubSource:
    def __init__(self, client: Github) -> None:
        self._client = client

    def list_open(self, repository: str, must_confirm: Collection[int] = ()) -> Listing:
        try:
            repo = self._client.get_repo(repository)
            found = {
                pr.number: convert(repository, pr)
                for pr in repo.get_pulls(state="open", sort="created", direction="desc")
            }
            for number in sorted(set(must_confirm) - found.keys()):
                pr = repo.get_pull(number)  # lazy: the request happens on first access
                try:
                    state = pr.state
                except UnknownObjectException:
                    continue  # the listing worked, and this PR does not exist: it is gone
                if state == "open":
                    log.info("%s#%d was missing from the listing but is open", repository, number)
                    found[number] = convert(repository, pr)
        except Exception as exc:  # any failure means "unknown", never "closed"
            error = redact(describe_error(exc))
            log.warning("listing %s failed: %s", repository, error)
            return Listing(repository, (), error)
        ordered = sorted(found.values(), key=lambda pr: pr.number, reverse=True)
        return Listing(repository, tuple(ordered))
