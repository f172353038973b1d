"""Issue 5, item 7: secrets never leave their place (DESIGN.md invariant 5).

Real `prgen` processes (so logging is configured as users get it) run with every kind of
secret prgen handles: a GitHub token, a GitHub App private key (generated here; the fake
GitHub checks the App's JWTs with its public key), a fleet URL with a password in it, and a
fleet token (`fleet.tokenEnv`). The fleet is served over git's smart HTTP by a small server
on 127.0.0.1 that runs `git http-backend` and demands those credentials, so they are really
sent. Every run is driven down an error path or the most talkative success path (`-vv`
debug logging, `--output json`, `probe`, `render`, `validate`, a traceback), and then no
secret may appear in:

- the run's stdout and stderr (messages, logs, JSON, tracebacks);
- the fleet repository: `git log -p --all` (messages, authors, every manifest);
- anything prgen sent to GitHub (request paths, queries and bodies: statuses, comments,
  deployments);
- the work directory, for the fleet token (it travels in git's environment only).

The secrets: both tokens, each line of the PEM body (lines of 16 characters or more: a short
last line such as `AQAB==` could turn up by chance), the URL's password and user:password,
the base64 `x-access-token:<token>` and `user:password` header values, and the installation
tokens and JWTs the App auth produced (read from the fake GitHub's request log).
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from prgen.errors import ExitCode
from prgen.testing.fake_github import FakeGitHub

from conftest import git, serving

APP_ID = 4242
INSTALLATION_ID = 777
URL_USER = "deploy"


# -- a git smart-HTTP server that demands credentials -----------------------------------------


class _GitHandler(BaseHTTPRequestHandler):
    server: _GitServer

    def do_GET(self) -> None:
        authorization = self.headers.get("Authorization")
        with self.server.lock:
            self.server.authorizations.append(authorization)
        body = self._body()
        if authorization not in self.server.accepted:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="fleet"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "GIT_PROJECT_ROOT": str(self.server.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "HOME": str(self.server.root),
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "prgen",  # lets http-backend accept a push
            "REMOTE_ADDR": "127.0.0.1",
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        done = subprocess.run(
            ["git", "http-backend"], input=body, env=environment, capture_output=True, check=False
        )
        head, _, payload = done.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = done.stdout.partition(b"\n\n")
        status = 200
        headers = []
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers.append((name, value.strip()))
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_POST = do_GET

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _GitServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, accepted: set[str]) -> None:
        super().__init__(("127.0.0.1", 0), _GitHandler)
        self.root = root
        self.accepted = accepted
        self.authorizations: list[str | None] = []
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextlib.contextmanager
def git_server(root: Path, accepted: set[str]) -> Iterator[_GitServer]:
    with serving(_GitServer(root, accepted)) as server:
        yield server


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- the world: secrets, a fake GitHub, a fleet behind HTTP auth --------------------------------


@dataclass
class Run:
    args: list[str]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class World:
    tmp: Path
    github: FakeGitHub
    fleet: _GitServer  # accepts the URL's credentials and the fleet token
    bare: Path
    token: str = field(default_factory=lambda: "ghp_" + secrets.token_hex(18))
    bad_token: str = field(default_factory=lambda: "ghp_" + secrets.token_hex(18))
    fleet_token: str = field(default_factory=lambda: "flt_" + secrets.token_hex(18))
    url_password: str = field(default_factory=lambda: "pw" + secrets.token_hex(12))
    pem: str = ""
    runs: list[Run] = field(default_factory=list)
    workdirs: set[Path] = field(default_factory=set)

    def fleet_url(self, how: str) -> str:
        if how == "url-credentials":
            return f"http://{URL_USER}:{self.url_password}@127.0.0.1:{self.fleet.port}/fleet.git"
        if how == "token":
            return f"http://127.0.0.1:{self.fleet.port}/fleet.git"
        if how == "refused":
            return f"https://{URL_USER}:{self.url_password}@127.0.0.1:{closed_port()}/x.git"
        return how  # a URL given by the test

    def config(
        self, *, auth: str = "token", fleet: str = "url-credentials", name: str = "prgen.yaml"
    ) -> Path:
        app = {
            "token": "",
            "app-file": f", app: {{id: {APP_ID}, installationId: {INSTALLATION_ID}, "
            "privateKeyFile: app.pem}",
            "app-env": f", app: {{id: {APP_ID}, installationId: {INSTALLATION_ID}, "
            "privateKeyEnv: APP_PRIVATE_KEY}",
        }[auth]
        token_env = "\n  tokenEnv: FLEET_TOKEN" if fleet != "url-credentials" else ""
        path = self.tmp / name
        path.write_text(
            f"""\
