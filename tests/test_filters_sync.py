"""Title and author filters and <<PR_LABELS>>, end to end: `prgen sync` through the real CLI,
real HTTP to the fake GitHub on 127.0.0.1, real git to a bare fleet repository."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from ruamel.yaml import YAML

from prgen.cli import main
from prgen.testing.fake_github import FakeGitHub

from conftest import SHOP, git

Config = Callable[..., Path]

FILTERS = """\
    excludeTitles: '(?i)^wip\\b|\\[skip preview\\]'
    excludeAuthors: ['dependabot[bot]', '/renovate.*/']
"""


def sync(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["sync", "--config", str(config), *args])


def sync_json(config: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = sync(config, "--output", "json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def envs(remote: Path) -> set[str]:
    names = git("ls-tree", "-r", "--name-only", "main", "--", "previews/dev", cwd=remote).split()
    return {name.split("/")[2] for name in names if name.count("/") > 2}


def commit_count(remote: Path) -> int:
    return int(git("rev-list", "--count", "main", cwd=remote))


def release(remote: Path, folder: str) -> str:
    return git("show", f"main:previews/dev/{folder}/helmrelease.yaml", cwd=remote)


def labels_value(remote: Path, folder: str) -> str:
    document = YAML(typ="safe", pure=True).load(release(remote, folder))
    return document["spec"]["values"]["labels"]  # type: ignore[no-any-return]


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo("acme/shop")
    return github


def test_each_pr_a_title_or_author_filter_leaves_out_says_why_in_json(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    kept = shop.open_pull("acme/shop", title="Add login", head_branch="login")
    wip = shop.open_pull("acme/shop", title="WIP: checkout", head_branch="checkout")
    skip = shop.open_pull("acme/shop", title="Docs [Skip Preview]", head_branch="docs")
    bot = shop.open_pull(
        "acme/shop", title="Bump x", head_branch="dependabot/x", author="dependabot[bot]"
    )
    renovate = shop.open_pull(
        "acme/shop", title="Update y", head_branch="renovate/y", author="Renovate-Bot"
    )
    # What `dependabot[bot]` read as a character class would match: a person, kept.
    person = shop.open_pull("acme/shop", title="Fix z", head_branch="z", author="dependabotb")

    report = sync_json(write_config(SHOP + FILTERS))

    assert envs(fleet_remote) == {f"shop-pr-{kept}", f"shop-pr-{person}"}
    assert {s["pullRequest"]: s["reason"] for s in report["skipped"]} == {
        wip: "title matches excludeTitles '(?i)^wip\\\\b|\\\\[skip preview\\\\]'",
        skip: "title matches excludeTitles '(?i)^wip\\\\b|\\\\[skip preview\\\\]'",
        bot: "author 'dependabot[bot]' matches excludeAuthors 'dependabot[bot]'",
        renovate: "author 'Renovate-Bot' matches excludeAuthors '/renovate.*/'",
    }
    assert all(s["repository"] == "acme/shop" for s in report["skipped"])
    assert report["repositories"][0]["eligible"] == 2
    # Filters read only what the listing carries: no request per PR, skipped or not.
    # (and the one read of PR commands for the repository).
    assert {(r.method, r.path) for r in shop.requests} == {
        ("GET", "/repos/acme/shop/pulls"),
        ("GET", "/repos/acme/shop/issues/comments"),
    }


def test_the_text_output_says_why_too(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    wip = shop.open_pull("acme/shop", title="WIP: checkout", head_branch="checkout")
    stranger = shop.open_pull("acme/shop", title="Hi", head_branch="hi", author="mallory")
    result = sync(write_config(SHOP + FILTERS + "    authors: [alice, bob]\n"))
    assert result.exit_code == 0, result.output
    assert f"skipped  acme/shop#{stranger}: author 'mallory' is not in authors" in result.output
    assert f"skipped  acme/shop#{wip}: title matches excludeTitles" in result.output
    assert envs(fleet_remote) == set()


def test_a_bad_author_regex_exits_2_names_the_field_and_writes_nothing(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    shop.open_pull("acme/shop", title="One", head_branch="one")
    config = write_config(SHOP + "    excludeAuthors: [alice, '/bot[/']\n")
    commits = commit_count(fleet_remote)
    workdir = tmp_path / "work"
    result = CliRunner().invoke(main, ["sync", "-c", str(config), "--workdir", str(workdir)])
    assert result.exit_code == 2
    assert "repositories[0].excludeAuthors[1]: not a valid regular expression" in result.stderr
    assert not workdir.exists() and commit_count(fleet_remote) == commits
    assert shop.requests == []  # not even GitHub was asked


LABELS_IN_VALUES = SHOP + "      labels: '<<PR_LABELS>>'\n"


def test_a_label_change_re_renders_an_environment_whose_values_read_labels(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    assert "values:\n" in SHOP  # LABELS_IN_VALUES adds to SHOP's values
    config = write_config(LABELS_IN_VALUES)
    number = shop.open_pull("acme/shop", title="One", head_branch="one", labels=["qa"])
    other = shop.open_pull("acme/shop", title="Two", head_branch="two", labels=["qa"])
    assert sync(config).exit_code == 0
    assert labels_value(fleet_remote, f"shop-pr-{number}") == "qa"

    shop.set_labels("acme/shop", number, ["qa", "area/api", "Preview"])
    report = sync_json(config)
    assert {(c["action"], c["pullRequest"]) for c in report["changes"]} == {
        ("update", number),
        ("keep", other),
    }
    assert labels_value(fleet_remote, f"shop-pr-{number}") == "Preview,area/api,qa"
    assert labels_value(fleet_remote, f"shop-pr-{other}") == "qa"

    commits = commit_count(fleet_remote)
    assert "nothing changed" in sync(config).output  # labels as they were: idle again
    assert commit_count(fleet_remote) == commits


def test_a_label_change_re_renders_nothing_where_nothing_reads_labels(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    config = write_config(SHOP + "    excludeLabels: [no-preview]\n")
    number = shop.open_pull("acme/shop", title="One", head_branch="one", labels=["qa"])
    assert sync(config).exit_code == 0
    commits = commit_count(fleet_remote)
    before = release(fleet_remote, f"shop-pr-{number}")

    shop.set_labels("acme/shop", number, ["qa", "area/api"])
    report = sync_json(config)
    assert [c["action"] for c in report["changes"]] == ["keep"]
    assert report["commit"] is None and commit_count(fleet_remote) == commits
    assert release(fleet_remote, f"shop-pr-{number}") == before

    # A label a filter reads still decides, as before.
    shop.set_labels("acme/shop", number, ["no-preview"])
    report = sync_json(config)
    assert envs(fleet_remote) == set()
    assert [(c["action"], c["pullRequest"]) for c in report["changes"]] == [("delete", number)]
