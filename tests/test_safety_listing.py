"""Issue 10, items 1 and 2: only an explicit, well-formed answer removes an environment.

acme/shop has five labelled PRs with environments and one unlabelled PR. The real `prgen sync`
(click, in-process) runs against the fake GitHub over HTTP and a bare fleet repository, while
the fake answers one request with something malformed or foreign:

- a PR with an environment closed, and prgen's own look-up of it answers with anything but a
  well-formed "closed" for that PR of that repository: the environment stays, acme/shop is NOT
  SYNCED, exit 1; without the fault the next run removes it;
- the listing carries a malformed item, an item of another repository, a closed item or a
  page that is not a list: nothing of acme/shop is removed (a closed PR's environment
  included), exit 1; without the fault the next run converges;
- the listing says an open PR lost its label (or turned draft): prgen reads that PR on its own,
  once, and only that answer decides.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from prgen.cli import main
from prgen.testing.fake_github import FakeGitHub
from scenarios import LABEL, Fleet, eligible, read_fleet, repository_entry

from conftest import TOKEN, Cases, config_text

SHOP, CART = "acme/shop", "acme/cart"
LISTING = r"/repos/acme/shop/pulls"
Json = Any
Edit = Callable[[Json], Json]


@dataclass
class World:
    github: FakeGitHub
    fleet: Path
    config: Path
    workdir: Path

    def sync(self, *extra: str) -> tuple[int, dict[str, Any]]:
        result = CliRunner().invoke(
            main,
            [
                "sync",
                "--config",
                str(self.config),
                "--workdir",
                str(self.workdir),
                "--output=json",
                *extra,
            ],
        )
        assert result.exit_code in (0, 1), result.output
        report = json.loads(result.stdout)
        assert report["exitCode"] == result.exit_code
        return result.exit_code, report

    def read(self) -> Fleet:
        fleet = read_fleet(self.fleet)
        assert not fleet.problems, fleet.problems
        return fleet

    def truth(self) -> dict[tuple[str, int], str]:
        return eligible(self.github, [SHOP])

    def raw_pull(self, repository: str, number: int) -> Json:
        """A PR's JSON as the fake serves it, read past prgen."""
        answer = requests.get(
            f"{self.github.base_url}/repos/{repository}/pulls/{number}",
            headers={"Authorization": f"token {TOKEN}"},
            timeout=5,
        )
        answer.raise_for_status()
        return answer.json()

    def converge(self) -> None:
        self.github.clear_faults()
        code, report = self.sync()
        assert code == 0, report
        assert self.read().environments == self.truth()


@pytest.fixture
def world(github: FakeGitHub, fleet_remote: Path, tmp_path: Path) -> World:
    github.add_repo(SHOP)
    github.add_repo(CART)
    for n in range(1, 6):
        github.open_pull(SHOP, title=f"shop {n}", head_branch=f"feature/{n}", labels=[LABEL])
    github.open_pull(SHOP, title="plain", head_branch="feature/plain")
    github.open_pull(CART, title="cart 1", head_branch="feature/1", labels=[LABEL])
    github.open_pull(CART, title="cart 2", head_branch="feature/2", labels=[LABEL])
    github.close_pull(CART, 2)
    config = tmp_path / "prgen.yaml"
    config.write_text(
        config_text(
            github.base_url,
            str(fleet_remote),
            repository_entry(SHOP),
            extra="safety: {maxDeletions: 100}\n",
        )
    )
    built = World(github, fleet_remote, config, tmp_path / "work")
    built.converge()
    assert len(built.read().environments) == 5
    return built


def assert_not_synced(world: World, report: dict[str, Any], before: Fleet) -> None:
    (outcome,) = report["repositories"]
    assert outcome["synced"] is False and outcome["error"], outcome
    assert not [c for c in report["changes"] if c["action"] == "delete"], report["changes"]
    assert world.read().environments == before.environments


# -- item 1: only an explicit "closed" closes ----------------------------------------------


def without(key: str) -> Edit:
    def edit(body: Json) -> Json:
        del body[key]
        return body

    return edit


def setting(key: str, value: Any) -> Edit:
    def edit(body: Json) -> Json:
        body[key] = value
        return body

    return edit