github: {{apiUrl: '{self.github.base_url}', timeout: 5, retries: 0, requestInterval: 0, writeInterval: 0{app}}}
fleet:
  url: '{self.fleet_url(fleet)}'
  path: previews/dev
  author: {{name: prgen-test, email: prgen@example.com}}
  pushRetries: 1{token_env}
repositories:
  - name: acme/shop
    chart: {{chart: shop, sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}}}
    values: {{image: {{tag: '<<PR_HEAD_SHA>>'}}, cluster: '${{CLUSTER}}'}}
    healthCheck: {{url: 'http://127.0.0.1:{closed_port()}/healthz', timeout: 1s}}
"""
        )
        return path

    def run(
        self,
        *args: str,
        token: str | None = None,
        command: list[str] | None = None,
        **env: str,
    ) -> Run:
        """A real `prgen` process (or `command`, a stand-in for it); `--workdir` is added for
        the commands that take one."""
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PRGEN_")},
            "GITHUB_TOKEN": token or self.token,
            "FLEET_TOKEN": self.fleet_token,
            "APP_PRIVATE_KEY": self.pem,
            **env,
        }
        subcommand = next(a for a in args if not a.startswith("-v"))
        extra: list[str] = []
        if subcommand in ("sync", "probe"):
            workdir = self.tmp / "work"
            self.workdirs.add(workdir)
            extra = ["--workdir", str(workdir)]
        done = subprocess.run(
            [*(command or prgen()), *args, *extra],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        run = Run([*args, *extra], done.returncode, done.stdout, done.stderr)
        self.runs.append(run)
        return run

    def secrets(self) -> dict[str, str]:
        found = {
            "GitHub token": self.token,
            "bad GitHub token": self.bad_token,
            "fleet token": self.fleet_token,
            "fleet token header": basic("x-access-token", self.fleet_token),
            "URL password": self.url_password,
            "URL user:password": f"{URL_USER}:{self.url_password}",
            "URL credentials header": basic(URL_USER, self.url_password),
        }
        body = [line for line in self.pem.splitlines() if not line.startswith("-----")]
        for number, line in enumerate(body):
            if len(line) >= 16:
                found[f"PEM line {number + 1}"] = line
        for request in self.github.requests:
            scheme, _, credential = request.headers.get("authorization", "").partition(" ")
            if credential.startswith("ghs_"):
                found[f"installation token {credential[:8]}"] = credential
            elif scheme.lower() == "bearer":
                found[f"App JWT {credential[-8:]}"] = credential
        return found

    def places(self) -> dict[str, str]:
        """Every place a secret must not be, by name."""
        places = {f"output of prgen {' '.join(run.args)}": run.output for run in self.runs}
        places["git log -p --all of the fleet"] = git(
            "log", "-p", "--all", "--format=fuller", "--", cwd=self.bare
        )
        places["requests to GitHub"] = "\n".join(
            f"{r.method} {r.path} {r.query} {r.body}" for r in self.github.requests
        )
        for workdir in self.workdirs:
            for path in workdir.rglob("*"):
                if path.is_file() and ".git/objects/" not in path.as_posix():
                    places[f"work directory file {path}"] = path.read_text("utf-8", "replace")
        return places

    def assert_nothing_leaked(self) -> int:
        """No secret anywhere, the work directory included (URL credentials too: prgen keeps
        them out of .git/config); returns how many (secret, place) pairs were checked."""
        checked = 0
        leaks = []
        for place, text in self.places().items():
            for name, secret in self.secrets().items():
                checked += 1
                if secret in text:
                    leaks.append(f"{name} in {place}")
        assert not leaks, leaks
        return checked

    def assert_fleet_urls_redacted(self) -> None:
        """A fleet URL that carried credentials shows as scheme://***@host wherever it is shown."""
        for run in self.runs:
            for match in re.finditer(r"(\w+)://([^/\s'\"]*@)?127\.0\.0\.1:(\d+)", run.output):
                if match[2] is not None:
                    assert match[2] == "***@", (run.args, match[0])
            assert f"{URL_USER}:" not in run.output and f"{URL_USER}@" not in run.output


