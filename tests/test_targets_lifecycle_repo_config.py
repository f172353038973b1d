"""Several clusters with the features that landed beside them: expiry and a repository's own
`.prgen.yaml`, each target keeping what is its own. The real CLI, real HTTP to the fake
GitHub, real git to a bare fleet; time is put through PRGEN_NOW (prgen/clock.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from prgen.lifecycle import EXPIRED_FILE
from prgen.testing.fake_github import FakeGitHub
from scenarios import LABEL, repository_entry
from test_targets import EU, US, commits, release, sync_json, targets_config

from conftest import git

REPO = "acme/shop"
WEEK = timedelta(days=7)


def folders(fleet: Path, path: str) -> set[str]:
    try:
        listed = git("ls-tree", "--name-only", "main", f"{path}/", cwd=fleet)
    except Exception:
        return set()
    return {line.rpartition("/")[2] for line in listed.splitlines()}


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo(REPO)
    github.open_pull(REPO, title="Cart", head_branch="cart", labels=[LABEL])
    return github


def test_an_idle_pr_expires_in_every_target_in_one_commit_and_a_push_brings_it_back(
    shop: FakeGitHub, fleet_remote: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = shop.now() + timedelta(hours=1)
    monkeypatch.setenv("PRGEN_NOW", start.isoformat())
    config = targets_config(
        tmp_path, shop, fleet_remote, repository_entry(REPO) + "    expireAfter: 7d\n"
    )
    sync_json(config)
    assert "shop-pr-1" in folders(fleet_remote, EU) and "shop-pr-1" in folders(fleet_remote, US)

    monkeypatch.setenv("PRGEN_NOW", (start + WEEK - timedelta(days=1)).isoformat())
    sync_json(config)  # its warning period begins: told in each target
    monkeypatch.setenv("PRGEN_NOW", (start + WEEK).isoformat())
    before = commits(fleet_remote)
    gone = sync_json(config)

    assert commits(fleet_remote) == before + 1
    removals = [(c["action"], c["target"]) for c in gone["changes"]]
    assert sorted(removals) == [("delete", "eu"), ("delete", "us")]
    for path in (EU, US):
        assert "shop-pr-1" not in folders(fleet_remote, path)
        marker = git("show", f"main:{path}/{EXPIRED_FILE}", cwd=fleet_remote)
        assert "acme.shop.1" in marker  # each target remembers it on its own
    again = sync_json(config)
    assert again["commit"] is None  # not made again in either target

    shop.push(REPO, 1)
    back = sync_json(config)
    assert sorted((c["action"], c["target"]) for c in back["changes"]) == [
        ("create", "eu"),
        ("create", "us"),
    ]


def test_a_repository_file_reaches_every_target_and_a_broken_one_keeps_both(
    shop: FakeGitHub, fleet_remote: Path, tmp_path: Path
) -> None:
    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 3}\n")
    entry = repository_entry(REPO) + "    repoConfig: {allow: [values]}\n"
    config = targets_config(tmp_path, shop, fleet_remote, entry)

    first = sync_json(config)

    assert first["repositoryConfigs"][0]["state"] == "applied"
    for path, region in ((EU, "eu"), (US, "us")):
        values = release(fleet_remote, path, "shop-pr-1")["spec"]["values"]
        assert values["replicas"] == 3 and values["region"] == region  # file over target values
    statuses = shop.statuses(REPO, shop.pull(REPO, 1).head_sha)
    names = {s.context for s in statuses}
    assert "prgen/config" not in names  # a fine file is not said per target, nor at all

    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 3}\nforks: true\n")
    shop.push(REPO, 1)
    before = commits(fleet_remote)
    kept = sync_json(config)
    assert commits(fleet_remote) == before
    assert [c["action"] for c in kept["changes"]] == ["keep", "keep"]
    assert kept["repositoryConfigs"][0]["state"] == "broken"
    said = [s for s in shop.statuses(REPO, shop.pull(REPO, 1).head_sha)]
    assert [(s.context, s.state) for s in said] == [("prgen/config", "failure")]
