"""Figures for prgen's speed at scale: sync and probe against local stand-ins.

    python benchmarks/bench_sync.py [--sizes 100,500,1000]

Real PyGithub over HTTP to the fake GitHub on 127.0.0.1, real git to a bare
repository on disk, real HTTP probes to a local server. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from prgen.config import parse_config
from prgen.feedback import probe_and_report
from prgen.github.client import make_client
from prgen.github.pulls import GitHubSource
from prgen.sync import Syncer
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub

TOKEN = "bench-token-0123456789"  # noqa: S105 - the fake accepts only this
CONFIG = """\
github: {{apiUrl: '{api}', tokenEnv: BENCH_TOKEN, requestInterval: 0, retries: 0}}
fleet: {{url: '{fleet}', path: previews/dev}}
safety: {{maxDeletions: 100000}}
probe: {{concurrency: 16}}
repositories:
  - name: acme/shop
    chart: {{chart: shop, sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}}}
    values: {{image: {{tag: '<<PR_HEAD_SHA>>'}}, title: '<<PR_TITLE>>'}}
    healthCheck: {{url: '{envs}/pr-<<PR_NUMBER>>/healthz', timeout: 1s}}
    report: {{commitStatus: {{context: prgen/preview}}, deployment: false, comment: false}}
"""


def timed(label: str, rows: list[tuple[str, str]], action):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    result = action()
    rows.append((label, f"{time.perf_counter() - start:7.2f} s"))
    return result


def bench(size: int) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        FakeGitHub() as github,
        Environments().running() as envs,
    ):
        root = Path(tmp)
        fleet = root / "fleet.git"
        subprocess.run(
            ["git", "init", "-q", "--bare", "--initial-branch=main", str(fleet)], check=True
        )
        github.add_token(TOKEN)
        github.add_repo("acme/shop")
        numbers = [
            github.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}") for n in range(size)
        ]
        config = parse_config(CONFIG.format(api=github.base_url, fleet=fleet, envs=envs.url))
        client = make_client(config.github, {"BENCH_TOKEN": TOKEN})
        syncer = Syncer(config, GitHubSource(client), root / "work")
        timed(f"sync, {size} new PRs (clone + {size} created)", rows, syncer.run)
        timed(f"sync, nothing new ({size} kept)", rows, syncer.run)
        for number in numbers[: size // 10]:
            github.push("acme/shop", number)
        timed(f"sync, {size // 10} pushed", rows, syncer.run)
        envs.behaviour[numbers[0]] = "hanging"
        result = timed(
            f"probe round, {size} environments, one hanging (timeout 1s)",
            rows,
            lambda: probe_and_report(config, client, syncer.fleet),
        )
        rows.append(("  of which reported", f"{len(result.environments)}"))
        timed(
            "probe round again, nothing to write",
            rows,
            lambda: probe_and_report(config, client, syncer.fleet),
        )
        rows.append(("  GitHub requests in all", f"{len(github.requests)}"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100,500")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    for size in sizes:
        print(f"\n{size} open pull requests")
        for label, value in bench(size):
            print(f"  {label:<60} {value}")


if __name__ == "__main__":
    main()
