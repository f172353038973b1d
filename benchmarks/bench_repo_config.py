"""Figures for repositories' own `.prgen.yaml`: what reading them adds to a sync, busy and idle.

    python benchmarks/bench_repo_config.py [--repositories 200] [--pulls 5] [--latency 0.02]

Real PyGithub over HTTP to the fake GitHub on 127.0.0.1 (through prgen's HTTP cache, as the
CLI runs), real git to a bare repository on disk. Every repository has a `.prgen.yaml` on its
default branch; then one breaks and is fixed. Prints a table; asserts nothing.
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
from prgen.github.pulls import GitHubSource
from prgen.github.repo_files import GitHubRepoFiles
from prgen.repo_config_status import tell_repo_configs
from prgen.sync import Syncer
from prgen.sync_result import SyncResult
from prgen.testing.fake_github import FakeGitHub

TOKEN = "bench-token-0123456789"  # noqa: S105 - the fake accepts only this
REPOSITORY = """\
  - name: acme/app-{n}
    chart: {{chart: app, sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}}}
    namespace: 'app-{n}-pr-<<PR_NUMBER>>'
    repoConfig: {{allow: [values, healthCheck]}}
"""
CONFIG = """\
github: {{apiUrl: '{api}', tokenEnv: BENCH_TOKEN, requestInterval: 0, writeInterval: 0, retries: 0}}
fleet: {{url: '{fleet}', path: previews/dev}}
safety: {{maxDeletions: 100000}}
repositories:
{repositories}"""


def bench(repositories: int, pulls: int, latency: float) -> list[tuple[str, str]]:
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
            github.set_file(name, ".prgen.yaml", "values: {replicas: 2}\n")
            for p in range(pulls):
                github.open_pull(name, title=f"PR {p}", head_branch=f"b{p}")
        text = CONFIG.format(
            api=github.base_url,
            fleet=fleet,
            repositories="".join(REPOSITORY.format(n=n) for n in range(repositories)),
        )
        config = parse_config(text)
        os.environ["BENCH_TOKEN"] = TOKEN

        def sync(read_files: bool) -> Callable[[], SyncResult]:
            def run() -> SyncResult:
                clients = GitHubClients(config.github, cache_dir=root / "cache")
                syncer = Syncer(
                    config,
                    GitHubSource.for_clients(clients),
                    root / "work",
                    repo_files=GitHubRepoFiles(clients) if read_files else None,
                )
                result = syncer.run()
                tell_repo_configs(syncer, clients.main, result)
                return result

            return run

        def measured(label: str, run: Callable[[], SyncResult]) -> None:
            github.clear_requests()
            start = time.perf_counter()
            run()
            seconds = time.perf_counter() - start
            contents = github.count_requests("GET", r".*/contents/.*")
            rows.append(
                (
                    label,
                    f"{seconds:6.2f} s, {len(github.answers)} requests ({contents} file reads), "
                    f"{github.not_modified()} of them 304, {github.points_used()} points",
                )
            )

        measured("first sync, every file read", sync(True))
        measured("idle sync, files unchanged", sync(True))
        measured("idle sync, files not read (for comparison)", sync(False))
        github.set_file(names[0], ".prgen.yaml", "values: {replicas: 2}\nforks: true\n")
        measured(f"one file broken ({pulls} PRs told)", sync(True))
        measured("idle sync, still broken", sync(True))
        github.set_file(names[0], ".prgen.yaml", "values: {replicas: 3}\n")
        measured("the file fixed (its PRs cleared, updated)", sync(True))
        measured("idle sync after", sync(True))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repositories", type=int, default=200)
    parser.add_argument("--pulls", type=int, default=5)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    args = parser.parse_args()
    rows = bench(args.repositories, args.pulls, args.latency)
    width = max(len(label) for label, _ in rows)
    print(
        f"{args.repositories} repositories x {args.pulls} PRs, each with a .prgen.yaml, "
        f"{args.latency * 1000:g} ms a request"
    )
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")


if __name__ == "__main__":
    main()
