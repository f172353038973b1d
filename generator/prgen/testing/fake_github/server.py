"""FakeGitHub: the server, its Python API for tests, and the HTTP plumbing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qsl

from prgen.testing.fake_github.auth import ANONYMOUS, Credentials
from prgen.testing.fake_github.faults import (
    Answer,
    Fault,
    Faults,
    RecordedRequest,
    RequestLog,
)
from prgen.testing.fake_github.model import (
    ROLES,
    SHA,
    ApiError,
    BranchProtection,
    CheckRun,
    CommitStatus,
    Deployment,
    DeploymentStatus,
    IssueComment,
    PullState,
    Reaction,
    Review,
    State,
    fake_sha,
)
from prgen.testing.fake_github.payloads import API_PREFIX, Renderer, error_body
from prgen.testing.fake_github.routes import Response, Routes

RATE_LIMIT = 5000
# What GitHub sends with every cacheable answer (a GET answered 200 or 304).
CACHE_HEADERS = {
    "Cache-Control": "private, max-age=60, s-maxage=60",
    "Vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
}
ASSOCIATIONS = {
    "COLLABORATOR",
    "CONTRIBUTOR",
    "FIRST_TIMER",
    "FIRST_TIME_CONTRIBUTOR",
    "MANNEQUIN",
    "MEMBER",
    "NONE",
    "OWNER",
}
Hook = Callable[[RecordedRequest], None]
REVIEW_STATES = ("APPROVED", "CHANGES_REQUESTED", "COMMENTED", "DISMISSED", "PENDING")
CHECK_RUN_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
CHECK_RUN_CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "stale",
    "timed_out",
    "startup_failure",
)
ACTIONS = (15368, "github-actions")  # the app GitHub Actions reports its check runs as


class _VersionedLock:
    """The state's lock, counting the times it is taken for anything but an API read.

    Every change to the state happens under it, so a GET answer rendered at one version is
    still the answer while the version stays: the fake renders each distinct page once, as
    GitHub's own answers cost it nothing to repeat (a benchmark then measures prgen, not the
    fake's JSON rendering). A change made `within` one repository (a push, a close…) only
    moves that repository's version: the other repositories' pages stay rendered.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._local = threading.local()
        self.version = 0  # every change
        self.shared = 0  # changes not known to stay within one repository
        self.repos: dict[str, int] = {}  # lower-case full name -> changes within it

    def __enter__(self) -> _VersionedLock:
        self._lock.acquire()
        if not getattr(self._local, "reading", False):
            self.version += 1
            if getattr(self._local, "within", None) is None:
                self.shared += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    @contextlib.contextmanager
    def reading(self) -> Iterator[_VersionedLock]:
        """Taken for an API read: the version stays."""
        self._local.reading = True
        try:
            with self:
                yield self
        finally:
            self._local.reading = False

    @contextlib.contextmanager
    def within(self, repo: str) -> Iterator[_VersionedLock]:
        """Taken for a change to `repo` alone."""
        outer = getattr(self._local, "within", None)
        self._local.within = repo.lower()
        try:
            with self:
                self.repos[repo.lower()] = self.repos.get(repo.lower(), 0) + 1
                yield self
        finally:
            self._local.within = outer

    def stamp(self, repository: str | None) -> tuple[int, ...]:
        """What a GET answer was rendered at: while it stays, so does the answer.

        `repository`: the repository the path names, when it names a current one by its
        current name; its answer then only depends on that repository and on shared state.
        """
        if repository is None:
            return (self.version,)
        return (self.shared, self.repos.get(repository.lower(), 0))


class _Same(Enum):
    REPO = "same repository"


SAME_REPO = _Same.REPO