HTML = b"<!DOCTYPE html><html><body><h1>Unicorn!</h1>This page is taking too long</body></html>"

# What prgen's own look-up of acme/shop#2 (closed, with an environment) gets instead of its JSON.
LOOKUPS: dict[str, Callable[[World], dict[str, Any]]] = {
    "html-page-200": lambda w: {
        "status": 200,
        "raw": HTML,
        "headers": {"Content-Type": "text/html; charset=utf-8"},
    },
    "empty-object-200": lambda w: {"status": 200, "body": {}},
    "empty-body-200": lambda w: {"status": 200, "raw": b""},
    "a-list-200": lambda w: {"status": 200, "body": []},
    "no-state": lambda w: {"status": 0, "rewrite": without("state")},
    "state-null": lambda w: {"status": 0, "rewrite": setting("state", None)},
    "state-unknown": lambda w: {"status": 0, "rewrite": setting("state", "merged")},
    "number-as-text": lambda w: {"status": 0, "rewrite": setting("number", "2")},
    "another-prs-json": lambda w: {
        "status": 200,
        "body": w.raw_pull(SHOP, 3) | {"state": "closed"},
    },
    "another-repositorys-pr": lambda w: {"status": 200, "body": w.raw_pull(CART, 2)},
    "http-404": lambda w: {"status": 404},
    "http-410": lambda w: {"status": 410},
    "http-500": lambda w: {"status": 500},
    # Three: were it waited out (PyGithub waits 2 s a time), the real "closed" would follow.
    "http-202-accepted": lambda w: {"status": 202, "body": {}, "times": 3},
    "dropped-connection": lambda w: {"status": 0, "drop": True},
}


@pytest.mark.reliability("10.1 Only an explicit closed closes")
def test_a_closed_pr_counts_as_closed_only_on_a_well_formed_closed_answer(
    world: World, cases: Cases
) -> None:
    world.github.close_pull(SHOP, 2)
    for name, fault in LOOKUPS.items():
        world.github.clear_faults()
        world.github.inject("GET", r"/repos/acme/shop/pulls/2", **fault(world))
        before = world.read()
        code, report = world.sync()
        assert code == 1, (name, report)
        assert_not_synced(world, report, before)
        assert "#2" in report["repositories"][0]["error"], (name, report)
        assert (SHOP, 2) in world.read().environments
        cases.add()
    # Without a fault, GitHub's well-formed "closed" removes it.
    world.converge()
    assert (SHOP, 2) not in world.read().environments


# -- item 2: a malformed listing is a failed listing ------------------------------------


def item(number: int, edit: Edit) -> Edit:
    """Edit the listing's item for PR `number`."""

    def rewrite(page: Json) -> Json:
        (found,) = [entry for entry in page if entry["number"] == number]
        edit(found)
        return page

    return rewrite


def nested(path: str, value: Any = ...) -> Edit:
    """Set (or, with no value, delete) a dotted key."""
    *parents, last = path.split(".")

    def edit(body: Json) -> Json:
        target = body
        for key in parents:
            target = target[key]
        if value is ...:
            del target[last]
        else:
            target[last] = value
        return body

    return edit


def appended(extra: Callable[[World], Json]) -> Callable[[World], Edit]:
    def make(world: World) -> Edit:
        added = extra(world)
        return lambda page: [*page, added]

    return make


