"""The HTTP cache under PyGithub: every GET conditional, a 304 free, nothing served unconfirmed.

Real `prgen sync` runs (fresh processes where it matters) against the fake GitHub, which
counts rate-limit points the way GitHub does (a 304 costs none).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result

from prgen.cli import main
from prgen.config import AppSettings, GitHubSettings
from prgen.github.cache import HttpCache, credential_key, resolve_cache_dir
from prgen.github.client import GitHubClients
from prgen.github.pulls import GitHubSource
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub
from prgen.testing.fake_github.faults import Answer
from processes import prgen_command

from conftest import HEALTH, SHOP, TOKEN, git

Config = Callable[..., Path]
PULLS = r"/repos/acme/shop/pulls"


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo("acme/shop")
    return github


def sync(config: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, ["sync", "--config", str(config), *args], env=env)


def sync_process(
    config: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`prgen sync` in a process of its own: nothing but the cache files carries over."""
    return subprocess.run(
        [*prgen_command(), "sync", "--config", str(config), "--output", "json"],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def environments(remote: Path) -> set[str]:
    names = git("ls-tree", "-r", "--name-only", "main", "--", "previews/dev", cwd=remote).split()
    return {name.split("/")[2] for name in names if name.count("/") >= 3}


def listing(github: FakeGitHub) -> list[Answer]:
    """The answers to the listing of pull requests (not to the read of PR commands)."""
    return [a for a in github.answers if re.fullmatch(PULLS, a.request.path)]


def cache_files(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "prgen" / "http").glob("*.sqlite"))


def test_an_idle_resync_in_a_fresh_process_costs_no_rate_limit_point(
    shop: FakeGitHub, write_config: Config
) -> None:
    for n in range(150):  # two pages
        shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}")
    config = write_config()
    first = sync_process(config)
    assert first.returncode == 0, first.stderr
    # Two listing pages and the read of PR commands (the repository's comments).
    assert shop.points_used() == 3 and shop.not_modified() == 0

    shop.clear_requests()
    idle = sync_process(config)
    assert idle.returncode == 0, idle.stderr
    assert json.loads(idle.stdout)["commit"] is None
    statuses = [answer.status for answer in shop.answers]
    assert statuses == [304, 304, 304]  # both pages and the comments asked again, confirmed
    assert shop.points_used() == 0


def test_a_push_costs_exactly_the_pages_that_changed(
    shop: FakeGitHub, write_config: Config
) -> None:
    numbers = [
        shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}") for n in range(150)
    ]
    config = write_config()
    assert sync(config).exit_code == 0
    shop.clear_requests()
    shop.push("acme/shop", numbers[0])  # the oldest PR: on page 2 (newest first)
    result = sync(config)
    assert result.exit_code == 0, result.output
    assert [(a.request.page, a.status) for a in listing(shop)] == [(1, 304), (2, 200)]
    assert shop.points_used() == 1


def test_the_cache_stores_of_a_listing_only_what_prgen_reads(
    shop: FakeGitHub, tmp_path: Path
) -> None:
    """GitHub's ~16 KB per PR is kept as the few fields prgen reads, and reads the same."""
    for n in range(3):
        shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}", labels=["preview"])
    settings = GitHubSettings(api_url=shop.base_url, retries=0, timeout=5)
    clients = GitHubClients(settings, {"GITHUB_TOKEN": TOKEN}, cache_dir=tmp_path / "c")
    fresh = GitHubSource.for_clients(clients).list_open("acme/shop")
    again = GitHubSource.for_clients(clients).list_open("acme/shop")
    assert shop.answers[-1].status == 304
    assert again == fresh and len(fresh.pull_requests) == 3
    assert fresh.pull_requests[0].labels == ("preview",)

    (path,) = (tmp_path / "c").glob("*.sqlite")
    with contextlib.closing(sqlite3.connect(path)) as db:
        (stored,) = db.execute("SELECT value FROM responses").fetchone()
    full = requests.get(
        f"{shop.base_url}/repos/acme/shop/pulls?state=open",
        headers={"Authorization": f"token {TOKEN}"},
        timeout=5,
    ).content
    assert len(stored) < len(full) / 3, (len(stored), len(full))


def test_the_second_identical_get_still_reaches_github_and_is_answered_304(
    shop: FakeGitHub, tmp_path: Path, write_config: Config
) -> None:
    """No answer is served on GitHub's max-age=60: each use waits for GitHub's 304."""
    shop.open_pull("acme/shop", title="One", head_branch="one")
    settings = GitHubSettings(api_url=shop.base_url, retries=0, timeout=5)
    clients = GitHubClients(settings, {"GITHUB_TOKEN": TOKEN}, cache_dir=tmp_path / "c")
    source = GitHubSource.for_clients(clients)
    first = source.list_open("acme/shop")
    second = source.list_open("acme/shop")
    assert first == second and first.complete
    assert [a.status for a in shop.answers] == [200, 304]
    assert clients.transport.ledger.not_modified == 1
    assert clients.transport.ledger.budget().remaining == 4999  # the 304's own count


