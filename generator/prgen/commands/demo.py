"""`prgen demo`: the real sync path against a local GitHub sandbox and a fleet repo on disk.

No account, no network: the sandbox is the same GitHub-compatible server the
tests use, on 127.0.0.1, seeded with a handful of pull requests.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import click

from prgen.cli import handles_errors
from prgen.commands.sync import print_result
from prgen.config import load_config
from prgen.resources import data_path
from prgen.source import GitHubSource, make_client
from prgen.sync import Syncer
from prgen.testing.fake_github import FakeGitHub

REPOSITORY = "acme/shop"
CONFIG = """\
# prgen.yaml written by `prgen demo`. apiUrl points at the sandbox, which
# stops when the demo ends; against real GitHub use https://api.github.com.
github:
  apiUrl: {api_url}
  tokenEnv: PRGEN_DEMO_TOKEN
  requestInterval: 0
fleet:
  url: {fleet_url}
  branch: main
  path: previews/dev
  author: {{name: prgen, email: prgen@example.com}}
repositories:
  - name: {repository}
    excludeLabels: [no-preview]
    drafts: false
    forks: false
    namespace: 'shop-pr-<<PR_NUMBER>>'
    chart:
      chart: shop
      version: '>=1.0.0'
      sourceRef: {{kind: HelmRepository, name: shop-charts, namespace: flux-system}}
    values:
      image: {{tag: '<<PR_HEAD_SHA>>'}}
      ingress: {{host: 'shop-pr-<<PR_NUMBER>>.preview.example.com'}}
"""


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
    with FakeGitHub() as github:
        github.add_token(token)
        prs = seed_pull_requests(github)
        fleet = make_fleet(directory)
        config_path = directory / "prgen.yaml"
        config_path.write_text(
            CONFIG.format(api_url=github.base_url, fleet_url=fleet, repository=REPOSITORY)
        )
        config = load_config(config_path)
        source = GitHubSource(make_client(config.github, {"PRGEN_DEMO_TOKEN": token}))
        syncer = Syncer(config, source, directory / "work")

        _step(f"sync 1: {len(prs)} open pull requests in the sandbox's {REPOSITORY}")
        print_result(syncer.run())

        _step(f"sync 2: new commit on #{prs['checkout']}, #{prs['search']} closed")
        github.push(REPOSITORY, prs["checkout"])
        github.close_pull(REPOSITORY, prs["search"])
        print_result(syncer.run())

        _step("sync 3: nothing new")
        print_result(syncer.run())

    _step("where to look")
    click.echo(f"  config:      {config_path}")
    click.echo(f"  fleet repo:  {fleet} (bare; what Flux would reconcile)")
    click.echo(f"  history:     git -C {fleet} log --stat")
    click.echo(
        f"  a manifest:  git -C {fleet} show main:previews/dev/shop-pr-{prs['checkout']}/helmrelease.yaml"
    )
    click.echo("  the sandbox GitHub has stopped; point prgen.yaml at real GitHub to go on.")
