"""The report channels on GitHub (commit status, check run, deployment, PR comment): read,
compare, write.

`GitHubReporter` reads what GitHub shows now and
writes only what differs: GitHub keeps at most 1,000 statuses per SHA and
context, so re-posting every run would fill it within a day.

The channels (commit status, check run, deployment, comment) are read, compared and
written one by one, each on its own: a token that may not write one of them
(no Issues: write, say) still gets the others written, and the first error is
what the outcome reports.

The last enabled channel (the comment, else the deployment, else the check run, else the
status) is the marker: it is read first, and when it already shows the wanted state the
others are known to as well, so an environment with nothing new costs one read
(two when the deployment is the marker) and no write; a round over many
environments stays well inside GitHub's hourly rate limit. That holds because
the marker is written last, and only when every other channel was written or
refused for good (a missing permission, which asking again would not change).
The comment and the deployment make good markers because they say which head
they are about: a commit status belongs to a SHA and outlives the time that SHA
was the PR's head, so after a force-push back to an earlier head, or a close
and reopen at the same head, it can match while the rest shows the other state.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from github import Auth, Github, GithubException, GithubIntegration
from github.CheckRun import CheckRun
from github.Deployment import Deployment
from github.GithubObject import NotSet
from github.IssueComment import IssueComment
from github.Repository import Repository

from prgen.github.errors import describe_error, rate_limited
from prgen.logs import fields
from prgen.redact import redact
from prgen.report import (
    DEPLOYMENT_TASK,
    NOT_IN_TIME,
    CheckRunReport,
    CommitStatusReport,
    DeploymentReport,
    DesiredReport,
    Health,
    Observation,
    ReportOutcome,
    comment_marker,
)

log = logging.getLogger(__name__)
_RETRYABLE = frozenset({429, 500, 502, 503, 504})  # and a 403 that is a rate limit


def _status_matches(current: Any, wanted: CommitStatusReport) -> bool:
    if current is None or current.state != wanted.state:
        return False
    if wanted.state == Health.FAILED:
        return True  # already failed: a different error text is not worth another status
    return bool(
        (current.description or "") == wanted.description
        and (current.target_url or None) == wanted.target_url
    )


def _check_run_matches(current: CheckRun | None, wanted: CheckRunReport) -> bool:
    if current is None or current.status != wanted.status:
        return False
    if current.conclusion != wanted.conclusion:
        return False
    if wanted.conclusion == "failure":
        return True  # already failed: as the status, a new error text is not worth a write
    output = current.output
    return bool(
        (wanted.details_url is None or current.details_url == wanted.details_url)
        and output is not None
        and (output.title or "") == wanted.title
        and (output.summary or "") == wanted.summary
    )


class NotAnApp(Exception):
    """A check run can only be written by a GitHub App, and prgen is not one in this run."""


class _Unread:
    """Not read yet in this attempt."""


_UNREAD = _Unread()


@dataclass(frozen=True)
class _Deployments:
    found: Iterable[Deployment]  # prgen's deployments to the environment, newest first (lazy)
    newest: Deployment | None
    newest_state: tuple[str, str]  # (state, environment URL) of the newest


def _comment_matches(comments: list[IssueComment], body: str) -> bool:
    # None found: a removal makes none, and the full round then costs only its reads.
    # Two or more: not shown as it should be until the extra ones are gone.
    return len(comments) == 1 and comments[0].body == body


@dataclass(frozen=True)
class _Channel:
    name: str
    matches: Callable[[], bool]  # reads only
    ensure: Callable[[], None]  # reads, and writes what differs


class UnknownLogin(Exception):
    """prgen cannot tell who it writes as, so it cannot tell its own comment from a planted one."""


class UnsettledPost(Exception):
    """A post (a comment, a deployment) got no clear answer and what it makes is not there
    (yet): not posted again in this run."""


def _outcome_unknown(exc: Exception) -> bool:
    """Might the write have happened? A timeout, a dropped connection or a 5xx: GitHub may
    complete a write after the client gave up on it. A 4xx is a refusal."""
    return not isinstance(exc, GithubException) or exc.status >= 500


_T = TypeVar("_T")


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, UnknownLogin | NotAnApp):
        return False
    if isinstance(exc, GithubException):
        # A plain 403 is a missing permission: asking again changes nothing.
        return exc.status in _RETRYABLE or rate_limited(exc)
    return True  # network errors: retried like 5xx


def _about(observation: Observation) -> dict[str, Any]:
    """The log fields of a line about one environment."""
    return fields(
        repository=observation.repository,
        pullRequest=observation.number,
        environment=observation.namespace or None,
    )


def own_login(client: Github) -> str:
    """Who prgen writes as: the token's user, or a GitHub App's bot, `<slug>[bot]`."""
    auth = client.requester.auth
    if isinstance(auth, Auth.AppInstallationAuth):
        # GET /app answers to the app's own JWT, which the installation auth holds.
        app = GithubIntegration(**auth.requester.kwargs).get_app()
        return f"{app.slug}[bot]"
    return client.get_user().login


@dataclass(frozen=True)
class _Tried:
    error: str | None = None  # what stopped the channel
    limited: bool = False  # a rate limit
    transient: bool = False  # a later try might get past it
    late: bool = False  # the round's time ran out first


def _past(until: float | None, later: float = 0.0) -> bool:
    return until is not None and time.monotonic() + later >= until


def _late(outcome: ReportOutcome, channel: str) -> ReportOutcome:
    outcome.late = True
    outcome.error = outcome.error or f"{channel}: {NOT_IN_TIME}"
    return outcome


class ReportRun:
    """What one run's reports learn and share, on however many worker threads they run.

    prgen's own login, asked once per run (its failure too), and the posts (a PR's comment;
    a deployment of a head to an environment) that got no clear answer: posting again
    before a read shows what they made could make a second one, so they wait for a later
    read (next round's).
    """

    def __init__(self, login: str | None = None) -> None:
        self._lock = threading.Lock()
        # Held while the login is asked: the other workers wait for that answer instead of
        # asking too.
        self._login_lock = threading.Lock()
        self._login = login
        self._unknown_login: UnknownLogin | None = None
        self._unsettled_posts: set[tuple[str, ...]] = set()

    def login(self, ask: Callable[[], str]) -> str:
        with self._login_lock:
            if self._unknown_login is not None:
                raise self._unknown_login  # asked once per run, not once per environment
            if self._login is None:
                try:
                    self._login = ask()
                except GithubException as exc:
                    if _retryable(exc):
                        raise
                    # GitHub Actions' GITHUB_TOKEN, say: an app's token without the app's key.
                    self._unknown_login = UnknownLogin(
                        f"cannot tell prgen's own login ({describe_error(exc)}), so not its comment"
                    )
                    raise self._unknown_login from exc
            return self._login

    def unsettled(self, key: tuple[str, ...]) -> bool:
        with self._lock:
            return key in self._unsettled_posts

    def unsettle(self, key: tuple[str, ...]) -> None:
        with self._lock:
            self._unsettled_posts.add(key)


class GitHubReporter:
    """Reads, compares and writes one environment's report; retries transient GitHub errors.

    One reporter serves one run on one thread (a PyGithub client is not thread-safe):
    `for_client` makes one for another thread, with another client and the same `ReportRun`.
    """

    def __init__(
        self,
        client: Github,
        *,
        attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        login: str | None = None,
        run: ReportRun | None = None,
        login_client: Github | None = None,
    ) -> None:
        self._client = client
        self._attempts = attempts
        self._sleep = sleep
        self._run = run or ReportRun(login)
        # Who asks GitHub for prgen's login: a GitHub App's bot is known from the App's own
        # key (GET /app), which only the client made with the App's auth holds; a worker's
        # client carries the installation token alone, and GET /user refuses one.
        self._login_client = login_client or client

    def for_client(self, client: Github) -> GitHubReporter:
        """A reporter for another worker thread: its own client, this run's memory."""
        app = isinstance(self._login_client.requester.auth, Auth.AppInstallationAuth)
        return GitHubReporter(
            client,
            attempts=self._attempts,
            sleep=self._sleep,
            run=self._run,
            login_client=self._login_client if app else client,
        )

    def report(
        self, observation: Observation, wanted: DesiredReport, until: float | None = None
    ) -> ReportOutcome:
        """Read and write what differs; no GitHub call starts at or after `until` (monotonic)."""
        outcome = ReportOutcome()
        repo = self._client.get_repo(observation.repository)  # lazy: no request
        # What the marker's first read found, for its first write attempt to use instead
        # of reading again; a retry reads afresh.
        seen: dict[str, Any] = {}
        channels: list[_Channel] = []
        if wanted.status is not None and observation.head_sha:
            status, sha = wanted.status, observation.head_sha
            channels.append(
                _Channel(
                    "commit status",
                    lambda: _status_matches(
                        seen.setdefault("status", self._read_status(repo, sha, status)), status
                    ),
                    lambda: self._ensure_status(
                        repo, sha, status, outcome, seen.pop("status", _UNREAD)
                    ),
                )
            )
        if wanted.check_run is not None and observation.head_sha:
            run, head = wanted.check_run, observation.head_sha
            channels.append(
                _Channel(
                    "check run",
                    lambda: _check_run_matches(
                        seen.setdefault("check run", self._read_check_run(repo, head, run)), run
                    ),
                    lambda: self._ensure_check_run(
                        repo, observation, run, outcome, seen.pop("check run", _UNREAD)
                    ),
                )
            )
        if wanted.deployment is not None:
            deployment = wanted.deployment
            channels.append(
                _Channel(
                    "deployment",
                    lambda: self._deployment_matches(
                        seen.setdefault("deployment", self._read_deployments(repo, deployment)),
                        observation,
                        deployment,
                    ),
                    lambda: self._ensure_deployment(
                        repo, observation, deployment, outcome, seen.pop("deployment", _UNREAD)
                    ),
                )
            )
        if wanted.comment is not None:
            body = wanted.comment
            channels.append(
                _Channel(
                    "comment",
                    lambda: _comment_matches(
                        seen.setdefault("comment", self._find_comments(repo, observation)),
                        body,
                    ),
                    lambda: self._ensure_comment(
                        repo, observation, body, outcome, seen.pop("comment", _UNREAD)
                    ),
                )
            )
        if not channels:
            return outcome
        if _past(until):
            return _late(outcome, channels[-1].name)
        if self._already_shown(channels[-1]):
            return outcome
        *others, marker = channels
        hold_marker = False
        for channel in others:
            tried = self._with_retries(observation, channel.name, channel.ensure, until)
            if tried.late:
                return _late(outcome, channel.name)  # the marker too: next round reads all
            if tried.error is not None:
                outcome.error = outcome.error or f"{channel.name}: {tried.error}"
                if tried.limited:
                    return outcome  # the client's limit: the others would only wait for it too
                # The marker must not say "all shown" while this one still needs writing:
                # the next round then reads every channel again and finishes the job.
                hold_marker = hold_marker or tried.transient
        if not hold_marker:
            tried = self._with_retries(observation, marker.name, marker.ensure, until)
            if tried.late:
                return _late(outcome, marker.name)
            if tried.error is not None:
                outcome.error = outcome.error or f"{marker.name}: {tried.error}"
        return outcome

    def shows_failure(self, repository: str, sha: str, wanted: DesiredReport) -> bool:
        """Whether the head shows a failure where `wanted` would write (its commit status's
        context, else its check run's name): what reporting `wanted` would clear. Reads only."""
        repo = self._client.get_repo(repository)  # lazy: no request
        if wanted.check_run is not None:
            run = self._read_check_run(repo, sha, wanted.check_run)
            return run is not None and run.conclusion == "failure"
        if wanted.status is not None:
            status = self._read_status(repo, sha, wanted.status)
            return status is not None and status.state in ("failure", "error")
        return False

    def _already_shown(self, marker: _Channel) -> bool:
        try:
            return marker.matches()
        except Exception as exc:  # the full round below reads again, retries and reports
            log.info("reading the %s failed (%s)", marker.name, redact(describe_error(exc)))
            return False

    def _with_retries(
        self,
        observation: Observation,
        channel: str,
        ensure: Callable[[], None],
        until: float | None = None,
    ) -> _Tried:
        """How one channel went, its attempts retried with a back-off.

        No attempt starts once the round's time ran out, and no back-off outlasts it: the
        channel is then late.
        """
        for attempt in range(1, self._attempts + 1):
            if _past(until):
                return _Tried(late=True)
            try:
                ensure()  # reads again before it writes: a write that timed out may have happened
                return _Tried()
            except Exception as exc:
                own = isinstance(exc, UnknownLogin | UnsettledPost | NotAnApp)
                error = redact(str(exc) if own else describe_error(exc))
                limited = isinstance(exc, GithubException) and rate_limited(exc)
                if not _retryable(exc) or attempt == self._attempts:
                    log.warning(
                        "could not report the %s of %s#%d: %s",
                        channel,
                        observation.repository,
                        observation.number,
                        error,
                        extra=_about(observation),
                    )
                    return _Tried(error, limited, _retryable(exc))
            back_off = 2.0 ** (attempt - 1)
            if _past(until, back_off):
                log.warning(
                    "could not report the %s of %s#%d in time: %s",
                    channel,
                    observation.repository,
                    observation.number,
                    error,
                    extra=_about(observation),
                )
                return _Tried(late=True)
            log.info(
                "reporting the %s of %s#%d failed (%s); retrying",
                channel,
                observation.repository,
                observation.number,
                error,
                extra=_about(observation),
            )
            self._sleep(back_off)
        raise AssertionError("unreachable: the last attempt returns")

    # -- commit status: one read --

    @staticmethod
    def _read_status(repo: Repository, sha: str, wanted: CommitStatusReport) -> Any:
        commit = repo.get_commit(sha)
        combined = commit.get_combined_status()
        found = next((s for s in combined.statuses if s.context == wanted.context), None)
        if found is None and combined.total_count > len(combined.statuses):
            # The combined status holds one page of contexts (30): on a commit that many CI
            # systems report to, prgen's own may be further on. Every status, newest first.
            found = next((s for s in commit.get_statuses() if s.context == wanted.context), None)
        return found

    def _ensure_status(
        self,
        repo: Repository,
        sha: str,
        wanted: CommitStatusReport,
        outcome: ReportOutcome,
        current: Any = _UNREAD,
    ) -> None:
        if current is _UNREAD:
            current = self._read_status(repo, sha, wanted)
        if _status_matches(current, wanted):
            return
        repo.get_commit(sha).create_status(
            wanted.state,
            target_url=wanted.target_url or NotSet,
            description=wanted.description,
            context=wanted.context,
        )
        outcome.writes += 1

    # -- check run: one read (prgen's runs of that name on the head) --

    def _own_app_id(self) -> int:
        """The id of the App prgen is: its check runs are the ones it may edit."""
        auth = self._login_client.requester.auth
        if not isinstance(auth, Auth.AppInstallationAuth):
            raise NotAnApp("a check run can only be written by a GitHub App (github.app)")
        return int(auth.app_id)

    def _read_check_run(
        self, repo: Repository, sha: str, wanted: CheckRunReport
    ) -> CheckRun | None:
        """prgen's newest check run of that name on the head; another app's of the same name
        is not prgen's to edit (GitHub would refuse it too)."""
        app_id = self._own_app_id()
        runs = repo.get_commit(sha).get_check_runs(check_name=wanted.name, filter="all")
        own = [run for run in runs if run.app is not None and run.app.id == app_id]
        return max(own, key=lambda run: run.id, default=None)

    def _ensure_check_run(
        self,
        repo: Repository,
        observation: Observation,
        wanted: CheckRunReport,
        outcome: ReportOutcome,
        current: CheckRun | _Unread | None = _UNREAD,
    ) -> None:
        """One check run a head, created once and edited in place as the report changes."""
        sha = observation.head_sha or ""
        if isinstance(current, _Unread):
            current = self._read_check_run(repo, sha, wanted)
        if _check_run_matches(current, wanted):
            return
        output = {"title": wanted.title, "summary": wanted.summary}
        fields: dict[str, Any] = {"status": wanted.status, "output": output}
        if wanted.conclusion is not None:
            fields["conclusion"] = wanted.conclusion
        if wanted.details_url is not None:
            fields["details_url"] = wanted.details_url
        if current is None:
            self._post_once(
                ("check run", observation.repository.lower(), sha, wanted.name),
                "creating the check run got no clear answer and it is not listed yet; "
                "not created again",
                lambda: repo.create_check_run(wanted.name, sha, **fields),
            )
        else:
            current.edit(**fields)
        outcome.writes += 1

    # -- deployment: two reads (the newest deployment, and its latest status) --

    def _read_deployments(self, repo: Repository, wanted: DeploymentReport) -> _Deployments:
        found = repo.get_deployments(environment=wanted.environment, task=DEPLOYMENT_TASK)
        newest = next(iter(found), None)  # GitHub lists them newest first: one page read
        return _Deployments(found, newest, self._latest_state(newest) if newest else ("", ""))

    @staticmethod
    def _deployment_matches(
        current: _Deployments, observation: Observation, wanted: DeploymentReport
    ) -> bool:
        newest = current.newest
        if observation.health is Health.REMOVED:
            return newest is None or current.newest_state[0] == "inactive"
        return (
            newest is not None
            and newest.sha == observation.head_sha
            and current.newest_state == (wanted.state, wanted.environment_url or "")
        )

    def _ensure_deployment(
        self,
        repo: Repository,
        observation: Observation,
        wanted: DeploymentReport,
        outcome: ReportOutcome,
        read: _Deployments | _Unread = _UNREAD,
    ) -> None:
        """The newest of prgen's deployments to the environment is at the head, in the wanted state.

        Every other one is inactive: prgen retires them before it makes a newer one,
        so once the newest is right, the rest are known to be.
        """
        if isinstance(read, _Unread):
            read = self._read_deployments(repo, wanted)
        found, newest = read.found, read.newest
        if observation.health is Health.REMOVED:
            if newest is not None and read.newest_state[0] != "inactive":
                self._retire(found, outcome)
            return
        state = (wanted.state, wanted.environment_url or "")
        current = newest if newest is not None and newest.sha == observation.head_sha else None
        if current is not None and read.newest_state == state:
            return
        if current is None:
            # A new head, or back to an earlier one (force-push A, B, A): a new deployment,
            # so that the newest is always the one that counts.
            self._retire(found, outcome)
            head = observation.head_sha or ""
            current = self._post_once(
                ("deployment", observation.repository.lower(), wanted.environment, head),
                "creating the deployment got no clear answer and it is not listed yet; "
                "not created again",
                lambda: repo.create_deployment(
                    head,
                    task=DEPLOYMENT_TASK,
                    auto_merge=False,
                    required_contexts=[],  # prgen's own pending status must not block it
                    environment=wanted.environment,
                    description=f"preview of pull request #{observation.number}",
                    transient_environment=True,
                    production_environment=False,
                ),
            )
            outcome.writes += 1
        current.create_status(
            wanted.state,
            description=wanted.description,
            environment_url=wanted.environment_url or NotSet,
            auto_inactive=False,
        )
        outcome.writes += 1

    def _retire(self, deployments: Iterable[Deployment], outcome: ReportOutcome) -> None:
        for old in deployments:  # an older head commit's deployment, or all of them once removed
            if self._latest_state(old)[0] != "inactive":
                old.create_status(
                    "inactive", description="superseded or removed", auto_inactive=False
                )
                outcome.writes += 1

    @staticmethod
    def _latest_state(deployment: Deployment) -> tuple[str, str]:
        for status in deployment.get_statuses():
            return status.state, status.environment_url or ""
        return "", ""

    # -- comment: one read (a page of the PR's comments, usually the first) --

    def login(self) -> str:
        return self._run.login(lambda: own_login(self._login_client))

    def _find_comments(self, repo: Repository, observation: Observation) -> list[IssueComment]:
        """prgen's own comments, oldest first: the marker alone would let anyone plant one.

        Reading stops at the end of the page that holds the first: the up-to-date case costs
        the pages before it, as one comment would, and a second one made by a write that
        answered late (which follows soon after the first) is found there too.
        """
        login = self.login().lower()
        per_page = self._client.per_page
        number, marker = observation.number, comment_marker(observation.target)
        own: list[IssueComment] = []
        for index, comment in enumerate(repo.get_issue(number).get_comments()):
            author = comment.user.login.lower() if comment.user is not None else None
            if author == login and (comment.body or "").startswith(marker):
                own.append(comment)
            if own and (index + 1) % per_page == 0:
                break  # the next comment would cost the next page's read
        return own

    def _ensure_comment(
        self,
        repo: Repository,
        observation: Observation,
        body: str,
        outcome: ReportOutcome,
        comments: list[IssueComment] | _Unread = _UNREAD,
    ) -> None:
        if isinstance(comments, _Unread):
            comments = self._find_comments(repo, observation)
        if not comments:
            # A removal edits the comment prgen made; it never starts a conversation to say so.
            if observation.health is not Health.REMOVED:
                self._post_comment(repo, observation, body, outcome)
            return
        keep, *extra = comments
        if keep.body != body:
            keep.edit(body)
            outcome.writes += 1
        for duplicate in extra:  # one comment, kept up to date; any second one goes
            duplicate.delete()
            outcome.writes += 1

    def _post_comment(
        self, repo: Repository, observation: Observation, body: str, outcome: ReportOutcome
    ) -> None:
        self._post_once(
            ("comment", observation.repository.lower(), str(observation.number))
            + ((observation.target,) if observation.target else ()),
            "posting the comment got no clear answer and it is not on the pull request yet; "
            "not posted again",
            lambda: repo.get_issue(observation.number).create_comment(body),
        )
        outcome.writes += 1

    def _post_once(self, key: tuple[str, ...], unsettled: str, post: Callable[[], _T]) -> _T:
        """`post()`, unless an earlier post of `key` in this run may have made it already.

        A post that timed out, lost its connection or got a 5xx may still be made by GitHub;
        the retry's read came too soon to see it, so posting again could make a second one.
        A later read (the next round's) decides.
        """
        if self._run.unsettled(key):
            raise UnsettledPost(f"{unsettled} until a later read finds none")
        try:
            return post()
        except Exception as exc:
            if _outcome_unknown(exc):
                self._run.unsettle(key)
            raise
