"""Figures for commands from PR comments: what reading them adds to a sync, busy and idle.

    python benchmarks/bench_commands.py [--repositories 20] [--pulls 25] [--comments 200]

Real PyGithub over HTTP to the fake GitHub on 127.0.0.1 (through prgen's HTTP cache, as the
CLI runs), real git to a bare repository on disk. Each repository has open PRs with
environments and many comments, a few of them commands. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prgen.config import parse_config
from prgen.github.client import GitHubClients
from prgen.github.commands import GitHubCommands
from prgen.github.pulls import GitHubSource
from prgen.sync import Syncer
from prgen.sync_result import SyncResult
from prgen.testing.fake_github import FakeGitHub

TOKEN = "bench-token-0123456789"  # noqa: S105 - the fake accepts only this
REPOSITORY = """\
  - name: acme/app-{n}
    chart: {{chart: app, sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}}}
    namespace: 'app-{n}-pr-<<PR_NUMBER>>'
"""
CONFIG = """\
github: {{apiUrl: '{api}', tokenEnv: BENCH_TOKEN, requestInterval: 0, writeInterval: 0, retries: 0}}
fleet: {{url: '{fleet}', path: previews/dev}}
safety: {{maxDeletions: 100000}}
repositories:
{repositories}"""


def bench(repositories: int, pulls: int, comments: int, latency: float) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp, FakeGitHub(latency=latency) as github:
        root = Path(tmp)
        fleet = root / "fleet.git"
        subprocess.run(
            ["git", "init", "-q", "--bare", "--initial-branch=main", str(fleet)], check=True
        )
        github.add_token(TOKEN, "prgen-bot")
        names = [f"acme/app-{n}" for n in range(repositories)]
        for name in names:
            github.add_repo(name)
            github.set_permission(name, "mia", "write")
            for p in range(pulls):
                github.open_pull(name, title=f"PR {p}", head_branch=f"b{p}")
        text = CONFIG.format(
            api=github.base_url,
            fleet=fleet,
            repositories="".join(REPOSITORY.format(n=n) for n in range(repositories)),
        )
        config = parse_config(text)
        os.environ["BENCH_TOKEN"] = TOKEN

        def syncer(commands: bool) -> Syncer:
            clients = GitHubClients(config.github, cache_dir=root / "cache")
            return Syncer(
                config,
                GitHubSource.for_clients(clients),
                root / "work",
                commands=GitHubCommands.for_clients(clients) if commands else None,
            )

        def measured(label: str, run: Callable[[], SyncResult]) -> SyncResult:
            github.clear_requests()
            start = time.perf_counter()
            result = run()
            seconds = time.perf_counter() - start
            answers = len(github.answers)
            rows.append(
                (
                    label,
                    f"{seconds:6.2f} s, {answers} requests, {github.not_modified()} of them 304, "
                    f"{github.points_used()} points",
                )
            )
            return result

        measured("first sync (no comments yet)", syncer(True).run)
        for name in names:
            for p in range(1, pulls + 1):
                for c in range(comments // pulls):
                    github.add_comment(name, p, f"looks good {c}", user="otto")
            github.add_comment(name, 1, "/preview redeploy", user="mia")
            github.add_comment(name, 2, "/preview pause", user="mia")
            github.add_comment(name, 3, "/preview delete", user="otto")  # refused
        total = repositories * (comments // pulls * pulls + 3)
        rows.append(("comments in all", f"{total} ({3 * repositories} commands)"))
        result = measured("sync with the new comments", syncer(True).run)
        rows.append(("  commands answered", str(len(result.commands))))
        measured("sync after (the reactions changed the listings)", syncer(True).run)
        measured("idle sync, commands read", syncer(True).run)
        measured("idle sync, commands not read (for comparison)", syncer(False).run)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repositories", type=int, default=20)
    parser.add_argument("--pulls", type=int, default=25)
    parser.add_argument("--comments", type=int, default=200, help="per repository")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    args = parser.parse_args()
    rows = bench(args.repositories, args.pulls, args.comments, args.latency)
    width = max(len(label) for label, _ in rows)
    print(
        f"{args.repositories} repositories x {args.pulls} PRs, {args.comments} comments each, "
        f"{args.latency * 1000:g} ms a request"
    )
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
