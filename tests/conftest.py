"""Shared fixtures: a GitHub-compatible server on 127.0.0.1 and bare git repositories on disk."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from prgen.testing.fake_github import FakeGitHub

TOKEN = "ghp_testtoken0123456789abcdefABCDEF0123"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tests never read the developer's git config, cache or token.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.delenv("PRGEN_CONFIG", raising=False)
    monkeypatch.delenv("PRGEN_WORKDIR", raising=False)


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_token(TOKEN)
        yield server


def git(*args: str, cwd: Path | None = None) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def fleet_remote(tmp_path: Path) -> Path:
    """A bare fleet repository with one commit on main holding a README and a cluster folder."""
    bare = tmp_path / "fleet.git"
    git("init", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    git("clone", str(bare), str(seed))
    (seed / "README.md").write_text("fleet\n")
    (seed / "clusters").mkdir()
    (seed / "clusters" / "flux.yaml").write_text("# hand-written\n")
    git("add", "-A", cwd=seed)
    git("commit", "-m", "initial", cwd=seed)
    git("push", "origin", "HEAD:main", cwd=seed)
    return bare


def config_text(api_url: str, fleet_url: str, repositories: str, extra: str = "") -> str:
    return f"""\
github:
  apiUrl: {api_url}
  timeout: 5
  retries: 0
  requestInterval: 0
fleet:
  url: {fleet_url}
  branch: main
  path: previews/dev
  author: {{name: prgen-test, email: prgen@example.com}}
{extra}repositories:
{repositories}"""


SHOP = """\
  - name: acme/shop
    chart:
      chart: shop
      version: '>=1.0.0'
      sourceRef: {kind: HelmRepository, name: shop-charts, namespace: flux-system}
    values:
      image: {tag: '<<PR_HEAD_SHA>>'}
      ingress: {host: 'shop-pr-<<PR_NUMBER>>.preview.example.com'}
"""


@pytest.fixture
def write_config(tmp_path: Path, github: FakeGitHub, fleet_remote: Path):  # type: ignore[no-untyped-def]
    """write_config(repositories=SHOP, extra="") -> path of a prgen.yaml for the fake and the bare fleet."""

    def write(repositories: str = SHOP, extra: str = "") -> Path:
        path = tmp_path / "prgen.yaml"
        path.write_text(config_text(github.base_url, str(fleet_remote), repositories, extra))
        return path

    return write
