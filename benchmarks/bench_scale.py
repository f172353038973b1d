"""Organisation scale: R repositories x P open PRs, GitHub answering after a delay.

    python benchmarks/bench_scale.py [--repos 200] [--prs 50] [--latency 0.05]

Each run is the `prgen sync` command in its own process, as a CronJob runs it: real HTTP to
the project's fake GitHub on 127.0.0.1 (which serves ETags and 304s as GitHub does and
counts rate-limit points), real git to a bare fleet repository on disk. Four runs: the first
sync, an idle re-sync, one PR pushed, one PR closed; the same four again with the HTTP cache
off, side by side. For each: wall time, GitHub requests by kind, the share answered 304,
rate-limit points spent, files in the fleet commit, and the process's peak memory.
The idle re-sync, the push and the close are each run --repeat times (another PR each
time) and the run of median wall time is shown: one run's wall time on a shared 2-core
machine varies by a second. prgen runs as installed (its bytecode written and reused,
even where PYTHONDONTWRITEBYTECODE is set for the benchmark itself).
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from prgen.testing.fake_github import FakeGitHub

TOKEN = "bench-token-0123456789"  # noqa: S105 - the fake accepts only this
CONFIG = """\
github: {{apiUrl: '{api}', tokenEnv: BENCH_TOKEN, requestInterval: 0}}
fleet: {{url: '{fleet}', path: previews/dev}}
safety: {{maxDeletions: 100000}}
defaults:
  chart: {{chart: shop, sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}}}
  values: {{image: {{tag: '<<PR_HEAD_SHA>>'}}, title: '<<PR_TITLE>>'}}
