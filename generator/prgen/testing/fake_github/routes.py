"""The REST routes: pull requests, reviews, commit statuses, check runs, branch protection,
deployments and issue comments.

Each handler gets the request (path without /api/v3) and the caller's login and
returns a Response or raises ApiError. The caller holds the state lock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode

from prgen.testing.fake_github.faults import RecordedRequest
from prgen.testing.fake_github.model import (
    REACTIONS,
    SHA,
    ApiError,
    CheckRun,
    PullState,
    Repo,
    State,
    invalid,
    not_found,
)
from prgen.testing.fake_github.payloads import Json, Renderer

T = TypeVar("T")
COMMIT_STATES = ("error", "failure", "pending", "success")
DEPLOYMENT_STATES = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
DESCRIPTION_LIMIT = 140
COMMENT_LIMIT = 65536
# What a check run's writer may set; GitHub keeps waiting/requested/pending for Actions and
# stale for itself.
CHECK_STATUSES = ("queued", "in_progress", "completed")
CHECK_CONCLUSIONS = (
    "action_required",
    "cancelled",
    "failure",
    "neutral",
    "success",
    "skipped",
    "timed_out",
)
OUTPUT_LIMIT = 65535
NOT_AN_APP = "You must authenticate via a GitHub App."


@dataclass
class Response:
    status: int
    body: Any  # JSON; None sends an empty body
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # sent instead of `body`, as it is


@dataclass(frozen=True)
class Call:
    request: RecordedRequest
    login: str
    args: tuple[str, ...]  # the route's groups, percent-decoded
    app: tuple[int, str] | None = None  # (id, slug) when an installation token sent it
    grants: frozenset[str] | None = None  # an installation token's permissions (names)

    @property
    def query(self) -> dict[str, str]:
        return self.request.query

    def fields(self) -> dict[str, Any]:
        """The JSON object a write sends."""
        body = self.request.body
        if body is None:
            return {}
        if not isinstance(body, dict):
            raise ApiError(400, "Problems parsing JSON")
        return body


def text(
    body: dict[str, Any],
    key: str,
    resource: str,
    *,
    required: bool = False,
    limit: int | None = None,
) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise invalid(resource, key, f"{key} wasn't supplied")
        return None
    if not isinstance(value, str):
        raise invalid(resource, key, f"{key} is not a string")
    if limit is not None and len(value) > limit:
        raise invalid(resource, key, f"{key} is too long (maximum is {limit} characters)")
    return value


def flag(body: dict[str, Any], key: str, resource: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise invalid(resource, key, f"{key} is not a boolean")
    return value


def number(value: str | None, default: int) -> int:
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else default


Handler = Callable[[Call], Response]


class Routes:
    def __init__(self, state: State, render: Renderer) -> None:
        self.state = state
        self.render = render
        repo = r"/repos/([^/]+)/([^/]+)"
        table: list[tuple[str, str, Handler]] = [
            ("GET", "/user", self.get_user),
            ("GET", repo, self.get_repo),
            ("GET", rf"{repo}/pulls", self.list_pulls),
            ("GET", rf"{repo}/pulls/(\d+)", self.get_pull),
            ("GET", rf"{repo}/pulls/(\d+)/reviews", self.list_reviews),
            ("GET", rf"{repo}/issues/(\d+)", self.get_issue),
            ("GET", rf"{repo}/issues/(\d+)/comments", self.list_comments),
            ("POST", rf"{repo}/issues/(\d+)/comments", self.create_comment),
            ("GET", rf"{repo}/issues/comments", self.list_repo_comments),
            ("GET", rf"{repo}/issues/comments/(\d+)/reactions", self.list_reactions),
            ("POST", rf"{repo}/issues/comments/(\d+)/reactions", self.create_reaction),
            ("GET", rf"{repo}/collaborators/([^/]+)/permission", self.get_permission),
            ("GET", rf"{repo}/issues/comments/(\d+)", self.get_comment),
            ("PATCH", rf"{repo}/issues/comments/(\d+)", self.edit_comment),
            ("DELETE", rf"{repo}/issues/comments/(\d+)", self.delete_comment),
            ("POST", rf"{repo}/statuses/([^/]+)", self.create_status),
            # A ref may be a branch name with slashes in it.
            ("GET", rf"{repo}/statuses/(.+)", self.list_statuses),
            ("GET", rf"{repo}/commits/(.+)/statuses", self.list_statuses),
            ("GET", rf"{repo}/commits/(.+)/status", self.combined_status),
            ("GET", rf"{repo}/commits/(.+)/check-runs", self.list_check_runs),
            ("POST", rf"{repo}/check-runs", self.create_check_run),
            ("GET", rf"{repo}/check-runs/(\d+)", self.get_check_run),
            ("PATCH", rf"{repo}/check-runs/(\d+)", self.update_check_run),
            ("GET", rf"{repo}/contents/(.+)", self.get_contents),
            ("GET", rf"{repo}/branches/(.+)/protection", self.get_protection),
            ("GET", rf"{repo}/branches/(.+)", self.get_branch),
            ("GET", rf"{repo}/deployments", self.list_deployments),
            ("POST", rf"{repo}/deployments", self.create_deployment),
            ("GET", rf"{repo}/deployments/(\d+)", self.get_deployment),
            ("GET", rf"{repo}/deployments/(\d+)/statuses", self.list_deployment_statuses),
            ("POST", rf"{repo}/deployments/(\d+)/statuses", self.create_deployment_status),
            ("GET", rf"{repo}/deployments/(\d+)/statuses/(\d+)", self.get_deployment_status),
        ]
        self._table = [(method, re.compile(path), handler) for method, path, handler in table]

    def dispatch(
        self,
        request: RecordedRequest,
        login: str,
        app: tuple[int, str] | None = None,
        grants: frozenset[str] | None = None,
    ) -> Response:
        path = request.path
        by_id = re.fullmatch(r"/repositories/(\d+)(/.*)?", path)
        if by_id:  # the same routes; links keep naming the repository by id, as GitHub's do
            path = f"/repos/{self.state.find_repo_by_id(int(by_id[1])).full_name}{by_id[2] or ''}"
        for method, pattern, handler in self._table:
            match = pattern.fullmatch(path)
            if match and method == request.method:
                args = tuple(map(unquote, match.groups()))
                return handler(Call(request, login, args, app, grants))
        raise not_found()

    # -- helpers -------------------------------------------------------------

    def _repo(self, call: Call) -> Repo:
        return self.state.find_repo(call.args[0], call.args[1])

    def _pull(self, repo: Repo, value: str) -> PullState:
        pull = repo.pulls.get(int(value))
        if pull is None:
            raise not_found()
        return pull

    def _sha(self, repo: Repo, ref: str) -> str:
        sha = self.state.resolve(repo, ref)
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {ref}")
        return sha

    @staticmethod
    def _page_size(call: Call, default: int) -> int:
        return min(number(call.query.get("per_page"), default), 100)

    def _window(self, call: Call, per_page: int) -> slice:
        """The items of ?page= at `per_page` a page."""
        page = call.request.page
        return slice((page - 1) * per_page, page * per_page)

    def _page(
        self, call: Call, items: Sequence[T], render: Callable[[T], Json], per_page: int = 30
    ) -> Response:
        """One page of `items` with a Link header like GitHub's (prev, next, last, first)."""
        per_page = self._page_size(call, per_page)
        chunk = items[self._window(call, per_page)]
        return Response(
            200, [render(item) for item in chunk], self._links(call, len(items), per_page)
        )

    def _links(self, call: Call, total: int, per_page: int) -> dict[str, str]:
        """GitHub's Link header for page ?page= of `total` items at `per_page` a page."""
        page = call.request.page
        last = max(1, -(-total // per_page))

        def link(to: int, rel: str) -> str:
            params = {**call.query, "page": str(to)}
            return f'<{self.render.api}{call.request.path}?{urlencode(params)}>; rel="{rel}"'

        links = []
        if page > 1:
            links.append(link(min(page - 1, last), "prev"))
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links.append(link(1, "first"))
        return {"Link": ", ".join(links)} if links else {}

    # -- users and repositories ----------------------------------------------

    def get_user(self, call: Call) -> Response:
        if call.login.endswith("[bot]"):
            # As GitHub answers an installation token: an App's bot is no user.
            raise ApiError(403, "Resource not accessible by integration")
        return Response(200, self.render.user(call.login))

    def get_repo(self, call: Call) -> Response:
        return Response(200, self.render.repo(self._repo(call).full_name, full=True))

    def get_contents(self, call: Call) -> Response:
        """A file of a branch (?ref=, else the default branch, main), base64 as GitHub sends
        it; a folder or a missing file is 404 here."""
        repo = self._repo(call)
        branch = call.query.get("ref") or "main"
        text = repo.files.get((branch, call.args[2]))
        if text is None:
            raise not_found()
        return Response(200, self.render.file(repo.full_name, call.args[2], branch, text))

    # -- pull requests -------------------------------------------------------

    def list_pulls(self, call: Call) -> Response:
        repo = self._repo(call)
        query = call.query
        state = query.get("state", "open")
        sort = query.get("sort", "created")
        direction = query.get("direction", "desc")
        if state not in ("open", "closed", "all"):
            raise invalid("PullRequest", "state", f"state {state!r} is not open, closed or all")
        if sort not in ("created", "updated", "popularity", "long-running"):
            raise invalid("PullRequest", "sort", f"sort {sort!r} is not supported")
        if direction not in ("asc", "desc"):
            raise invalid("PullRequest", "direction", f"direction {direction!r} is not asc/desc")

        def wanted(pull: PullState) -> bool:
            head_owner = pull.head_repo.split("/")[0] if pull.head_repo else pull.author
            head = query.get("head")
            return (
                (state == "all" or pull.state == state)
                and query.get("base", pull.base_branch) == pull.base_branch
                and head in (None, head_owner, f"{head_owner}:{pull.head_branch}")
            )

        def key(pull: PullState) -> tuple[datetime, int]:
            return (pull.updated_at if sort == "updated" else pull.created_at, pull.number)

        pulls = sorted(filter(wanted, repo.pulls.values()), key=key, reverse=direction == "desc")
        return self._page(call, pulls, self.render.pull)

    def get_pull(self, call: Call) -> Response:
        return Response(
            200, self.render.pull(self._pull(self._repo(call), call.args[2]), full=True)
        )

    def get_issue(self, call: Call) -> Response:
        return Response(200, self.render.issue(self._pull(self._repo(call), call.args[2])))

    def list_reviews(self, call: Call) -> Response:
        repo = self._repo(call)
        pull = self._pull(repo, call.args[2])
        reviews = self.state.reviews(repo, pull.number)  # oldest first, as on GitHub
        return self._page(call, reviews, lambda review: self.render.review(repo, review))

    # -- issue comments ------------------------------------------------------

    def list_comments(self, call: Call) -> Response:
        repo = self._repo(call)
        pull = self._pull(repo, call.args[2])
        comments = self.state.comments(repo, pull.number)
        if "since" in call.query:
            try:
                since = datetime.fromisoformat(call.query["since"])
            except ValueError:
                raise invalid("IssueComment", "since", "since is not an ISO 8601 time") from None
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            comments = [comment for comment in comments if comment.updated_at >= since]
        return self._page(call, comments, lambda comment: self.render.comment(repo, comment))

    def list_repo_comments(self, call: Call) -> Response:
        """Every issue and PR comment of the repository: ?sort=created|updated (default
        created), ?direction=asc|desc (default asc; ignored without sort, as GitHub says),
        ?since= (updated at or after)."""
        repo = self._repo(call)
        query = call.query
        sort = query.get("sort", "created")
        direction = query.get("direction", "asc") if "sort" in query else "asc"
        if sort not in ("created", "updated"):
            raise invalid("IssueComment", "sort", f"sort {sort!r} is not created or updated")
        if direction not in ("asc", "desc"):
            raise invalid("IssueComment", "direction", f"direction {direction!r} is not asc/desc")
        comments = list(repo.comments.values())
        if "since" in query:
            since = _since(query["since"])
            comments = [comment for comment in comments if comment.updated_at >= since]
        comments.sort(
            key=lambda c: (c.updated_at if sort == "updated" else c.created_at, c.id),
            reverse=direction == "desc",
        )
        return self._page(call, comments, lambda comment: self.render.comment(repo, comment))

    def list_reactions(self, call: Call) -> Response:
        repo = self._repo(call)
        comment = self.state.find_comment(repo, int(call.args[2]))
        reactions = self.state.reactions(repo, comment.id)
        content = call.query.get("content")
        if content is not None:
            if content not in REACTIONS:
                raise invalid("Reaction", "content", f"content {content!r} is not a reaction")
            reactions = [reaction for reaction in reactions if reaction.content == content]
        return self._page(call, reactions, self.render.reaction)

    def create_reaction(self, call: Call) -> Response:
        repo = self._repo(call)
        content = text(call.fields(), "content", "Reaction", required=True)
        if content not in REACTIONS:
            raise invalid("Reaction", "content", f"content {content!r} is not a reaction")
        reaction, new = self.state.react(repo, int(call.args[2]), call.login, content)
        return Response(201 if new else 200, self.render.reaction(reaction))

    def get_permission(self, call: Call) -> Response:
        repo = self._repo(call)
        login = call.args[2]
        role = repo.roles.get(login.lower(), "read")
        if role is None:
            raise not_found()
        return Response(200, self.render.permission(login, role))

    def create_comment(self, call: Call) -> Response:
        repo = self._repo(call)
        body = text(call.fields(), "body", "IssueComment", required=True, limit=COMMENT_LIMIT)
        assert body is not None
        comment = self.state.add_comment(repo, int(call.args[2]), body, call.login)
        return Response(201, self.render.comment(repo, comment))

    def get_comment(self, call: Call) -> Response:
        repo = self._repo(call)
        return Response(
            200, self.render.comment(repo, self.state.find_comment(repo, int(call.args[2])))
        )

    def edit_comment(self, call: Call) -> Response:
        repo = self._repo(call)
        body = text(call.fields(), "body", "IssueComment", required=True, limit=COMMENT_LIMIT)
        assert body is not None
        comment = self.state.edit_comment(repo, int(call.args[2]), body)
        return Response(200, self.render.comment(repo, comment))

    def delete_comment(self, call: Call) -> Response:
        repo = self._repo(call)
        del repo.comments[self.state.find_comment(repo, int(call.args[2])).id]
        self.state.tick()
        return Response(204, None)

    # -- commit statuses -----------------------------------------------------

    def create_status(self, call: Call) -> Response:
        repo = self._repo(call)
        sha = call.args[2]
        if not SHA.fullmatch(sha) or sha not in repo.shas:
            raise ApiError(422, f"No commit found for SHA: {sha}")
        body = call.fields()
        state = text(body, "state", "Status", required=True)
        if state not in COMMIT_STATES:
            raise invalid("Status", "state", "state is not included in the list")
        status = self.state.add_status(
            repo,
            sha,
            call.login,
            state=state,
            context=text(body, "context", "Status") or "default",
            description=text(body, "description", "Status", limit=DESCRIPTION_LIMIT),
            target_url=text(body, "target_url", "Status"),
        )
        return Response(201, self.render.status(repo, status))

    def list_statuses(self, call: Call) -> Response:
        repo = self._repo(call)
        statuses = self.state.statuses(repo, self._sha(repo, call.args[2]))[::-1]
        return self._page(call, statuses, lambda status: self.render.status(repo, status))

    def combined_status(self, call: Call) -> Response:
        # As GitHub: the latest status of each context, one page of them (30 unless
        # per_page says otherwise), with the number of contexts in total_count.
        repo = self._repo(call)
        window = self._window(call, self._page_size(call, 30))
        return Response(200, self.render.combined(repo, self._sha(repo, call.args[2]), window))

    # -- deployments ---------------------------------------------------------

    def list_deployments(self, call: Call) -> Response:
        repo = self._repo(call)
        filters = {
            key: call.query[key]
            for key in ("sha", "ref", "task", "environment")
            if key in call.query
        }
        found = [
            deployment
            for deployment in reversed(repo.deployments.values())
            if all(getattr(deployment, key) == value for key, value in filters.items())
        ]
        return self._page(call, found, lambda deployment: self.render.deployment(repo, deployment))

    def create_deployment(self, call: Call) -> Response:
        repo = self._repo(call)
        body = call.fields()
        ref = text(body, "ref", "Deployment", required=True)
        assert ref is not None
        sha = self.state.resolve(repo, ref)
        if sha is None:
            raise ApiError(422, f"No ref found for: {ref}")
        contexts = body.get("required_contexts")
        if contexts is not None and not (
            isinstance(contexts, list) and all(isinstance(c, str) for c in contexts)
        ):
            raise invalid("Deployment", "required_contexts", "required_contexts is not a list")
        self._check_contexts(repo, ref, sha, contexts)
        environment = text(body, "environment", "Deployment") or "production"
        payload = body.get("payload", {})
        if not isinstance(payload, dict | str):
            raise invalid("Deployment", "payload", "payload is not an object or a string")
        deployment = self.state.add_deployment(
            repo,
            call.login,
            ref=ref,
            sha=sha,
            task=text(body, "task", "Deployment") or "deploy",
            environment=environment,
            original_environment=environment,
            description=text(body, "description", "Deployment") or "",
            payload=payload,
            auto_merge=flag(body, "auto_merge", "Deployment", True),
            required_contexts=None if contexts is None else tuple(contexts),
            transient_environment=flag(body, "transient_environment", "Deployment", False),
            production_environment=flag(
                body, "production_environment", "Deployment", environment == "production"
            ),
        )
        return Response(201, self.render.deployment(repo, deployment))

    def _check_contexts(self, repo: Repo, ref: str, sha: str, contexts: list[str] | None) -> None:
        # As on GitHub: without required_contexts every context on the commit must
        # be green; [] skips the check.
        _, latest = self.state.combined(repo, sha)
        states = {status.context: status.state for status in latest}
        required = sorted(states) if contexts is None else contexts
        failing = [context for context in required if states.get(context) != "success"]
        if failing:
            raise ApiError(
                409,
                f"Conflict: Commit status checks failed for {ref}.",
                [
                    {
                        "contexts": [
                            {"context": c, "state": states.get(c, "missing")} for c in failing
                        ],
                        "resource": "Deployment",
                        "field": "required_contexts",
                        "code": "invalid",
                    }
                ],
            )

    def get_deployment(self, call: Call) -> Response:
        repo = self._repo(call)
        deployment = self.state.find_deployment(repo, int(call.args[2]))
        return Response(200, self.render.deployment(repo, deployment))

    def list_deployment_statuses(self, call: Call) -> Response:
        repo = self._repo(call)
        deployment = self.state.find_deployment(repo, int(call.args[2]))
        statuses = repo.deployment_statuses[deployment.id][::-1]
        return self._page(
            call, statuses, lambda status: self.render.deployment_status(repo, status)
        )

    def create_deployment_status(self, call: Call) -> Response:
        repo = self._repo(call)
        deployment = self.state.find_deployment(repo, int(call.args[2]))
        body = call.fields()
        state = text(body, "state", "DeploymentStatus", required=True)
        if state not in DEPLOYMENT_STATES:
            raise invalid("DeploymentStatus", "state", "state is not included in the list")
        log_url = text(body, "log_url", "DeploymentStatus") or text(
            body, "target_url", "DeploymentStatus"
        )
        status = self.state.add_deployment_status(
            repo,
            deployment,
            call.login,
            flag(body, "auto_inactive", "DeploymentStatus", True),
            state=state,
            description=text(body, "description", "DeploymentStatus", limit=DESCRIPTION_LIMIT)
            or "",
            environment=text(body, "environment", "DeploymentStatus") or deployment.environment,
            environment_url=text(body, "environment_url", "DeploymentStatus") or "",
            log_url=log_url or "",
        )
        return Response(201, self.render.deployment_status(repo, status))

    def get_deployment_status(self, call: Call) -> Response:
        repo = self._repo(call)
        deployment = self.state.find_deployment(repo, int(call.args[2]))
        for status in repo.deployment_statuses[deployment.id]:
            if status.id == int(call.args[3]):
                return Response(200, self.render.deployment_status(repo, status))
        raise not_found()

    # -- check runs ----------------------------------------------------------

    def list_check_runs(self, call: Call) -> Response:
        repo = self._repo(call)
        sha = self._sha(repo, call.args[2])
        which = call.query.get("filter", "latest")
        if which not in ("latest", "all"):
            raise invalid("CheckRun", "filter", f"filter {which!r} is not latest or all")
        runs = self.state.check_runs(repo, sha, latest=which == "latest")
        if "check_name" in call.query:
            runs = [run for run in runs if run.name == call.query["check_name"]]
        if "status" in call.query:
            runs = [run for run in runs if run.status == call.query["status"]]
        per_page = self._page_size(call, 30)
        chunk = runs[self._window(call, per_page)]
        body = {
            "total_count": len(runs),
            "check_runs": [self.render.check_run(repo, run) for run in chunk],
        }
        return Response(200, body, self._links(call, len(runs), per_page))

    def get_check_run(self, call: Call) -> Response:
        repo = self._repo(call)
        run = self.state.find_check_run(repo, int(call.args[2]))
        return Response(200, self.render.check_run(repo, run))

    def create_check_run(self, call: Call) -> Response:
        app = self._app(call)
        repo = self._repo(call)
        body = call.fields()
        name = text(body, "name", "CheckRun", required=True)
        sha = text(body, "head_sha", "CheckRun", required=True)
        assert name is not None and sha is not None
        if not name.strip():
            raise invalid("CheckRun", "name", "name can't be blank")
        if not SHA.fullmatch(sha) or sha not in repo.shas:
            raise ApiError(422, f"No commit found for SHA: {sha}")
        fields = self._check_fields(body, status="queued", started=self.state.tick())
        run = self.state.add_check_run(
            repo, sha=sha, name=name, app_id=app[0], app_slug=app[1], **fields
        )
        return Response(201, self.render.check_run(repo, run))

    def update_check_run(self, call: Call) -> Response:
        app = self._app(call)
        repo = self._repo(call)
        run = self.state.find_check_run(repo, int(call.args[2]))
        if run.app_id != app[0]:
            raise ApiError(
                403,
                f"Invalid app_id `{app[0]}` - check run can only be modified by the GitHub App "
                "that created it.",
            )
        body = call.fields()
        name = text(body, "name", "CheckRun")
        if name is not None and not name.strip():
            raise invalid("CheckRun", "name", "name can't be blank")
        self.state.tick()
        fields = self._check_fields(body, run=run)
        run = self.state.change_check_run(repo, run.id, name=name or run.name, **fields)
        return Response(200, self.render.check_run(repo, run))

    @staticmethod
    def _app(call: Call) -> tuple[int, str]:
        if call.app is None:
            raise ApiError(403, NOT_AN_APP)
        return call.app

    def _check_fields(
        self,
        body: dict[str, Any],
        *,
        run: CheckRun | None = None,
        status: str | None = None,
        started: datetime | None = None,
    ) -> dict[str, Any]:
        """A check run's fields from a write, over `run`'s (an update) or the defaults."""
        status = text(body, "status", "CheckRun") or (run.status if run else status)
        if status not in CHECK_STATUSES:
            raise invalid("CheckRun", "status", "status is not included in the list")
        conclusion = text(body, "conclusion", "CheckRun")
        if conclusion is not None:
            if conclusion not in CHECK_CONCLUSIONS:
                raise invalid("CheckRun", "conclusion", "conclusion is not included in the list")
            status = "completed"  # as GitHub: a conclusion completes the run
        elif status == "completed" or "completed_at" in body:
            # As GitHub: completing a run (by its status or its time) needs a conclusion.
            status, conclusion = "completed", run.conclusion if run else None
            if conclusion is None:
                raise invalid("CheckRun", "conclusion", "conclusion wasn't supplied")
        else:
            conclusion = None  # back to running: no conclusion yet
        started_at = _moment(body, "started_at") or (run.started_at if run else started)
        completed_at = _moment(body, "completed_at")
        if status == "completed":
            completed_at = completed_at or (run.completed_at if run else None) or self.state.now
        else:
            completed_at = None
        details_url = text(body, "details_url", "CheckRun")
        if details_url is not None and not re.match(r"https?://[^/\s]+", details_url):
            raise invalid("CheckRun", "details_url", "details_url must be a valid URL")
        return {
            "status": status,
            "conclusion": conclusion,
            "started_at": started_at,
            "completed_at": completed_at,
            "details_url": details_url if "details_url" in body or run is None else run.details_url,
            "external_id": text(body, "external_id", "CheckRun")
            or (run.external_id if run else None),
            "output": _output(body) or (run.output if run else (None, None, None)),
        }

    # -- branch protection ---------------------------------------------------

    def get_branch(self, call: Call) -> Response:
        # Anyone who reads the repository sees whether a branch is protected.
        repo = self._repo(call)
        branch = call.args[2]
        if branch not in repo.branches:
            raise ApiError(404, "Branch not found")
        rules = repo.protections.get(branch)
        return Response(200, self.render.branch(repo, branch, rules))

    def get_protection(self, call: Call) -> Response:
        repo = self._repo(call)
        branch = call.args[2]
        if not repo.protection_readable or (
            call.grants is not None and "administration" not in call.grants
        ):
            # A token without admin rights; an App without the administration permission.
            message = (
                "Resource not accessible by integration"
                if call.login.endswith("[bot]")
                else "Must have admin rights to Repository."
            )
            raise ApiError(403, message)
        if branch not in repo.branches:
            raise ApiError(404, "Branch not found")
        rules = repo.protections.get(branch)
        if rules is None:
            raise ApiError(404, "Branch not protected")
        return Response(200, self.render.protection(repo, branch, rules))


def _since(value: str) -> datetime:
    try:
        since = datetime.fromisoformat(value)
    except ValueError:
        raise invalid("IssueComment", "since", "since is not an ISO 8601 time") from None
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def _moment(body: dict[str, Any], key: str) -> datetime | None:
    value = text(body, key, "CheckRun")
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise invalid("CheckRun", key, f"{key} is not an ISO 8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _output(body: dict[str, Any]) -> tuple[str | None, str | None, str | None] | None:
    output = body.get("output")
    if output is None:
        return None
    if not isinstance(output, dict):
        raise invalid("CheckRun", "output", "output is not an object")
    title = text(output, "title", "CheckRun", required=True)
    summary = text(output, "summary", "CheckRun", required=True, limit=OUTPUT_LIMIT)
    return title, summary, text(output, "text", "CheckRun", limit=OUTPUT_LIMIT)
