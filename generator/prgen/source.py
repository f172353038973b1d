"""Open pull requests from GitHub (or any GitHub-compatible API) through PyGithub.

One listing per repository, 100 per page, every page. Anything short of a
complete, successful listing comes back as an error, never as "no PRs".
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from github import (
    Auth,
    Github,
    GithubException,
    RateLimitExceededException,
)
from github.Requester import Requester
from urllib3.util.retry import Retry

from prgen.config import DEFAULT_LISTING_TIMEOUT, DEFAULT_MAX_PAGES, GitHubSettings
from prgen.errors import ConfigError
from prgen.model import Listing, PullRequest
from prgen.pull_json import MalformedPull, PullAnswer, parse_pull
from prgen.redact import redact, register_secret

log = logging.getLogger(__name__)
PER_PAGE = 100
LISTING_QUERY = {"state": "open", "sort": "created", "direction": "desc", "per_page": PER_PAGE}


class PullRequestSource(Protocol):
    def list_open(self, repository: str, must_confirm: Collection[int] = ()) -> Listing:
        """All open PRs of `repository`.

        `must_confirm`: PR numbers that have an environment. Any of them missing
        from the listing is looked up on its own before it may count as closed,
        because a PR closing mid-pagination shifts later PRs onto pages already read.
        """
        ...

    def confirm(self, listing: Listing, numbers: Collection[int]) -> Listing:
        """`listing` with the PRs of `numbers` as each reads on its own (closed ones left out)."""
        ...


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


class ListingFailed(Exception):
    """A listing or a lookup that is not a complete, well-formed answer: nothing may be removed."""


class _Repository:
    """The names and id GitHub knows the configured repository by.

    A renamed or transferred repository still answers under its old name (GitHub redirects),
    but its PRs and its page links carry the new name or its id. GitHub is asked for them
    only when an answer names something other than the configured name.
    """

    def __init__(self, requester: Requester, configured: str) -> None:
        self._requester = requester
        self.configured = configured
        self._current: tuple[str, int] | None = None

    def _identity(self) -> tuple[str, int]:
        if self._current is None:
            _, data = self._requester.requestJsonAndCheck("GET", f"/repos/{self.configured}")
            name = data.get("full_name") if isinstance(data, dict) else None
            number = data.get("id") if isinstance(data, dict) else None
            if not isinstance(name, str) or not isinstance(number, int) or isinstance(number, bool):
                raise ListingFailed(f"GitHub's answer for {self.configured} is not a repository")
            self._current = (name, number)
        return self._current

    def is_named(self, full_name: str) -> bool:
        if full_name.lower() == self.configured.lower():
            return True
        return full_name.lower() == self._identity()[0].lower()

    def lists_pulls(self, path: str) -> bool:
        """Whether `path` (after the API root) lists this repository's pull requests."""
        repos = re.fullmatch(r"/repos/([^/]+/[^/]+)/pulls", unquote(path))
        if repos:
            return self.is_named(repos[1])
        by_id = re.fullmatch(r"/repositories/(\d+)/pulls", path)
        return by_id is not None and int(by_id[1]) == self._identity()[1]


def _next_link(header: str | None, current: str) -> str | None:
    """The rel="next" target of a Link header, resolved against the page it came with."""
    targets = {
        urljoin(current, target)
        for target, rels in re.findall(r'<([^>]*)>\s*;\s*rel="([^"]*)"', header or "")
        if "next" in rels.split()
    }
    if len(targets) > 1:
        raise ListingFailed("a page links to more than one next page")
    return targets.pop() if targets else None


class _Bounds:
    """Pages and seconds one listing may take: a hostile or broken answer must not hold the run."""

    def __init__(self, max_pages: int, timeout: float, clock: Callable[[], float]) -> None:
        self.max_pages = max_pages
        self.timeout = timeout
        self._clock = clock
        self._deadline = clock() + timeout
        self.pages = 0

    def next_request(self) -> None:
        if self._clock() > self._deadline:
            raise ListingFailed(
                f"gave up after {self.timeout:g}s (github.listingTimeout), {self.pages} pages read"
            )

    def next_page(self) -> None:
        if self.pages >= self.max_pages:
            raise ListingFailed(f"more than {self.max_pages} pages (github.maxPages)")
        self.next_request()
        self.pages += 1


