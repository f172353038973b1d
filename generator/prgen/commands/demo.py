"""`prgen demo`: the real sync and probe path against a local GitHub sandbox and a fleet repo on disk.

No account, no network: the sandbox is the same GitHub-compatible server the
tests use, on 127.0.0.1, seeded with a handful of pull requests.
"""

from __future__ import annotations

import io
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import click
from ruamel.yaml import YAML

from prgen.commands.handling import handles_errors
from prgen.commands.probe import print_probe
from prgen.commands.sync import print_result
from prgen.config import load_config
from prgen.feedback import probe_and_report
from prgen.github.client import GitHubClients
from prgen.github.pulls import GitHubSource
from prgen.resources import data_path
from prgen.sync import Syncer
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub

REPOSITORY = "acme/shop"
EXAMPLE_CONFIG = ("fleet-repo-example", "infrastructure", "prgen", "prgen.yaml")
HEADER = """\
# prgen.yaml written by `prgen demo`: fleet-repo-example's own prgen.yaml
# (infrastructure/prgen/prgen.yaml), pointed at the sandbox GitHub, at the fleet
# repository on disk, and at a local server that plays the environments. The
# sandbox stops when the demo ends; against real GitHub use the example as it is.
"""


def demo_config(api_url: str, fleet: Path, environments: str) -> str:
    yaml = YAML(typ="safe", pure=True)
    document = yaml.load(data_path(*EXAMPLE_CONFIG).read_text(encoding="utf-8"))
    document["github"] = {"apiUrl": api_url, "tokenEnv": "PRGEN_DEMO_TOKEN", "requestInterval": 0}
    # The demo's GitHub is the local fake: no secondary limits to keep clear of.
    document["github"]["writeInterval"] = 0
    document["fleet"]["url"] = str(fleet)
    document["fleet"].pop("tokenEnv", None)
    for repository in document["repositories"]:
        repository["healthCheck"].update(
            url=f"{environments}/pr-<<PR_NUMBER>>/healthz", timeout="2s"
        )
        repository["environmentUrl"] = f"{environments}/pr-<<PR_NUMBER>>/"
    text = io.StringIO()
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    yaml.dump(document, text)
    return HEADER + text.getvalue()


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=prgen demo", "-c", "user.email=demo@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
    )


def make_fleet(directory: Path) -> Path:
    """A bare fleet repository holding fleet-repo-example's layout, as a user would start."""
    bare = directory / "fleet.git"
    seed = directory / "fleet-seed"
    shutil.copytree(data_path("fleet-repo-example"), seed)
    _git("init", "--quiet", "--initial-branch=main", cwd=seed)
    _git("add", "--all", cwd=seed)
    _git("commit", "--quiet", "-m", "Fleet repository from fleet-repo-example", cwd=seed)
    _git("clone", "--quiet", "--bare", str(seed), str(bare), cwd=directory)
    shutil.rmtree(seed)
    return bare


def seed_pull_requests(github: FakeGitHub) -> dict[str, int]:
    github.add_repo(REPOSITORY)
    open_ = github.open_pull
    return {
        "checkout": open_(REPOSITORY, title="New checkout flow", head_branch="feature/checkout"),
        "search": open_(
            REPOSITORY, title="Faster search", head_branch="feature/search", author="bob"
        ),
        "hostile": open_(
            REPOSITORY,
            title="fix: quotes ' \" and ${HOME} # not a comment",
            head_branch="fix/yaml-specials",
            author="carol",
        ),
        "draft": open_(
            REPOSITORY, title="WIP: dark mode", head_branch="feature/dark-mode", draft=True
        ),
        "fork": open_(
            REPOSITORY,
            title="Typo fix from a fork",
            head_branch="patch-1",
            head_repo="stranger/shop",
            author="stranger",
            author_association="FIRST_TIME_CONTRIBUTOR",
        ),
        "opted-out": open_(
            REPOSITORY, title="Docs only", head_branch="docs/readme", labels=["no-preview"]
        ),
    }


