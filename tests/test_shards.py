"""`prgen sync --shard I/N`: shards split the configured repositories between them, every
runner agrees which is whose, and N processes syncing their shards at once into one bare
fleet converge without touching each other's environments."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from prgen.shards import Shard
from prgen.testing.fake_github import FakeGitHub
from scenarios import LABEL, read_fleet, repository_entry

from conftest import run

Config = Callable[..., Path]
REPOSITORIES = tuple(f"acme/app-{n:02d}" for n in range(12))


def test_shards_split_the_repositories_exactly_and_the_same_everywhere() -> None:
    for count in (1, 2, 3, 5):
        owned = [Shard(index, count).of(REPOSITORIES) for index in range(1, count + 1)]
        assert sorted(name for names in owned for name in names) == sorted(REPOSITORIES)
    # A fixed answer (sha256 of the lower-cased name), not Python's per-process salted hash.
    script = f"from prgen.shards import Shard; print(Shard(2, 3).of({REPOSITORIES!r}))"
    elsewhere = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONHASHSEED": "12345"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert elsewhere == repr(Shard(2, 3).of(REPOSITORIES))
    assert Shard(1, 3).owns("ACME/App-01") == Shard(1, 3).owns("acme/app-01")


@pytest.mark.parametrize("text", ["0/3", "4/3", "1/0", "a/b", "1"])
def test_a_bad_shard_is_a_usage_error(write_config: Config, text: str) -> None:
    result = run("sync", "--config", str(write_config()), "--shard", text)
    assert result.exit_code == 2
    assert "--shard" in result.output


def test_three_shards_at_once_converge_and_never_touch_each_others_environments(
    github: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    for name in REPOSITORIES:
        github.add_repo(name)
        github.open_pull(name, title="change", head_branch="change", labels=(LABEL,))
    config = write_config("".join(repository_entry(name) for name in REPOSITORIES))

    def sync_shards() -> list[subprocess.CompletedProcess[str]]:
        processes = [
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "prgen", "sync", "--config", str(config)),
                    *("--shard", f"{index}/3", "--workdir", str(tmp_path / f"work-{index}")),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for index in (1, 2, 3)
        ]
        done = []
        for process in processes:
            out, err = process.communicate(timeout=180)
            done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
        return done

    for done in sync_shards():
        assert done.returncode == 0, done.stderr
    fleet = read_fleet(fleet_remote)
    assert sorted(repository for repository, _ in fleet.environments) == sorted(REPOSITORIES)

    # Every PR of shard 1 closes; shards 2 and 3 see nothing of it, and only shard 1 removes.
    gone = Shard(1, 3).of(REPOSITORIES)
    assert all(Shard(index, 3).of(REPOSITORIES) for index in (1, 2, 3))  # none is empty
    for name in gone:
        github.close_pull(name, 1)
    runs = sync_shards()
    assert all(done.returncode == 0 for done in runs), [done.stderr for done in runs]
    for name in gone:
        assert f"delete {name}#1" in runs[0].stdout, runs[0].stdout
    left = sorted(repository for repository, _ in read_fleet(fleet_remote).environments)
    assert left == sorted(set(REPOSITORIES) - set(gone))
    for done in runs[1:]:
        assert not any(name in done.stdout for name in gone), done.stdout
