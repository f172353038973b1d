"""Open pull requests from GitHub (or any GitHub-compatible API) through PyGithub.

One listing per repository, 100 per page, every page. Anything short of a
complete, successful listing comes back as an error, never as "no PRs".
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlencode, urljoin, urlsplit

from github import (
    Github,
)
from github.Requester import Requester

from prgen.config import DEFAULT_LISTING_TIMEOUT, DEFAULT_MAX_PAGES, GitHubSettings
from prgen.github.client import PER_PAGE, GitHubClients, each_on_own_client
from prgen.github.errors import Asking, describe_error
from prgen.github.pull_json import MalformedPull, PullAnswer, parse_pull
from prgen.github.transport import RateLimitLedger
from prgen.logs import fields
from prgen.model import Listing, PullRequest
from prgen.redact import redact

log = logging.getLogger(__name__)

LISTING_QUERY = {"state": "open", "sort": "created", "direction": "desc", "per_page": PER_PAGE}


class PullRequestSource(Protocol):
    def list_all(
        self,
        repositories: Sequence[str],
        numbers_with_environment: Callable[[str], Collection[int]],
    ) -> list[Listing]:
        """`list_open` of each repository (in their order), each told its PRs with an environment."""
        ...

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


class ListingFailed(Exception):
    """A listing or a lookup that is not a complete, well-formed answer: nothing may be removed."""


class _BadLink(ListingFailed):
    """A page's Link header leads somewhere a listing must not go."""


# Asks the HTTP cache for a fresh answer (requests-cache reads the request's no-cache).
_FRESH = {"Cache-Control": "no-cache"}


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


class SeveralNextLinks(ValueError):
    """A Link header with more than one next page: which one is the list is unknown."""


def next_link(header: str | None, current: str) -> str | None:
    """The rel="next" target of a Link header, resolved against the page it came with."""
    targets = {
        urljoin(current, target)
        for target, rels in re.findall(r'<([^>]*)>\s*;\s*rel="([^"]*)"', header or "")
        if "next" in rels.split()
    }
    if len(targets) > 1:
        raise SeveralNextLinks("a page links to more than one next page")
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


def asking(settings: GitHubSettings) -> Asking:
    """The credential of `settings`, as a message names it."""
    app = settings.app
    if app is None:
        return Asking(f"the token in ${settings.token_env}")
    key = f"${app.private_key_env}" if app.private_key_env else str(app.private_key_file)
    return Asking(
        f"GitHub App {app.app_id} (installation {app.installation_id}, private key in {key})"
    )