# Each rewrites the real listing page of acme/shop. PR 3 has an environment and stays open.
LISTINGS: dict[str, Callable[[World], dict[str, Any]]] = {
    "html-page-200": lambda w: {
        "status": 200,
        "raw": HTML,
        "headers": {"Content-Type": "text/html"},
    },
    "empty-object-200": lambda w: {"status": 200, "body": {}},
    "object-with-items-200": lambda w: {"status": 0, "rewrite": lambda page: {"items": page}},
    "labels-missing": lambda w: {"status": 0, "rewrite": item(3, nested("labels"))},
    "labels-null": lambda w: {"status": 0, "rewrite": item(3, nested("labels", None))},
    "labels-a-string": lambda w: {"status": 0, "rewrite": item(3, nested("labels", LABEL))},
    "label-without-name": lambda w: {"status": 0, "rewrite": item(3, nested("labels", [{}]))},
    "draft-missing": lambda w: {"status": 0, "rewrite": item(3, nested("draft"))},
    "draft-a-string": lambda w: {"status": 0, "rewrite": item(3, nested("draft", "false"))},
    "state-missing": lambda w: {"status": 0, "rewrite": item(3, nested("state"))},
    "state-closed": lambda w: {"status": 0, "rewrite": item(3, nested("state", "closed"))},
    "number-as-text": lambda w: {"status": 0, "rewrite": item(3, nested("number", "3"))},
    "head-sha-missing": lambda w: {"status": 0, "rewrite": item(3, nested("head.sha"))},
    "head-ref-a-number": lambda w: {"status": 0, "rewrite": item(3, nested("head.ref", 7))},
    "head-repo-missing": lambda w: {"status": 0, "rewrite": item(3, nested("head.repo"))},
    "base-ref-missing": lambda w: {"status": 0, "rewrite": item(3, nested("base.ref"))},
    "base-repo-null": lambda w: {"status": 0, "rewrite": item(3, nested("base.repo", None))},
    "user-a-string": lambda w: {"status": 0, "rewrite": item(3, nested("user", "alice"))},
    "association-missing": lambda w: {
        "status": 0,
        "rewrite": item(3, nested("author_association")),
    },
    "item-is-a-string": lambda w: {"status": 0, "rewrite": lambda page: [*page, "#7"]},
    "another-repositorys-pr": lambda w: {
        "status": 0,
        "rewrite": appended(lambda w: w.raw_pull(CART, 1))(w),
    },
    "pr-3-of-another-repository": lambda w: {
        "status": 0,
        "rewrite": item(3, nested("base.repo.full_name", "evil/shop")),
    },
}


@pytest.mark.reliability("10.2 A malformed listing is a failed listing")
def test_a_malformed_or_foreign_listing_removes_nothing(world: World, cases: Cases) -> None:
    world.github.close_pull(SHOP, 1)  # closed, with an environment: kept while the listing fails
    for name, fault in LISTINGS.items():
        world.github.inject("GET", LISTING, **fault(world))
        before = world.read()
        code, report = world.sync()
        assert code == 1, (name, report)
        assert_not_synced(world, report, before)
        assert (SHOP, 1) in world.read().environments and (SHOP, 3) in world.read().environments
        cases.add()
    world.converge()
    assert (SHOP, 1) not in world.read().environments


@pytest.mark.reliability("10.2 A malformed listing is a failed listing")
def test_a_pr_twice_across_pages_must_say_the_same_both_times(world: World, cases: Cases) -> None:
    for n in range(7, 110):  # 109 open PRs: two pages
        world.github.open_pull(SHOP, title=f"shop {n}", head_branch=f"feature/{n}")
    world.converge()
    newest = world.raw_pull(SHOP, 109)  # on page 1 (newest first), served again on page 2
    for name, extra, code in (
        ("identical", newest, 0),
        ("different-title", newest | {"title": "changed"}, 1),
        ("different-labels", newest | {"labels": [{"name": "other"}]}, 1),
    ):
        before = world.read()
        world.github.inject(
            "GET", LISTING, page=2, status=0, rewrite=lambda page, e=extra: [*page, e]
        )
        got, report = world.sync()
        assert got == code, (name, report)
        if code:
            assert_not_synced(world, report, before)
            assert "twice" in report["repositories"][0]["error"]
        assert world.read().environments == before.environments
        cases.add()


@pytest.mark.reliability("10.2 A malformed listing is a failed listing")
def test_a_renamed_repository_that_github_reports_is_still_its_own(
    world: World, cases: Cases
) -> None:
    def renamed(body: Json) -> Json:
        items = body if isinstance(body, list) else [body]
        for entry in items:
            entry["base"]["repo"]["full_name"] = "acme/store"
        return body

    # GitHub answers for the old name with the new one (it redirects); the PRs carry the new.
    world.github.inject(
        "GET", r"/repos/acme/shop", status=0, rewrite=setting("full_name", "acme/store")
    )
    world.github.inject("GET", LISTING, status=0, rewrite=renamed)
    world.github.clear_requests()
    code, report = world.sync()
    assert code == 0, report
    assert world.github.count_requests("GET", r"/repos/acme/shop") == 1
    assert world.read().environments == world.truth()
    # Another name that GitHub does not report for the configured repository is foreign.
    world.github.inject(
        "GET", r"/repos/acme/shop", status=0, rewrite=setting("full_name", "acme/shop")
    )
    world.github.inject("GET", LISTING, status=0, rewrite=renamed)
    code, report = world.sync()
    assert code == 1 and "acme/store" in report["repositories"][0]["error"]
    cases.add(2)


