"""A scoped sync (what `prgen serve` runs after a webhook): it looks at some repositories only,
and every environment of the others stays exactly as it is."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path

import pytest

from prgen.commands.options import github_clients, load
from prgen.github.pulls import GitHubSource
from prgen.plan import Action
from prgen.sync import Syncer
from prgen.sync_result import SyncResult
from prgen.testing.fake_github import FakeGitHub
from scenarios import read_fleet, repository_entry

from conftest import git

Config = Callable[..., Path]
_BRANCHES = itertools.count(1)
REPOS = ("acme/shop", "acme/cart", "acme/blog")


def syncer(config: Path, workdir: Path, scope: set[str] | None = None) -> Syncer:
    loaded = load(config)
    clients = github_clients(loaded, "off")
    return Syncer(loaded, GitHubSource.for_clients(clients), workdir, scope=scope)


def tree(remote: Path, folder: str) -> str:
    return git("rev-parse", f"main:previews/dev/{folder}", cwd=remote).strip()


@pytest.fixture
def three(github: FakeGitHub, write_config: Config) -> Path:
    for name in REPOS:
        github.add_repo(name)
        open_pull(github, name)
        open_pull(github, name)
    return write_config("".join(repository_entry(name) for name in REPOS))


def open_pull(github: FakeGitHub, name: str) -> int:
    return github.open_pull(
        name, title="change", head_branch=f"feature/{next(_BRANCHES)}", labels=["preview"]
    )


def commits(remote: Path) -> int:
    return int(git("rev-list", "--count", "main", cwd=remote))


def test_a_scoped_run_removes_nothing_of_another_repository(
    github: FakeGitHub, three: Path, fleet_remote: Path, tmp_path: Path
) -> None:
    syncer(three, tmp_path / "work").run()
    before = read_fleet(fleet_remote)
    assert len(before.environments) == 6
    trees = {key: tree(fleet_remote, folder) for key, folder in before.folders.items()}
    index = git("show", "main:previews/dev/kustomization.yaml", cwd=fleet_remote)

    # Every PR of cart closes and shop's first PR moves on: a scoped run of shop alone
    # must neither remove cart's environments nor say anything of them.
    for number in (1, 2):
        github.close_pull("acme/cart", number)
    new_head = github.push("acme/shop", 1)
    github.clear_requests()
    result = syncer(three, tmp_path / "work", {"ACME/Shop"}).run()

    assert [r.name for r in result.repositories] == ["acme/shop"]
    assert {c.repository for c in result.plan.changes} == {"acme/shop"}
    assert [(c.action, c.number) for c in result.plan.changes if c.action != Action.KEEP] == [
        (Action.UPDATE, 1)
    ]
    assert result.warnings == [] and result.exit_code == 0
    # Only shop was listed.
    assert github.count_requests("GET", r"/repos/acme/cart/.*") == 0
    assert github.count_requests("GET", r"/repos/acme/blog/.*") == 0
    after = read_fleet(fleet_remote)
    assert after.problems == []
    assert after.environments[("acme/shop", 1)] == new_head
    for key, folder in before.folders.items():
        if key != ("acme/shop", 1):
            assert tree(fleet_remote, folder) == trees[key], key  # not rewritten
    assert git("show", "main:previews/dev/kustomization.yaml", cwd=fleet_remote) == index
    changed = git("show", "--name-only", "--format=", "main", cwd=fleet_remote).split()
    assert changed == ["previews/dev/shop-pr-1/helmrelease.yaml"] or all(
        name.startswith("previews/dev/shop-pr-1/") for name in changed
    )

    # The full run that follows removes cart's environments: its PRs closed.
    full = syncer(three, tmp_path / "work").run()
    assert sorted(c.number for c in full.plan.of(Action.DELETE)) == [1, 2]
    assert set(read_fleet(fleet_remote).of("acme/cart")) == set()


def test_a_scoped_run_after_a_close_removes_that_environment(
    github: FakeGitHub, three: Path, fleet_remote: Path, tmp_path: Path
) -> None:
    syncer(three, tmp_path / "work").run()
    github.close_pull("acme/blog", 2)
    result: SyncResult = syncer(three, tmp_path / "work", {"acme/blog"}).run()
    assert [(c.action, c.number) for c in result.plan.of(Action.DELETE)] == [(Action.DELETE, 2)]
    fleet = read_fleet(fleet_remote)
    assert ("acme/blog", 2) not in fleet.environments
    assert len(fleet.environments) == 5 and fleet.problems == []


def test_a_scoped_run_with_nothing_new_makes_no_commit(
    github: FakeGitHub, three: Path, fleet_remote: Path, tmp_path: Path
) -> None:
    syncer(three, tmp_path / "work").run()
    count = commits(fleet_remote)
    result = syncer(three, tmp_path / "work", {"acme/cart"}).run()
    assert result.commit is None and commits(fleet_remote) == count


def test_the_mass_deletion_guard_holds_a_scoped_run(
    github: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    names = ("acme/shop", "acme/cart")
    for name in names:
        github.add_repo(name)
    for _ in range(6):
        open_pull(github, "acme/shop")
    open_pull(github, "acme/cart")
    config = write_config("".join(repository_entry(name) for name in names))
    syncer(config, tmp_path / "work").run()
    for number in range(1, 7):
        github.close_pull("acme/shop", number)
    result = syncer(config, tmp_path / "work", {"acme/shop"}).run()
    # 6 of 7 environments would go: more than the limit (max(7 // 2, 4) = 4).
    assert result.held_deletions is not None and result.exit_code == 1
    assert result.plan.of(Action.DELETE) == []
    assert len(read_fleet(fleet_remote).environments) == 7
