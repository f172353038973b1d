"""Commands from PR comments, on GitHub: reading new ones cheaply, who may give them, and the
reactions and replies that acknowledge them.

Reading costs nothing on an idle run: one conditional read of the repository's comments,
newest first (`sort=updated&direction=desc`), which GitHub answers 304 while nothing changed.
Further pages are read only while their comments are as new as the oldest PR asked about (a
comment cannot be older than its PR). "Handled" is known from what every runner shares: the
id of the last command each environment applied (in the fleet), and prgen's own 👍 or 😕 on
the comment (on GitHub). A reply is posted only by the run whose 😕 (or help's 👍) GitHub
answered 201 Created: a retry or a second runner gets 200 for the same reaction and stays quiet.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlencode, urlsplit

from github import Github, GithubException

from prgen.github.channels import own_login
from prgen.github.client import PER_PAGE, GitHubClients, each_on_own_client
from prgen.github.errors import describe_error
from prgen.github.pulls import next_link
from prgen.github.transport import RateLimitLedger
from prgen.pr_commands import (
    Ack,
    CommandComment,
    CommandsQuery,
    RepositoryCommands,
    Settled,
    parse,
)
from prgen.redact import redact

log = logging.getLogger(__name__)

COMMENTS_QUERY = {"sort": "updated", "direction": "desc", "per_page": PER_PAGE}
MAX_COMMENT_PAGES = 10  # newest 1,000 comments of a repository: older ones are not read
MAX_REACTION_PAGES = 3
WRITERS = frozenset({"admin", "write"})  # `permission`; maintain reads as write there
WRITER_ROLES = frozenset({"admin", "maintain", "write"})  # `role_name`
SEEN, DONE, REFUSED = "eyes", "+1", "confused"
REPLY_MARKER = "<!-- prgen:command-reply -->"
_ISSUE = re.compile(r"/repos/([^/]+/[^/]+)/issues/(\d+)$")


class CommandsUnread(Exception):
    """An answer that is not what a read of comments, reactions or permissions must be."""


def _timestamp(value: Any) -> datetime:
    if not isinstance(value, str):
        raise CommandsUnread("a comment without a time")
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class _Known:
    """What every worker of a run shares: who prgen is, and who may give commands."""

    def __init__(self, ask_login: Callable[[], str]) -> None:
        self.lock = threading.Lock()
        self.ask_login = ask_login
        self.login: str | None = None
        self.may: dict[tuple[str, str], bool] = {}  # (repository, login), lower case


class GitHubCommands:
    """Reads and acknowledges commands for one run: own login and permissions asked once."""

    def __init__(
        self,
        client: Github,
        *,
        ledger: RateLimitLedger | None = None,
        reserve: int = 0,
        login: Callable[[], str] | None = None,
        new_client: Callable[[], Github] | None = None,
        workers: int = 1,
        known: _Known | None = None,
    ) -> None:
        """`new_client` and `workers`: repositories read up to `workers` at a time, each
        worker thread on a client of its own (a PyGithub client is not thread-safe)."""
        self._client = client
        self._ledger = ledger
        self._reserve = reserve
        self._new_client = new_client
        self._workers = workers
        self._known = known or _Known(login or (lambda: own_login(client)))

    @classmethod
    def for_clients(cls, clients: GitHubClients) -> GitHubCommands:
        return cls(
            clients.main,
            ledger=clients.transport.ledger,
            reserve=clients.settings.rate_limit_reserve,
            new_client=clients.new,
            workers=clients.settings.workers,
        )

    def _on(self, client: Github) -> GitHubCommands:
        return GitHubCommands(client, ledger=self._ledger, reserve=self._reserve, known=self._known)

    def read_all(
        self, queries: Sequence[CommandsQuery], *, acknowledge: bool
    ) -> list[RepositoryCommands]:
        """`read_commands` of each query, in order; up to `workers` repositories at a time."""
        workers = min(self._workers, len(queries))
        if workers <= 1 or self._new_client is None:
            return [self.read_commands(q, acknowledge=acknowledge) for q in queries]

        def read_one(client: Github, query: CommandsQuery) -> RepositoryCommands:
            return self._on(client).read_commands(query, acknowledge=acknowledge)

        return each_on_own_client(self._new_client, queries, read_one, workers, "prgen-commands")

    # -- reading --

    def read_commands(self, query: CommandsQuery, *, acknowledge: bool) -> RepositoryCommands:
        """The new commands on the query's PRs, oldest first (never one the fleet applied).

        `acknowledge`: react 👀 to each new one (not on a dry run). Any failure reads as an
        error: no command of the repository is applied.
        """
        repository, pulls, handled = query.repository, query.pulls, query.handled
        if not pulls:
            return RepositoryCommands(repository)
        refusal = self._ledger.budget().below(self._reserve) if self._ledger else None
        if refusal is not None:
            return RepositoryCommands(repository, (), f"comments not read: {refusal}")
        try:
            comments = self._new_commands(repository, pulls, handled)
            if acknowledge:
                for comment in comments:
                    self._react(repository, comment.comment_id, SEEN)
        except Exception as exc:
            error = redact(str(exc) if isinstance(exc, CommandsUnread) else describe_error(exc))
            log.warning("reading the commands of %s failed: %s", repository, error)
            return RepositoryCommands(repository, (), error)
        return RepositoryCommands(repository, tuple(comments))

    def _new_commands(
        self, repository: str, pulls: Mapping[int, datetime], handled: Mapping[int, int]
    ) -> list[CommandComment]:
        # By id: a comment edited while the pages are read may come on two of them.
        candidates: dict[int, tuple[dict[str, Any], int, str]] = {}
        for item in self._recent(repository, min(pulls.values())):
            found = self._candidate(repository, item, pulls, handled)
            if found is not None:
                candidates[int(found[0]["id"])] = found
        if not candidates:
            return []
        own = self._own_login().lower()
        new: list[CommandComment] = []
        for _, (item, number, author) in sorted(candidates.items()):
            if author.lower() == own or self._settled(repository, item, own):
                continue
            command = parse(item.get("body"))
            assert command is not None  # a candidate is a command
            new.append(
                CommandComment(
                    repository,
                    number,
                    int(item["id"]),
                    author,
                    str(item["created_at"]),
                    command,
                    self._may_command(repository, author),
                )
            )
        return new

    @staticmethod
    def _candidate(
        repository: str, item: Any, pulls: Mapping[int, datetime], handled: Mapping[int, int]
    ) -> tuple[dict[str, Any], int, str] | None:
        """(comment, PR number, author) when `item` is a command on a PR asked about that its
        fleet state has not applied yet; None for any other comment."""
        if not isinstance(item, dict):
            raise CommandsUnread("a comment that is not an object")
        identifier, user = item.get("id"), item.get("user")
        match = _ISSUE.search(str(item.get("issue_url") or ""))
        if not isinstance(identifier, int) or match is None:
            raise CommandsUnread("a comment without an id or an issue")
        if match[1].lower() != repository.lower():
            return None  # another repository's (a page GitHub linked by repository id)
        number = int(match[2])
        if number not in pulls or identifier <= handled.get(number, 0):
            return None
        if not isinstance(user, dict) or not isinstance(user.get("login"), str):
            return None  # a deleted user ("ghost") gives no command
        if user.get("type") == "Bot" or str(user["login"]).endswith("[bot]"):
            return None  # bots, prgen itself among them, never give commands
        if parse(item.get("body")) is None:
            return None
        _timestamp(item.get("created_at"))
        return item, number, str(user["login"])

    def _pages(self, path: str, query: Mapping[str, Any], limit: int) -> Any:
        """Each page's items of a listing at `path`, following its next links (only to the
        same listing of the same API) while the caller asks for more, at most `limit` pages."""
        requester = self._client.requester
        api = urlsplit(requester.base_url)
        url: str | None = f"{requester.base_url}{path}?{urlencode(query)}"
        # GitHub's next links may name the repository by its id: the same listing.
        by_id = re.compile(
            re.escape(api.path) + r"/repositories/\d+/" + re.escape(path.split("/", 4)[4])
        )
        pages = 0
        while url is not None and pages < limit:
            target = urlsplit(url)
            if (target.scheme, target.netloc) != (api.scheme, api.netloc) or not (
                target.path.lower() == (api.path + path).lower() or by_id.fullmatch(target.path)
            ):
                raise CommandsUnread(f"a page links to another place: {url[:200]}")
            headers, data = requester.requestJsonAndCheck("GET", url)
            pages += 1
            if not isinstance(data, list):
                raise CommandsUnread(f"{path} did not answer a list")
            yield data
            url = next_link(headers.get("link"), url)

    def _recent(self, repository: str, oldest: datetime) -> list[Any]:
        """The repository's comments, newest first, down to the page that reaches `oldest`."""
        items: list[Any] = []
        pages = self._pages(
            f"/repos/{repository}/issues/comments", COMMENTS_QUERY, MAX_COMMENT_PAGES
        )
        for page in pages:
            items.extend(page)
            if not page:
                break
            last = page[-1]
            if not isinstance(last, dict) or _timestamp(last.get("updated_at")) < oldest:
                break
        return items

    def _settled(self, repository: str, item: dict[str, Any], own: str) -> bool:
        """Whether prgen already answered this comment with 👍 or 😕 (a run or a runner
        before this one): its reactions are read only when the counts show one of those."""
        counts = item.get("reactions")
        if not isinstance(counts, dict) or not (counts.get(DONE) or counts.get(REFUSED)):
            return False
        path = f"/repos/{repository}/issues/comments/{item['id']}/reactions"
        for page in self._pages(path, {"per_page": PER_PAGE}, MAX_REACTION_PAGES):
            for reaction in page:
                user = reaction.get("user") if isinstance(reaction, dict) else None
                login = user.get("login") if isinstance(user, dict) else None
                if (
                    isinstance(login, str)
                    and login.lower() == own
                    and reaction.get("content") in (DONE, REFUSED)
                ):
                    return True
        return False

    def _own_login(self) -> str:
        known = self._known
        with known.lock:
            if known.login is None:
                known.login = known.ask_login()
            return known.login

    def _may_command(self, repository: str, login: str) -> bool:
        """Write, maintain or admin permission on the repository: asked once a run, and
        conditionally (the HTTP cache) from one run to the next."""
        key = (repository.lower(), login.lower())
        with self._known.lock:
            cached = self._known.may.get(key)
        if cached is None:
            try:
                _, data = self._client.requester.requestJsonAndCheck(
                    "GET", f"/repos/{repository}/collaborators/{login}/permission"
                )
            except GithubException as exc:
                if exc.status != 404:  # 404: no such user, or none GitHub shows: no writer
                    raise
                data = {}
            permission = data.get("permission") if isinstance(data, dict) else None
            role = data.get("role_name") if isinstance(data, dict) else None
            cached = permission in WRITERS or role in WRITER_ROLES
            with self._known.lock:
                self._known.may[key] = cached
        return cached

    # -- acknowledging --

    def _react(self, repository: str, comment_id: int, content: str) -> bool:
        """React with `content`; True when this made it (201), False when it was there (200)."""
        status, _, body = self._client.requester.requestJson(
            "POST",
            f"/repos/{repository}/issues/comments/{comment_id}/reactions",
            input={"content": content},
        )
        if status not in (200, 201):
            raise GithubException(status, {"message": body[:200]}, None)
        return status == 201

    def settle(self, settled: Sequence[Settled]) -> list[str]:
        """👍 or 😕 on each command, and its one reply; what could not be done, as warnings
        (the comment then stays unanswered, and the next run answers it)."""
        warnings = []
        for item in settled:
            comment, outcome = item.comment, item.outcome
            where = f"{comment.repository}#{comment.number} (comment {comment.comment_id})"
            try:
                made = self._react(
                    comment.repository,
                    comment.comment_id,
                    DONE if outcome.ack is Ack.DONE else REFUSED,
                )
                if made and outcome.reply:
                    self._reply(comment, outcome.reply)
            except Exception as exc:
                warnings.append(
                    f"could not answer the command on {where}: {redact(describe_error(exc))}"
                )
        return warnings

    def _reply(self, comment: CommandComment, text: str) -> None:
        body = f"{REPLY_MARKER}\n@{comment.author} {text}"
        self._client.requester.requestJsonAndCheck(
            "POST",
            f"/repos/{comment.repository}/issues/{comment.number}/comments",
            input={"body": body},
        )