# -- item 2: an open PR that stopped looking eligible is confirmed on its own --------------


CHANGES: dict[str, tuple[Edit, Callable[[FakeGitHub], None]]] = {
    "label-removed": (
        nested("labels", []),
        lambda github: github.set_labels(SHOP, 3, []),
    ),
    "turned-draft": (
        nested("draft", True),
        lambda github: github.set_draft(SHOP, 3, True),
    ),
    "looks-like-a-fork": (
        nested("head.repo.full_name", "someone/fork"),
        lambda github: None,  # never true here: the PR read on its own is no fork
    ),
}


@pytest.mark.reliability("10.2 A malformed listing is a failed listing")
@pytest.mark.parametrize("name", list(CHANGES))
def test_an_open_pr_that_stopped_looking_eligible_is_confirmed_on_its_own_first(
    world: World, name: str, cases: Cases
) -> None:
    listed, really = CHANGES[name]
    ONE = r"/repos/acme/shop/pulls/3"

    # The listing alone says so; PR 3 read on its own says otherwise: it keeps its environment.
    world.github.inject("GET", LISTING, status=0, rewrite=item(3, listed))
    world.github.clear_requests()
    before = world.read()
    code, report = world.sync()
    assert code == 0, report
    assert world.github.count_requests("GET", ONE) == 1
    assert world.read().environments == before.environments
    assert not [c for c in report["changes"] if c["action"] != "keep"]

    # The read on its own fails: the environment stays, the repository is not synced.
    world.github.inject("GET", LISTING, status=0, rewrite=item(3, listed))
    world.github.inject("GET", ONE, status=500)
    code, report = world.sync()
    assert code == 1
    assert_not_synced(world, report, before)

    # It is true (where the case can be): one read confirms it and the environment goes.
    if name != "looks-like-a-fork":
        really(world.github)
        world.github.clear_requests()
        code, report = world.sync()
        assert code == 0, report
        assert world.github.count_requests("GET", ONE) == 1
        assert [
            (c["action"], c["pullRequest"]) for c in report["changes"] if c["action"] != "keep"
        ] == [("delete", 3)]
        assert (SHOP, 3) not in world.read().environments
    cases.add()


def test_an_idle_sync_reads_no_pr_on_its_own(world: World) -> None:
    world.github.clear_requests()
    code, _ = world.sync()
    assert code == 0
    assert world.github.count_requests("GET", r"/repos/acme/shop/pulls/\d+") == 0
    assert world.github.count_requests("GET", r"/repos/acme/shop") == 0


@pytest.mark.reliability("10.2 A malformed listing is a failed listing")
def test_a_pr_pushed_past_the_limit_by_a_confirmed_one_is_read_on_its_own_too(
    world: World, cases: Cases
) -> None:
    # Five environments; the limit drops to four, and the listing says PR 5 lost its label.
    text = world.config.read_text()
    world.config.write_text(
        text.replace(f"    labels: [{LABEL}]\n", f"    labels: [{LABEL}]\n    maxEnvironments: 4\n")
    )
    world.github.inject("GET", LISTING, status=0, rewrite=item(5, nested("labels", [])))
    world.github.clear_requests()
    # A new limit is a new configuration identity: this run takes the environments over.
    code, report = world.sync("--adopt")
    assert code == 0, report
    # PR 5 read on its own is eligible after all, which pushes PR 1 past the limit: PR 1 is
    # read on its own too before it goes. One read per removal (and per doubt).
    reads = [r.path for r in world.github.requests if r.path.startswith("/repos/acme/shop/pulls/")]
    assert reads == ["/repos/acme/shop/pulls/5", "/repos/acme/shop/pulls/1"]
    # The others are rewritten only to carry the new configuration identity.
    assert [
        (c["action"], c["pullRequest"])
        for c in report["changes"]
        if c["action"] not in ("keep", "update")
    ] == [("delete", 1)]
    cases.add()
