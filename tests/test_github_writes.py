"""Writes to GitHub go one at a time and `github.writeInterval` apart, across every report
worker, as GitHub's guidance for staying clear of its secondary limits asks; reads stay
concurrent."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub
from prgen.testing.fake_github.faults import RecordedRequest

from conftest import HEALTH, SHOP, run

Config = Callable[..., Path]


def test_report_writes_are_serial_and_spaced_while_reads_run_side_by_side(
    github: FakeGitHub, write_config: Config, envs: Environments
) -> None:
    github.add_repo("acme/shop")
    for n in range(6):
        github.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}")
    config = write_config(SHOP + HEALTH.format(url=envs.url))
    config.write_text(
        config.read_text().replace("writeInterval: 0", "writeInterval: 0.3\n  concurrency: 4")
    )
    writes: list[float] = []
    reads_in_flight = 0
    most_reads = 0
    lock = threading.Lock()

    def record(request: RecordedRequest) -> None:
        nonlocal reads_in_flight, most_reads
        if request.method != "GET":
            with lock:
                writes.append(time.monotonic())
            return
        with lock:
            reads_in_flight += 1
            most_reads = max(most_reads, reads_in_flight)
        time.sleep(0.05)  # long enough for the other workers' reads to arrive meanwhile
        with lock:
            reads_in_flight -= 1

    github.on_request(record)
    result = run("sync", "--probe", "-c", str(config), "--output", "json")
    assert result.exit_code == 0, result.output
    probe = json.loads(result.stdout)["probe"]
    assert [e["reportError"] for e in probe["environments"]] == [None] * 6
    # A pending status, a deployment and its status, and a comment for each of the six.
    assert len(writes) == 6 * 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(writes)]
    assert min(gaps) >= 0.3 - 0.01, gaps  # never two at once, always the interval apart
    assert most_reads > 1  # the reads of the four workers did overlap
