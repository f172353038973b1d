"""Shared fixtures: a GitHub-compatible server on 127.0.0.1 and bare git repositories on disk."""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from http.server import HTTPServer
from pathlib import Path
from typing import TypeVar

import pytest
from click.testing import CliRunner, Result

from prgen.cli import main
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub, app_key

TOKEN = "ghp_testtoken0123456789abcdefABCDEF0123"
_Server = TypeVar("_Server", bound=HTTPServer)


@contextlib.contextmanager
def serving(server: _Server) -> Iterator[_Server]:
    """`server` answering on a thread of its own for the block, then shut down and closed."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tests never read the developer's git config, cache or token.
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.delenv("PRGEN_CONFIG", raising=False)
    monkeypatch.delenv("PRGEN_WORKDIR", raising=False)
    monkeypatch.delenv("PRGEN_CACHE_DIR", raising=False)
    monkeypatch.delenv("PRGEN_LOG_FORMAT", raising=False)


@pytest.fixture
def envs() -> Iterator[Environments]:
    """Preview environments as real HTTP servers on 127.0.0.1, healthy unless told otherwise."""
    with Environments().running() as environments:
        yield environments


# A health check and environment URL for every PR of SHOP, on `envs` (format url=envs.url).
HEALTH = """\
    healthCheck:
      url: '{url}/pr-<<PR_NUMBER>>/healthz'
      timeout: 1s
      deadline: 15m
    environmentUrl: '{url}/pr-<<PR_NUMBER>>/'
"""


def run(*args: str) -> Result:
    """prgen's CLI, in this process."""
    return CliRunner().invoke(main, list(args))


def writes(github: FakeGitHub) -> int:
    """Write calls the fake GitHub has answered since its requests were last cleared."""
    return github.count_requests("POST", r".*") + github.count_requests("PATCH", r".*")


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
  writeInterval: 0
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


APP_ID, INSTALLATION = 4242, 99


def as_app(
    config: Path,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    *,
    permissions: dict[str, str] | None = None,
) -> Path:
    """The prgen.yaml at `config`, changed to authenticate as a GitHub App installed on the
    fake (`permissions`: what the installation was granted; default all prgen uses)."""
    key = app_key()
    github.add_app(
        APP_ID,
        key.public_pem,
        installation_id=INSTALLATION,
        slug="prgen-preview",
        permissions=permissions,
    )
    monkeypatch.setenv("APP_KEY", key.private_pem)
    app = f"github:\n  app: {{id: {APP_ID}, installationId: {INSTALLATION}, privateKeyEnv: APP_KEY}}\n"
    config.write_text(config.read_text().replace("github:\n", app, 1))
    return config


# -- reliability report: @pytest.mark.reliability("scenario") + the `cases` fixture ----------


@dataclass
class Cases:
    """How many cases a reliability scenario ran; tests add to it as they go."""

    count: int = 0

    def add(self, n: int = 1) -> None:
        self.count += n


_CASES = pytest.StashKey[Cases]()
_OUTCOME = pytest.StashKey[tuple[str, float]]()
_SETUP = pytest.StashKey[float]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability(scenario): a row of docs/reliability.md")


@pytest.fixture
def cases(request: pytest.FixtureRequest) -> Cases:
    counter = Cases()
    request.node.stash[_CASES] = counter
    return counter


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "setup":
        # Setup time counts too: a module fixture that does a scenario's work (every bad
        # config through every command) is timed on the first test that asks for it.
        item.stash[_SETUP] = report.duration
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = "xfailed (known bug)" if hasattr(report, "wasxfail") else report.outcome
        item.stash[_OUTCOME] = (outcome, item.stash.get(_SETUP, 0.0) + report.duration)
    return report


def _commit() -> str:
    """The commit the figures are from, marked when the work tree had changes."""

    def git_out(*args: str) -> str:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent
        ).stdout.strip()

    head = git_out("rev-parse", "--short=12", "HEAD") or "unknown"
    dirty = git_out("status", "--porcelain", "--untracked-files=no", "--", ":!docs")
    return f"`{head}`" + (" (with uncommitted changes)" if dirty else "")


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("PRGEN_RELIABILITY_REPORT")
    if not target:
        return
    rows = []
    for item in session.items:
        marker = item.get_closest_marker("reliability")
        if marker is None or _OUTCOME not in item.stash:
            continue
        outcome, duration = item.stash[_OUTCOME]
        counted = item.stash[_CASES].count if _CASES in item.stash else 1
        scenario = marker.args[0]
        variant = (
            item.callspec.id
            if isinstance(item, pytest.Function) and hasattr(item, "callspec")
            else ""
        )
        rows.append((scenario, variant, counted, outcome, duration, item.nodeid))
    stress = os.environ.get("PRGEN_STRESS") == "1"
    passed = sum(1 for row in rows if row[3] == "passed")
    total = sum(row[4] for row in rows)
    lines = [
        "# prgen reliability figures",
        "",
        f"Produced by `{'scripts/stress' if stress else 'pytest'}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
        f" ({'stress mode' if stress else 'default suite'}) at commit {_commit()}. "
        "Each row is one test; cases counts the runs, examples or sequences it checked; "
        "seconds is its setup and run time.",
        "",
        f"{passed} of {len(rows)} tests passed, {sum(row[2] for row in rows)} cases in all, "
        f"{total / 60:.1f} minutes of test time."
        if total >= 120
        else f"{total:.1f} seconds.",
        "",
        "| scenario | variant | cases | outcome | seconds | test |",
        "|---|---|---:|---|---:|---|",
    ]
    lines += [
        f"| {scenario} | {variant} | {counted} | {outcome} | {duration:.1f} | `{nodeid}` |"
        for scenario, variant, counted, outcome, duration, nodeid in sorted(rows)
    ]
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    Path(target).write_text("\n".join(lines) + "\n")
