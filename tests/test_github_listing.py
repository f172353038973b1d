"""Listing many repositories within GitHub's rules: bounded concurrency, secondary limits that
slow everyone down instead of failing the run, and a rate-limit reserve that is never spent."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from prgen.cli import main
from prgen.config import GitHubSettings
from prgen.github.client import GitHubClients
from prgen.github.pulls import GitHubSource
from prgen.testing.fake_github import FakeGitHub, app_key

from conftest import TOKEN, git

Config = Callable[..., Path]
REPOSITORIES = [f"acme/repo-{n:02d}" for n in range(12)]


def source_for(github: FakeGitHub, tmp_path: Path, **settings: object) -> GitHubSource:
    options: dict[str, object] = {"api_url": github.base_url, "retries": 0, "timeout": 5}
    options.update(settings)
    clients = GitHubClients(
        GitHubSettings(**options),  # type: ignore[arg-type]
        {"GITHUB_TOKEN": TOKEN},
        cache_dir=tmp_path / "http",
    )
    return GitHubSource.for_clients(clients)


def seed(github: FakeGitHub, names: list[str], prs: int = 2) -> None:
    for name in names:
        github.add_repo(name)
        for n in range(prs):
            github.open_pull(name, title=f"PR {n}", head_branch=f"b{n}")


def entry(name: str) -> str:
    return f"""\
  - name: {name}
    chart:
      chart: app
      version: '1.0.0'
      sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}
