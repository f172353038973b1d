"""Figures for the fleet side of a sync at organisation scale: no GitHub at all.

    python benchmarks/bench_fleet.py [--repos 200] [--pulls 50] [--profile idle]

The PRs come from an in-memory source (prgen.testing.memory_source), so what is
measured is everything between "the listings are in" and "the commit is pushed":
reading the fleet, rendering, planning, committing and pushing to a bare repository
on disk with real git. The last scenario is an idle run whose cache of the fleet's blobs
was lost (what the first run after an upgrade or a wiped work directory pays). Prints
wall time per scenario, the files in each commit and
the peak memory of the process; asserts nothing. CPU time (prgen plus the git processes
it ran) is printed beside wall time: it moves less when the machine is busy.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prgen.config import parse_config
from prgen.fleet import INVENTORY_CACHE
from prgen.sync import Syncer
from prgen.sync_result import SyncResult
from prgen.testing.memory_source import MemorySource, make_pull_request

REPOSITORY = """\
  - name: org/repo-{index:03d}
    chart: {{chart: app, sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}}}
    values: {{image: {{tag: '<<PR_HEAD_SHA>>'}}, title: '<<PR_TITLE>>', branch: '<<PR_BRANCH>>'}}
"""
CONFIG = """\
fleet: {{url: '{fleet}', path: previews/dev}}
safety: {{maxDeletions: 100000}}
repositories:
"""


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def files_in(fleet: Path, commit: str | None) -> int:
    if commit is None:
        return 0
    out = subprocess.run(
        ["git", "--git-dir", str(fleet), "show", "--name-only", "--format=", commit],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return len(out.split())


def cpu_seconds() -> float:
    """CPU time of prgen and every git it waited for: steadier than wall time on a busy host."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(
    label: str,
    run: Callable[[], SyncResult],
    fleet: Path,
    profile: bool,
) -> None:
    profiler = cProfile.Profile() if profile else None
    start, cpu = time.perf_counter(), cpu_seconds()
    if profiler:
        profiler.enable()
    result = run()
    if profiler:
        profiler.disable()
    took, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    print(
        f"  {label:<20} {took:7.2f} s wall {cpu:7.2f} s CPU"
        f"   files in commit {files_in(fleet, result.commit):>6}"
        f"   peak RSS so far {peak_rss_mb():6.0f} MB"
    )
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repos", type=int, default=200)
    parser.add_argument("--pulls", type=int, default=50)
    parser.add_argument(
        "--profile",
        choices=["first", "idle", "push", "close", "lost"],
        action="append",
        default=[],
        help="print a cProfile of that scenario (may repeat)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        fleet = root / "fleet.git"
        subprocess.run(
            ["git", "init", "-q", "--bare", "--initial-branch=main", str(fleet)], check=True
        )
        text = CONFIG.format(fleet=fleet) + "".join(
            REPOSITORY.format(index=index) for index in range(args.repos)
        )
        config = parse_config(text)
        source = MemorySource()
        for repo in config.repositories:
            source.open_many(
                make_pull_request(repo.name, number) for number in range(1, args.pulls + 1)
            )
        syncer = Syncer(config, source, root / "work")
        total = args.repos * args.pulls
        print(f"{args.repos} repositories x {args.pulls} PRs = {total} environments")
        measure("first sync", syncer.run, fleet, "first" in args.profile)
        measure("idle re-sync", syncer.run, fleet, "idle" in args.profile)
        first = config.repositories[0].name
        source.update(first, 1, head_sha="f" * 40)
        measure("one PR pushed", syncer.run, fleet, "push" in args.profile)
        source.close(first, 2)
        measure("one PR closed", syncer.run, fleet, "close" in args.profile)
        (root / "work" / ".git" / INVENTORY_CACHE).unlink()
        measure("idle, cache lost", syncer.run, fleet, "lost" in args.profile)
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"  peak RSS: prgen {peak_rss_mb():.0f} MB, largest git child {children:.0f} MB")


if __name__ == "__main__":
    main()