def prgen() -> list[str]:
    script = Path(sys.executable).with_name("prgen")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from prgen.cli import main; main()"]


@pytest.fixture(scope="module")
def private_key() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture
def world(
    tmp_path: Path, github: FakeGitHub, fleet_remote: Path, private_key: tuple[str, str]
) -> Iterator[World]:
    private, public = private_key
    (tmp_path / "app.pem").write_text(private)
    github.add_app(APP_ID, public, INSTALLATION_ID, slug="prgen")
    github.add_repo("acme/shop")
    github.open_pull("acme/shop", title="New checkout", head_branch="feature/checkout")
    github.open_pull("acme/shop", title="Fix cart", head_branch="fix/cart")
    root = tmp_path / "served"
    root.mkdir()
    served = root / "fleet.git"
    fleet_remote.rename(served)
    world = World(tmp_path, github, None, served, pem=private)  # type: ignore[arg-type]
    github.add_token(world.token)
    accepted = {
        f"Basic {basic(URL_USER, world.url_password)}",
        f"Basic {basic('x-access-token', world.fleet_token)}",
    }
    with git_server(root, accepted) as server:
        world.fleet = server
        yield world


def environments(world: World) -> set[str]:
    names = git("ls-tree", "-r", "--name-only", "main", "--", "previews/dev", cwd=world.bare)
    return {name.split("/")[2] for name in names.split() if name.count("/") == 3}


# -- the error paths --------------------------------------------------------------------------


@pytest.mark.reliability("7. Secrets never leak: token and URL credentials, sync/render/validate")
def test_a_token_and_url_credentials_leak_nowhere_on_the_chatty_success_path(
    world: World, cases: Any
) -> None:
    config = world.config(auth="token", fleet="url-credentials")

    synced = world.run("-vv", "sync", "--config", str(config), "--output", "json")
    assert synced.exit_code == 0, synced.output
    assert '"url": "http://***@127.0.0.1:' in synced.stdout
    # Debug logging was on, and git was given the remote without its credentials at all.
    assert "prgen: DEBUG:" in synced.stderr
    assert f"'origin', 'http://127.0.0.1:{world.fleet.port}/fleet.git'" in synced.stderr
    assert environments(world) == {"shop-pr-1", "shop-pr-2"}
    world.github.push("acme/shop", 1)
    dry = world.run("-vv", "sync", "--config", str(config), "--dry-run")
    assert dry.exit_code == 0 and "dry run: nothing was written" in dry.stdout, dry.output
    assert f"fleet http://***@127.0.0.1:{world.fleet.port}/fleet.git" in dry.stdout
    rendered = world.run(
        "-vv", "render", "--config", str(config), "--repo", "acme/shop", "--pr", "1"
    )
    assert rendered.exit_code == 0 and "kind: HelmRelease" in rendered.stdout, rendered.output
    validated = world.run("-vv", "validate", "--config", str(config))
    assert validated.exit_code == 0, validated.output
    # -vvv: prgen's most verbose level also lets urllib3 and PyGithub log at debug.
    loudest = world.run("-vvv", "sync", "--config", str(config), "--probe")
    assert loudest.exit_code == 0 and "Starting new HTTP connection" in loudest.stderr

    # The URL's credentials were really used (the server demands them).
    assert f"Basic {basic(URL_USER, world.url_password)}" in world.fleet.authorizations
    world.assert_nothing_leaked()  # nor on disk: .git/config holds the URL without them
    world.assert_fleet_urls_redacted()
    cases.add(len(world.runs))


