"""Issue 10, item 12: a listing is bounded in pages and seconds, and follows no link away.

acme/shop has labelled PRs with environments, one of them closed since the last run. The
real `prgen sync` runs (click, in-process, on a thread of its own so that a listing that never
ends fails the test instead of hanging it) while the fake GitHub answers acme/shop's listing with a Link
header that loops, leads to another repository or another host, never ends, or with 202
Accepted forever. Every time: the run ends within its bound, exits 1, says acme/shop is NOT
SYNCED and why, removes nothing (the closed PR's environment included), and follows no link
to another repository or host. Without the fault, the next run converges.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import Result

from prgen.config import parse_config
from prgen.testing.fake_github import FakeGitHub
from scenarios import LABEL, eligible, read_fleet, repository_entry

from conftest import Cases, config_text, run

SHOP, CART = "acme/shop", "acme/cart"
LISTING = r"/repos/acme/shop/pulls"
QUERY = "state=open&sort=created&direction=desc&per_page=100"
MAX_PAGES, TIMEOUT = 6, 1.5


@dataclass
class Run:
    code: int
    output: str
    seconds: float


@dataclass
class World:
    github: FakeGitHub
    fleet: Path
    config: Path
    workdir: Path

    def sync(self) -> Run:
        """`prgen sync` in this process, on a thread: a listing that never ends fails the test
        after a minute instead of hanging the suite."""
        done: list[Result] = []
        argv = ["sync", "--config", str(self.config), "--workdir", str(self.workdir)]
        worker = threading.Thread(target=lambda: done.append(run(*argv)), daemon=True)
        started = time.monotonic()
        worker.start()
        worker.join(60)
        assert done, "prgen sync did not end within a minute"
        return Run(done[0].exit_code, done[0].output, time.monotonic() - started)

    def page(self, number: int, repository: str = SHOP, origin: str | None = None) -> str:
        base = origin or self.github.base_url
        return f"{base}/repos/{repository}/pulls?{QUERY}&page={number}"

    def link_next(self, page: int, target: str, *, delay: float = 0.0) -> None:
        """acme/shop's page `page` links to `target` as its next page, every time it is read."""
        self.github.inject(
            "GET",
            LISTING,
            page=page,
            status=0,
            headers={"Link": f'<{target}>; rel="next"'},
            times=10_000,
            delay=delay,
        )


@pytest.fixture
def world(github: FakeGitHub, fleet_remote: Path, tmp_path: Path) -> World:
    github.add_repo(SHOP)
    github.add_repo(CART)
    for n in range(1, 4):
        github.open_pull(SHOP, title=f"shop {n}", head_branch=f"feature/{n}", labels=[LABEL])
        github.open_pull(CART, title=f"cart {n}", head_branch=f"feature/{n}", labels=[LABEL])
    text = config_text(github.base_url, str(fleet_remote), repository_entry(SHOP))
    interval = "  requestInterval: 0\n"
    assert interval in text
    text = text.replace(
        interval, f"{interval}  maxPages: {MAX_PAGES}\n  listingTimeout: {TIMEOUT}\n"
    )
    config = tmp_path / "prgen.yaml"
    config.write_text(text)
    built = World(github, fleet_remote, config, tmp_path / "work")
    assert built.sync().code == 0
    github.close_pull(SHOP, 1)
    return built


@pytest.fixture
def elsewhere() -> Iterator[FakeGitHub]:
    """Another host with the same repositories: it must never be asked."""
    with FakeGitHub(host="127.0.0.2") as other:
        other.add_repo(SHOP)
        yield other


FAULTS = (
    "page-1-links-to-itself",
    "page-2-links-back-to-page-1",
    "next-is-another-repository",
    "next-is-another-host",
    "pages-never-end",
    "slow-pages-never-end",
    "202-accepted-forever",
)


def set_up(world: World, name: str, elsewhere: FakeGitHub) -> tuple[str, float]:
    """Inject the fault; returns a word the error must say and the seconds the run may take."""
    github = world.github
    if name == "page-1-links-to-itself":
        world.link_next(1, world.page(1))
        return "already read", 20
    if name == "page-2-links-back-to-page-1":
        world.link_next(1, world.page(2))
        world.link_next(2, world.page(1))
        return "already read", 20
    if name == "next-is-another-repository":
        world.link_next(1, world.page(2, CART))
        return "another place", 20
    if name == "next-is-another-host":
        world.link_next(1, world.page(2, SHOP, elsewhere.base_url))
        return "another place", 20
    if name == "pages-never-end":
        for page in range(1, MAX_PAGES + 10):
            world.link_next(page, world.page(page + 1))
        return "github.maxpages", 20
    if name == "slow-pages-never-end":
        for page in range(1, MAX_PAGES + 10):
            world.link_next(page, world.page(page + 1), delay=0.5)
        # The bound: the timeout, plus the one page under way, plus git.
        return "github.listingtimeout", TIMEOUT + 0.5 + 5
    assert name == "202-accepted-forever"
    github.inject("GET", LISTING, status=202, body={}, times=10_000)
    return "202", 20


@pytest.mark.reliability("10.12 Bounded listing")
def test_a_listing_that_loops_wanders_or_never_ends_fails_in_bounds_and_removes_nothing(
    world: World, elsewhere: FakeGitHub, cases: Cases
) -> None:
    for name in FAULTS:
        before = read_fleet(world.fleet).environments
        world.github.clear_requests()
        says, bound = set_up(world, name, elsewhere)
        run = world.sync()
        assert run.code == 1, (name, run.output)
        assert run.seconds < bound, (name, run.seconds)
        (line,) = [line for line in run.output.splitlines() if line.startswith(f"  {SHOP}:")]
        assert "NOT SYNCED" in line and says in line.lower(), (name, run.output)
        assert read_fleet(world.fleet).environments == before, name
        assert (SHOP, 1) in before
        pages = [r for r in world.github.requests if r.path == "/repos/acme/shop/pulls"]
        assert len(pages) <= MAX_PAGES, (name, len(pages))
        assert world.github.count_requests("GET", r"/repos/acme/cart/.*") == 0, name
        assert not elsewhere.requests, name
        world.github.clear_faults()
        cases.add()
    assert world.sync().code == 0
    assert read_fleet(world.fleet).environments == eligible(world.github, [SHOP])


def test_the_default_bounds_allow_a_repository_of_10000_open_prs(tmp_path: Path) -> None:
    text = config_text("https://api.github.com", str(tmp_path), repository_entry(SHOP))
    settings = parse_config(text).github
    assert settings.max_pages * 100 >= 10_000 + 100
    assert settings.listing_timeout >= 120  # 100 pages at over a second each


@pytest.mark.parametrize(
    ("field", "value"),
    [("maxPages", "0"), ("maxPages", "'many'"), ("listingTimeout", "0"), ("listingTimeout", "-1")],
)
def test_a_bad_bound_is_a_config_error_at_its_field(tmp_path: Path, field: str, value: str) -> None:
    text = config_text("https://api.github.com", str(tmp_path), repository_entry(SHOP))
    text = text.replace("  requestInterval: 0\n", f"  requestInterval: 0\n  {field}: {value}\n")
    (tmp_path / "prgen.yaml").write_text(text)
    done = run("validate", "--config", str(tmp_path / "prgen.yaml"))
    assert done.exit_code == 2, done.output
    assert f"github.{field}" in done.output
