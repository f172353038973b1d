"""A stateful GitHub REST API on 127.0.0.1 that real PyGithub talks to, for tests and `prgen demo`.

    with FakeGitHub() as github:
        github.add_repo("acme/shop")
        github.open_pull("acme/shop", title="New checkout", head_branch="feature/checkout")
        client = Github(base_url=github.base_url, auth=Auth.Token("t"))

Besides pull requests it keeps what GitHub shows of their progress: requested reviewers
and reviews (`request_review`, `add_review`), CI as commit statuses and check runs
(`add_status`, `add_check_run`; check runs are written over HTTP by GitHub Apps only) and
branch protection (`protect`, `forbid_protection_reads`), comments and their reactions
(`add_comment`, `react`, `reactions`) and who may write to a repository (`set_permission`).

Modules: model (state and clock), payloads (GitHub-shaped JSON), routes (REST
endpoints), auth (tokens, GitHub App JWTs), faults (request log, fault
injection), server (FakeGitHub and the HTTP plumbing).
"""

from prgen.testing.fake_github.auth import AppKey, app_key
from prgen.testing.fake_github.faults import RecordedRequest
from prgen.testing.fake_github.model import (
    CheckRun,
    CommitStatus,
    Deployment,
    DeploymentStatus,
    IssueComment,
    PullState,
    Reaction,
    Review,
)
from prgen.testing.fake_github.server import FakeGitHub

__all__ = [
    "AppKey",
    "CheckRun",
    "CommitStatus",
    "Deployment",
    "DeploymentStatus",
    "FakeGitHub",
    "IssueComment",
    "PullState",
    "Reaction",
    "RecordedRequest",
    "Review",
    "app_key",
]
