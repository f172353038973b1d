"""Plain-data builders for the pure parts (filters, render, plan)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from prgen.config import RepositorySettings, parse_config
from prgen.model import PullRequest

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def pull_request(number: int = 1, repository: str = "acme/shop", **changes: Any) -> PullRequest:
    pr = PullRequest(
        repository=repository,
        number=number,
        title=f"PR {number}",
        head_sha=f"{number:040x}",
        head_branch=f"feature/{number}",
        head_repository=repository,
        base_branch="main",
        author="alice",
        author_association="MEMBER",
        labels=(),
        draft=False,
        created_at=WHEN,
        updated_at=WHEN,
        html_url=f"https://github.com/{repository}/pull/{number}",
    )
    return replace(pr, **changes)


def repository(extra: str = "", name: str = "acme/shop") -> RepositorySettings:
    text = f"""\
fleet: {{url: /tmp/fleet.git, path: previews/dev}}
repositories:
  - name: {name}
    chart: {{chart: shop, sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}}}
{extra}"""
    return parse_config(text).repositories[0]