class GitHubSource:
    def __init__(
        self,
        client: Github,
        *,
        max_pages: int = DEFAULT_MAX_PAGES,
        timeout: float = DEFAULT_LISTING_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
        new_client: Callable[[], Github] | None = None,
        workers: int = 1,
        ledger: RateLimitLedger | None = None,
        reserve: int = 0,
        cached: bool = False,
        asking: Asking | None = None,
    ) -> None:
        """`new_client`: a client for each worker thread (with `workers` > 1); `ledger` and
        `reserve`: no repository is listed while the ledger shows `reserve` points or fewer;
        `asking`: the credential, named when GitHub refuses it."""
        self._client = client
        self._asking = asking
        self._max_pages = max_pages
        self._timeout = timeout
        self._clock = clock
        self._new_client = new_client
        self._workers = workers
        self._ledger = ledger
        self._reserve = reserve
        self._cached = cached  # the client's GETs go through the HTTP cache

    @classmethod
    def for_settings(cls, client: Github, settings: GitHubSettings) -> GitHubSource:
        """One client, one listing at a time, no rate-limit reserve."""
        return cls(
            client,
            max_pages=settings.max_pages,
            timeout=settings.listing_timeout,
            asking=asking(settings),
        )

    @classmethod
    def for_clients(cls, clients: GitHubClients) -> GitHubSource:
        """Concurrent listings (github.concurrency), each thread its own client, all on one
        transport, and github.rateLimitReserve kept."""
        settings = clients.settings
        return cls(
            clients.main,
            max_pages=settings.max_pages,
            timeout=settings.listing_timeout,
            new_client=clients.new,
            workers=settings.workers,
            ledger=clients.transport.ledger,
            reserve=settings.rate_limit_reserve,
            cached=clients.transport.cache is not None,
            asking=asking(settings),
        )

    def _on(self, client: Github) -> GitHubSource:
        return GitHubSource(
            client,
            max_pages=self._max_pages,
            timeout=self._timeout,
            clock=self._clock,
            ledger=self._ledger,
            reserve=self._reserve,
            cached=self._cached,
        )

    def list_all(
        self,
        repositories: Sequence[str],
        numbers_with_environment: Callable[[str], Collection[int]],
    ) -> list[Listing]:
        """Every repository's listing, in order; up to `workers` of them at a time.

        A PyGithub client is not thread-safe: each worker thread lists with a client of its
        own. A repository not listed (the rate-limit reserve reached) is a failed listing.
        """
        listings = self._list_all(repositories, numbers_with_environment)
        if self._ledger is not None:
            # What GitHub said while listing; the count and the time are the caller's phase.
            budget = self._ledger.budget()
            log.info(
                "GitHub so far: %d answers, %d of them 304 Not Modified; %s",
                self._ledger.answers,
                self._ledger.not_modified,
                budget.describe(),
                extra=fields(
                    answers=self._ledger.answers,
                    notModified=self._ledger.not_modified,
                    rateLimitRemaining=budget.remaining,
                ),
            )
        return listings

    def _list_all(
        self,
        repositories: Sequence[str],
        numbers_with_environment: Callable[[str], Collection[int]],
    ) -> list[Listing]:
        wanted = [(name, frozenset(numbers_with_environment(name))) for name in repositories]
        workers = min(self._workers, len(wanted))
        if workers <= 1 or self._new_client is None:
            return [self._list_within_budget(name, numbers) for name, numbers in wanted]
        new_client = self._new_client
        first: list[Listing] = []
        if self._ledger is not None and self._ledger.budget().remaining is None:
            # Nothing says yet how many points are left: one listing alone finds out,
            # so that the reserve holds from the second repository on, whatever the concurrency.
            first = [self._list_within_budget(*wanted[0])]
            wanted = wanted[1:]

        def list_one(client: Github, item: tuple[str, frozenset[int]]) -> Listing:
            return self._on(client)._list_within_budget(*item)

        return first + each_on_own_client(new_client, wanted, list_one, workers, "prgen-listing")

    def _list_within_budget(self, repository: str, numbers: Collection[int]) -> Listing:
        refusal = self._over_budget()
        if refusal is not None:
            log.warning("%s %s", repository, refusal, extra=fields(repository=repository))
            return Listing(repository, (), refusal)
        return self.list_open(repository, numbers)

    def _over_budget(self) -> str | None:
        """Why no more may be listed: fewer points left than the reserve (None: go on)."""
        if self._ledger is None:
            return None
        refusal = self._ledger.budget().below(self._reserve)
        return None if refusal is None else f"not listed: {refusal}; its environments are kept"

    def _bounds(self) -> _Bounds:
        return _Bounds(self._max_pages, self._timeout, self._clock)

    def list_open(self, repository: str, must_confirm: Collection[int] = ()) -> Listing:
        bounds = self._bounds()
        repo = _Repository(self._client.requester, repository)
        try:
            try:
                found = self._pages(repo, bounds)
            except _BadLink:
                if not self._cached:
                    raise
                # A 304 confirms a page's body, not its Link header: a bad link may be a
                # stored one that GitHub no longer sends. Once more, every page fresh.
                found = self._pages(repo, bounds, fresh=True)
            missing = set(must_confirm) - found.keys()
            self._read_each(repo, missing, found, bounds)
            for number in missing & found.keys():
                log.info(
                    "%s#%d was missing from the listing but is open",
                    repository,
                    number,
                    extra=fields(repository=repository, pullRequest=number),
                )
        except Exception as exc:  # any failure means "unknown", never "closed"
            return self._failed(repository, exc)
        ordered = sorted(found.values(), key=lambda pr: pr.number, reverse=True)
        return Listing(repository, tuple(ordered))

    def confirm(self, listing: Listing, numbers: Collection[int]) -> Listing:
        """`listing` with each PR of `numbers` as GitHub answers for it on its own.

        For PRs that have an environment but are missing from the listing or no longer look
        eligible: a listing can be well-formed and still wrong, so such a removal needs a
        second, independent answer.
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

    def _failed(self, repository: str, exc: Exception) -> Listing:
        error = redact(
            str(exc)
            if isinstance(exc, ListingFailed)
            else describe_error(exc, self._asking, repository)
        )
        log.warning("listing %s failed: %s", repository, error, extra=fields(repository=repository))
        return Listing(repository, (), error)

    def _pages(
        self, repo: _Repository, bounds: _Bounds, *, fresh: bool = False
    ) -> dict[int, PullRequest]:
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
                raise _BadLink(f"page {bounds.pages} links to another place: {url[:200]}")
            if key in seen:
                raise _BadLink(f"page {bounds.pages} links back to a page already read")
            seen.add(key)
            bounds.next_page()
            headers, data = requester.requestJsonAndCheck(
                "GET", url, headers=dict(_FRESH) if fresh else None
            )
            if not isinstance(data, list):
                raise ListingFailed(f"page {bounds.pages} is not a list of pull requests")
            for item in data:
                self._add(found, self._parse(repo, item), bounds.pages)
            try:
                url = next_link(headers.get("link"), url)
            except SeveralNextLinks as exc:
                raise _BadLink(str(exc)) from None
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
            problem = (
                str(exc) if isinstance(exc, ListingFailed) else describe_error(exc, self._asking)
            )
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
