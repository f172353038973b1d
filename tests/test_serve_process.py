"""`prgen serve` as a process: SIGTERM mid-sync finishes the commit and exits 0; a kill at any
point leaves the remote whole, and the restarted server converges."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from prgen.testing.fake_github import FakeGitHub
from processes import FleetHistory, PrgenProcess
from scenarios import eligible, read_fleet, repository_entry
from serve_support import SECRETS, open_pull, server_section, wait_for

Config = Callable[..., Path]
REPOS = ("acme/shop", "acme/cart")


def start_serve(config: Path, workdir: Path, output: Path) -> PrgenProcess:
    env = {**os.environ, **SECRETS}
    return PrgenProcess(
        ["serve", "--config", str(config), "--workdir", str(workdir)], output, env=env
    )


def port_of(output: Path) -> int:
    def said() -> re.Match[str] | None:
        text = (output / "stderr").read_text(errors="replace")
        return re.search(r"serving on 127\.0\.0\.1:(\d+)", text)

    match = wait_for(said, 30)
    return int(match.group(1))


@pytest.fixture
def config(github: FakeGitHub, write_config: Config) -> Path:
    for name in REPOS:
        github.add_repo(name)
        for _ in range(3):
            open_pull(github, name)
    return write_config("".join(repository_entry(n) for n in REPOS), server_section())


def test_sigterm_mid_sync_finishes_the_commit_and_exits_0(
    github: FakeGitHub, config: Path, fleet_remote: Path, tmp_path: Path
) -> None:
    # The full sync at start lists slowly: SIGTERM arrives while it runs.
    github.inject("GET", r"/repos/acme/cart/pulls", status=0, delay=2.0)
    server = start_serve(config, tmp_path / "work", tmp_path / "out")
    try:
        port_of(tmp_path / "out")
        wait_for(lambda: github.count_requests("GET", r"/repos/acme/cart/pulls") > 0)
        os.kill(server.pid, signal.SIGTERM)
        finished = server.wait(60)
    finally:
        server.reap()
    assert finished.returncode == 0, finished.describe()
    assert "stopping" in finished.stderr
    # The sync it was in the middle of was finished: committed and pushed.
    assert read_fleet(fleet_remote).environments == eligible(github, REPOS)
    FleetHistory(fleet_remote).check_new_commits()


@pytest.mark.parametrize("kill_after", [0.3, 1.0, 1.7])
def test_a_kill_at_any_point_leaves_the_remote_whole_and_a_restart_converges(
    github: FakeGitHub, config: Path, fleet_remote: Path, tmp_path: Path, kill_after: float
) -> None:
    history = FleetHistory(fleet_remote)
    github.inject("GET", r"/repos/acme/cart/pulls", status=0, delay=1.0)
    first = start_serve(config, tmp_path / "work", tmp_path / "out1")
    try:
        port_of(tmp_path / "out1")
        wait_for(lambda: github.count_requests("GET", r"/repos/acme/cart/pulls") > 0)
        time.sleep(kill_after)
        first.kill()  # SIGKILL to prgen and every git it started
    finally:
        first.reap()
    history.check_new_commits()
    assert read_fleet(fleet_remote).problems == []

    # Meanwhile a PR closed and another moved on; the restarted server's full sync catches up.
    github.close_pull("acme/shop", 1)
    github.push("acme/cart", 2)
    second = start_serve(config, tmp_path / "work", tmp_path / "out2")
    try:
        port_of(tmp_path / "out2")
        wait_for(lambda: read_fleet(fleet_remote).environments == eligible(github, REPOS), 60)
        os.kill(second.pid, signal.SIGTERM)
        finished = second.wait(60)
    finally:
        second.reap()
    assert finished.returncode == 0, finished.describe()
    history.check_new_commits()
    assert read_fleet(fleet_remote).problems == []
