"""The fleet edge with real git: empty remotes, leftovers of killed runs, the work directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from prgen.config import FleetSettings
from prgen.errors import FleetError
from prgen.fleet import FleetRepo
from prgen.render import render_index
from test_fleet_repo_example import EXAMPLE, example_config, example_managed_folder

from conftest import git


def settings(url: Path, path: str = "previews/dev") -> FleetSettings:
    return FleetSettings(url=str(url), path=path, author_name="prgen", author_email="p@example.com")


def test_an_empty_remote_gets_its_branch_created(tmp_path: Path) -> None:
    bare = tmp_path / "empty.git"
    git("init", "--bare", str(bare))
    fleet = FleetRepo(settings(bare), tmp_path / "work")
    snapshot = fleet.refresh()
    assert snapshot.commit is None and snapshot.files == {}
    sha = fleet.commit_and_push(snapshot, {"kustomization.yaml": render_index([])}, "first")
    assert sha is not None
    assert git("rev-parse", "main", cwd=bare).strip() == sha
    assert git("ls-tree", "-r", "--name-only", "main", cwd=bare).split() == [
        "previews/dev/kustomization.yaml"
    ]


def test_the_next_run_recovers_from_whatever_a_killed_run_left(
    fleet_remote: Path, tmp_path: Path
) -> None:
    workdir = tmp_path / "work"
    fleet = FleetRepo(settings(fleet_remote), workdir)
    fleet.refresh()
    # A killed run: half-written files, a staged change, a stale index lock, a local commit.
    (workdir / "previews/dev").mkdir(parents=True)
    (workdir / "previews/dev/half.yaml").write_text("kind: Na")
    (workdir / "README.md").write_text("changed")
    git("add", "-A", cwd=workdir)
    git("commit", "-m", "never pushed", cwd=workdir)
    (workdir / "stray.txt").write_text("x")
    (workdir / ".git/index.lock").write_text("")

    tip = git("rev-parse", "main", cwd=fleet_remote).strip()
    again = FleetRepo(settings(fleet_remote), workdir)
    snapshot = again.refresh()
    assert snapshot.files == {} and snapshot.commit == tip
    # The next commit is built from the remote's tip alone (nothing is checked out): none
    # of the leftovers, staged, committed or stray, reaches the fleet.
    sha = again.commit_and_push(snapshot, {"kustomization.yaml": render_index([])}, "next")
    assert git("rev-parse", "main", cwd=fleet_remote).strip() == sha
    assert git("rev-parse", f"{sha}^", cwd=fleet_remote).strip() == tip
    files = git("ls-tree", "-r", "--name-only", "main", cwd=fleet_remote).split()
    before = git("ls-tree", "-r", "--name-only", tip, cwd=fleet_remote).split()
    assert sorted(files) == sorted([*before, "previews/dev/kustomization.yaml"])
    assert "previews/dev/half.yaml" not in files and "stray.txt" not in files
    assert git("show", "main:README.md", cwd=fleet_remote) == "fleet\n"


def test_a_half_made_clone_is_replaced(fleet_remote: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    (workdir / ".git").mkdir(parents=True)  # killed during clone
    snapshot = FleetRepo(settings(fleet_remote), workdir).refresh()
    assert snapshot.commit == git("rev-parse", "main", cwd=fleet_remote).strip()


def test_a_foreign_directory_is_never_wiped(fleet_remote: Path, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "precious.txt").write_text("mine")
    with pytest.raises(FleetError, match="not a git checkout"):
        FleetRepo(settings(fleet_remote), workdir).refresh()
    assert (workdir / "precious.txt").read_text() == "mine"


def test_writes_outside_the_managed_folder_are_refused(fleet_remote: Path, tmp_path: Path) -> None:
    fleet = FleetRepo(settings(fleet_remote), tmp_path / "work")
    snapshot = fleet.refresh()
    with pytest.raises(FleetError, match="outside"):
        fleet.commit_and_push(snapshot, {"../../README.md": b"pwned"}, "escape")
    assert git("show", "main:README.md", cwd=fleet_remote) == "fleet\n"


def test_a_managed_path_that_is_a_file_is_an_error(fleet_remote: Path, tmp_path: Path) -> None:
    with pytest.raises(FleetError, match="is a file"):
        FleetRepo(settings(fleet_remote, "README.md"), tmp_path / "work").refresh()


def test_the_example_fleets_managed_folder_is_what_prgen_writes_for_its_example_prs() -> None:
    folder = EXAMPLE / example_config().fleet.path
    committed = {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in folder.rglob("*")
        if path.is_file()
    }
    rendered = example_managed_folder()
    assert sorted(committed) == sorted(rendered)
    for path, data in rendered.items():
        assert committed[path] == data, (
            f"{path}: regenerate with python tests/test_fleet_repo_example.py"
        )


def test_any_path_is_one_path_in_the_commit_and_nothing_else(
    fleet_remote: Path, tmp_path: Path
) -> None:
    # Paths go to git fast-import on stdin: a quote, a backslash or a line break in a name
    # (a hand-made file of prgen's may have any) stays inside that one path.
    odd = ['"quoted/a.yaml', "line\nM 100644 inline x/b.yaml", "back\\slash/c.yaml", "é ü/d.yaml"]
    fleet = FleetRepo(settings(fleet_remote), tmp_path / "work")
    snapshot = fleet.refresh()
    fleet.commit_and_push(snapshot, {path: b"# prgen:managed\n" for path in odd}, "odd")
    listing = git(
        "ls-tree", "-r", "-z", "--name-only", "main", "--", "previews/dev", cwd=fleet_remote
    )
    assert sorted(filter(None, listing.split("\0"))) == sorted(f"previews/dev/{p}" for p in odd)
    snapshot = fleet.refresh()
    fleet.commit_and_push(snapshot, dict.fromkeys(odd), "gone")
    assert git("ls-tree", "-r", "--name-only", "main", "--", "previews", cwd=fleet_remote) == ""


def test_the_checkout_an_older_prgen_left_is_removed_and_nothing_else(
    fleet_remote: Path, tmp_path: Path
) -> None:
    """Older prgens checked the fleet out in the work directory; nothing reads those files any
    more, so the first run that opens the directory removes them, keeping its git directory."""
    from prgen.config import FleetSettings
    from prgen.fleet import FleetRepo

    workdir = tmp_path / "work"
    settings = FleetSettings(url=str(fleet_remote), path="previews/dev")
    FleetRepo(settings, workdir).refresh()
    (workdir / "previews" / "dev" / "shop-pr-1").mkdir(parents=True)
    (workdir / "previews" / "dev" / "shop-pr-1" / "helmrelease.yaml").write_text("old\n")
    (workdir / "README.md").write_text("fleet\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine\n")
    (workdir / "link").symlink_to(outside)

    FleetRepo(settings, workdir).refresh()

    assert sorted(entry.name for entry in workdir.iterdir()) == [".git"]
    assert (outside / "keep.txt").read_text() == "mine\n"  # a link is removed, not followed
