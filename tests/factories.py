"""Plain-data builders for the pure parts (filters, render, plan)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prgen.commands.validate import example_pull_request
from prgen.config import RepositorySettings, parse_config
from prgen.model import PullRequest

WHEN = example_pull_request("acme/shop").created_at


def pull_request(number: int = 1, repository: str = "acme/shop", **changes: Any) -> PullRequest:
    pr = example_pull_request(repository, number)
    defaults = {
        "title": f"PR {number}",
        "head_sha": f"{number:040x}",
        "head_branch": f"feature/{number}",
        "author": "alice",
    }
    return replace(pr, **{**defaults, **changes})


def repository(extra: str = "", name: str = "acme/shop") -> RepositorySettings:
    text = f"""\
fleet: {{url: /tmp/fleet.git, path: previews/dev}}
repositories:
  - name: {name}
    chart: {{chart: shop, sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}}}
{extra}"""
    return parse_config(text).repositories[0]