class FakeGitHub:
    """A GitHub REST API on 127.0.0.1 for PyGithub: `Github(base_url=fake.base_url, ...)`."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        rate_limit: int = RATE_LIMIT,
    ) -> None:
        """`latency`: seconds every answer waits before it goes out (for benchmarks);
        `rate_limit`: points an hour (GitHub: 5,000 for a token, up to 15,000 for an App)."""
        if latency < 0:
            raise ValueError("latency must not be negative")
        self._limit = rate_limit
        self._address = (host, port)
        self._latency = latency
        self._state = State()
        self._lock = _VersionedLock()
        self._state.lock = self._lock  # type: ignore[assignment]
        # (path, query, login, grants) -> (stamp, body, headers) of GET answers rendered so far
        self._rendered: dict[
            tuple[str, tuple[tuple[str, str], ...], str, frozenset[str] | None],
            tuple[tuple[int, ...], bytes, dict[str, str]],
        ] = {}
        self._credentials = Credentials()
        self._faults = Faults()
        self._log = RequestLog()
        self._hooks: list[Hook] = []
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._routes: Routes | None = None
        self._origin: str | None = None
        self._counter_lock = threading.Lock()
        self._used = 0
        self._reset = int(time.time()) + 3600
        self._in_flight = 0
        self._in_flight_peak = 0

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> FakeGitHub:
        if self._server is not None:
            raise RuntimeError("the fake GitHub is running already")
        self._stopping.clear()
        self._server = _Server(self._address, self)
        host, port = self._server.server_address[:2]
        self._origin = f"http://{host!s}:{port}"
        self._routes = Routes(self._state, Renderer(self._state, self._origin))
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-github-{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes requests sleeping in an injected delay
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> FakeGitHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._origin is None:
            raise RuntimeError("start() the fake GitHub first")
        return self._origin + API_PREFIX

    def now(self) -> datetime:
        """The fake clock: 2026-01-01T00:00:00Z plus one second per change so far."""
        with self._state.lock:
            return self._state.now

    def advance(self, delta: timedelta) -> datetime:
        """Move the fake clock on by `delta` (what GitHub stamps on what comes next)."""
        with self._state.lock:
            self._state.now += delta
            return self._state.now

    # -- repositories and pull requests --------------------------------------

    def add_repo(self, full_name: str) -> None:
        with self._state.lock:
            self._state.add_repo(full_name)

    def open_pull(
        self,
        repo: str,
        *,
        title: str,
        head_branch: str,
        base_branch: str = "main",
        author: str = "alice",
        author_association: str = "MEMBER",
        labels: Sequence[str] = (),
        draft: bool = False,
        head_repo: str | Literal[_Same.REPO] | None = SAME_REPO,
        head_sha: str | None = None,
        number: int | None = None,
        body: str | None = None,
    ) -> int:
        """Open a pull request; its number comes next in the repository unless given.

        head_repo: another repository's name makes a fork PR; None, one whose fork
        was deleted (head.repo is null).
        """
        if author_association not in ASSOCIATIONS:
            raise ValueError(f"unknown author_association {author_association!r}")
        _check_sha(head_sha)
        with self._lock.within(repo):
            target = self._state.repo(repo)
            pull = self._state.open_pull(
                target,
                number,
                head_sha,
                title=title,
                body=body,
                author=author,
                author_association=author_association,
                head_branch=head_branch,
                head_repo=target.full_name if head_repo is SAME_REPO else head_repo,
                base_branch=base_branch,
                labels=_labels(labels),
                draft=draft,
            )
            return pull.number

    def push(self, repo: str, number: int, sha: str | None = None) -> str:
        """A new head commit (given or made up); returns its sha."""
        _check_sha(sha)
        with self._lock.within(repo):
            target = self._state.repo(repo)
            self._state.pull(target, number)  # a KeyError before a sha is used up
            new_sha = sha or self._state.new_sha(target.full_name, number)
            self._state.change_pull(target, number, head_sha=new_sha)
            return new_sha

    def close_pull(self, repo: str, number: int, *, merged: bool = False) -> None:
        with self._lock.within(repo):
            target = self._state.repo(repo)
            if self._state.pull(target, number).state != "open":
                raise ValueError(f"{repo}#{number} is closed already")
            self._state.close_pull(target, number, merged)

    def reopen_pull(self, repo: str, number: int) -> None:
        with self._lock.within(repo):
            target = self._state.repo(repo)
            pull = self._state.pull(target, number)
            if pull.state == "open" or pull.merged:
                raise ValueError(f"{repo}#{number} is open or merged; it cannot be reopened")
            self._state.change_pull(target, number, state="open", closed_at=None)

    def set_labels(self, repo: str, number: int, labels: Sequence[str]) -> None:
        with self._lock.within(repo):
            target = self._state.repo(repo)
            self._state.change_pull(target, number, labels=_labels(labels))

    def set_draft(self, repo: str, number: int, draft: bool) -> None:
        with self._state.lock:
            target = self._state.repo(repo)
            self._state.change_pull(target, number, draft=draft)

    def pull(self, repo: str, number: int) -> PullState:
        """A snapshot of the pull request's state."""
        with self._state.lock:
            return self._state.pull(self._state.repo(repo), number)

    # -- reviews, CI and branch protection -----------------------------------

    def request_review(
        self, repo: str, number: int, *, users: Sequence[str] = (), teams: Sequence[str] = ()
    ) -> None:
        """Ask `users` (logins) and `teams` (slugs) for a review of the PR."""
        with self._lock.within(repo):
            target = self._state.repo(repo)
            pull = self._state.pull(target, number)
            self._state.change_pull(
                target,
                number,
                requested_reviewers=_labels([*pull.requested_reviewers, *users]),
                requested_teams=_labels([*pull.requested_teams, *teams]),
            )

    def add_review(
        self,
        repo: str,
        number: int,
        user: str,
        state: str,
        commit_id: str | None = None,
        *,
        body: str = "",
    ) -> int:
        """A review by `user` on the PR's head (or `commit_id`); returns its id.

        As on GitHub, a submitted review (any state but PENDING) answers the user's request.
        """
        if state not in REVIEW_STATES:
            raise ValueError(
                f"a review's state is one of {', '.join(REVIEW_STATES)}, not {state!r}"
            )
        _check_sha(commit_id)
        with self._lock.within(repo):
            target = self._state.repo(repo)
            return self._state.add_review(target, number, user, state, commit_id, body).id

    def dismiss_review(self, repo: str, number: int, review_id: int) -> None:
        """A maintainer dismissed the review: its state becomes DISMISSED."""
        with self._lock.within(repo):
            target = self._state.repo(repo)
            for index, review in enumerate(target.reviews):
                if review.id == review_id and review.number == number:
                    target.reviews[index] = replace(review, state="DISMISSED")
                    self._state.tick()
                    return
            raise KeyError(f"{repo}#{number} has no review {review_id}")

    def reviews(self, repo: str, number: int) -> list[Review]:
        with self._state.lock:
            return self._state.reviews(self._state.repo(repo), number)

    def add_status(
        self,
        repo: str,
        sha: str,
        context: str,
        state: str,
        description: str | None = None,
        *,
        target_url: str | None = None,
        creator: str = "ci-bot",
    ) -> CommitStatus:
        """A commit status as CI would set it."""
        if state not in ("error", "failure", "pending", "success"):
            raise ValueError(
                f"a commit status is error, failure, pending or success, not {state!r}"
            )
        _check_sha(sha)
        with self._lock.within(repo):
            target = self._state.repo(repo)
            if sha not in target.shas:
                raise KeyError(f"{repo} has no commit {sha}")
            return self._state.add_status(
                target,
                sha,
                creator,
                state=state,
                context=context,
                description=description,
                target_url=target_url,
            )

    def add_check_run(
        self,
        repo: str,
        sha: str,
        name: str,
        status: str = "completed",
        conclusion: str | None = "success",
        *,
        details_url: str | None = None,
        app: tuple[int, str] = ACTIONS,
    ) -> int:
        """A check run as an app (GitHub Actions unless told) reports it; returns its id.

        `conclusion` counts only once `status` is completed (GitHub's rule: null till then).
        """
        run_status, run_conclusion = _check_run_state(status, conclusion)
        _check_sha(sha)
        with self._lock.within(repo):
            target = self._state.repo(repo)
            if sha not in target.shas:
                raise KeyError(f"{repo} has no commit {sha}")
            now = self._state.tick()
            run = self._state.add_check_run(
                target,
                sha=sha,
                name=name,
                status=run_status,
                conclusion=run_conclusion,
                started_at=now,
                completed_at=now if run_status == "completed" else None,
                details_url=details_url,
                external_id=None,
                output=(None, None, None),
                app_id=app[0],
                app_slug=app[1],
            )
            return run.id

    def update_check_run(
        self, repo: str, run_id: int, status: str = "completed", conclusion: str | None = "success"
    ) -> None:
        """The run moves on (a re-run with the same id, or its completion)."""
        run_status, run_conclusion = _check_run_state(status, conclusion)
        with self._lock.within(repo):
            target = self._state.repo(repo)
            if run_id not in target.check_runs:
                raise KeyError(f"{repo} has no check run {run_id}")
            now = self._state.tick()
            self._state.change_check_run(
                target,
                run_id,
                status=run_status,
                conclusion=run_conclusion,
                completed_at=now if run_status == "completed" else None,
            )

    def check_runs(self, repo: str, sha: str) -> list[CheckRun]:
        """Every run on the commit, newest first."""
        with self._state.lock:
            return self._state.check_runs(self._state.repo(repo), sha, latest=False)

    def protect(
        self,
        repo: str,
        branch: str = "main",
        *,
        approvals: int = 0,
        checks: Sequence[str] = (),
        strict: bool = False,
        dismiss_stale_reviews: bool = False,
    ) -> None:
        """Protect `branch`: `approvals` approving reviews and the `checks` required."""
        if approvals < 0 or approvals > 6:
            raise ValueError("GitHub requires 0 to 6 approving reviews")
        with self._lock.within(repo):
            target = self._state.repo(repo)
            target.branches.setdefault(branch, fake_sha(target.full_name, branch))
            target.shas.add(target.branches[branch])
            target.protections[branch] = BranchProtection(
                approvals, _labels(checks), strict, dismiss_stale_reviews
            )
            self._state.tick()

    def unprotect(self, repo: str, branch: str = "main") -> None:
        with self._lock.within(repo):
            self._state.repo(repo).protections.pop(branch, None)
            self._state.tick()

    def set_file(self, repo: str, path: str, text: str | None, *, branch: str = "main") -> None:
        """Put a file on a branch (None removes it), as a push changing it would."""
        with self._lock.within(repo):
            files = self._state.repo(repo).files
            if text is None:
                files.pop((branch, path), None)
            else:
                files[(branch, path)] = text
            self._state.tick()

    def forbid_protection_reads(self, repo: str, forbidden: bool = True) -> None:
        """Reading the repository's branch protection answers 403 (no admin rights)."""
        with self._lock.within(repo):
            self._state.repo(repo).protection_readable = not forbidden

    # -- what clients reported (oldest first) --------------------------------

    def statuses(self, repo: str, sha: str) -> list[CommitStatus]:
        with self._state.lock:
            return self._state.statuses(self._state.repo(repo), sha)

    def deployments(self, repo: str) -> list[Deployment]:
        with self._state.lock:
            return list(self._state.repo(repo).deployments.values())

    def deployment_statuses(self, repo: str, deployment_id: int) -> list[DeploymentStatus]:
        with self._state.lock:
            return list(self._state.repo(repo).deployment_statuses[deployment_id])

    def comments(self, repo: str, number: int) -> list[IssueComment]:
        with self._state.lock:
            return self._state.comments(self._state.repo(repo), number)

    def add_comment(self, repo: str, number: int, body: str, *, user: str) -> IssueComment:
        """A comment on the pull request by `user`, as if they had written it on GitHub."""
        with self._state.lock:
            return self._state.add_comment(self._state.repo(repo), number, body, user)

    def edit_comment(self, repo: str, comment_id: int, body: str) -> IssueComment:
        """The comment's new body, as if its author had edited it on GitHub."""
        with self._state.lock:
            return self._state.edit_comment(self._state.repo(repo), comment_id, body)

    def reactions(self, repo: str, comment_id: int) -> list[Reaction]:
        """The comment's reactions, oldest first."""
        with self._state.lock:
            return self._state.reactions(self._state.repo(repo), comment_id)

    def react(self, repo: str, comment_id: int, content: str, *, user: str) -> Reaction:
        """`user` reacts to the comment, as on GitHub."""
        with self._state.lock:
            return self._state.react(self._state.repo(repo), comment_id, user, content)[0]

    def set_permission(self, repo: str, user: str, role: str | None) -> None:
        """`user`'s role on `repo`: admin, maintain, write, triage, read or none (default
        read, as GitHub answers for a user of a public repository); None: no such user (404)."""
        if role is not None and role not in ROLES:
            raise ValueError(f"unknown role {role!r}")
        with self._state.lock:
            self._state.repo(repo).roles[user.lower()] = role

    # -- credentials ---------------------------------------------------------

    def add_token(self, token: str, login: str = ANONYMOUS) -> None:
        """Accept `token` for `login`; from then on every request needs a known token."""
        self._credentials.add_token(token, login)

    def add_app(
        self,
        app_id: int,
        public_key_pem: str,
        installation_id: int,
        *,
        slug: str | None = None,
        permissions: Mapping[str, str] | None = None,
    ) -> None:
        """A GitHub App whose JWTs (RS256, iss=app_id) get installation tokens for `slug[bot]`.

        `permissions`: what the installation was granted (default: all prgen uses, branch
        protection's Administration: read included); its tokens can do only that.
        """
        self._credentials.add_app(
            app_id, public_key_pem, installation_id, f"{slug or f'app-{app_id}'}[bot]", permissions
        )

    # -- requests, hooks and faults ------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of the log of every request so far, oldest first."""
        return self._log.snapshot()

    def count_requests(self, method: str, path_pattern: str) -> int:
        """How many requests had this method (or "*") and a path that fullmatches the regex."""
        pattern = re.compile(path_pattern)
        return sum(
            method.upper() in ("*", request.method) and pattern.fullmatch(request.path) is not None
            for request in self.requests
        )

    def clear_requests(self) -> None:
        """Forget the request and answer logs (the rate-limit counter goes on)."""
        self._log.clear()

    @property
    def answers(self) -> list[Answer]:
        """How each request so far was answered (status, cost), oldest first."""
        return self._log.answers()

    def points_used(self) -> int:
        """Rate-limit points the logged answers cost: every answer but a 304 (or a drop)."""
        return sum(answer.charged for answer in self.answers)

    def not_modified(self) -> int:
        """How many logged answers were 304 Not Modified."""
        return sum(answer.status == 304 for answer in self.answers)

    def set_rate_limit_remaining(self, remaining: int) -> None:
        """Spend points as if other clients had used them: `remaining` are left."""
        with self._counter_lock:
            self._used = self._limit - max(0, min(self._limit, remaining))

    @property
    def in_flight_peak(self) -> int:
        """The most API requests that were being answered at the same time since the last reset."""
        with self._counter_lock:
            return self._in_flight_peak

    def reset_in_flight_peak(self) -> None:
        with self._counter_lock:
            self._in_flight_peak = self._in_flight

    def on_request(self, hook: Hook) -> None:
        """Call `hook` with each request before it is answered (on the server's thread)."""
        self._hooks.append(hook)

    def inject(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int = 500,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
        after: int = 0,
        delay: float = 0.0,
        drop: bool = False,
        page: int | None = None,
        applied: bool = False,
        raw: bytes | None = None,
        rewrite: Callable[[Any], Any] | None = None,
    ) -> None:
        """Answer chosen requests with a fault instead of the real answer.

        The next `times` requests with this method ("*": any) whose path without
        /api/v3 fullmatches `path_pattern`, after `after` such requests went through,
        and whose ?page= is `page` (if given; no page means 1): wait `delay` seconds,
        then close the connection without an answer (`drop`), answer `status`
        with `body` (default {"message": <reason phrase>}) or the bytes `raw` (an HTML
        page), and `headers`, or with status=0 give the real answer, its JSON passed
        through `rewrite` and `headers` put over its own (a Link header of your own).
        The request is carried out after the delay (a write GitHub completes late), or
        with `applied` before it (a write that happened at once, whose answer comes late,
        never or as an error).
        """
        self._faults.add(
            Fault(
                method=method.upper(),
                pattern=re.compile(path_pattern),
                status=status,
                body=body,
                headers=dict(headers or {}),
                times=times,
                after=after,
                delay=delay,
                drop=drop,
                page=page,
                applied=applied,
                raw=raw,
                rewrite=rewrite,
            )
        )

    def clear_faults(self) -> None:
        self._faults.clear()

    # -- answering -----------------------------------------------------------

    def _handle(self, request: RecordedRequest, bad_json: bool) -> Response | None:
        """The answer to one request; None means: close the connection without one."""
        self._log.append(request)
        try:
            for hook in list(self._hooks):
                hook(request)
        except Exception as exc:
            traceback.print_exc()
            return Response(500, error_body(f"fake GitHub: on_request hook failed: {exc!r}"))
        fault = self._faults.take(request)
        done = (
            self._carry_out(request, bad_json, fault)
            if fault is not None and fault.applied
            else None
        )
        if fault is not None:
            if fault.delay:
                self._stopping.wait(fault.delay)
            if fault.drop:
                return None
            if fault.raw is not None:
                return Response(fault.status, None, dict(fault.headers), raw=fault.raw)
            if fault.status:
                return Response(fault.status, fault.response_body(), dict(fault.headers))
        return self._carry_out(request, bad_json, fault) if done is None else done

    def _carry_out(self, request: RecordedRequest, bad_json: bool, fault: Fault | None) -> Response:
        if bad_json:
            return Response(400, error_body("Problems parsing JSON"))
        try:
            try:
                response = self._answer(request)
            except ApiError as exc:
                response = Response(exc.status, error_body(exc.message, exc.errors))
            if fault is not None and fault.passes_through:
                if fault.rewrite is not None:
                    if response.raw is not None and response.body is None:  # a rendered page
                        response.body, response.raw = json.loads(response.raw), None
                    response.body = fault.rewrite(response.body)
                response.headers.update(fault.headers)
            return response
        except Exception as exc:
            traceback.print_exc()
            return Response(500, error_body(f"fake GitHub failed: {exc!r}"))

    def _answer(self, request: RecordedRequest) -> Response:
        authorization = request.headers.get("authorization")
        tokens = re.fullmatch(r"/app/installations/(\d+)/access_tokens", request.path)
        if tokens and request.method == "POST":
            minted = self._credentials.mint(int(tokens[1]), authorization, request.body)
            return Response(201, minted)
        if request.path == "/app" and request.method == "GET":
            app_id, slug = self._credentials.app(authorization)
            assert self._routes is not None
            with self._state.lock:
                return Response(200, self._routes.render.app(app_id, slug))
        login = self._credentials.login(authorization)
        if request.path == "/rate_limit" and request.method == "GET":
            core = self._rate_limit()
            return Response(200, {"resources": {"core": core}, "rate": core})
        assert self._routes is not None
        if request.method != "GET":
            app = self._credentials.installation(authorization)
            grants = self._credentials.grants(authorization)
            with self._state.lock:
                return self._routes.dispatch(request, login, app, grants)
        grants = self._credentials.grants(authorization)
        # Link keeps the query's order; one login's tokens may be granted different things.
        key = (request.path, tuple(request.query.items()), login, grants)
        with self._lock.reading():
            named = re.match(r"/repos/([^/]+/[^/]+)(?:/|$)", request.path)
            repository = named[1] if named else None
            if repository is not None and self._state.find_repo_by_name(repository) is None:
                repository = None
            stamp = self._lock.stamp(repository)
            rendered = self._rendered.get(key)
            if rendered is not None and rendered[0] == stamp:
                return Response(200, None, dict(rendered[2]), raw=rendered[1])
            response = self._routes.dispatch(request, login, grants=grants)
            if response.status == 200 and response.body is not None and response.raw is None:
                raw = json.dumps(response.body).encode()
                self._rendered[key] = (stamp, raw, dict(response.headers))
                return Response(200, None, response.headers, raw=raw)
            return response

    def _rate_headers(self, *, charge: bool) -> dict[str, str]:
        """GitHub's rate-limit headers; `charge` spends a point first (a 304 spends none)."""
        if charge:
            with self._counter_lock:
                self._used += 1
        limits = self._rate_limit()
        return {
            "X-RateLimit-Limit": str(limits["limit"]),
            "X-RateLimit-Remaining": str(limits["remaining"]),
            "X-RateLimit-Reset": str(limits["reset"]),
            "X-RateLimit-Used": str(limits["used"]),
            "X-RateLimit-Resource": "core",
        }

    def _enter(self) -> None:
        with self._counter_lock:
            self._in_flight += 1
            self._in_flight_peak = max(self._in_flight_peak, self._in_flight)
        if self._latency:
            self._stopping.wait(self._latency)

    def _leave(self) -> None:
        with self._counter_lock:
            self._in_flight -= 1

    def _rate_limit(self) -> dict[str, int]:
        with self._counter_lock:
            used = self._used
        remaining = max(0, self._limit - used)
        return {"limit": self._limit, "remaining": remaining, "reset": self._reset, "used": used}