repositories:
{repositories}
"""


@dataclass
class Run:
    label: str
    wall: float
    exit_code: int
    peak_rss_mb: float
    requests: Counter[str] = field(default_factory=Counter)
    not_modified: int = 0
    points: int = 0
    files_in_commit: int = 0
    walls: list[float] = field(default_factory=list)  # of every repeat, in order


def _kind(method: str, path: str) -> str:
    if method == "GET" and re.fullmatch(r"/repos/[^/]+/[^/]+/pulls", path):
        return "list PRs"
    if method == "GET" and re.fullmatch(r"/repos/[^/]+/[^/]+/pulls/\d+", path):
        return "read one PR"
    if method == "GET" and re.fullmatch(r"/repos/[^/]+/[^/]+", path):
        return "read repository"
    kinds = {
        r"/pulls/\d+/reviews": "reviews",
        r"/commits/[^/]+/status": "combined status",
        r"/commits/[^/]+/check-runs": "check runs",
        r"/branches/[^/]+": "branch",
        r"/branches/[^/]+/protection": "branch protection",
    }
    for tail, kind in kinds.items():
        if method == "GET" and re.fullmatch(r"/repos/[^/]+/[^/]+" + tail, path):
            return kind
    return f"{method} {re.sub(r'/repos/[^/]+/[^/]+', '/repos/…', path)}"


def _files_in_commit(fleet: Path, before: str | None) -> int:
    after = _tip(fleet)
    if after is None or after == before:
        return 0
    out = subprocess.run(
        ["git", "-C", str(fleet), "show", "--name-only", "--format=", after],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return len([line for line in out.splitlines() if line.strip()])


def _tip(fleet: Path) -> str | None:
    out = subprocess.run(
        ["git", "-C", str(fleet), "rev-parse", "--verify", "-q", "refs/heads/main"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return out or None


def sync(
    label: str,
    github: FakeGitHub,
    config: Path,
    fleet: Path,
    workdir: Path,
    cache: str,
    command: tuple[str, ...] = ("sync",),
) -> Run:
    before = _tip(fleet)
    github.clear_requests()
    env = {
        **os.environ,
        "BENCH_TOKEN": TOKEN,
        "PRGEN_CACHE_DIR": cache,
        "PRGEN_WORKDIR": str(workdir),
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as installed by pip: bytecode compiled once
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "prgen", *command, "-c", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    assert process.stderr is not None
    errors = process.stderr.read().decode(errors="replace").strip()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        print(f"  ({label}: exit {process.returncode}) {errors[-300:]}", file=sys.stderr)
    answers = github.answers
    return Run(
        label,
        wall,
        process.returncode,
        usage.ru_maxrss / 1024,
        Counter(_kind(a.request.method, a.request.path) for a in answers),
        sum(1 for a in answers if a.status == 304),
        sum(1 for a in answers if a.charged),
        _files_in_commit(fleet, before),
    )


def median(runs: list[Run]) -> Run:
    middle = sorted(runs, key=lambda run: run.wall)[len(runs) // 2]
    middle.walls = [run.wall for run in runs]
    return middle


def scenario(
    github: FakeGitHub,
    root: Path,
    repos: list[str],
    numbers: dict[str, list[int]],
    cache: str,
    repeat: int,
    status: bool = False,
) -> list[Run]:
    fleet = root / "fleet.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(fleet)], check=True)
    config = root / "prgen.yaml"
    listed = "\n".join(f"  - name: {name}" for name in repos)
    config.write_text(CONFIG.format(api=github.base_url, fleet=fleet, repositories=listed))
    workdir = root / "work"

    def run(label: str) -> Run:
        return sync(label, github, config, fleet, workdir, cache)

    runs = [run("first sync")]
    runs.append(median([run("idle re-sync") for _ in range(repeat)]))
    pushed = []
    for index in range(repeat):  # each time another repository: another page changes
        github.push(repos[index % len(repos)], numbers[repos[index % len(repos)]][0])
        pushed.append(run("one PR pushed"))
    runs.append(median(pushed))
    closed = []
    for index in range(repeat):
        repo = repos[-1 - index % len(repos)]
        github.close_pull(repo, numbers[repo].pop())
        closed.append(run("one PR closed"))
    runs.append(median(closed))
    if status:
        # prgen status over every open PR: the first reads every head's reviews, statuses
        # and check runs and each base branch's protection; the second finds them unchanged.
        for label in ("status", "idle status"):
            runs.append(sync(label, github, config, fleet, workdir, cache, ("status",)))
    return runs


def _row(name: str, cells: list[str]) -> str:
    return f"  {name:<26}" + "".join(f"{cell:>16}" for cell in cells)


def report(title: str, runs: list[Run]) -> None:
    print(f"\n{title}")
    print(_row("", [run.label for run in runs]))
    print(_row("wall time", [f"{run.wall:.1f} s" for run in runs]))
    print(_row("  each run", [" ".join(f"{wall:.1f}" for wall in run.walls) for run in runs]))
    print(_row("exit code", [str(run.exit_code) for run in runs]))
    print(_row("GitHub requests", [str(sum(run.requests.values())) for run in runs]))
    kinds = sorted({kind for run in runs for kind in run.requests})
    for kind in kinds:
        print(_row(f"  {kind}", [str(run.requests[kind]) for run in runs]))
    print(
        _row(
            "answered 304",
            [
                f"{run.not_modified / max(1, sum(run.requests.values())):.0%} ({run.not_modified})"
                for run in runs
            ],
        )
    )
    print(_row("rate-limit points", [str(run.points) for run in runs]))
    print(_row("files in the commit", [str(run.files_in_commit) for run in runs]))
    print(_row("peak memory", [f"{run.peak_rss_mb:.0f} MB" for run in runs]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--prs", type=int, default=50, help="open PRs per repository")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per GitHub answer")
    parser.add_argument("--no-compare", action="store_true", help="skip the run without cache")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each later step; the median is shown"
    )
    parser.add_argument(
        "--no-status", action="store_true", help="skip prgen status (minutes at 10,000 PRs)"
    )
    args = parser.parse_args()
    # A budget beyond any run, so that every step runs whole (a first prgen status at
    # 10,000 PRs needs 30,000 points: six hours of a token's); points are counted all the same.
    budget = 10_000_000
    with (
        FakeGitHub(latency=args.latency, rate_limit=budget) as github,
        tempfile.TemporaryDirectory() as tmp,
    ):
        github.add_token(TOKEN)
        repos = [f"acme/service-{index:03d}" for index in range(args.repos)]
        numbers: dict[str, list[int]] = {}
        for name in repos:
            github.add_repo(name)
            numbers[name] = [
                github.open_pull(name, title=f"change {n}", head_branch=f"b{n}")
                for n in range(args.prs)
            ]
        print(
            f"{args.repos} repositories x {args.prs} PRs = {args.repos * args.prs} open PRs, "
            f"GitHub answering after {args.latency * 1000:.0f} ms"
        )
        cache = str(Path(tmp, "http"))
        with_cache = scenario(
            github, Path(tmp, "cached"), repos, numbers, cache, args.repeat, not args.no_status
        )
        report(f"with the HTTP cache (later steps: median of {args.repeat})", with_cache)
        if not args.no_compare:
            without = scenario(github, Path(tmp, "uncached"), repos, numbers, "off", args.repeat)
            report("without the HTTP cache (PRGEN_CACHE_DIR=off)", without)


if __name__ == "__main__":
    main()
