"""Since when the fleet carries a head, for many environments at once
(FleetRepo.carried_since_each): one walk of real git history, cached by fleet tip, always
agreeing with carried_since, the one-environment reading the probe's deadline uses."""

from __future__ import annotations

from pathlib import Path

import pytest

import prgen.fleet
from prgen.config import FleetSettings
from prgen.fleet import FleetRepo
from test_probe_carried_since import FOLDER, History, release

from conftest import git

A, B, C = "a" * 40, "b" * 40, "c" * 40


@pytest.fixture
def history(fleet_remote: Path, tmp_path: Path) -> History:
    return History(fleet_remote, tmp_path / "history")


def fleet(remote: Path, work: Path) -> FleetRepo:
    repo = FleetRepo(FleetSettings(url=str(remote), path="previews/dev"), work)
    repo.refresh()
    return repo


# Each step: the file's content after a commit (None: removed), and the head it carries.
STEPS = [
    (release(A), A),
    (release(A, A), A),  # the SHA once more: the start stays
    (release(B), B),  # a push
    (release(A), A),  # back to A: carried since its return, not its first time
    (release(A, "other"), A),
    (None, None),  # removed (an expiry)...
    (release(A), A),  # ...and made again at the same head: since it came back
    (release(C, "x"), C),
]


def test_the_walk_agrees_with_carried_since_at_every_step_with_a_cache_or_without(
    history: History, fleet_remote: Path, tmp_path: Path
) -> None:
    cached = tmp_path / "cached"
    for step, (content, head) in enumerate(STEPS):
        history.commit(content, f"step {step}")
        if head is None:
            continue
        one = fleet(fleet_remote, tmp_path / f"fresh-{step}")
        expected = one.carried_since(FOLDER, head)
        assert expected is not None
        assert one.carried_since_each({FOLDER: head}) == {FOLDER: expected}
        # The same work directory each step: what it remembered is kept or read again.
        assert fleet(fleet_remote, cached).carried_since_each({FOLDER: head}) == {FOLDER: expected}


def test_a_remembered_tip_costs_no_walk_and_a_rewritten_branch_reads_again(
    history: History,
    fleet_remote: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = history.commit(release(A), "create")
    work = tmp_path / "work"
    assert fleet(fleet_remote, work).carried_since_each({FOLDER: A}) == {FOLDER: first}
    walks: list[dict[str, str]] = []
    real = prgen.fleet.FleetRepo._carried_walk

    def counted(
        self: FleetRepo, repo: object, tip: str, heads: dict[str, str], managed: str
    ) -> dict[str, int]:
        walks.append(dict(heads))
        return real(self, repo, tip, heads, managed)  # type: ignore[arg-type]

    monkeypatch.setattr(prgen.fleet.FleetRepo, "_carried_walk", counted)
    assert fleet(fleet_remote, work).carried_since_each({FOLDER: A}) == {FOLDER: first}
    assert walks == []
    (history.seed / "previews/dev/other.txt").write_text("x\n")
    history.commit(release(A), "a file beside it")
    assert fleet(fleet_remote, work).carried_since_each({FOLDER: A}) == {FOLDER: first}
    assert walks == []  # the new commit did not touch its HelmRelease

    # The branch rewritten (force-pushed) under the remembered tip: read again.
    # Same head, made anew: what the cache says of A is no longer true.
    git("reset", "-q", "--hard", "HEAD~2", cwd=history.seed)
    git("push", "-q", "--force", "origin", "HEAD:main", cwd=history.seed)
    again = history.commit(release(A), "rewritten")
    assert again != first
    assert fleet(fleet_remote, work).carried_since_each({FOLDER: A}) == {FOLDER: again}
    assert walks == [{FOLDER: A}]
