"""What GitHub says about a PR's head: its reviews, its CI, and its base branch's protection.

The only code that reads them (for `prgen status` and the deploy gates); what they mean is
decided in `prgen.standing`, with the plain data returned here.

Every read takes every page of its answer, bounded in pages and seconds, and checks it field by
field: an answer that is not what GitHub sends is an error, never "no checks" or "no reviews",
for a gate must never pass on a misread. Every GET goes through the client's HTTP cache (when
it has one), so an unchanged answer is a free 304. CI counts both ways GitHub reports it: commit
statuses (the combined status: the latest of each context) and check runs (the latest of each
name), a name reported both ways counting by its later report.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

from github import Github, GithubException

from prgen.config import DEFAULT_LISTING_TIMEOUT, DEFAULT_MAX_PAGES
from prgen.github.client import PER_PAGE, GitHubClients, each_on_own_client
from prgen.github.errors import describe_error, rate_limited
from prgen.github.pulls import SeveralNextLinks, next_link
from prgen.redact import redact
from prgen.standing import (
    OWN_CHECK,
    UNPROTECTED,
    Check,
    HeadFacts,
    HeadQuery,
    Outcome,
    Protection,
    Review,
)

T = TypeVar("T")
R = TypeVar("R")

REVIEW_STATES = frozenset({"APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING"})
STATUS_OUTCOMES = {
    "success": Outcome.PASSED,
    "pending": Outcome.PENDING,
    "failure": Outcome.FAILED,
    "error": Outcome.FAILED,
}
RUN_STATUSES = frozenset({"queued", "in_progress", "completed", "waiting", "requested", "pending"})
CONCLUSION_OUTCOMES = {
    "success": Outcome.PASSED,
    "neutral": Outcome.PASSED,
    "skipped": Outcome.PASSED,
    "failure": Outcome.FAILED,
    "timed_out": Outcome.FAILED,
    "cancelled": Outcome.FAILED,
    "startup_failure": Outcome.FAILED,
    # Someone must act, or GitHub marked the run out of date: not passed, not failed yet.
    "action_required": Outcome.PENDING,
    "stale": Outcome.PENDING,
}
NOT_PROTECTED = "Branch not protected"  # GitHub's 404 message for a branch without protection


class RulesAccess(Enum):
    """Whether the credential may read a branch's protection rules, as far as prgen knows.

    A 403 there has no ETag, so asking without the right would cost a point every run.
    """

    ASK = "ask"  # not known: ask, and a 403 says no (an App whose grants GitHub did not list)
    REPOSITORY = "repository"  # a token: the repository's `permissions.admin` says (conditional)
    GRANTED = "granted"  # an App granted Administration: read
    DENIED = "denied"  # an App not granted it: never asked


def rules_access(clients: GitHubClients) -> RulesAccess:
    """How this run's credential learns whether it may read protection rules."""
    if clients.settings.app is None:
        return RulesAccess.REPOSITORY
    try:
        granted = clients.granted()
    except Exception:  # minting failed: each read then fails and says why
        return RulesAccess.ASK
    if granted is None:
        return RulesAccess.ASK
    return RulesAccess.GRANTED if "administration" in granted else RulesAccess.DENIED


# On a tie between two reports of one name, the worse one counts: a gate never passes on a tie.
_SEVERITY = {Outcome.PASSED: 0, Outcome.PENDING: 1, Outcome.FAILED: 2}
_EARLIEST = datetime.min.replace(tzinfo=UTC)
# Asked of each page, whatever the client's default (the URL is then the same every run).
_PAGE = {"per_page": str(PER_PAGE)}


class ChecksFailed(Exception):
    """A read of reviews, CI or protection that is not a complete, well-formed answer."""


class _Shifted(ChecksFailed):
    """The answer changed between two of its pages (CI reported meanwhile): read it again."""


@dataclass(frozen=True)
class HeadRead:
    """What was read for one HeadQuery: its facts, or why there are none."""

    query: HeadQuery
    facts: HeadFacts | None = None
    error: str | None = None


@dataclass(frozen=True)
class ProtectionRead:
    repository: str
    branch: str
    protection: Protection | None = None
    error: str | None = None


# -- checked JSON ------------------------------------------------------------------


_JSON_NAMES = {dict: "object", list: "list", str: "string", int: "number", bool: "bool"}


