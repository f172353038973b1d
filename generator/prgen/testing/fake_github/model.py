"""What the fake GitHub knows: repositories, pull requests and what clients reported on them.

One re-entrant lock (`State.lock`) guards everything; the server's public methods
and the HTTP routes hold it while they read or change state. Records are frozen
dataclasses, replaced on every change, so a record handed out is a snapshot.

Time is a deterministic clock: it starts at 2026-01-01T00:00:00Z and moves one
second forward on every change, so the same steps always give the same output.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

START = datetime(2026, 1, 1, tzinfo=UTC)
SHA = re.compile(r"[0-9a-f]{40}")


class ApiError(Exception):
    """An error answer, sent with a GitHub-shaped body {"message", "errors"?, "documentation_url"}."""

    def __init__(
        self, status: int, message: str, errors: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.errors = errors


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def invalid(resource: str, field_name: str, message: str) -> ApiError:
    error = {"resource": resource, "code": "custom", "field": field_name, "message": message}
    return ApiError(422, "Validation Failed", [error])


def stable_id(kind: str, name: str) -> int:
    """An id for things known only by name (users, fork repositories, labels)."""
    return int(hashlib.sha256(f"{kind}:{name}".encode()).hexdigest()[:7], 16)


def fake_sha(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:40]


@dataclass(frozen=True)
class PullState:
    repo: str
    number: int
    id: int
    issue_id: int
    title: str
    body: str | None
    author: str
    author_association: str
    head_branch: str
    head_sha: str
    head_repo: str | None  # None: the fork was deleted
    base_branch: str
    labels: tuple[str, ...]
    draft: bool
    state: str  # "open" or "closed"
    merged: bool
    created_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None
    merged_at: datetime | None = None
    # Asked for a review and not yet answered: user logins and team slugs.
    requested_reviewers: tuple[str, ...] = ()
    requested_teams: tuple[str, ...] = ()


@dataclass(frozen=True)
class CommitStatus:
    id: int
    sha: str
    state: str
    context: str
    description: str | None
    target_url: str | None
    creator: str
    created_at: datetime


@dataclass(frozen=True)
class Review:
    id: int
    number: int
    user: str
    state: str  # APPROVED, CHANGES_REQUESTED, COMMENTED, DISMISSED, PENDING
    commit_id: str
    body: str
    submitted_at: datetime | None  # None while PENDING, as on GitHub


@dataclass(frozen=True)
class CheckRun:
    id: int
    sha: str
    name: str
    status: str  # queued, in_progress, completed, waiting, requested, pending
    conclusion: str | None  # None until completed
    started_at: datetime | None
    completed_at: datetime | None
    details_url: str | None
    external_id: str | None
    output: tuple[str | None, str | None, str | None]  # title, summary, text
    app_id: int
    app_slug: str


@dataclass(frozen=True)
class BranchProtection:
    approvals: int  # 0: no required reviews
    checks: tuple[str, ...]  # required status checks (contexts and check run names)
    strict: bool
    dismiss_stale_reviews: bool = False
    require_code_owner_reviews: bool = False


@dataclass(frozen=True)
class Deployment:
    id: int
    ref: str
    sha: str
    task: str
    environment: str
    original_environment: str
    description: str | None
    payload: Any
    auto_merge: bool
    required_contexts: tuple[str, ...] | None
    transient_environment: bool
    production_environment: bool
    creator: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DeploymentStatus:
    id: int
    deployment_id: int
    state: str
    description: str
    environment: str
    environment_url: str
    log_url: str
    creator: str
    created_at: datetime


@dataclass(frozen=True)
class IssueComment:
    id: int
    number: int
    body: str
    user: str
    created_at: datetime
    updated_at: datetime


REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
# A collaborator's role, as role_name says it, and the permission GitHub reports for it.
ROLES = {
    "admin": "admin",
    "maintain": "write",
    "write": "write",
    "triage": "read",
    "read": "read",
    "none": "none",
}


@dataclass(frozen=True)
class Reaction:
    id: int
    comment_id: int
    user: str
    content: str
    created_at: datetime


@dataclass
class Repo:
    full_name: str
    id: int
    created_at: datetime
    branches: dict[str, str]  # branch name -> head sha
    shas: set[str]  # every commit pushed, for statuses and deployments
    next_number: int = 1
    pulls: dict[int, PullState] = field(default_factory=dict)
    statuses: list[CommitStatus] = field(default_factory=list)
    deployments: dict[int, Deployment] = field(default_factory=dict)
    deployment_statuses: dict[int, list[DeploymentStatus]] = field(default_factory=dict)
    comments: dict[int, IssueComment] = field(default_factory=dict)
    reviews: list[Review] = field(default_factory=list)
    check_runs: dict[int, CheckRun] = field(default_factory=dict)
    protections: dict[str, BranchProtection] = field(default_factory=dict)  # by branch name
    protection_readable: bool = True  # False: reading a protection is 403
    # login (lower case) -> role (ROLES); None: no such user (404). Others read: "read".
    roles: dict[str, str | None] = field(default_factory=dict)
    reactions: list[Reaction] = field(default_factory=list)  # oldest first
    # (branch, path) -> the file's text on that branch: what the contents API serves.
    files: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def owner(self) -> str:
        return self.full_name.split("/")[0]


class State:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.now = START
        self._repos: dict[str, Repo] = {}
        self._next_id = 1000
        self._shas = 0

    def tick(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def new_sha(self, repo: str, number: int) -> str:
        self._shas += 1
        return fake_sha(repo, number, self._shas)

    # -- repositories --------------------------------------------------------

    def add_repo(self, full_name: str) -> Repo:
        owner, slash, name = full_name.partition("/")
        if not (owner and slash and name) or "/" in name:
            raise ValueError(f"repository names look like owner/name, not {full_name!r}")
        if full_name.lower() in self._repos:
            raise ValueError(f"{full_name} exists already")
        main = fake_sha(full_name, "main")
        repo = Repo(full_name, self.new_id(), self.tick(), {"main": main}, {main})
        self._repos[full_name.lower()] = repo
        return repo

    def repo(self, full_name: str) -> Repo:
        """For the Python API: a KeyError names the mistake."""
        try:
            return self._repos[full_name.lower()]
        except KeyError:
            raise KeyError(f"unknown repository {full_name!r}: call add_repo first") from None

    def find_repo(self, owner: str, name: str) -> Repo:
        """For the HTTP API: 404 like GitHub (names are case-insensitive there too)."""
        repo = self._repos.get(f"{owner}/{name}".lower())
        if repo is None:
            raise not_found()
        return repo

    def find_repo_by_id(self, repo_id: int) -> Repo:
        """For /repositories/{id}/... paths, as GitHub's Link headers may use: 404 if none."""
        for repo in self._repos.values():
            if repo.id == repo_id:
                return repo
        raise not_found()

    def find_repo_by_name(self, full_name: str) -> Repo | None:
        return self._repos.get(full_name.lower())

    def resolve(self, repo: Repo, ref: str) -> str | None:
        """The commit a branch name or a full sha stands for."""
        if ref in repo.branches:
            return repo.branches[ref]
        ref = ref.removeprefix("refs/heads/")
        if ref in repo.branches:
            return repo.branches[ref]
        return ref if SHA.fullmatch(ref) and ref in repo.shas else None

    # -- pull requests -------------------------------------------------------

    def open_pull(
        self, repo: Repo, number: int | None, head_sha: str | None, **fields: Any
    ) -> PullState:
        if number is None:
            number = repo.next_number
        elif number in repo.pulls or number < 1:
            raise ValueError(f"{repo.full_name}#{number} is taken or not a valid number")
        repo.next_number = max(repo.next_number, number + 1)
        now = self.tick()
        pull = PullState(
            repo=repo.full_name,
            number=number,
            id=self.new_id(),
            issue_id=self.new_id(),
            created_at=now,
            updated_at=now,
            head_sha=head_sha or self.new_sha(repo.full_name, number),
            state="open",
            merged=False,
            **fields,
        )
        repo.branches.setdefault(pull.base_branch, fake_sha(repo.full_name, pull.base_branch))
        repo.shas.add(repo.branches[pull.base_branch])
        self._store(repo, pull)
        return pull

    def pull(self, repo: Repo, number: int) -> PullState:
        try:
            return repo.pulls[number]
        except KeyError:
            raise KeyError(f"{repo.full_name} has no pull request #{number}") from None

    def change_pull(self, repo: Repo, number: int, **changes: Any) -> PullState:
        pull = replace(self.pull(repo, number), updated_at=self.tick(), **changes)
        self._store(repo, pull)
        return pull

    def close_pull(self, repo: Repo, number: int, merged: bool) -> None:
        now = self.tick()
        closed = replace(
            self.pull(repo, number),
            state="closed",
            merged=merged,
            updated_at=now,
            closed_at=now,
            merged_at=now if merged else None,
        )
        self._store(repo, closed)

    def _store(self, repo: Repo, pull: PullState) -> None:
        repo.pulls[pull.number] = pull
        repo.shas.add(pull.head_sha)
        if pull.head_repo is not None and pull.head_repo.lower() == repo.full_name.lower():
            repo.branches[pull.head_branch] = pull.head_sha

    # -- commit statuses -----------------------------------------------------

    def add_status(self, repo: Repo, sha: str, creator: str, **fields: Any) -> CommitStatus:
        status = CommitStatus(self.new_id(), sha, creator=creator, created_at=self.tick(), **fields)
        repo.statuses.append(status)
        return status

    def statuses(self, repo: Repo, sha: str) -> list[CommitStatus]:
        """Oldest first."""
        return [status for status in repo.statuses if status.sha == sha]

    def combined(self, repo: Repo, sha: str) -> tuple[str, list[CommitStatus]]:
        """GitHub's combined state and the latest status of each context, newest first."""
        latest: dict[str, CommitStatus] = {}
        for status in self.statuses(repo, sha):
            latest[status.context] = status
        current = sorted(latest.values(), key=lambda s: s.id, reverse=True)
        states = {status.state for status in current}
        if states & {"error", "failure"}:
            return "failure", current
        if not current or "pending" in states:
            return "pending", current
        return "success", current

    # -- deployments ---------------------------------------------------------

    def add_deployment(self, repo: Repo, creator: str, **fields: Any) -> Deployment:
        now = self.tick()
        deployment = Deployment(
            self.new_id(), creator=creator, created_at=now, updated_at=now, **fields
        )
        repo.deployments[deployment.id] = deployment
        repo.deployment_statuses[deployment.id] = []
        return deployment

    def find_deployment(self, repo: Repo, deployment_id: int) -> Deployment:
        if deployment_id not in repo.deployments:
            raise not_found()
        return repo.deployments[deployment_id]

    def add_deployment_status(
        self, repo: Repo, deployment: Deployment, creator: str, auto_inactive: bool, **fields: Any
    ) -> DeploymentStatus:
        now = self.tick()
        status = DeploymentStatus(
            self.new_id(), deployment.id, creator=creator, created_at=now, **fields
        )
        repo.deployment_statuses[deployment.id].append(status)
        repo.deployments[deployment.id] = replace(
            deployment, environment=status.environment, updated_at=now
        )
        if status.state == "success" and auto_inactive:
            self._retire_older(repo, repo.deployments[deployment.id], creator)
        return status

    def _retire_older(self, repo: Repo, current: Deployment, creator: str) -> None:
        # GitHub's auto_inactive: earlier successful deployments to the same
        # environment that are neither transient nor production become inactive.
        for older in list(repo.deployments.values()):
            history = repo.deployment_statuses[older.id]
            if (
                older.id < current.id
                and older.environment == current.environment
                and not older.transient_environment
                and not older.production_environment
                and history
                and history[-1].state == "success"
            ):
                last = history[-1]
                inactive = replace(
                    last,
                    id=self.new_id(),
                    state="inactive",
                    description="",
                    creator=creator,
                    created_at=self.now,
                )
                history.append(inactive)

    # -- issue comments ------------------------------------------------------

    def add_comment(self, repo: Repo, number: int, body: str, user: str) -> IssueComment:
        if number not in repo.pulls:
            raise not_found()
        now = self.tick()
        comment = IssueComment(self.new_id(), number, body, user, now, now)
        repo.comments[comment.id] = comment
        # As on GitHub, a new comment bumps the pull request's updated_at.
        repo.pulls[number] = replace(repo.pulls[number], updated_at=now)
        return comment

    def find_comment(self, repo: Repo, comment_id: int) -> IssueComment:
        if comment_id not in repo.comments:
            raise not_found()
        return repo.comments[comment_id]

    def edit_comment(self, repo: Repo, comment_id: int, body: str) -> IssueComment:
        comment = replace(self.find_comment(repo, comment_id), body=body, updated_at=self.tick())
        repo.comments[comment_id] = comment
        return comment

    def comments(self, repo: Repo, number: int) -> list[IssueComment]:
        """Oldest first."""
        return [comment for comment in repo.comments.values() if comment.number == number]

    def react(self, repo: Repo, comment_id: int, user: str, content: str) -> tuple[Reaction, bool]:
        """`user`'s reaction `content` on the comment, and whether it is new: GitHub keeps one
        of each content per user and answers the same one again (200, not 201)."""
        self.find_comment(repo, comment_id)
        for reaction in repo.reactions:
            if (reaction.comment_id, reaction.user.lower(), reaction.content) == (
                comment_id,
                user.lower(),
                content,
            ):
                return reaction, False
        reaction = Reaction(self.new_id(), comment_id, user, content, self.tick())
        repo.reactions.append(reaction)
        return reaction, True

    def reactions(self, repo: Repo, comment_id: int) -> list[Reaction]:
        """Oldest first."""
        return [reaction for reaction in repo.reactions if reaction.comment_id == comment_id]

    # -- reviews -------------------------------------------------------------

    def add_review(
        self, repo: Repo, number: int, user: str, state: str, commit_id: str | None, body: str
    ) -> Review:
        pull = self.pull(repo, number)
        now = self.tick()
        review = Review(
            self.new_id(),
            number,
            user,
            state,
            commit_id or pull.head_sha,
            body,
            None if state == "PENDING" else now,
        )
        repo.reviews.append(review)
        if state != "PENDING":
            # As on GitHub: a submitted review answers that user's review request.
            remaining = tuple(login for login in pull.requested_reviewers if login != user)
            repo.pulls[number] = replace(pull, requested_reviewers=remaining, updated_at=now)
        return review

    def reviews(self, repo: Repo, number: int) -> list[Review]:
        """Oldest first."""
        return [review for review in repo.reviews if review.number == number]

    # -- check runs ----------------------------------------------------------

    def add_check_run(self, repo: Repo, **fields: Any) -> CheckRun:
        """A run with `fields` timed by the caller (tick() first: the run is a change)."""
        run = CheckRun(self.new_id(), **fields)
        repo.check_runs[run.id] = run
        return run

    def find_check_run(self, repo: Repo, run_id: int) -> CheckRun:
        if run_id not in repo.check_runs:
            raise not_found()
        return repo.check_runs[run_id]

    def change_check_run(self, repo: Repo, run_id: int, **changes: Any) -> CheckRun:
        """The caller ticks first, as for add_check_run."""
        run = replace(self.find_check_run(repo, run_id), **changes)
        repo.check_runs[run_id] = run
        return run

    def check_runs(self, repo: Repo, sha: str, latest: bool) -> list[CheckRun]:
        """Newest first; `latest`: only the newest run of each name."""
        runs = sorted(
            (run for run in repo.check_runs.values() if run.sha == sha),
            key=lambda run: run.id,
            reverse=True,
        )
        if not latest:
            return runs
        seen: set[str] = set()
        newest = []
        for run in runs:
            if run.name not in seen:
                seen.add(run.name)
                newest.append(run)
        return newest