@pytest.mark.reliability("7. Secrets never leak: App key and fleet token, sync and probe")
@pytest.mark.parametrize("key_source", ["app-file", "app-env"])
def test_an_app_key_and_a_fleet_token_leak_nowhere(
    world: World, key_source: str, cases: Any
) -> None:
    config = world.config(auth=key_source, fleet="token")

    first = world.run("-vv", "sync", "--config", str(config), "--output", "json")
    assert first.exit_code == 0, first.output
    assert environments(world) == {"shop-pr-1", "shop-pr-2"}
    world.github.push("acme/shop", 2)
    second = world.run("-vv", "sync", "--config", str(config), "--probe")
    assert second.exit_code == 0, second.output
    assert "pending" in second.stdout  # the probe ran and reported
    probed = world.run("-vvv", "probe", "--config", str(config), "--output", "json")
    assert probed.exit_code == 0, probed.output
    assert "/app/installations/777/access_tokens" in probed.stderr  # urllib3 at debug

    # The App really authenticated (installation tokens were minted and used), and the fleet
    # token really went to the fleet server.
    assert any(name.startswith("installation token") for name in world.secrets())
    assert f"Basic {basic('x-access-token', world.fleet_token)}" in world.fleet.authorizations
    assert world.github.count_requests("POST", r"/repos/acme/shop/statuses/[0-9a-f]{40}") > 0
    world.assert_nothing_leaked()
    world.assert_fleet_urls_redacted()
    cases.add(len(world.runs))


@pytest.mark.reliability("7. Secrets never leak: a bad GitHub token (401)")
def test_a_bad_token_leaks_nowhere(world: World, cases: Any) -> None:
    config = world.config(auth="token", fleet="url-credentials")
    for output in ("text", "json"):
        run = world.run(
            "-vv", "sync", "--config", str(config), "--output", output, token=world.bad_token
        )
        assert run.exit_code == 1, run.output
        assert "HTTP 401" in run.output and "Bad credentials" in run.output
    rendered = world.run(
        "-vv", "render", "--config", str(config), "--repo", "acme/shop", "--pr", "1",
        token=world.bad_token,
    )  # fmt: skip
    assert rendered.exit_code == 1 and "HTTP 401" in rendered.stderr, rendered.output
    world.assert_nothing_leaked()
    world.assert_fleet_urls_redacted()
    cases.add(len(world.runs))


@pytest.mark.reliability("7. Secrets never leak: a 401 from the fleet remote")
def test_a_401_from_the_fleet_remote_leaks_no_credential(world: World, cases: Any) -> None:
    with git_server(world.bare.parent, accepted=set()) as refusing:
        url = f"http://{URL_USER}:{world.url_password}@127.0.0.1:{refusing.port}/fleet.git"
        config = world.config(auth="token", fleet=url)
        for output in ("text", "json"):
            run = world.run("-vv", "sync", "--config", str(config), "--output", output)
            assert run.exit_code == 3, run.output
            assert f"fetching http://***@127.0.0.1:{refusing.port}/fleet.git failed" in run.stderr
            # With fleet.tokenEnv set too, the token is the one credential sent, and prgen says so.
            assert "the URL's credentials are not" in run.stderr, run.stderr
        # The token was offered to the server, and refused; the URL's credentials never were.
        offered = set(refusing.authorizations)
        assert f"Basic {basic('x-access-token', world.fleet_token)}" in offered
        assert f"Basic {basic(URL_USER, world.url_password)}" not in offered
    world.assert_nothing_leaked()
    world.assert_fleet_urls_redacted()
    cases.add(len(world.runs))


@pytest.mark.reliability("7. Secrets never leak: an unreachable fleet URL with credentials")
def test_an_unreachable_fleet_url_with_credentials_is_shown_redacted(
    world: World, cases: Any
) -> None:
    config = world.config(auth="app-file", fleet="refused")
    for command in (["sync"], ["sync", "--output", "json"], ["probe"]):
        run = world.run("-vv", *command, "--config", str(config))
        assert run.exit_code == 3, run.output
        assert re.search(r"https://\*\*\*@127\.0\.0\.1:\d+/x\.git", run.stderr), run.stderr
    world.assert_nothing_leaked()
    world.assert_fleet_urls_redacted()
    cases.add(len(world.runs))


@pytest.mark.reliability("7. Secrets never leak: a GitHub error that echoes the token")
def test_an_error_message_that_echoes_the_token_is_redacted(world: World, cases: Any) -> None:
    config = world.config(auth="token", fleet="url-credentials")
    echo = {"message": f"Bad credentials: token {world.token} was revoked"}
    world.github.inject("GET", r"/repos/acme/shop/pulls", status=401, body=echo, times=2)
    for output in ("text", "json"):
        run = world.run("-vv", "sync", "--config", str(config), "--output", output)
        assert run.exit_code == 1, run.output
        assert "Bad credentials: token *** was revoked" in run.output
    world.assert_nothing_leaked()
    cases.add(len(world.runs))