def _step(title: str) -> None:
    click.echo()
    click.secho(f"== {title}", bold=True)


@click.command("demo")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where to create the fleet repository and config (default: a new temporary folder).",
)
@handles_errors
def command(directory: Path | None) -> None:
    """Run real syncs against a local GitHub sandbox and a fleet repo on disk."""
    directory = directory or Path(tempfile.mkdtemp(prefix="prgen-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    if any(directory.iterdir()):
        raise click.UsageError(f"{directory} is not empty")
    token = secrets.token_hex(20)
    with FakeGitHub() as github, Environments().running() as environments:
        # A token of a machine user (as a personal access token would be): GitHub answers
        # GET /user to it, which is how prgen tells its own comment from a planted one.
        github.add_token(token, login="prgen-demo")
        prs = seed_pull_requests(github)
        fleet = make_fleet(directory)
        config_path = directory / "prgen.yaml"
        config_path.write_text(demo_config(github.base_url, fleet, environments.url))
        config = load_config(config_path)
        # The sandbox lives for this command only: nothing worth caching between runs.
        clients = GitHubClients(config.github, {"PRGEN_DEMO_TOKEN": token}, cache_dir=None)
        client = clients.main
        syncer = Syncer(config, GitHubSource.for_clients(clients), directory / "work")

        def sync_and_probe() -> None:
            result = syncer.run()
            print_result(result)
            click.echo("probe:")
            print_probe(probe_and_report(config, client, syncer.fleet, result.listings))

        checkout, search = prs["checkout"], prs["search"]
        for number in prs.values():
            environments.behaviour[number] = "unhealthy"  # Flux has not deployed them yet

        _step(f"sync --probe 1: {len(prs)} open pull requests in the sandbox's {REPOSITORY}")
        sync_and_probe()

        _step("Flux brings the environments up: probe")
        environments.behaviour.clear()
        print_probe(probe_and_report(config, client, syncer.fleet))
        show_github(github, checkout)

        _step(f"sync --probe 2: new commit on #{checkout}, #{search} closed")
        github.push(REPOSITORY, checkout)
        environments.behaviour[checkout] = "unhealthy"  # the new version is rolling out
        github.close_pull(REPOSITORY, search)
        sync_and_probe()
        show_github(github, search)

        _step("sync --probe 3: nothing new")
        before = github.count_requests("POST", ".*") + github.count_requests("PATCH", ".*")
        sync_and_probe()
        after = github.count_requests("POST", ".*") + github.count_requests("PATCH", ".*")
        click.echo(f"  GitHub writes in this run: {after - before}")

    _step("where to look")
    click.echo(f"  config:      {config_path}")
    click.echo(f"  fleet repo:  {fleet} (bare; what Flux would reconcile)")
    click.echo(f"  history:     git -C {fleet} log --stat")
    click.echo(
        f"  a manifest:  git -C {fleet} show main:previews/dev/shop-pr-{checkout}/helmrelease.yaml"
    )
    click.echo("  the sandbox GitHub has stopped; point prgen.yaml at real GitHub to go on.")


def show_github(github: FakeGitHub, number: int) -> None:
    """What the pull request shows on GitHub, as the sandbox recorded it."""
    pull = github.pull(REPOSITORY, number)
    click.echo(f"  on GitHub, #{number} ({pull.state}) shows:")
    for status in github.statuses(REPOSITORY, pull.head_sha):
        link = f" -> {status.target_url}" if status.target_url else ""
        click.echo(f"    status {status.context}: {status.state} '{status.description}'{link}")
    for deployment in github.deployments(REPOSITORY):
        if deployment.environment == f"pr-{number}":
            states = [s.state for s in github.deployment_statuses(REPOSITORY, deployment.id)]
            click.echo(
                f"    deployment {deployment.environment} at {deployment.sha[:7]}: "
                + " -> ".join(states)
            )
    for comment in github.comments(REPOSITORY, number):
        click.echo(f"    comment by {comment.user}:")
        for line in comment.body.splitlines():
            click.echo(f"      {line}")
