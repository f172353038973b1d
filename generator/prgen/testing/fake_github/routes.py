"""The REST routes: pull requests, commit statuses, deployments and issue comments.

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
    SHA,
    ApiError,
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
            ("GET", rf"{repo}/issues/(\d+)", self.get_issue),
            ("GET", rf"{repo}/issues/(\d+)/comments", self.list_comments),
            ("POST", rf"{repo}/issues/(\d+)/comments", self.create_comment),
            ("GET", rf"{repo}/issues/comments/(\d+)", self.get_comment),
            ("PATCH", rf"{repo}/issues/comments/(\d+)", self.edit_comment),
            ("DELETE", rf"{repo}/issues/comments/(\d+)", self.delete_comment),
            ("POST", rf"{repo}/statuses/([^/]+)", self.create_status),
            # A ref may be a branch name with slashes in it.
            ("GET", rf"{repo}/statuses/(.+)", self.list_statuses),
            ("GET", rf"{repo}/commits/(.+)/statuses", self.list_statuses),
            ("GET", rf"{repo}/commits/(.+)/status", self.combined_status),
            ("GET", rf"{repo}/deployments", self.list_deployments),
            ("POST", rf"{repo}/deployments", self.create_deployment),
            ("GET", rf"{repo}/deployments/(\d+)", self.get_deployment),
            ("GET", rf"{repo}/deployments/(\d+)/statuses", self.list_deployment_statuses),
            ("POST", rf"{repo}/deployments/(\d+)/statuses", self.create_deployment_status),
            ("GET", rf"{repo}/deployments/(\d+)/statuses/(\d+)", self.get_deployment_status),
        ]
        self._table = [(method, re.compile(path), handler) for method, path, handler in table]

    def dispatch(self, request: RecordedRequest, login: str) -> Response:
        for method, pattern, handler in self._table:
            match = pattern.fullmatch(request.path)
            if match and method == request.method:
                return handler(Call(request, login, tuple(map(unquote, match.groups()))))
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
        per_page, page = self._page_size(call, per_page), call.request.page
        last = max(1, -(-len(items) // per_page))

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
        chunk = items[self._window(call, per_page)]
        headers = {"Link": ", ".join(links)} if links else {}
        return Response(200, [render(item) for item in chunk], headers)

    # -- users and repositories ----------------------------------------------

    def get_user(self, call: Call) -> Response:
        if call.login.endswith("[bot]"):
            # As GitHub answers an installation token: an App's bot is no user.
            raise ApiError(403, "Resource not accessible by integration")
        return Response(200, self.render.user(call.login))

    def get_repo(self, call: Call) -> Response:
        return Response(200, self.render.repo(self._repo(call).full_name, full=True))

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