def test_two_credentials_never_share_answers(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    shop.add_token("other-token")
    shop.open_pull("acme/shop", title="One", head_branch="one")
    config = write_config()
    assert sync(config).exit_code == 0
    shop.clear_requests()

    assert sync(config, env={"GITHUB_TOKEN": "other-token"}).exit_code == 0
    assert [a.status for a in listing(shop)] == [200]  # its own first answer, not a 304
    assert "If-None-Match".lower() not in shop.answers[0].request.headers
    assert len(cache_files(tmp_path)) == 2
    shop.clear_requests()

    assert sync(config).exit_code == 0
    assert [a.status for a in listing(shop)] == [304]


def test_the_token_and_the_authorization_header_are_never_stored(
    shop: FakeGitHub, write_config: Config, tmp_path: Path
) -> None:
    shop.open_pull("acme/shop", title="One", head_branch="one")
    config = write_config()
    assert sync(config).exit_code == 0
    assert sync(config).exit_code == 0
    stored = b"".join(path.read_bytes() for path in (tmp_path / "cache").rglob("*.sqlite*"))
    assert b"acme/shop" in stored  # the answers are there
    assert TOKEN.encode() not in stored
    # requests-cache keeps the request's header names; the Authorization value is redacted.
    values = re.findall(rb'"authorization":\s*"([^"]*)"', stored.lower())
    assert values and set(values) == {b"redacted"}
    assert all(TOKEN not in path.name for path in cache_files(tmp_path))


def test_an_installation_is_keyed_by_its_ids_and_tokens_by_their_hash() -> None:
    app = GitHubSettings(
        api_url="https://ghe.example.com/api/v3",
        app=AppSettings(1, 2, None, "KEY"),
    )
    other_installation = GitHubSettings(api_url=app.api_url, app=AppSettings(1, 3, None, "KEY"))
    token = GitHubSettings(api_url=app.api_url)
    assert credential_key(app, "hourly-1") == credential_key(app, "hourly-2")
    assert credential_key(app, None) != credential_key(other_installation, None)
    assert credential_key(token, "a") != credential_key(token, "b")
    assert "a" * 8 not in credential_key(token, "a" * 40)


def test_a_corrupt_cache_file_costs_one_full_price_run_and_nothing_else(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    shop.open_pull("acme/shop", title="One", head_branch="one")
    config = write_config()
    # A process of its own: no SQLite connection of this test's process holds the file open.
    assert sync_process(config).returncode == 0
    [path] = cache_files(tmp_path)
    path.write_bytes(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    shop.clear_requests()

    result = sync(config)
    assert result.exit_code == 0, result.output
    assert [a.status for a in listing(shop)] == [200]
    assert environments(fleet_remote) == {"shop-pr-1"}
    shop.clear_requests()
    assert sync(config).exit_code == 0
    assert [a.status for a in listing(shop)] == [304]


def test_an_unwritable_cache_dir_is_a_warning_and_a_run_without_cache(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    shop.open_pull("acme/shop", title="One", head_branch="one")
    config = write_config()
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory\n")
    result = sync(config, "--cache-dir", str(blocker / "cache"))
    assert result.exit_code == 0, result.output
    assert "the HTTP cache is off for this run" in result.stderr
    assert environments(fleet_remote) == {"shop-pr-1"}


def test_cache_dir_off_turns_the_cache_off(
    shop: FakeGitHub, write_config: Config, tmp_path: Path
) -> None:
    shop.open_pull("acme/shop", title="One", head_branch="one")
    config = write_config()
    for _ in range(2):
        assert sync(config, env={"PRGEN_CACHE_DIR": "off"}).exit_code == 0
    assert [a.status for a in listing(shop)] == [200, 200]
    assert cache_files(tmp_path) == []
    assert resolve_cache_dir("OFF", {}) is None
    assert resolve_cache_dir(None, {"XDG_CACHE_HOME": "/x"}) == Path("/x/prgen/http")


@pytest.mark.parametrize("fault", ["500", "drop"])
def test_a_cached_listing_is_never_used_without_a_304(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, fault: str
) -> None:
    shop.open_pull("acme/shop", title="One", head_branch="one")
    config = write_config()
    assert sync(config).exit_code == 0
    assert environments(fleet_remote) == {"shop-pr-1"}
    shop.clear_requests()
    # The conditional request fails: the stored answer must not stand in for GitHub's.
    shop.inject("GET", PULLS, status=500, drop=fault == "drop", times=5)
    result = sync(config, "--output", "json")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["repositories"][0]["synced"] is False
    assert environments(fleet_remote) == {"shop-pr-1"}
    assert all(a.status != 304 for a in shop.answers)
    assert shop.answers and "if-none-match" in shop.answers[0].request.headers


def test_the_cache_is_pruned_to_its_size_limit(shop: FakeGitHub, tmp_path: Path) -> None:
    for n in range(3):
        shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}")
    settings = GitHubSettings(api_url=shop.base_url, retries=0, timeout=5)
    clients = GitHubClients(settings, {"GITHUB_TOKEN": TOKEN}, cache_dir=tmp_path / "c")
    source = GitHubSource.for_clients(clients)
    for number in (1, 2, 3):
        source.read("acme/shop", number)
    assert clients.transport.cache is not None
    path = clients.transport.cache.path
    with contextlib.closing(sqlite3.connect(path)) as connection:
        [(largest,)] = connection.execute("SELECT max(length(value)) FROM responses").fetchall()
    # Room for one answer: the two stored longest ago go.
    assert HttpCache.open(path.parent, path.stem, max_bytes=largest)
    shop.clear_requests()
    again = GitHubSource.for_clients(
        GitHubClients(settings, {"GITHUB_TOKEN": TOKEN}, cache_dir=tmp_path / "c")
    )
    for number in (1, 2, 3):
        again.read("acme/shop", number)
    assert [a.status for a in shop.answers] == [200, 200, 304]


def test_a_broken_cache_entry_is_a_miss(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    shop.open_pull("acme/shop", title="One", head_branch="one")
    config = write_config()
    assert sync_process(config).returncode == 0
    [path] = cache_files(tmp_path)
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        # The listing's page and the comments read by PR commands.
        assert connection.execute("UPDATE responses SET value = '{\"broken\": 1'").rowcount == 2
    shop.clear_requests()
    result = sync(config)
    assert result.exit_code == 0, result.output
    assert [a.status for a in listing(shop)] == [200]  # asked afresh, at full price
    assert "if-none-match" not in listing(shop)[0].request.headers
    assert environments(fleet_remote) == {"shop-pr-1"}


def test_an_idle_probe_round_reads_prgens_own_reports_conditionally(
    shop: FakeGitHub, write_config: Config, envs: Environments
) -> None:
    """The report channels' reads (statuses, deployments, comment) go through the cache too."""
    for n in range(2):
        shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}")
    config = write_config(SHOP + HEALTH.format(url=envs.url))
    first = CliRunner().invoke(main, ["sync", "--probe", "-c", str(config)])
    assert first.exit_code == 0, first.output
    # This round reads afresh what the first one wrote (a comment also changes its PR).
    assert CliRunner().invoke(main, ["probe", "-c", str(config)]).exit_code == 0
    shop.clear_requests()
    idle = CliRunner().invoke(main, ["probe", "-c", str(config)])
    assert idle.exit_code == 0, idle.output
    reads = [a for a in shop.answers if a.request.method == "GET"]
    writes = [a for a in shop.answers if a.request.method != "GET"]
    assert reads and not writes, [(a.request.method, a.request.path) for a in shop.answers]
    assert {a.status for a in reads} == {304}, [
        (a.request.path, a.request.query, a.status) for a in reads
    ]
    assert shop.points_used() == 0


def test_a_bad_link_header_kept_in_the_cache_is_read_again_fresh(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    """A 304 confirms a page's body, not the Link header stored with it: a listing whose
    stored link goes wrong is read once more with every page fresh."""
    shop.open_pull("acme/shop", title="One", head_branch="one")
    config = write_config()
    assert sync(config).exit_code == 0
    page = f"{shop.base_url}{PULLS}?state=open&sort=created&direction=desc&per_page=100&page=1"
    # A single page, answered as it is, but linking to itself: stored with that link.
    shop.inject("GET", PULLS, status=0, headers={"Link": f'<{page}>; rel="next"'})
    shop.open_pull("acme/shop", title="Two", head_branch="two")
    shop.clear_requests()
    result = sync(config)
    assert result.exit_code == 0, result.output
    assert [(a.status, "if-none-match" in a.request.headers) for a in listing(shop)] == [
        (200, True),  # a new body, with the bad link: stored
        (200, False),  # read again, unconditionally: no link
    ]
    assert environments(fleet_remote) == {"shop-pr-1", "shop-pr-2"}
    shop.clear_requests()
    assert sync(config).exit_code == 0
    assert [a.status for a in listing(shop)] == [304]


def test_a_reopened_pr_beyond_a_full_page_is_found_on_the_next_run(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    """A 304 confirms a page's body, and the Link header stored with it is the old one: had a
    full page stayed unchanged while a next page appeared (an old PR reopened lands at the end
    of a listing newest first), the cache would hide that page. It cannot: every PR in a page
    carries its base repository with its count of open issues and PRs, so the page changes
    with any PR opened, closed or reopened, and GitHub answers it in full with its new Link.
    """
    oldest = shop.open_pull("acme/shop", title="oldest", head_branch="oldest")
    shop.close_pull("acme/shop", oldest)
    for n in range(100):  # exactly one full page
        shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}")
    config = write_config()
    assert sync_process(config).returncode == 0
    assert f"shop-pr-{oldest}" not in environments(fleet_remote)

    shop.reopen_pull("acme/shop", oldest)
    shop.clear_requests()
    result = sync_process(config)
    assert result.returncode == 0, result.stderr
    assert f"shop-pr-{oldest}" in environments(fleet_remote)
    assert shop.count_requests("GET", PULLS) == 2
    assert not any(a.status == 304 for a in listing(shop))

    shop.clear_requests()
    assert sync_process(config).returncode == 0
    assert shop.count_requests("GET", PULLS) == 2 and shop.points_used() == 0