def _kind(value: Any) -> str:
    return "null" if value is None else _JSON_NAMES.get(type(value), type(value).__name__)


def _value(data: Any, key: str, where: str) -> Any:
    if not isinstance(data, Mapping):
        raise ChecksFailed(f"{where} is {_kind(data)}, not an object")
    if key not in data:
        raise ChecksFailed(f"{where}.{key} is missing")
    return data[key]


def _typed(value: Any, kind: type[T], where: str) -> T:
    # A JSON flag is no number, though Python's bool is an int.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ChecksFailed(f"{where} is {_kind(value)}, not {_JSON_NAMES.get(kind, kind.__name__)}")
    return value


def _field(data: Any, key: str, kind: type[T], where: str) -> T:
    """data[key], of that JSON type; missing or null is malformed."""
    return _typed(_value(data, key, where), kind, f"{where}.{key}")


def _nullable(data: Any, key: str, kind: type[T], where: str) -> T | None:
    """data[key], of that JSON type or null (where GitHub sends null); missing is malformed."""
    value = _value(data, key, where)
    return None if value is None else _typed(value, kind, f"{where}.{key}")


def _moment(data: Any, key: str, where: str) -> datetime | None:
    text = _nullable(data, key, str, where)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ChecksFailed(f"{where}.{key} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _one_of(data: Any, key: str, allowed: Mapping[str, Any] | frozenset[str], where: str) -> str:
    value = _field(data, key, str, where)
    if value not in allowed:
        raise ChecksFailed(f"{where}.{key} is {value[:40]!r}, which GitHub does not send")
    return value


# -- reading -----------------------------------------------------------------------


class _Reader:
    """One read's requests: through one client, bounded in pages and seconds."""

    def __init__(
        self,
        client: Github,
        repository: str,
        *,
        max_pages: int,
        timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self._requester = client.requester
        self._repository = repository
        self._max_pages = max_pages
        self._timeout = timeout
        self._clock = clock
        self._deadline = clock() + timeout
        self.pages = 0

    def url(self, path: str, query: Mapping[str, str] | None = None) -> str:
        base = f"{self._requester.base_url}/repos/{self._repository}{path}"
        return f"{base}?{urlencode(query)}" if query else base

    def get(self, url: str) -> tuple[dict[str, Any], Any]:
        if self.pages >= self._max_pages:
            raise ChecksFailed(f"more than {self._max_pages} pages (github.maxPages)")
        if self._clock() > self._deadline:
            raise ChecksFailed(f"gave up after {self._timeout:g}s (github.listingTimeout)")
        self.pages += 1
        return self._requester.requestJsonAndCheck("GET", url)

    def listed(self, path: str, what: str) -> list[Any]:
        """Every item of a list answer, page after page as its Link header leads."""
        url: str | None = self.url(path, _PAGE)
        assert url is not None
        origin = urlsplit(url)
        seen: set[str] = set()
        items: list[Any] = []
        while url is not None:
            target = urlsplit(url)
            # A next page is this same list on the same host, never a page already read.
            if (target.scheme, target.netloc, target.path) != (
                origin.scheme,
                origin.netloc,
                origin.path,
            ):
                raise ChecksFailed(f"{what}: a page links to another place: {url[:200]}")
            if url in seen:
                raise ChecksFailed(f"{what}: a page links back to a page already read")
            seen.add(url)
            headers, data = self.get(url)
            if not isinstance(data, list):
                raise ChecksFailed(f"{what}: page {len(seen)} is {_kind(data)}, not a list")
            items += data
            try:
                url = next_link(headers.get("link"), url)
            except SeveralNextLinks as exc:
                raise ChecksFailed(f"{what}: {exc}") from None
        return items

    def wrapped(
        self, path: str, key: str, what: str, query: Mapping[str, str]
    ) -> tuple[list[Any], list[Any]]:
        """The pages and every item of an answer that wraps its page in {"total_count", key},
        page by page until total_count is reached; each page must name the same total."""
        pages: list[Any] = []
        items: list[Any] = []
        total: int | None = None
        page = 1
        while total is None or len(items) < total:
            extra = {"page": str(page)} if page > 1 else {}
            _, data = self.get(self.url(path, {**query, **_PAGE, **extra}))
            count = _field(data, "total_count", int, what)
            chunk = _field(data, key, list, what)
            if count < 0:
                raise ChecksFailed(f"{what}.total_count is {count}")
            if total is not None and count != total:
                raise _Shifted(f"{what}: total_count went from {total} to {count} between pages")
            total = count
            if not chunk and len(items) < total:
                raise ChecksFailed(f"{what}: page {page} is empty, {total - len(items)} missing")
            pages.append(data)
            items += chunk
            page += 1
        if len(items) != total:
            raise ChecksFailed(f"{what}: {len(items)} items for total_count {total}")
        return pages, items


def _twice(read: Callable[[], T]) -> T:
    """`read`, once more if CI reported between two of its pages."""
    try:
        return read()
    except _Shifted:
        return read()


def _failure(exc: Exception) -> ChecksFailed:
    problem = str(exc) if isinstance(exc, ChecksFailed) else describe_error(exc)
    return ChecksFailed(redact(problem))


# -- protection --------------------------------------------------------------------


def read_protection(
    client: Github,
    repository: str,
    branch: str,
    *,
    access: RulesAccess = RulesAccess.ASK,
    max_pages: int = DEFAULT_MAX_PAGES,
    timeout: float = DEFAULT_LISTING_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
) -> Protection:
    """The rules of `branch` of `repository`, as far as reviews and checks go.

    The branch is read first: whether it is protected shows to anyone who reads the repository,
    and that answer has an ETag (GitHub's 404 for an unprotected branch has none, so it would
    cost a point every run). Only a protected branch's rules are read; a 403 there (no admin
    rights) means "treat as unprotected, and say so". Anything else that fails raises.

    `access`: what is known of the credential's right to read the rules (RulesAccess). When it
    is known not to have it, the rules are not asked for: the 403 they would get has no ETag
    and would cost a point every run.
    """
    reader = _Reader(client, repository, max_pages=max_pages, timeout=timeout, clock=clock)
    path = f"/branches/{quote(branch, safe='/')}"
    try:
        _, data = reader.get(reader.url(path))
        if _field(data, "name", str, "branch") != branch:
            raise ChecksFailed(f"the answer for branch {branch[:100]} names another branch")
        if not _field(data, "protected", bool, "branch"):
            return UNPROTECTED
        if access is RulesAccess.DENIED or (
            access is RulesAccess.REPOSITORY and not _admin(reader)
        ):
            return Protection(protected=False, readable=False)
        try:
            _, rules = reader.get(reader.url(f"{path}/protection"))
        except GithubException as exc:
            message = exc.data.get("message") if isinstance(exc.data, dict) else None
            if exc.status == 404 and message == NOT_PROTECTED:
                return UNPROTECTED  # unprotected since the branch was read
            if exc.status == 403 and not rate_limited(exc):
                return Protection(protected=False, readable=False)
            raise
        return _protection(rules)
    except Exception as exc:
        raise _failure(exc) from None


def _admin(reader: _Reader) -> bool:
    """Whether the repository says the credential has admin rights (True when it does not
    say: then the rules are asked for, and a 403 answers it)."""
    _, data = reader.get(reader.url(""))
    permissions = data.get("permissions") if isinstance(data, dict) else None
    if not isinstance(permissions, dict) or not isinstance(permissions.get("admin"), bool):
        return True
    return bool(permissions["admin"])


def _protection(data: Any) -> Protection:
    where = "protection"
    if not isinstance(data, Mapping):
        raise ChecksFailed(f"{where} is {_kind(data)}, not an object")
    checks: set[str] = set()
    if "required_status_checks" in data:
        where = "protection.required_status_checks"
        required = _field(data, "required_status_checks", dict, "protection")
        for index, context in enumerate(_field(required, "contexts", list, where)):
            if not isinstance(context, str):
                raise ChecksFailed(f"{where}.contexts[{index}] is {_kind(context)}, not str")
            checks.add(context)
        # Older GitHub Enterprise servers send contexts only.
        for index, check in enumerate(
            _field(required, "checks", list, where) if "checks" in required else ()
        ):
            checks.add(_field(check, "context", str, f"{where}.checks[{index}]"))
    approvals = 0
    if "required_pull_request_reviews" in data:
        reviews = _field(data, "required_pull_request_reviews", dict, "protection")
        approvals = _field(
            reviews,
            "required_approving_review_count",
            int,
            "protection.required_pull_request_reviews",
        )
        if approvals < 0:
            raise ChecksFailed(f"required_approving_review_count is {approvals}")
    return Protection(
        protected=True, required_approvals=approvals, required_checks=tuple(sorted(checks))
    )


# -- a head ------------------------------------------------------------------------


def read_head(
    client: Github,
    repository: str,
    number: int,
    head_sha: str,
    requested_reviewers: int = 0,
    *,
    own_checks: frozenset[str] = frozenset({OWN_CHECK}),
    max_pages: int = DEFAULT_MAX_PAGES,
    timeout: float = DEFAULT_LISTING_TIMEOUT,
    clock: Callable[[], float] = time.monotonic,
) -> HeadFacts:
    """PR `number`'s reviews (every page), and the CI of `head_sha`: the combined status
    (every page: the latest of each context) and the check runs (filter=latest, every page).

    What prgen reports under (`own_checks`, lower case) never counts: it is the head's
    `own` health report. Any failure raises ChecksFailed.
    """
    reader = _Reader(client, repository, max_pages=max_pages, timeout=timeout, clock=clock)
    try:
        reviews = _reviews(reader.listed(f"/pulls/{number}/reviews", "reviews"))
        statuses = _twice(lambda: _statuses(reader, head_sha))
        runs = _twice(lambda: _check_runs(reader, head_sha))
    except Exception as exc:
        raise _failure(exc) from None
    checks, own = _merge(statuses + runs, own_checks)
    return HeadFacts(
        head_sha=head_sha,
        reviews=reviews,
        requested_reviewers=requested_reviewers,
        checks=checks,
        own=own,
    )


def _reviews(items: list[Any]) -> tuple[Review, ...]:
    reviews = []
    for index, item in enumerate(items):
        where = f"reviews[{index}]"
        _field(item, "id", int, where)
        user = _nullable(item, "user", dict, where)
        reviews.append(
            Review(
                user="ghost" if user is None else _field(user, "login", str, f"{where}.user"),
                state=_one_of(item, "state", REVIEW_STATES, where),
                commit_id=_nullable(item, "commit_id", str, where),
            )
        )
    return tuple(reviews)


@dataclass(frozen=True)
class _Report:
    check: Check
    at: datetime  # when it was reported: of two reports of one name, the later counts


def _statuses(reader: _Reader, head_sha: str) -> list[_Report]:
    pages, items = reader.wrapped(f"/commits/{head_sha}/status", "statuses", "status", {})
    if any(_field(page, "sha", str, "status") != head_sha for page in pages):
        raise ChecksFailed("the combined status is another commit's")
    reports = []
    for index, item in enumerate(items):
        where = f"status.statuses[{index}]"
        name = _field(item, "context", str, where)
        outcome = STATUS_OUTCOMES[_one_of(item, "state", STATUS_OUTCOMES, where)]
        at = _moment(item, "updated_at", where) or _EARLIEST
        reports.append(_Report(Check(name, outcome, "status"), at))
    return reports


def _check_runs(reader: _Reader, head_sha: str) -> list[_Report]:
    _, items = reader.wrapped(
        f"/commits/{head_sha}/check-runs", "check_runs", "check runs", {"filter": "latest"}
    )
    reports = []
    for index, item in enumerate(items):
        where = f"check_runs[{index}]"
        if _field(item, "head_sha", str, where) != head_sha:
            raise ChecksFailed(f"{where} is another commit's")
        name = _field(item, "name", str, where)
        status = _one_of(item, "status", RUN_STATUSES, where)
        if status == "completed":
            conclusion = _one_of(item, "conclusion", CONCLUSION_OUTCOMES, where)
            outcome = CONCLUSION_OUTCOMES[conclusion]
        else:
            _nullable(item, "conclusion", str, where)
            outcome = Outcome.PENDING
        started = _moment(item, "started_at", where)
        at = _moment(item, "completed_at", where) or started or _EARLIEST
        reports.append(_Report(Check(name, outcome, "check_run"), at))
    return reports


def _merge(
    reports: list[_Report], own_checks: frozenset[str] = frozenset({OWN_CHECK})
) -> tuple[tuple[Check, ...], Outcome | None]:
    """One check per name, by its later report (the worse on a tie), prgen's own left out;
    and the outcome prgen's own last report gave (its health report), if any."""
    latest: dict[str, _Report] = {}
    own: _Report | None = None
    for report in reports:
        name = report.check.name
        if name.lower() in own_checks:  # what prgen reports under: lower case
            if own is None or report.at > own.at:
                own = report
            continue
        known = latest.get(name)
        if known is None or (report.at, _SEVERITY[report.check.outcome]) > (
            known.at,
            _SEVERITY[known.check.outcome],
        ):
            latest[name] = report
    checks = tuple(latest[name].check for name in sorted(latest))
    return checks, None if own is None else own.check.outcome


# -- many at a time ----------------------------------------------------------------


def _each(
    clients: GitHubClients,
    items: Sequence[T],
    read: Callable[[Github, T], R],
    workers: int | None,
) -> list[R]:
    """`read` of each item, in order; up to `workers` at a time, each thread its own client
    (a PyGithub client is not thread-safe), all on the run's one transport and cache."""
    count = min(workers if workers is not None else clients.settings.workers, len(items))
    if count <= 1:
        return [read(clients.main, item) for item in items]
    return each_on_own_client(clients.new, items, read, count, "prgen-checks")


def _over_budget(clients: GitHubClients) -> str | None:
    """Why nothing more is read: the rate limit is down to github.rateLimitReserve (as for
    listings: the reserve is kept for whoever else uses the credential)."""
    refusal = clients.transport.ledger.budget().below(clients.settings.rate_limit_reserve)
    return None if refusal is None else f"not read: {refusal}"


def read_heads(
    clients: GitHubClients, items: Sequence[HeadQuery], workers: int | None = None
) -> list[HeadRead]:
    """`read_head` of each item, in order, up to `workers` (default github.concurrency) at a
    time. A head that cannot be read has its error; the others are still read. Once the rate
    limit is down to github.rateLimitReserve, the heads left are not read (their error says so).
    """
    settings = clients.settings

    def read(client: Github, query: HeadQuery) -> HeadRead:
        refusal = _over_budget(clients)
        if refusal is not None:
            return HeadRead(query, error=f"{query.repository}#{query.number}: {refusal}")
        try:
            facts = read_head(
                client,
                query.repository,
                query.number,
                query.head_sha,
                query.requested_reviewers,
                own_checks=query.own_checks,
                max_pages=settings.max_pages,
                timeout=settings.listing_timeout,
            )
        except ChecksFailed as exc:
            return HeadRead(query, error=f"{query.repository}#{query.number}: {exc}")
        return HeadRead(query, facts=facts)

    return _each(clients, items, read, workers)


def read_protections(
    clients: GitHubClients, branches: Sequence[tuple[str, str]], workers: int | None = None
) -> list[ProtectionRead]:
    """`read_protection` of each (repository, branch), in order, as `read_heads` reads heads."""
    settings = clients.settings
    access = rules_access(clients) if branches else RulesAccess.ASK

    def read(client: Github, target: tuple[str, str]) -> ProtectionRead:
        repository, branch = target
        refusal = _over_budget(clients)
        if refusal is not None:
            return ProtectionRead(repository, branch, error=f"{repository} {branch}: {refusal}")
        try:
            protection = read_protection(
                client,
                repository,
                branch,
                access=access,
                max_pages=settings.max_pages,
                timeout=settings.listing_timeout,
            )
        except ChecksFailed as exc:
            return ProtectionRead(repository, branch, error=f"{repository} {branch}: {exc}")
        return ProtectionRead(repository, branch, protection=protection)

    return _each(clients, branches, read, workers)


class GitHubHeads:
    """What the deploy gates read (sync.HeadReader): each head's facts by its PR's key,
    or why they could not be read."""

    def __init__(self, clients: GitHubClients) -> None:
        self._clients = clients

    def read_heads(self, heads: Sequence[HeadQuery]) -> dict[tuple[str, int], HeadFacts | str]:
        found: dict[tuple[str, int], HeadFacts | str] = {}
        for read in read_heads(self._clients, heads):
            key = (read.query.repository.lower(), read.query.number)
            found[key] = read.facts if read.facts is not None else read.error or "not read"
        return found