class GitHubSource:
    def __init__(
        self,
        client: Github,
        *,
        max_pages: int = DEFAULT_MAX_PAGES,
        timeout: float = DEFAULT_LISTING_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._max_pages = max_pages
        self._timeout = timeout
        self._clock = clock

    @classmethod
    def for_settings(cls, client: Github, settings: GitHubSettings) -> GitHubSource:
        return cls(client, max_pages=settings.max_pages, timeout=settings.listing_timeout)

    def _bounds(self) -> _Bounds:
        return _Bounds(self._max_pages, self._timeout, self._clock)

    def list_open(self, repository: str, must_confirm: Collection[int] = ()) -> Listing:
        bounds = self._bounds()
        repo = _Repository(self._client.requester, repository)
        try:
            found = self._pages(repo, bounds)
            missing = set(must_confirm) - found.keys()
            self._read_each(repo, missing, found, bounds)
            for number in missing & found.keys():
                log.info("%s#%d was missing from the listing but is open", repository, number)
        except Exception as exc:  # any failure means "unknown", never "closed"
            return self._failed(repository, exc)
        ordered = sorted(found.values(), key=lambda pr: pr.number, reverse=True)
        return Listing(repository, tuple(ordered))

    def confirm(self, listing: Listing, numbers: Collection[int]) -> Listing:
        """`listing` with each PR of `numbers` as GitHub answers for it on its own.

        For open PRs that have an environment but no longer look eligible: a listing can be
        well-formed and still wrong, so such a removal needs a second, independent answer.
        A closed one leaves the listing; any read that fails fails the listing.
        """
        if not numbers or not listing.complete:
            return listing
        bounds = self._bounds()
        repo = _Repository(self._client.requester, listing.repository)
        found = {pr.number: pr for pr in listing.pull_requests}
        try:
            self._read_each(repo, numbers, found, bounds)
        except Exception as exc:
            return self._failed(listing.repository, exc)
        ordered = sorted(found.values(), key=lambda pr: pr.number, reverse=True)
        return Listing(listing.repository, tuple(ordered))

    def _read_each(
        self,
        repo: _Repository,
        numbers: Collection[int],
        found: dict[int, PullRequest],
        bounds: _Bounds,
    ) -> None:
        """Each PR of `numbers` read on its own into `found`: an open one as it reads now,
        a closed one out. Any read that is not a well-formed answer raises."""
        for number in sorted(numbers):
            answer = self._read_one(repo, number, bounds)
            if answer.state == "open":
                found[number] = answer.pull
            else:
                found.pop(number, None)

    @staticmethod
    def _failed(repository: str, exc: Exception) -> Listing:
        error = redact(str(exc) if isinstance(exc, ListingFailed) else describe_error(exc))
        log.warning("listing %s failed: %s", repository, error)
        return Listing(repository, (), error)

    def _pages(self, repo: _Repository, bounds: _Bounds) -> dict[int, PullRequest]:
        requester = self._client.requester
        api = urlsplit(requester.base_url)
        first = f"{requester.base_url}/repos/{repo.configured}/pulls"
        url: str | None = f"{first}?{urlencode(LISTING_QUERY)}"
        seen: set[tuple[str, frozenset[tuple[str, str]]]] = set()
        found: dict[int, PullRequest] = {}
        while url is not None:
            target = urlsplit(url)
            query = dict(parse_qsl(target.query))
            key = (target.path.lower(), frozenset({"page": "1", **query}.items()))
            # A next link is followed only to this repository's listing at the API's own origin
            # (PyGithub would quietly ask the configured host for another host's path), and
            # never twice; a link that varies forever runs into the bounds.
            if (target.scheme, target.netloc) != (api.scheme, api.netloc) or not (
                target.path.startswith(api.path + "/")
                and repo.lists_pulls(target.path.removeprefix(api.path))
            ):
                raise ListingFailed(f"page {bounds.pages} links to another place: {url[:200]}")
            if key in seen:
                raise ListingFailed(f"page {bounds.pages} links back to a page already read")
            seen.add(key)
            bounds.next_page()
            headers, data = requester.requestJsonAndCheck("GET", url)
            if not isinstance(data, list):
                raise ListingFailed(f"page {bounds.pages} is not a list of pull requests")
            for item in data:
                self._add(found, self._parse(repo, item), bounds.pages)
            url = _next_link(headers.get("link"), url)
        return found

    @staticmethod
    def _add(found: dict[int, PullRequest], answer: PullAnswer, page: int) -> None:
        pr = answer.pull
        if answer.state != "open":
            raise ListingFailed(
                f"page {page}: #{pr.number} is {answer.state} in a listing of open PRs"
            )
        # A PR may come twice when pages shift; it must say the same both times.
        if found.setdefault(pr.number, pr) != pr:
            raise ListingFailed(f"page {page}: #{pr.number} comes twice, with different data")

    @staticmethod
    def _parse(repo: _Repository, data: Any) -> PullAnswer:
        try:
            answer = parse_pull(data, repo.configured)
        except MalformedPull as exc:
            raise ListingFailed(f"malformed pull request: {exc}") from None
        base = answer.pull.base_repository or ""
        if not repo.is_named(base):
            raise ListingFailed(
                f"#{answer.pull.number} belongs to {base[:100]}, not {repo.configured}"
            )
        return answer

    def read(self, repository: str, number: int) -> PullRequest:
        """One PR, open or closed, as GitHub answers for it on its own (`prgen render`).

        The same checks as a listing's: a malformed or foreign answer raises ListingFailed.
        """
        repo = _Repository(self._client.requester, repository)
        try:
            return self._fetch_one(repo, number, self._bounds()).pull
        except Exception as exc:
            problem = str(exc) if isinstance(exc, ListingFailed) else describe_error(exc)
            raise ListingFailed(redact(problem)) from None

    def _fetch_one(self, repo: _Repository, number: int, bounds: _Bounds) -> PullAnswer:
        """Only a well-formed answer for that PR of that repository."""
        bounds.next_request()
        _, data = self._client.requester.requestJsonAndCheck(
            "GET", f"/repos/{repo.configured}/pulls/{number}"
        )
        answer = self._parse(repo, data)
        if answer.pull.number != number:
            raise ListingFailed(f"the answer is #{answer.pull.number}")
        return answer

    def _read_one(self, repo: _Repository, number: int, bounds: _Bounds) -> PullAnswer:
        """One PR with an environment read on its own: any failure keeps the environment."""
        try:
            return self._fetch_one(repo, number, bounds)
        except Exception as exc:
            # A 404 or 410 for a PR of a repository that answers is no proof that it closed.
            problem = str(exc) if isinstance(exc, ListingFailed) else describe_error(exc)
            raise ListingFailed(
                f"#{number} read on its own: {problem}; its environment is kept "
                "(if that PR is truly gone, remove its folder by hand)"
            ) from None