"""


def sync(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["sync", "--config", str(config), "--output", "json", *args])


def folders(remote: Path) -> set[str]:
    names = git("ls-tree", "-r", "--name-only", "main", "--", "previews/dev", cwd=remote).split()
    return {name.split("/")[2] for name in names if name.count("/") >= 3}


def test_listings_run_concurrently_up_to_github_concurrency(tmp_path: Path) -> None:
    with FakeGitHub(latency=0.1) as github:
        github.add_token(TOKEN)
        seed(github, REPOSITORIES)
        source = source_for(github, tmp_path, concurrency=3)
        listings = source.list_all(REPOSITORIES, lambda _: ())
        assert [listing.repository for listing in listings] == REPOSITORIES  # in order
        assert all(listing.complete and len(listing.pull_requests) == 2 for listing in listings)
        assert github.in_flight_peak == 3
        assert github.count_requests("GET", r"/repos/acme/repo-\d+/pulls") == len(REPOSITORIES)


def test_request_interval_keeps_calls_strictly_serial(tmp_path: Path) -> None:
    with FakeGitHub(latency=0.02) as github:
        github.add_token(TOKEN)
        seed(github, REPOSITORIES[:4])
        source = source_for(github, tmp_path, concurrency=8, request_interval=0.01)
        listings = source.list_all(REPOSITORIES[:4], lambda _: ())
        assert all(listing.complete for listing in listings)
        assert github.in_flight_peak == 1


def test_a_sync_lists_concurrently_as_configured(
    github: FakeGitHub, tmp_path: Path, fleet_remote: Path
) -> None:
    seed(github, REPOSITORIES[:6])
    from conftest import config_text

    config = tmp_path / "prgen.yaml"
    text = config_text(github.base_url, str(fleet_remote), "".join(map(entry, REPOSITORIES[:6])))
    config.write_text(text.replace("  requestInterval: 0\n", "  concurrency: 4\n"))
    github.inject("GET", r"/repos/acme/repo-\d+/pulls", status=0, delay=0.2, times=6)
    result = sync(config)
    assert result.exit_code == 0, result.output
    assert 1 < github.in_flight_peak <= 4
    assert len(folders(fleet_remote)) == 12


def test_a_secondary_limit_makes_everyone_wait_and_the_run_succeeds(tmp_path: Path) -> None:
    with FakeGitHub() as github:
        github.add_token(TOKEN)
        seed(github, REPOSITORIES[:4])
        github.inject(
            "GET",
            r"/repos/acme/repo-01/pulls",
            status=429,
            headers={"Retry-After": "1"},
            body={"message": "You have exceeded a secondary rate limit."},
        )
        source = source_for(github, tmp_path, concurrency=2)
        started = time.monotonic()
        listings = source.list_all(REPOSITORIES[:4], lambda _: ())
        assert all(listing.complete for listing in listings), [x.error for x in listings]
        assert time.monotonic() - started >= 1.0  # it waited as asked
        assert github.count_requests("GET", r"/repos/acme/repo-01/pulls") == 2
        statuses = [a.status for a in github.answers if a.request.path.endswith("repo-01/pulls")]
        assert statuses == [429, 200]


def test_the_wait_for_a_secondary_limit_is_bounded_by_the_listing_timeout(
    tmp_path: Path,
) -> None:
    with FakeGitHub() as github:
        github.add_token(TOKEN)
        seed(github, REPOSITORIES[:1])
        github.inject(
            "GET",
            r"/repos/acme/repo-00/pulls",
            status=403,
            headers={"Retry-After": "600"},
            body={"message": "You have exceeded a secondary rate limit."},
        )
        source = source_for(github, tmp_path, listing_timeout=2)
        started = time.monotonic()
        [listing] = source.list_all(REPOSITORIES[:1], lambda _: ())
        assert time.monotonic() - started < 5
        assert not listing.complete
        assert listing.error == "HTTP 403: secondary rate limit, retry after 600s"


@pytest.mark.parametrize("concurrency", [1, 4])
def test_below_the_rate_limit_reserve_repositories_are_not_listed_and_kept(
    github: FakeGitHub, tmp_path: Path, fleet_remote: Path, concurrency: int
) -> None:
    names = REPOSITORIES[:3]
    seed(github, names)
    from conftest import config_text

    config = tmp_path / "prgen.yaml"
    text = config_text(github.base_url, str(fleet_remote), "".join(map(entry, names)))
    config.write_text(
        text.replace(
            "  requestInterval: 0\n",
            f"  concurrency: {concurrency}\n  rateLimitReserve: 100\n",
        )
    )
    first = sync(config)
    assert first.exit_code == 0, first.output
    assert len(folders(fleet_remote)) == 6
    for name in names:  # every PR closes: a sync that listed everything would remove them all
        for number in (1, 2):
            github.close_pull(name, number)
    github.set_rate_limit_remaining(50)
    github.clear_requests()

    result = sync(config, "--allow-mass-delete")
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    refused = [r for r in document["repositories"] if not r["synced"]]
    assert refused, document["repositories"]
    for repository in refused:
        assert repository["error"].startswith("not listed: ")
        assert (
            "rate-limit points left, reserve 100 (github.rateLimitReserve), resets at "
            in (repository["error"])
        )
        assert repository["error"].endswith("; its environments are kept")
    # Only what was listed went; the rest is kept as it was.
    listed = {r["name"] for r in document["repositories"] if r["synced"]}
    assert len(listed) + len(refused) == 3
    assert github.count_requests("GET", r"/repos/acme/repo-\d+/pulls") == len(listed)
    kept = {name.removeprefix("acme/") for name in names} - {
        name.removeprefix("acme/") for name in listed
    }
    assert {folder.rsplit("-pr-", 1)[0] for folder in folders(fleet_remote)} == kept


def test_an_app_installation_lists_concurrently_on_one_minted_token(tmp_path: Path) -> None:

    from prgen.config import AppSettings

    key = app_key()
    with FakeGitHub(latency=0.05) as github:
        github.add_app(42, key.public_pem, installation_id=7)
        seed(github, REPOSITORIES[:6])
        settings = GitHubSettings(
            api_url=github.base_url,
            app=AppSettings(42, 7, None, "APP_KEY"),
            retries=0,
            timeout=5,
            concurrency=3,
        )
        clients = GitHubClients(settings, {"APP_KEY": key.private_pem}, cache_dir=tmp_path / "http")
        listings = GitHubSource.for_clients(clients).list_all(REPOSITORIES[:6], lambda _: ())
        assert all(listing.complete for listing in listings), [x.error for x in listings]
        assert github.count_requests("POST", r"/app/installations/7/access_tokens") == 1
        assert github.in_flight_peak > 1


def test_runs_sharing_one_cache_file_at_once_all_succeed_and_fill_it(tmp_path: Path) -> None:
    """Two runs (16 SQLite connections) on one credential's file: SQLite's locks keep it whole."""
    from concurrent.futures import ThreadPoolExecutor

    with FakeGitHub(latency=0.01) as github:
        github.add_token(TOKEN)
        seed(github, REPOSITORIES)
        sources = [source_for(github, tmp_path, concurrency=8) for _ in range(2)]
        with ThreadPoolExecutor(2) as pool:
            runs = list(pool.map(lambda s: s.list_all(REPOSITORIES, lambda _: ()), sources))
        assert all(listing.complete for run in runs for listing in run)
        assert runs[0] == runs[1]
        github.clear_requests()
        idle = source_for(github, tmp_path).list_all(REPOSITORIES, lambda _: ())
        assert idle == runs[0]
        assert github.not_modified() == len(REPOSITORIES) and github.points_used() == 0