def odd_pull_request(world: World, number: int) -> dict[str, Any]:
    """The fake's own JSON for a PR, with a head commit that GitHub left out."""
    answer = requests.get(
        f"{world.github.base_url}/repos/acme/shop/pulls/{number}",
        headers={"Authorization": f"token {world.token}"},
        timeout=5,
    )
    pull: dict[str, Any] = answer.json()
    pull["head"]["sha"] = None
    return pull


# prgen itself, in a process of its own, with one step that fails in a way prgen can't expect:
# an exception whose message carries every secret the process holds.
CRASHING_PRGEN = """
import os, sys
import prgen.commands.render as render
from prgen.cli import main

def crash(*args, **kwargs):
    raise RuntimeError(
        "boom " + " ".join(os.environ[name] for name in ("GITHUB_TOKEN", "FLEET_TOKEN"))
    )

render.render_environment = crash
sys.argv[0] = "prgen"
main()
"""


@pytest.mark.reliability("7. Secrets never leak: an unexpected exception's traceback")
def test_an_unexpected_exceptions_traceback_leaks_nothing(world: World, cases: Any) -> None:
    """An exception prgen doesn't expect exits 70 with its traceback at -vv, redacted like
    every line: here its message carries the tokens themselves.

    A malformed PR is not such an exception (issue 10, item 2): `render` and `sync` both say
    what is wrong with GitHub's answer, exit 1, and print no traceback.
    """
    config = world.config(auth="token", fleet="url-credentials")
    pull = odd_pull_request(world, 1)
    world.github.inject("GET", r"/repos/acme/shop/pulls/1", status=200, body=pull)
    rendered = world.run(
        "-vv", "render", "--config", str(config), "--repo", "acme/shop", "--pr", "1"
    )
    world.github.inject("GET", r"/repos/acme/shop/pulls", status=200, body=[pull])  # type: ignore[arg-type]
    synced = world.run("-vv", "sync", "--config", str(config), "--output", "json")
    for run in (rendered, synced):
        assert run.exit_code == 1, run.output
        assert "head.sha is null" in run.output and "Traceback" not in run.stderr
    # render never touches the fleet: its token must be redacted all the same.
    with_fleet_token = world.config(auth="token", fleet="refused", name="fleet-token.yaml")
    crashed = world.run(
        "-vv", "render", "--config", str(with_fleet_token), "--repo", "acme/shop", "--pr", "1",
        command=[sys.executable, "-c", CRASHING_PRGEN],
    )  # fmt: skip
    assert crashed.exit_code == ExitCode.UNEXPECTED, crashed.output
    assert "Traceback (most recent call last)" in crashed.stderr
    assert "prgen: unexpected error: RuntimeError: boom *** ***" in crashed.stderr, crashed.stderr
    world.assert_nothing_leaked()
    world.assert_fleet_urls_redacted()
    cases.add(len(world.runs))


def test_the_leak_check_finds_a_secret_planted_in_each_place(world: World) -> None:
    """The checks above would see a leak: in a run's output, in the fleet, in a GitHub request."""
    world.runs.append(Run(["planted"], 0, f"token={world.token}", ""))
    with pytest.raises(AssertionError, match="GitHub token in output of prgen planted"):
        world.assert_nothing_leaked()
    world.runs.clear()

    seed = world.tmp / "plant"
    git("clone", str(world.bare), str(seed))
    (seed / "leak.txt").write_text(world.pem)
    git("add", "-A", cwd=seed)
    git("commit", "-m", "plant", cwd=seed)
    git("push", "origin", "HEAD:main", cwd=seed)
    with pytest.raises(AssertionError, match="PEM line 1 in git log -p --all of the fleet"):
        world.assert_nothing_leaked()
    git("push", "--force", "origin", "HEAD~1:main", cwd=seed)

    requests.post(
        f"{world.github.base_url}/repos/acme/shop/issues/1/comments",
        json={"body": f"x-access-token:{world.fleet_token}"},
        headers={"Authorization": f"token {world.token}"},
        timeout=5,
    )
    with pytest.raises(AssertionError, match="fleet token in requests to GitHub"):
        world.assert_nothing_leaked()
