"""When the deadline starts: FleetRepo.carried_since against real git history in a bare repository."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from prgen.config import FleetSettings
from prgen.fleet import FleetRepo

from conftest import git

FOLDER = "shop-pr-1"
FILE = f"previews/dev/{FOLDER}/helmrelease.yaml"
A = "a" * 40
B = "b" * 40
START = 1_767_225_600  # 2026-01-01T00:00:00Z


class History:
    """A clone of the fleet remote where each commit gets the next minute as its date."""

    def __init__(self, remote: Path, seed: Path) -> None:
        git("clone", str(remote), str(seed))
        self.seed = seed
        self.minute = 0

    def commit(self, content: str | None, message: str) -> datetime:
        target = self.seed / FILE
        if content is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
        self.minute += 1
        when = START + 60 * self.minute
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "test",
            "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "test",
            "GIT_COMMITTER_EMAIL": "t@example.com",
            "GIT_AUTHOR_DATE": f"{when} +0000",
            "GIT_COMMITTER_DATE": f"{when} +0000",
        }
        for args in (["add", "-A"], ["commit", "-q", "-m", message]):
            subprocess.run(["git", *args], cwd=self.seed, env=env, check=True)
        git("push", "-q", "origin", "HEAD:main", cwd=self.seed)
        return datetime.fromtimestamp(when, UTC)


def release(*shas: str) -> str:
    """A HelmRelease-like file that names each SHA once (an image tag, an annotation, ...)."""
    return "kind: HelmRelease\n" + "".join(f"value{n}: {sha}\n" for n, sha in enumerate(shas))


@pytest.fixture
def history(fleet_remote: Path, tmp_path: Path) -> History:
    return History(fleet_remote, tmp_path / "history")


def since(fleet_remote: Path, tmp_path: Path, sha: str) -> datetime | None:
    settings = FleetSettings(url=str(fleet_remote), path="previews/dev")
    fleet = FleetRepo(settings, tmp_path / "work")
    fleet.refresh()
    return fleet.carried_since(FOLDER, sha)


def test_a_change_in_how_often_the_sha_appears_does_not_move_the_start(
    history: History, fleet_remote: Path, tmp_path: Path
) -> None:
    first = history.commit(release(A), "create")
    history.commit(release(A, A), "config: the SHA is used once more")
    history.commit(release(A, A, "unrelated"), "config: something else")
    history.commit(release(A), "config: one use less")
    assert since(fleet_remote, tmp_path, A) == first


def test_going_back_to_an_earlier_sha_starts_at_the_commit_bringing_it_back(
    history: History, fleet_remote: Path, tmp_path: Path
) -> None:
    history.commit(release(A), "head A")
    moved = history.commit(release(B), "head B")
    back = history.commit(release(A), "head A again (force-push)")
    history.commit(release(A, A), "config: the SHA is used once more")
    assert since(fleet_remote, tmp_path, A) == back
    assert since(fleet_remote, tmp_path, B) is None  # not carried any more
    history.commit(release(B), "head B again")
    assert since(fleet_remote, tmp_path, B) > moved  # type: ignore[operator]


def test_a_removed_and_recreated_environment_starts_at_the_recreation(
    history: History, fleet_remote: Path, tmp_path: Path
) -> None:
    history.commit(release(A), "create")
    history.commit(None, "PR closed: remove")
    assert since(fleet_remote, tmp_path, A) is None
    recreated = history.commit(release(A), "PR reopened: create again")
    history.commit(release(A, A), "config: the SHA is used once more")
    assert since(fleet_remote, tmp_path, A) == recreated


def test_a_sha_the_fleet_never_carried_has_no_start(
    history: History, fleet_remote: Path, tmp_path: Path
) -> None:
    history.commit(release(A), "create")
    assert since(fleet_remote, tmp_path, B) is None
