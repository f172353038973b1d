"""JSON bodies shaped like GitHub's REST API, with every URL on the fake's own host.

Objects carry every field PyGithub reads for them, so a client never has to
"complete" one with an extra request.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from typing import Any
from urllib.parse import quote

from prgen.testing.fake_github.model import (
    ROLES,
    BranchProtection,
    CheckRun,
    CommitStatus,
    Deployment,
    DeploymentStatus,
    IssueComment,
    PullState,
    Reaction,
    Repo,
    Review,
    State,
    stable_id,
)

Json = dict[str, Any]
API_PREFIX = "/api/v3"
DOCS = "https://docs.github.com/rest"


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def label_color(name: str) -> str:
    return f"{stable_id('color', name) & 0xFFFFFF:06x}"


def error_body(message: str, errors: list[dict[str, Any]] | None = None) -> Json:
    body: Json = {"message": message}
    if errors:
        body["errors"] = errors
    body["documentation_url"] = DOCS
    return body


class Renderer:
    def __init__(self, state: State, origin: str) -> None:
        self.state = state
        self.web = origin  # http://127.0.0.1:PORT, where html_url points
        self.api = origin + API_PREFIX

    def user(self, login: str) -> Json:
        uid = stable_id("user", login)
        url = f"{self.api}/users/{quote(login)}"
        return {
            "login": login,
            "id": uid,
            "node_id": f"U_{uid}",
            "avatar_url": f"{self.web}/avatars/u/{uid}",
            "gravatar_id": "",
            "url": url,
            "html_url": f"{self.web}/{quote(login)}",
            "followers_url": f"{url}/followers",
            "following_url": f"{url}/following{{/other_user}}",
            "gists_url": f"{url}/gists{{/gist_id}}",
            "starred_url": f"{url}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{url}/subscriptions",
            "organizations_url": f"{url}/orgs",
            "repos_url": f"{url}/repos",
            "events_url": f"{url}/events{{/privacy}}",
            "received_events_url": f"{url}/received_events",
            "type": "Bot" if login.endswith("[bot]") else "User",
            "user_view_type": "public",
            "site_admin": False,
        }

    def app(self, app_id: int, slug: str) -> Json:
        """GET /app: the authenticated GitHub App."""
        owner = "acme"
        return {
            "id": app_id,
            "slug": slug,
            "node_id": f"A_{app_id}",
            "client_id": f"Iv1.{app_id:016x}",
            "owner": self.user(owner),
            "name": slug,
            "description": "",
            "external_url": f"{self.web}/apps/{quote(slug)}",
            "html_url": f"{self.web}/apps/{quote(slug)}",
            "created_at": iso(self.state.now),
            "updated_at": iso(self.state.now),
            "permissions": {},
            "events": [],
            "installations_count": 1,
        }

    def file(self, repository: str, path: str, branch: str, text: str) -> Json:
        """GET /repos/{owner}/{repo}/contents/{path}: a file, base64 in lines of 60 as GitHub
        sends it, its git blob id as sha."""
        data = text.encode("utf-8")
        sha = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 - git's id
        encoded = base64.b64encode(data).decode("ascii")
        url = f"{self.api}/repos/{repository}/contents/{quote(path)}?ref={quote(branch)}"
        html = f"{self.web}/{repository}/blob/{quote(branch)}/{quote(path)}"
        git = f"{self.api}/repos/{repository}/git/blobs/{sha}"
        return {
            "type": "file",
            "encoding": "base64",
            "size": len(data),
            "name": path.rpartition("/")[2],
            "path": path,
            "content": "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n",
            "sha": sha,
            "url": url,
            "git_url": git,
            "html_url": html,
            "download_url": f"{self.web}/{repository}/raw/{quote(branch)}/{quote(path)}",
            "_links": {"self": url, "git": git, "html": html},
        }

    def repo(self, full_name: str, *, full: bool = False) -> Json:
        """A repository added with add_repo, or a fork known only by its name."""
        known: Repo | None = self.state.find_repo_by_name(full_name)
        name = known.full_name if known else full_name
        owner, short = name.split("/", 1)
        created = iso(known.created_at if known else self.state.now)
        open_count = sum(p.state == "open" for p in known.pulls.values()) if known else 0
        rid = known.id if known else stable_id("repo", name)
        url = f"{self.api}/repos/{name}"
        body: Json = {
            "id": rid,
            "node_id": f"R_{rid}",
            "name": short,
            "full_name": name,
            "private": False,
            "owner": self.user(owner),
            "html_url": f"{self.web}/{name}",
            "description": None,
            "fork": known is None,
            "url": url,
            **{
                f"{key}_url": f"{url}/{path}"
                for key, path in [
                    ("forks", "forks"),
                    ("keys", "keys{/key_id}"),
                    ("collaborators", "collaborators{/collaborator}"),
                    ("teams", "teams"),
                    ("hooks", "hooks"),
                    ("issue_events", "issues/events{/number}"),
                    ("events", "events"),
                    ("assignees", "assignees{/user}"),
                    ("branches", "branches{/branch}"),
                    ("tags", "tags"),
                    ("blobs", "git/blobs{/sha}"),
                    ("git_tags", "git/tags{/sha}"),
                    ("git_refs", "git/refs{/sha}"),
                    ("trees", "git/trees{/sha}"),
                    ("statuses", "statuses/{sha}"),
                    ("languages", "languages"),
                    ("stargazers", "stargazers"),
                    ("contributors", "contributors"),
                    ("subscribers", "subscribers"),
                    ("commits", "commits{/sha}"),
                    ("git_commits", "git/commits{/sha}"),
                    ("comments", "comments{/number}"),
                    ("issue_comment", "issues/comments{/number}"),
                    ("contents", "contents/{+path}"),
                    ("compare", "compare/{base}...{head}"),
                    ("merges", "merges"),
                    ("archive", "{archive_format}{/ref}"),
                    ("downloads", "downloads"),
                    ("issues", "issues{/number}"),
                    ("pulls", "pulls{/number}"),
                    ("milestones", "milestones{/number}"),
                    ("notifications", "notifications{?since,all,participating}"),
                    ("labels", "labels{/name}"),
                    ("releases", "releases{/id}"),
                    ("deployments", "deployments"),
                ]
            },
            "subscription_url": f"{url}/subscription",
            "created_at": created,
            "updated_at": created,
            "pushed_at": created,
            "git_url": f"git://{self.web.split('://', 1)[1]}/{name}.git",
            "ssh_url": f"git@{self.web.split('://', 1)[1].split(':')[0]}:{name}.git",
            "clone_url": f"{self.web}/{name}.git",
            "svn_url": f"{self.web}/{name}",
            "homepage": None,
            "size": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "language": None,
            "has_issues": True,
            "has_projects": True,
            "has_downloads": True,
            "has_wiki": True,
            "has_pages": False,
            "has_discussions": False,
            "forks_count": 0,
            "mirror_url": None,
            "archived": False,
            "disabled": False,
            "open_issues_count": open_count,
            "license": None,
            "allow_forking": True,
            "is_template": False,
            "web_commit_signoff_required": False,
            "topics": [],
            "visibility": "public",
            "forks": 0,
            "open_issues": open_count,
            "watchers": 0,
            "default_branch": "main",
        }
        if full:
            body["permissions"] = {
                # Admin rights are what reading a branch protection takes.
                "admin": bool(known and known.protection_readable),
                "maintain": False,
                "push": True,
                "triage": True,
                "pull": True,
            }
            body["network_count"] = 0
            body["subscribers_count"] = 0
        return body

    def team(self, org: str, slug: str) -> Json:
        tid = stable_id("team", f"{org.lower()}/{slug}")
        url = f"{self.api}/organizations/{stable_id('org', org.lower())}/team/{tid}"
        return {
            "id": tid,
            "node_id": f"T_{tid}",
            "url": url,
            "html_url": f"{self.web}/orgs/{quote(org)}/teams/{quote(slug)}",
            "name": slug,
            "slug": slug,
            "description": None,
            "privacy": "closed",
            "notification_setting": "notifications_enabled",
            "permission": "pull",
            "members_url": f"{url}/members{{/member}}",
            "repositories_url": f"{url}/repos",
            "parent": None,
        }

    def label(self, repo: str, name: str) -> Json:
        lid = stable_id("label", f"{repo.lower()}:{name}")
        return {
            "id": lid,
            "node_id": f"LA_{lid}",
            "url": f"{self.api}/repos/{repo}/labels/{quote(name, safe='')}",
            "name": name,
            "color": label_color(name),
            "default": False,
            "description": None,
        }

    def _branch(self, repo: str | None, owner: str, ref: str, sha: str) -> Json:
        return {
            "label": f"{owner}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": self.user(owner),
            "repo": None if repo is None else self.repo(repo),
        }

    def pull(self, pull: PullState, *, full: bool = False) -> Json:
        repo = self.state.repo(pull.repo)
        url = f"{self.api}/repos/{pull.repo}/pulls/{pull.number}"
        html = f"{self.web}/{pull.repo}/pull/{pull.number}"
        issue = f"{self.api}/repos/{pull.repo}/issues/{pull.number}"
        statuses = f"{self.api}/repos/{pull.repo}/statuses/{pull.head_sha}"
        head_owner = pull.head_repo.split("/")[0] if pull.head_repo else pull.author
        links = {
            "self": url,
            "html": html,
            "issue": issue,
            "comments": f"{issue}/comments",
            "review_comments": f"{url}/comments",
            "review_comment": f"{self.api}/repos/{pull.repo}/pulls/comments{{/number}}",
            "commits": f"{url}/commits",
            "statuses": statuses,
        }
        body: Json = {
            "url": url,
            "id": pull.id,
            "node_id": f"PR_{pull.id}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": issue,
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "user": self.user(pull.author),
            "body": pull.body,
            "created_at": iso(pull.created_at),
            "updated_at": iso(pull.updated_at),
            "closed_at": iso(pull.closed_at),
            "merged_at": iso(pull.merged_at),
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [self.user(login) for login in pull.requested_reviewers],
            "requested_teams": [self.team(repo.owner, slug) for slug in pull.requested_teams],
            "labels": [self.label(pull.repo, name) for name in pull.labels],
            "milestone": None,
            "draft": pull.draft,
            "commits_url": links["commits"],
            "review_comments_url": links["review_comments"],
            "review_comment_url": links["review_comment"],
            "comments_url": links["comments"],
            "statuses_url": statuses,
            "head": self._branch(pull.head_repo, head_owner, pull.head_branch, pull.head_sha),
            "base": self._branch(
                pull.repo, repo.owner, pull.base_branch, repo.branches[pull.base_branch]
            ),
            "_links": {key: {"href": href} for key, href in links.items()},
            "author_association": pull.author_association,
            "auto_merge": None,
            "active_lock_reason": None,
        }
        if full:
            is_open = pull.state == "open"
            body.update(
                merged=pull.merged,
                mergeable=True if is_open else None,
                rebaseable=True if is_open else None,
                mergeable_state=("draft" if pull.draft else "clean") if is_open else "unknown",
                merged_by=self.user(pull.author) if pull.merged else None,
                comments=len(self.state.comments(repo, pull.number)),
                review_comments=0,
                maintainer_can_modify=False,
                commits=1,
                additions=1,
                deletions=0,
                changed_files=1,
            )
        return body

    def issue(self, pull: PullState) -> Json:
        url = f"{self.api}/repos/{pull.repo}/issues/{pull.number}"
        pr = self.pull(pull)
        return {
            "url": url,
            "repository_url": f"{self.api}/repos/{pull.repo}",
            "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": pr["html_url"],
            "id": pull.issue_id,
            "node_id": f"I_{pull.issue_id}",
            "number": pull.number,
            "title": pull.title,
            "user": pr["user"],
            "labels": pr["labels"],
            "state": pull.state,
            "state_reason": None if pull.state == "open" else "completed",
            "locked": False,
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "comments": len(self.state.comments(self.state.repo(pull.repo), pull.number)),
            "created_at": pr["created_at"],
            "updated_at": pr["updated_at"],
            "closed_at": pr["closed_at"],
            "author_association": pull.author_association,
            "active_lock_reason": None,
            "draft": pull.draft,
            "body": pull.body,
            "pull_request": {
                "url": pr["url"],
                "html_url": pr["html_url"],
                "diff_url": pr["diff_url"],
                "patch_url": pr["patch_url"],
                "merged_at": pr["merged_at"],
            },
        }

    def status(self, repo: Repo, status: CommitStatus) -> Json:
        creator = self.user(status.creator)
        return {
            "url": f"{self.api}/repos/{repo.full_name}/statuses/{status.sha}",
            "avatar_url": creator["avatar_url"],
            "id": status.id,
            "node_id": f"SC_{status.id}",
            "state": status.state,
            "description": status.description,
            "target_url": status.target_url,
            "context": status.context,
            "created_at": iso(status.created_at),
            "updated_at": iso(status.created_at),
            "creator": creator,
        }

    def combined(self, repo: Repo, sha: str, page: slice = slice(None)) -> Json:
        state, latest = self.state.combined(repo, sha)
        commit = f"{self.api}/repos/{repo.full_name}/commits/{sha}"
        return {
            "state": state,
            "statuses": [self.status(repo, status) for status in latest[page]],
            "sha": sha,
            "total_count": len(latest),
            "repository": self.repo(repo.full_name),
            "commit_url": commit,
            "url": f"{commit}/status",
        }

    def deployment(self, repo: Repo, deployment: Deployment) -> Json:
        url = f"{self.api}/repos/{repo.full_name}/deployments/{deployment.id}"
        return {
            "url": url,
            "id": deployment.id,
            "node_id": f"DE_{deployment.id}",
            "sha": deployment.sha,
            "ref": deployment.ref,
            "task": deployment.task,
            "payload": deployment.payload,
            "original_environment": deployment.original_environment,
            "environment": deployment.environment,
            "description": deployment.description,
            "creator": self.user(deployment.creator),
            "created_at": iso(deployment.created_at),
            "updated_at": iso(deployment.updated_at),
            "statuses_url": f"{url}/statuses",
            "repository_url": f"{self.api}/repos/{repo.full_name}",
            "transient_environment": deployment.transient_environment,
            "production_environment": deployment.production_environment,
            "performed_via_github_app": None,
        }

    def deployment_status(self, repo: Repo, status: DeploymentStatus) -> Json:
        deployment = f"{self.api}/repos/{repo.full_name}/deployments/{status.deployment_id}"
        return {
            "url": f"{deployment}/statuses/{status.id}",
            "id": status.id,
            "node_id": f"DES_{status.id}",
            "state": status.state,
            "creator": self.user(status.creator),
            "description": status.description,
            "environment": status.environment,
            "target_url": status.log_url,
            "created_at": iso(status.created_at),
            "updated_at": iso(status.created_at),
            "deployment_url": deployment,
            "repository_url": f"{self.api}/repos/{repo.full_name}",
            "environment_url": status.environment_url,
            "log_url": status.log_url,
            "performed_via_github_app": None,
        }

    def comment(self, repo: Repo, comment: IssueComment) -> Json:
        url = f"{self.api}/repos/{repo.full_name}/issues/comments/{comment.id}"
        reactions = ["+1", "-1", "laugh", "hooray", "confused", "heart", "rocket", "eyes"]
        counts: dict[str, int] = {}
        for reaction in repo.reactions:
            if reaction.comment_id == comment.id:
                counts[reaction.content] = counts.get(reaction.content, 0) + 1
        return {
            "url": url,
            "html_url": f"{self.web}/{repo.full_name}/pull/{comment.number}"
            f"#issuecomment-{comment.id}",
            "issue_url": f"{self.api}/repos/{repo.full_name}/issues/{comment.number}",
            "id": comment.id,
            "node_id": f"IC_{comment.id}",
            "user": self.user(comment.user),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "author_association": "NONE",
            "body": comment.body,
            "reactions": {
                "url": f"{url}/reactions",
                "total_count": sum(counts.values()),
                **{name: counts.get(name, 0) for name in reactions},
            },
            "performed_via_github_app": None,
        }

    def reaction(self, reaction: Reaction) -> Json:
        return {
            "id": reaction.id,
            "node_id": f"REA_{reaction.id}",
            "user": self.user(reaction.user),
            "content": reaction.content,
            "created_at": iso(reaction.created_at),
        }

    def permission(self, login: str, role: str) -> Json:
        """GET .../collaborators/{user}/permission: maintain says write, triage says read."""
        return {
            "permission": ROLES[role],
            "role_name": role,
            "user": {
                **self.user(login),
                "permissions": {
                    "admin": role == "admin",
                    "maintain": role in ("admin", "maintain"),
                    "push": role in ("admin", "maintain", "write"),
                    "triage": role in ("admin", "maintain", "write", "triage"),
                    "pull": role != "none",
                },
                "role_name": role,
            },
        }

    def review(self, repo: Repo, review: Review) -> Json:
        pull = f"{self.api}/repos/{repo.full_name}/pulls/{review.number}"
        html = f"{self.web}/{repo.full_name}/pull/{review.number}#pullrequestreview-{review.id}"
        body: Json = {
            "id": review.id,
            "node_id": f"PRR_{review.id}",
            "user": self.user(review.user),
            "body": review.body,
            "state": review.state,
            "html_url": html,
            "pull_request_url": pull,
            "author_association": "MEMBER",
            "_links": {"html": {"href": html}, "pull_request": {"href": pull}},
            "commit_id": review.commit_id,
        }
        if review.submitted_at is not None:  # GitHub leaves it out of a pending review
            body["submitted_at"] = iso(review.submitted_at)
        return body

    def check_run(self, repo: Repo, run: CheckRun) -> Json:
        url = f"{self.api}/repos/{repo.full_name}/check-runs/{run.id}"
        title, summary, text = run.output
        suite = stable_id("suite", f"{repo.full_name.lower()}:{run.sha}:{run.app_id}")
        return {
            "id": run.id,
            "node_id": f"CR_{run.id}",
            "head_sha": run.sha,
            "external_id": run.external_id or "",
            "url": url,
            "html_url": f"{self.web}/{repo.full_name}/runs/{run.id}",
            "details_url": run.details_url,
            "status": run.status,
            "conclusion": run.conclusion,
            "started_at": iso(run.started_at),
            "completed_at": iso(run.completed_at),
            "output": {
                "title": title,
                "summary": summary,
                "text": text,
                "annotations_count": 0,
                "annotations_url": f"{url}/annotations",
            },
            "name": run.name,
            "check_suite": {"id": suite},
            "app": self.installed_app(run.app_id, run.app_slug),
            "pull_requests": [],
        }

    def installed_app(self, app_id: int, slug: str) -> Json:
        """The app of a check run: as GET /app shows it, times at the start of the clock."""
        app = self.app(app_id, slug)
        app["created_at"] = app["updated_at"] = "2026-01-01T00:00:00Z"
        return app

    def branch(self, repo: Repo, branch: str, rules: BranchProtection | None) -> Json:
        url = f"{self.api}/repos/{repo.full_name}/branches/{quote(branch, safe='')}"
        sha = repo.branches[branch]
        summary: Json = {"enabled": rules is not None}
        if rules is not None:
            summary["required_status_checks"] = {
                "enforcement_level": "non_admins" if rules.checks else "off",
                "contexts": list(rules.checks),
                "checks": [{"context": name, "app_id": None} for name in rules.checks],
            }
        return {
            "name": branch,
            "commit": {"sha": sha, "url": f"{self.api}/repos/{repo.full_name}/commits/{sha}"},
            "_links": {"self": url, "html": f"{self.web}/{repo.full_name}/tree/{branch}"},
            "protected": rules is not None,
            "protection": summary,
            "protection_url": f"{url}/protection",
        }

    def protection(self, repo: Repo, branch: str, rules: BranchProtection) -> Json:
        url = f"{self.api}/repos/{repo.full_name}/branches/{quote(branch, safe='')}/protection"
        body: Json = {"url": url}
        if rules.checks or rules.strict:
            checks = f"{url}/required_status_checks"
            body["required_status_checks"] = {
                "url": checks,
                "enforcement_level": "non_admins",
                "contexts": list(rules.checks),
                "checks": [{"context": name, "app_id": None} for name in rules.checks],
                "contexts_url": f"{checks}/contexts",
                "strict": rules.strict,
            }
        if rules.approvals:
            body["required_pull_request_reviews"] = {
                "url": f"{url}/required_pull_request_reviews",
                "dismiss_stale_reviews": rules.dismiss_stale_reviews,
                "require_code_owner_reviews": rules.require_code_owner_reviews,
                "required_approving_review_count": rules.approvals,
                "require_last_push_approval": False,
            }
        body["enforce_admins"] = {"url": f"{url}/enforce_admins", "enabled": False}
        body["required_linear_history"] = {"enabled": False}
        body["allow_force_pushes"] = {"enabled": False}
        body["allow_deletions"] = {"enabled": False}
        return body