def etag_of(data: bytes, authorization: str | None = None) -> str:
    """A weak entity tag of a body, as GitHub sends them: W/"<hash>".

    As on GitHub, it is specific to the credential that asked (GitHub support: "It's
    currently expected for ETags to be auth token specific"): a GitHub App's new installation
    token gets every answer in full once, a token that stays the same gets 304s.
    """
    digest = hashlib.sha256(data)
    if authorization:
        digest.update(b"\0" + authorization.strip().encode())
    return f'W/"{digest.hexdigest()}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match's weak comparison: any listed tag (or *) equal to `etag`, W/ aside."""
    if not if_none_match:
        return False
    wanted = etag.removeprefix("W/")
    tags = (tag.strip().removeprefix("W/") for tag in if_none_match.split(","))
    return any(tag in ("*", wanted) for tag in tags)


def _check_sha(sha: str | None) -> None:
    if sha is not None and not SHA.fullmatch(sha):
        raise ValueError(f"a commit sha is 40 lower-case hex digits, not {sha!r}")


def _check_run_state(status: str, conclusion: str | None) -> tuple[str, str | None]:
    if status not in CHECK_RUN_STATUSES:
        raise ValueError(f"a check run's status is one of {CHECK_RUN_STATUSES}, not {status!r}")
    if status != "completed":
        return status, None
    if conclusion not in CHECK_RUN_CONCLUSIONS:
        raise ValueError(f"a completed check run's conclusion is one of {CHECK_RUN_CONCLUSIONS}")
    return status, conclusion


def _labels(labels: Sequence[str]) -> tuple[str, ...]:
    if isinstance(labels, str):
        raise TypeError("labels is a sequence of names, not one string")
    return tuple(dict.fromkeys(labels))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # several prgen processes may connect at once

    def __init__(self, address: tuple[str, int], fake: FakeGitHub) -> None:
        super().__init__(address, _Handler)
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_lock:
                self._connections.discard(request)

    def server_close(self) -> None:
        # Clients keep connections alive; end them so no handler thread outlives stop().
        super().server_close()
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like GitHub; every answer has a Content-Length
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms stall

    def do_GET(self) -> None:
        assert isinstance(self.server, _Server)
        fake = self.server.fake
        fake._enter()
        try:
            self._answer(fake)
        finally:
            fake._leave()

    def _answer(self, fake: FakeGitHub) -> None:
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        body: Any = None
        bad_json = False
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError:
                bad_json = True
        request = RecordedRequest(
            method=self.command,
            path=path.removeprefix(API_PREFIX),
            query=dict(parse_qsl(query, keep_blank_values=True)),
            body=body,
            headers={name.lower(): value for name, value in self.headers.items()},
        )
        if path.startswith(API_PREFIX + "/"):
            response = fake._handle(request, bad_json)
        else:
            # As GitHub Enterprise Server: the REST API lives under /api/v3 only, so a client
            # that dropped the prefix of its base URL fails here as it would there.
            fake._log.append(request)
            response = Response(404, error_body("Not Found (the API is under /api/v3)"))
        if response is None:
            fake._log.answered(Answer(request, None, charged=False))
            self.close_connection = True
            return
        if response.raw is not None:
            data = response.raw
        else:
            data = b"" if response.body is None else json.dumps(response.body).encode()
        status = response.status
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": str(len(data)),
            "X-GitHub-Media-Type": "github.v3; format=json",
        }
        if request.method == "GET" and status == 200:
            etag = etag_of(data, request.headers.get("authorization"))
            headers.update({"ETag": etag, **CACHE_HEADERS})
            if _matches(request.headers.get("if-none-match"), etag):
                # Not Modified: no body, and free (GitHub does not count it against the limit).
                status, data = 304, b""
                del headers["Content-Type"], headers["Content-Length"]
        charged = status != 304
        headers.update(fake._rate_headers(charge=charged))
        headers.update(response.headers)
        fake._log.answered(Answer(request, status, charged))
        try:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the client gave up waiting (a timeout test)
            self.close_connection = True

    do_POST = do_PATCH = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass
