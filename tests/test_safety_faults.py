"""Issue 5, item 1: a fault at GitHub deletes nothing.

Two repositories, acme/shop and acme/cart, each with open, labelled PRs that already have
environments. For faults in the middle of pagination acme/shop has 205 open PRs (three pages
of 100), only some of them labelled, so its environments sit on every page. A fault is injected on acme/shop's listing; the
real `prgen sync` (click, in-process) runs against the fake GitHub over HTTP and a bare
fleet repository. For every fault:

- no environment of an open, eligible PR is removed, in either repository, and acme/shop's
  environments are kept exactly as they were (a closed PR's too: the listing is unknown);
- the run names acme/shop as not synced, in text and in `--output json`, and exits 1;
- acme/cart is synced as usual (its new PR gets an environment, its closed one goes);
- the next run without the fault converges: the fleet holds exactly the eligible set.

Pages that shift during pagination are no fault: such a run must exit 0 and remove only
what is truly closed. In stress mode each fault runs several rounds of fresh PR events.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from prgen.cli import main
from prgen.testing.fake_github import FakeGitHub, RecordedRequest
from scenarios import LABEL, Fleet, Key, Switch, eligible, pulls, read_fleet, repository_entry
from stress import scale

from conftest import Cases, config_text

SHOP, CART = "acme/shop", "acme/cart"
REPOSITORIES = (SHOP, CART)
LISTING = r"/repos/acme/shop/pulls"
ONE_PULL = r"/repos/acme/shop/pulls/\d+"
ROUNDS = scale(1, 5)


@dataclass(frozen=True)
class Shop:
    """acme/shop's PRs at the start: how many are open, which are labelled, which close."""

    open: int
    labelled: frozenset[int]
    closable: tuple[int, ...]  # one closes each round


ONE_PAGE = Shop(10, frozenset({1, 2, 3, 4, 5, 8, 10}), (1, 2, 3, 4, 5))
# 205 open PRs: three pages of 100. Labelled: some on each page, and a run of them at the page
# 1/2 boundary (index 100, newest first; each round opens up to two PRs and moves it up by as
# many), so the PR that a shifting page hides always has an environment. The closing ones are
# well away from page boundaries.
THREE_PAGES = Shop(
    205,
    frozenset({1, 6, 60, 70, 80, 90, 150, 180, 204, *range(105, 107 + 2 * ROUNDS)}),
    (60, 70, 80, 90, 180),
)
RESET = int(time.time()) + 1800

SECONDARY_RATE_LIMIT = {
    "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you "
    "try again. If you reach out to GitHub Support for help, please include the request ID "
    "0400:2B4E:1C1C5A:3A1E5B:6650B8C2.",
    "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/"
    "rate-limits-for-the-rest-api#about-secondary-rate-limits",
}
PRIMARY_RATE_LIMIT = {
    "message": "API rate limit exceeded for installation ID 4242.",
    "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
}
EXHAUSTED = {
    "X-RateLimit-Limit": "5000",
    "X-RateLimit-Remaining": "0",
    "X-RateLimit-Used": "5000",
    "X-RateLimit-Reset": str(RESET),
    "X-RateLimit-Resource": "core",
}


@dataclass(frozen=True)
class Fault:
    """A fault on one route (path regex) of acme/shop, and what the run must say about it."""

    route: str
    inject: dict[str, Any]
    says: tuple[str, ...]  # one of these, case-insensitive, in the reported error
    timeout: float = 5
    shop: Shop = ONE_PAGE
    # GitHub says no points are left: acme/cart, listed after it, is not listed either
    # (github.rateLimitReserve) and is kept as it is.
    spends_the_budget: bool = False


FAULTS = {
    "http-500": Fault(LISTING, {"status": 500}, ("500",)),
    "http-502": Fault(LISTING, {"status": 502}, ("502",)),
    "http-503": Fault(LISTING, {"status": 503}, ("503",)),
    "http-401-bad-credentials": Fault(
        LISTING, {"status": 401, "body": {"message": "Bad credentials"}}, ("401",)
    ),
    "http-403-secondary-rate-limit": Fault(
        LISTING,
        # Longer than github.listingTimeout: not waited out (a shorter one is, test_github_listing).
        {"status": 403, "body": SECONDARY_RATE_LIMIT, "headers": {"Retry-After": "600"}},
        ("secondary rate limit, retry after 600s",),
    ),
    "http-403-rate-limit-exhausted": Fault(
        LISTING,
        {"status": 403, "body": PRIMARY_RATE_LIMIT, "headers": EXHAUSTED},
        ("rate limited by github (quota resets",),
        spends_the_budget=True,
    ),
    "http-429-rate-limit-exhausted": Fault(
        LISTING,
        {"status": 429, "body": PRIMARY_RATE_LIMIT, "headers": EXHAUSTED},
        ("http 429: rate limited by github (quota resets",),
        spends_the_budget=True,
    ),
    "http-404-repository": Fault(
        LISTING,
        {
            "status": 404,
            "body": {
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/rest/pulls/pulls#list-pull-requests",
            },
        },
        ("404",),
    ),
    "slow-answer-past-timeout": Fault(
        LISTING, {"status": 0, "delay": 2.5}, ("timed out", "timeout"), timeout=1
    ),
    "dropped-connection": Fault(
        LISTING, {"status": 0, "drop": True}, ("connection", "disconnected", "aborted")
    ),
    "page-2-of-3-fails": Fault(LISTING, {"status": 502, "page": 2}, ("502",), shop=THREE_PAGES),
    "page-2-of-3-dropped": Fault(
        LISTING,
        {"status": 0, "drop": True, "page": 2},
        ("connection", "disconnected", "aborted"),
        shop=THREE_PAGES,
    ),
    "page-3-of-3-rate-limited": Fault(
        LISTING,
        {"status": 403, "body": PRIMARY_RATE_LIMIT, "headers": EXHAUSTED, "page": 3},
        ("rate limit",),
        shop=THREE_PAGES,
        spends_the_budget=True,
    ),
    # A PR with an environment is missing from the listing (it closed): prgen asks for it
    # on its own, and that call fails.
    "closed-pr-lookup-fails": Fault(ONE_PULL, {"status": 500}, ("500",)),
}


def write_config(
    path: Path, github: FakeGitHub, fleet: Path, *, timeout: float, retries: int
) -> Path:
    text = config_text(
        github.base_url,
        str(fleet),
        "".join(repository_entry(name) for name in REPOSITORIES),
        extra="safety: {maxDeletions: 1000}\n",
    )
    text = text.replace("  timeout: 5\n", f"  timeout: {timeout}\n")
    text = text.replace("  retries: 0\n", f"  retries: {retries}\n")
    assert f"timeout: {timeout}\n" in text and f"retries: {retries}\n" in text
    path.write_text(text)
    return path


@dataclass
class World:
    github: FakeGitHub
    fleet: Path
    workdir: Path
    tmp: Path
    shop: Shop
    config: Path = field(init=False)
    _closed: int = 0

    def configure(self, *, timeout: float = 5, retries: int = 0) -> None:
        self.config = write_config(
            self.tmp / "prgen.yaml", self.github, self.fleet, timeout=timeout, retries=retries
        )

    def sync(self, *args: str) -> Result:
        return CliRunner().invoke(
            main, ["sync", "--config", str(self.config), "--workdir", str(self.workdir), *args]
        )

    def sync_json(self) -> tuple[int, dict[str, Any]]:
        result = self.sync("--output", "json")
        assert result.exit_code in (0, 1), result.output
        return result.exit_code, json.loads(result.stdout)

    def truth(self) -> dict[Key, str]:
        return eligible(self.github, REPOSITORIES)

    def read(self) -> Fleet:
        fleet = read_fleet(self.fleet)
        assert not fleet.problems, fleet.problems
        return fleet

    def open_shop_numbers(self) -> list[int]:
        """acme/shop's open PRs in listing order: newest first."""
        return sorted(
            (p.number for p in pulls(self.github, SHOP) if p.state == "open"), reverse=True
        )

    def events(self) -> set[Key]:
        """New PR events in both repositories; returns the PRs that closed."""
        github = self.github
        shop_gone = self.shop.closable[self._closed]
        self._closed += 1
        github.close_pull(SHOP, shop_gone)
        github.open_pull(
            SHOP, title="new in shop", head_branch=f"shop-{time.time_ns()}", labels=[LABEL]
        )
        cart_open = [
            p.number for p in pulls(github, CART) if p.state == "open" and LABEL in p.labels
        ]
        github.close_pull(CART, cart_open[0])
        github.push(CART, cart_open[-1])
        github.open_pull(
            CART, title="new in cart", head_branch=f"cart-{time.time_ns()}", labels=[LABEL]
        )
        return {(SHOP, shop_gone), (CART, cart_open[0])}

    def converge(self) -> None:
        """A run without faults makes the fleet exactly the eligible set."""
        self.github.clear_faults()
        code, report = self.sync_json()
        assert code == 0, report
        assert [r["synced"] for r in report["repositories"]] == [True, True]
        assert self.read().environments == self.truth()


MakeWorld = Callable[[Shop], World]


@pytest.fixture
def make_world(github: FakeGitHub, fleet_remote: Path, tmp_path: Path) -> MakeWorld:
    """Both repositories with their PRs, and a first sync that gave them environments."""

    def make(shop: Shop) -> World:
        github.add_repo(SHOP)
        github.add_repo(CART)
        for n in range(1, shop.open + 1):
            labels = [LABEL] if n in shop.labelled else []
            github.open_pull(SHOP, title=f"shop {n}", head_branch=f"feature/{n}", labels=labels)
        for n in range(1, 4):
            github.open_pull(CART, title=f"cart {n}", head_branch=f"feature/{n}", labels=[LABEL])
        github.open_pull(CART, title="unlabelled", head_branch="feature/plain")
        world = World(github, fleet_remote, tmp_path / "work", tmp_path, shop)
        world.configure()
        world.converge()
        assert len(world.read().of(SHOP)) == len(shop.labelled)
        return world

    return make


def assert_nothing_lost(before: Fleet, after: Fleet, truth: dict[Key, str]) -> None:
    """No environment of a PR that is open and eligible now was removed, in any repository."""
    lost = [key for key in before.environments if key in truth and key not in after.environments]
    assert not lost, f"environments of open, eligible PRs were removed: {lost}"


def assert_faulted_run(world: World, before: Fleet, after: Fleet, cart_listed: bool = True) -> None:
    truth = world.truth()
    assert_nothing_lost(before, after, truth)
    # acme/shop's listing failed: its environments stay exactly as they are, closed PR included.
    assert after.of(SHOP) == before.of(SHOP)
    if cart_listed:  # acme/cart was synced as usual.
        assert after.of(CART) == {key: sha for key, sha in truth.items() if key[0] == CART}
    else:
        assert after.of(CART) == before.of(CART)


def says(text: str, fault: Fault) -> bool:
    return any(word in text.lower() for word in fault.says)


@pytest.mark.reliability("1. Faults at GitHub delete nothing")
@pytest.mark.parametrize("name", list(FAULTS))
def test_a_fault_deletes_nothing_and_the_next_run_converges(
    make_world: MakeWorld, name: str, cases: Cases
) -> None:
    fault = FAULTS[name]
    world = make_world(fault.shop)
    for _ in range(ROUNDS):
        world.configure(timeout=fault.timeout)
        closed = world.events()
        before = world.read()

        # Text output, one commit for acme/cart's changes.
        world.github.inject("GET", fault.route, **fault.inject)
        result = world.sync()
        assert result.exit_code == 1, result.output
        lines = {line.split(":")[0].strip(): line for line in result.output.splitlines()}
        assert "NOT SYNCED" in lines[SHOP] and says(lines[SHOP], fault), result.output
        after = world.read()
        if fault.spends_the_budget:
            assert "NOT SYNCED (not listed: 0 rate-limit points left" in lines[CART]
        else:
            assert "NOT SYNCED" not in lines[CART] and "with an environment" in lines[CART]
            assert (CART, next(n for r, n in closed if r == CART)) not in after.environments
        assert_faulted_run(world, before, after, cart_listed=not fault.spends_the_budget)

        # The same fault again, JSON output: acme/cart has nothing new by now.
        world.github.clear_faults()
        world.github.inject("GET", fault.route, **fault.inject)
        code, report = world.sync_json()
        assert code == 1 and report["exitCode"] == 1
        outcome = {r["name"]: r for r in report["repositories"]}
        assert outcome[SHOP]["synced"] is False and says(outcome[SHOP]["error"], fault), outcome
        assert outcome[CART]["synced"] is not fault.spends_the_budget
        assert not [c for c in report["changes"] if c["action"] == "delete"]
        assert report["commit"] is None
        assert world.read().environments == after.environments

        world.configure()  # the default timeout again
        world.converge()
        assert not closed & world.read().environments.keys()
        cases.add()


@dataclass
class ShiftingPage:
    """A request hook: when acme/shop's page 2 is asked for (once), a PR closes or opens.

    A PR closing on page 1 moves every later PR up one place: the first PR of page 2 slides
    onto page 1, read already, and is missing from the listing although it is open (`hidden`).
    A PR opening lands on top of page 1 and pushes page 1's last PR onto page 2, twice served.
    """

    world: World
    opens: bool
    changed: int | None = None  # the PR that closed or opened meanwhile
    hidden: int | None = None

    def __call__(self, request: RecordedRequest) -> None:
        if self.changed is not None or request.path != LISTING or request.page != 2:
            return
        github = self.world.github
        if self.opens:
            branch = f"late-{time.time_ns()}"
            self.changed = github.open_pull(
                SHOP, title="opened meanwhile", head_branch=branch, labels=[LABEL]
            )
            return
        order = self.world.open_shop_numbers()
        self.changed = next(n for n in order[:100] if LABEL in github.pull(SHOP, n).labels)
        self.hidden = order[100]
        github.close_pull(SHOP, self.changed)


@pytest.mark.reliability("1. Faults at GitHub delete nothing")
@pytest.mark.parametrize("opens", [False, True], ids=["pr-closes", "pr-opens"])
def test_pages_that_shift_while_paginating_converge_and_delete_only_closed_prs(
    make_world: MakeWorld, opens: bool, cases: Cases
) -> None:
    world = make_world(THREE_PAGES)
    switch = Switch()
    world.github.on_request(switch)
    for _ in range(ROUNDS):
        closed = world.events()
        before = world.read()
        shift = switch.current = ShiftingPage(world, opens)
        code, report = world.sync_json()
        switch.current = None
        assert shift.changed is not None, "the hook never ran: acme/shop has no page 2"
        assert code == 0 and report["exitCode"] == 0, report
        assert [r["synced"] for r in report["repositories"]] == [True, True]
        after = world.read()
        truth = world.truth()
        assert_nothing_lost(before, after, truth)
        removed = before.environments.keys() - after.environments.keys()
        assert removed <= {key for key in before.environments if key not in truth}
        assert closed <= removed, "a complete listing must remove what was closed before it"
        if not opens:
            assert (SHOP, shift.hidden) in before.environments, "meant to hide a PR with a folder"
            assert (SHOP, shift.hidden) in after.environments, "the PR hidden by the shift is gone"
        world.converge()
        cases.add()


RETRIED = {
    # (fault, how many requests acme/shop's first page gets, exit code)
    "one-502-is-retried": ({"status": 502, "times": 1}, 2, 0),
    "one-dropped-connection-is-retried": ({"status": 0, "drop": True, "times": 1}, 2, 0),
    "502-on-every-try-fails": ({"status": 502, "times": 3}, 3, 1),
    "a-rate-limit-is-not-waited-out": (
        {"status": 429, "body": PRIMARY_RATE_LIMIT, "headers": EXHAUSTED, "times": 5},
        1,
        1,
    ),
    "a-secondary-rate-limit-is-not-waited-out": (  # past github.listingTimeout
        {
            "status": 403,
            "body": SECONDARY_RATE_LIMIT,
            "headers": {"Retry-After": "600"},
            "times": 5,
        },
        1,
        1,
    ),
}


@pytest.mark.reliability("1. Faults at GitHub delete nothing")
@pytest.mark.parametrize("name", list(RETRIED))
def test_with_retries_a_transient_fault_is_retried(
    make_world: MakeWorld, name: str, cases: Cases
) -> None:
    inject, requests, exit_code = RETRIED[name]
    world = make_world(ONE_PAGE)
    world.configure(retries=2)
    closed = world.events()
    before = world.read()
    world.github.clear_requests()
    world.github.inject("GET", LISTING, page=1, **inject)
    code, report = world.sync_json()
    first_page = [
        r for r in world.github.requests if r.path == "/repos/acme/shop/pulls" and r.page == 1
    ]
    assert len(first_page) == requests
    assert code == exit_code == report["exitCode"], report
    after = world.read()
    assert_nothing_lost(before, after, world.truth())
    if exit_code == 0:
        assert after.environments == world.truth()
        assert closed.isdisjoint(after.environments)
    else:
        # GitHub said no points are left: acme/cart is not listed either (github.rateLimitReserve).
        spent = inject.get("headers") is EXHAUSTED
        assert_faulted_run(world, before, after, cart_listed=not spent)
        world.converge()
    cases.add()
