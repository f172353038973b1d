"""Issue 10, items 3, 4, 10, 14, 16 and 17: prgen's places are its own, and it says what it did.

3. The work directory is prgen's own or nothing: a checkout prgen did not make is refused
   before anything in it is reset, cleaned or re-pointed.
4. No writes through symlinks: a committed link on the way to or inside the managed folder is
   never written, read as prgen's or deleted through.
10. The fleet token goes to the fleet host only, and credentials in fleet.url appear on no
    command line and in no .git/config (a real git smart-HTTP server on 127.0.0.1).
14. A push that landed although its answer failed is reported as the commit it is.
16. Large hand-written files under the managed folder are never read whole.
17. A read-only or full work directory exits 3 naming it; an unexpected error exits 70.

Every run is the real CLI (in this process, or as a `prgen` process where its memory, its
command lines or a mount namespace matter) against the fake GitHub and real git.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import Result

from prgen.commands.handling import handles_errors
from prgen.errors import ExitCode
from prgen.fleet import WORKDIR_MARK
from prgen.testing.fake_github import FakeGitHub
from processes import GitDaemon, prgen_command
from stress import scale
from test_safety_secrets import basic, git_server

from conftest import SHOP, Cases, git, run, serving

MANAGED = "previews/dev"
Config = Callable[..., Path]


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo("acme/shop")
    return github


def sync(config: Path, workdir: Path, *args: str) -> Result:
    return run(
        "sync", "--config", str(config), "--workdir", str(workdir), "--output", "json", *args
    )


def tree(remote: Path, path: str = MANAGED) -> dict[str, str]:
    """path -> `mode type` of every entry under `path` on main (links are not followed)."""
    out = git("ls-tree", "-r", "main", "--", path, cwd=remote)
    entries = {}
    for line in out.splitlines():
        meta, _, name = line.partition("\t")
        mode, kind, _ = meta.split()
        entries[name.removeprefix(path + "/")] = f"{mode} {kind}"
    return entries


def commit_to(remote: Path, work: Path, change: Callable[[Path], None], message: str) -> str:
    """A hand-made commit on the remote's main: clone, change, commit, push."""
    if not work.exists():
        git("clone", "--quiet", str(remote), str(work))
    else:
        git("pull", "--quiet", "origin", "main", cwd=work)
    change(work)
    git("add", "-A", cwd=work)
    git("commit", "--quiet", "-m", message, cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    return git("rev-parse", "HEAD", cwd=work).strip()


# -- 3. the work directory is prgen's own or nothing -------------------------------------------


def _operators_clone(remote: Path, workdir: Path) -> None:
    git("clone", "--quiet", str(remote), str(workdir))
    (workdir / "README.md").write_text("an edit the operator has not committed yet\n")
    (workdir / "notes.txt").write_text("untracked, precious\n")
    git("checkout", "--quiet", "-b", "operator-branch", cwd=workdir)


def _unrelated_repository(remote: Path, workdir: Path) -> None:
    workdir.mkdir()
    git("init", "--quiet", "--initial-branch=trunk", cwd=workdir)
    (workdir / "main.c").write_text("int main(void) { return 0; }\n")
    git("add", "-A", cwd=workdir)
    git("commit", "--quiet", "-m", "mine", cwd=workdir)
    git("remote", "add", "origin", "https://example.com/someone/else.git", cwd=workdir)


def _bare_git_dir_with_objects(remote: Path, workdir: Path) -> None:
    # A .git without HEAD is no valid checkout, but it is not prgen's: its objects stay.
    (workdir / ".git" / "objects" / "ab").mkdir(parents=True)
    (workdir / ".git" / "objects" / "ab" / "cdef").write_bytes(b"someone's object")


FOREIGN = {
    "an operator's clone of the fleet": _operators_clone,
    "an unrelated repository": _unrelated_repository,
    "a git directory prgen did not make": _bare_git_dir_with_objects,
}


def _state(workdir: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(workdir)): p.read_bytes()
        for p in sorted(workdir.rglob("*"))
        if p.is_file() and "index" not in p.name
    }


@pytest.mark.reliability("10.3 A work directory prgen did not make is refused, untouched")
def test_a_checkout_prgen_did_not_make_is_refused_untouched(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path, cases: Cases
) -> None:
    config = write_config(SHOP)
    shop.open_pull("acme/shop", title="One", head_branch="one")
    before_remote = git("rev-parse", "main", cwd=fleet_remote)
    for index, (name, make) in enumerate(FOREIGN.items()):
        workdir = tmp_path / f"foreign-{index}"
        make(fleet_remote, workdir)
        before = _state(workdir)
        result = sync(config, workdir)
        assert result.exit_code == ExitCode.FLEET, (name, result.output)
        assert str(workdir) in result.stderr and "not a git checkout prgen made" in result.stderr
        assert "choose another" in result.stderr, result.stderr
        assert _state(workdir) == before, name
        assert git("rev-parse", "main", cwd=fleet_remote) == before_remote
        cases.add()

    # What prgen made it uses again; an empty directory is prgen's to use.
    for workdir in (tmp_path / "new" / "work", tmp_path / "empty"):
        if workdir.name == "empty":
            workdir.mkdir()
        assert sync(config, workdir).exit_code == 0
        assert (workdir / ".git" / WORKDIR_MARK).is_file()
        shop.open_pull("acme/shop", title="Next", head_branch=f"next-{workdir.name}")
        again = sync(config, workdir)
        assert again.exit_code == 0 and json.loads(again.stdout)["commit"], again.output
        cases.add()


# -- 4. no writes through symlinks -----------------------------------------------------------


@pytest.mark.reliability("10.4 A committed link on the way to the managed folder stops the run")
@pytest.mark.parametrize("link", ["previews", "previews/dev"])
def test_a_managed_folder_behind_a_link_is_refused(
    link: str, shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "dev").mkdir(parents=True)
    (elsewhere / "victim.yaml").write_text("kind: Secret\n")
    target = elsewhere if link == "previews" else elsewhere / "dev"

    def plant(work: Path) -> None:
        (work / link).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, work / link)

    commit_to(fleet_remote, tmp_path / "seed", plant, "a link where the previews go")
    before = git("rev-parse", "main", cwd=fleet_remote)
    shop.open_pull("acme/shop", title="One", head_branch="one")

    result = sync(write_config(SHOP), tmp_path / "work")
    assert sorted(p.name for p in elsewhere.rglob("*")) == ["dev", "victim.yaml"]
    assert result.exit_code == ExitCode.FLEET, result.output
    assert f"{link} in the fleet repository is a symbolic link" in result.stderr
    assert git("rev-parse", "main", cwd=fleet_remote) == before


def _links_inside(tmp_path: Path) -> Callable[[Path], None]:
    def plant(work: Path) -> None:
        managed = work / MANAGED
        (managed / "shop-pr-2").mkdir(parents=True)
        (managed / "shop-pr-2" / "notes.txt").write_text("hand-written\n")
        os.symlink("shop-pr-2", managed / "shop-pr-1")  # a folder that is a link
        (managed / "shop-pr-3").mkdir()
        # A file that is a link, whose text even starts with prgen's marker.
        os.symlink("# prgen:managed/../../../README.md", managed / "shop-pr-3" / "helmrelease.yaml")
        os.symlink(tmp_path / "outside.yaml", managed / "shop-pr-3" / "namespace.yaml")

    return plant


@pytest.mark.reliability("10.4 Links inside the managed folder: a conflict, never written through")
def test_links_inside_the_managed_folder_are_conflicts_never_written_through(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    (tmp_path / "outside.yaml").write_text("outside\n")
    commit_to(fleet_remote, tmp_path / "seed", _links_inside(tmp_path), "links")
    links = {name: kind for name, kind in tree(fleet_remote).items() if kind.startswith("120000")}
    for title in ("One", "Two", "Three", "Four"):
        shop.open_pull("acme/shop", title=title, head_branch=title.lower())

    result = sync(write_config(SHOP), tmp_path / "work")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    conflicts = {c["pullRequest"]: c["reason"] for c in document["conflicts"]}
    assert set(conflicts) == {1, 3}, document
    after = tree(fleet_remote)
    assert {name: kind for name, kind in after.items() if name in links} == links
    environment = {"helmrelease.yaml", "kustomization.yaml", "namespace.yaml"}
    assert {n for n in after if n.startswith("shop-pr-4/")} == {
        f"shop-pr-4/{f}" for f in environment
    }
    # PR 2 has its own folder, beside the hand-written file; nothing came in through the link.
    assert {n for n in after if n.startswith("shop-pr-2/")} == {
        f"shop-pr-2/{f}" for f in {*environment, "notes.txt"}
    }
    release = git("show", f"main:{MANAGED}/shop-pr-2/helmrelease.yaml", cwd=fleet_remote)
    assert "prgen.io/pull-request: '2'" in release or 'prgen.io/pull-request: "2"' in release
    assert (tmp_path / "outside.yaml").read_text() == "outside\n"
    assert git("show", "main:README.md", cwd=fleet_remote) == "fleet\n"


# -- 17. exit codes tell the truth ---------------------------------------------------------------


def test_an_unexpected_error_has_an_exit_code_of_its_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    @handles_errors
    def broken() -> None:
        raise RuntimeError("a bug")

    with pytest.raises(SystemExit) as exited:
        broken()
    assert exited.value.code == ExitCode.UNEXPECTED == 70
    assert ExitCode.UNEXPECTED not in (ExitCode.PARTIAL, ExitCode.FLEET)
    assert "prgen: unexpected error: RuntimeError: a bug" in capsys.readouterr().err
    assert "70  unexpected error" in run("--help").output


# -- 10. the fleet's credentials go to the fleet's host only ------------------------------------


class _Redirect(BaseHTTPRequestHandler):
    server: _Redirector

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.authorizations.append(self.headers.get("Authorization"))
        self.send_response(self.server.status)
        self.send_header("Location", self.server.target + self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


class _Redirector(ThreadingHTTPServer):
    """The fleet host, answering every request with a redirect to another host."""

    daemon_threads = True

    def __init__(self, target: str, status: int) -> None:
        super().__init__(("127.0.0.1", 0), _Redirect)
        self.target = target
        self.status = status
        self.authorizations: list[str | None] = []
        self.lock = threading.Lock()


@contextlib.contextmanager
def redirector(target: str, status: int) -> Iterator[_Redirector]:
    with serving(_Redirector(target, status)) as server:
        yield server


FLEET_TOKEN = "flt_" + "5f0e1d2c3b4a" * 3
TOKEN_HEADER = f"Basic {basic('x-access-token', FLEET_TOKEN)}"


def _http_config(write_config: Config, url: str, token: bool) -> Path:
    config = write_config(SHOP)
    text = config.read_text().replace(
        f"  url: {config.parent / 'fleet.git'}\n", f"  url: '{url}'\n"
    )
    if token:
        text = text.replace("  branch: main\n", "  branch: main\n  tokenEnv: FLEET_TOKEN\n")
    assert url in text
    config.write_text(text)
    return config


@pytest.mark.reliability(
    "10.10 A fleet remote that redirects to another host gets no token sent on"
)
@pytest.mark.parametrize("status", [301, 302, 307])
def test_the_fleet_token_is_not_sent_on_to_another_host(
    status: int,
    shop: FakeGitHub,
    write_config: Config,
    fleet_remote: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEET_TOKEN", FLEET_TOKEN)
    shop.open_pull("acme/shop", title="One", head_branch="one")
    before = git("rev-parse", "main", cwd=fleet_remote)
    # The other host serves the same repository to anyone (and would take the token too): once
    # git has followed a redirect there, it talks to that host directly. It must never see it.
    with git_server(tmp_path, {TOKEN_HEADER, None}) as other:  # type: ignore[arg-type]
        with redirector(f"http://127.0.0.1:{other.port}", status) as fleet_host:
            config = _http_config(
                write_config, f"http://127.0.0.1:{fleet_host.server_port}/fleet.git", token=True
            )
            result = sync(config, tmp_path / "work")
        assert TOKEN_HEADER in fleet_host.authorizations  # the fleet host did get it
        assert not [a for a in other.authorizations if a], other.authorizations
        assert result.exit_code == ExitCode.FLEET, result.output
        assert "prgen: error: fetching" in result.stderr and FLEET_TOKEN not in result.output
        assert git("rev-parse", "main", cwd=fleet_remote) == before

        # The same host, asked directly, gets the token and takes prgen's commit.
        direct = _http_config(write_config, f"http://127.0.0.1:{other.port}/fleet.git", token=True)
        again = sync(direct, tmp_path / "work-direct")
        assert again.exit_code == 0, again.output
        assert TOKEN_HEADER in other.authorizations
    assert git("rev-parse", "main", cwd=fleet_remote) != before


class ProcessWatch:
    """Every command line on this machine, sampled while a process runs (what `ps` shows)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                with contextlib.suppress(OSError):
                    self.seen.add(
                        cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    )
            time.sleep(0.002)

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.mark.reliability("10.10 Credentials in fleet.url: on no command line, not in .git/config")
def test_url_credentials_are_on_no_command_line_and_not_in_the_git_config(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    password = "pw-" + "9a8b7c6d5e4f" * 2
    # Every git process prgen starts logs its arguments, then runs the real git.
    wrapper = tmp_path / "bin" / "git"
    wrapper.parent.mkdir()
    log = tmp_path / "git-argv.log"
    real_git = shutil.which("git")
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s " "$@" >> "{log}"\necho >> "{log}"\nexec {real_git} "$@"\n'
    )
    wrapper.chmod(0o755)
    environment = {**os.environ, "PATH": f"{wrapper.parent}{os.pathsep}{os.environ['PATH']}"}
    shop.open_pull("acme/shop", title="One", head_branch="one")
    workdir = tmp_path / "work"
    with git_server(tmp_path, {f"Basic {basic('deploy', password)}"}) as server:
        url = f"http://deploy:{password}@127.0.0.1:{server.port}/fleet.git"
        config = _http_config(write_config, url, token=False)
        with ProcessWatch() as watch:
            for title in ("first", "second"):
                done = subprocess.run(
                    [*prgen_command(), "sync", "--config", str(config), "--workdir", str(workdir)],
                    env=environment,
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert done.returncode == 0, done.stdout + done.stderr
                shop.open_pull("acme/shop", title=title, head_branch=title)
    assert "committed" in done.stdout and password not in done.stdout + done.stderr
    commands = log.read_text().splitlines()
    assert {"fetch", "push", "remote"} <= {w for line in commands for w in line.split()[:1]}
    assert not [line for line in commands if password in line]
    assert any(" fetch " in line for line in watch.seen), "the watch saw no git process"
    assert not [line for line in watch.seen if password in line]
    config_text = (workdir / ".git" / "config").read_text()
    assert f"url = http://127.0.0.1:{server.port}/fleet.git" in config_text
    for path in (workdir / ".git").rglob("*"):
        if path.is_file() and "objects" not in path.parts:
            assert password.encode() not in path.read_bytes(), path


# -- 14. the truth about a push ------------------------------------------------------------------

# The remote updates the branch, then dies before it answers: the client's push fails
# although it landed (a connection lost at the worst moment does the same).
DIE_AFTER_UPDATE = """#!/bin/sh
[ "$1" = committed ] || exit 0
grep -q ' refs/heads/main$' || exit 0
[ -e "{armed}" ] || exit 0
rm -f "{armed}"
kill -9 "$PPID"
"""


@pytest.mark.reliability(
    "10.14 A push that landed although its answer failed is reported as landed"
)
def test_a_push_that_landed_without_an_answer_is_reported_as_its_commit(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    config = write_config(SHOP)
    workdir = tmp_path / "work"
    shop.open_pull("acme/shop", title="One", head_branch="one")
    assert sync(config, workdir).exit_code == 0
    armed = tmp_path / "armed"
    hook = fleet_remote / "hooks" / "reference-transaction"
    hook.write_text(DIE_AFTER_UPDATE.format(armed=armed))
    hook.chmod(0o755)
    armed.touch()
    shop.open_pull("acme/shop", title="Two", head_branch="two")

    result = sync(config, workdir)
    assert not armed.exists(), "the remote's hook did not run"
    tip = git("rev-parse", "main", cwd=fleet_remote).strip()
    assert "shop-pr-2/helmrelease.yaml" in git(
        "ls-tree", "-r", "--name-only", tip, cwd=fleet_remote
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["commit"] == tip, document
    assert [c["action"] for c in document["changes"] if c["pullRequest"] == 2] == ["create"]
    assert "it landed" in result.stderr


# -- 16. memory bounded by what prgen owns -------------------------------------------------------

BIG_FILE_MB = 90
MEMORY_LIMIT_MB = 256  # the example CronJob's limit is 512 Mi


def _add_big_files(bare: Path, count: int) -> None:
    """`count` distinct hand-written files of BIG_FILE_MB each under the managed folder, committed
    on main straight into the bare repository (no clone of them made)."""
    line = b"a hand-written line of a very large file, to be kept and never read by prgen\n"
    chunk = line * (1024 * 1024 // len(line))
    index = bare / "big.index"
    environment = {
        **os.environ,
        "GIT_INDEX_FILE": str(index),
        **{
            f"GIT_{who}_{part}": value
            for who in ("AUTHOR", "COMMITTER")
            for part, value in (("NAME", "operator"), ("EMAIL", "op@example.com"))
        },
    }

    def plumbing(*args: str, data: bytes | None = None) -> str:
        return subprocess.run(
            ["git", *args], cwd=bare, env=environment, input=data, capture_output=True, check=True
        ).stdout.decode()

    # As a big remote would: no delta search among the large files when it serves them.
    plumbing("config", "core.bigFileThreshold", "8m")
    plumbing("read-tree", "main")
    for number in range(count):
        writer = subprocess.Popen(
            ["git", "hash-object", "-w", "--stdin"],
            cwd=bare,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert writer.stdin is not None and writer.stdout is not None
        writer.stdin.write(f"file {number}\n".encode())
        for _ in range(BIG_FILE_MB):
            writer.stdin.write(chunk)
        writer.stdin.close()
        sha = writer.stdout.read().decode().strip()
        assert writer.wait() == 0
        plumbing(
            "update-index", "--add", "--cacheinfo", f"100644,{sha},{MANAGED}/data/big-{number}.bin"
        )
    tree_sha = plumbing("write-tree").strip()
    commit = plumbing("commit-tree", tree_sha, "-p", "main", "-m", "big hand-written files").strip()
    plumbing("update-ref", "refs/heads/main", commit)
    index.unlink()


MEASURE = """\
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
print(done.returncode, peak)
"""


@pytest.mark.reliability("10.16 90 MB hand-written files (2; 5 in stress): peak memory bounded")
def test_large_hand_written_files_are_never_read_whole(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path, cases: Cases
) -> None:
    count = scale(2, 5)  # the case is 5; 2 already cost over 256 MB on 6c05c69
    cases.add(count)
    _add_big_files(fleet_remote, count)
    # Served by git daemon, so the server's side of the fetch is not counted as prgen's.
    daemon = GitDaemon(fleet_remote.parent, tmp_path / "daemon.log")
    url = daemon.start() + "/" + fleet_remote.name
    try:
        config = _http_config(write_config, url, token=False)
        shop.open_pull("acme/shop", title="One", head_branch="one")
        workdir = tmp_path / "work"
        peaks = []
        for _ in range(2):  # the clone, then a run over the checkout that has them
            measured = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    MEASURE,
                    *prgen_command(),
                    "sync",
                    "--config",
                    str(config),
                    "--workdir",
                    str(workdir),
                    "--output",
                    "json",
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            returncode, peak = measured.stdout.splitlines()[-1].split()
            assert returncode == "0", measured.stdout + measured.stderr
            peaks.append(int(peak))
            shop.open_pull("acme/shop", title="Two", head_branch="two")
    finally:
        daemon.stop()
    assert max(peaks) <= MEMORY_LIMIT_MB, peaks
    # And the mechanism: no process of the run (prgen, nor any git it started) ever held one
    # of the files whole, so the peak does not grow with their size or number.
    assert max(peaks) < BIG_FILE_MB, peaks
    listing = git("ls-tree", "-r", "--name-only", "main", "--", MANAGED, cwd=fleet_remote)
    assert sum(name.startswith(f"{MANAGED}/data/big-") for name in listing.split()) == count
    assert "shop-pr-2/helmrelease.yaml" in listing


# -- 17. a work directory that cannot be written ----------------------------------------------


def _mount_namespace_works(tmp_path: Path) -> bool:
    probe = tmp_path / "mount-probe"
    probe.mkdir()
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


# Each is run in a mount namespace of its own (as root may: root ignores file modes, so only a
# real read-only or full file system is a real test), with $D the directory it is about.
UNWRITABLE = {
    "read-only parent": ('mount --bind "$D" "$D" && mount -o remount,bind,ro "$D" "$D"', "work"),
    "read-only work directory": (
        'mount --bind "$D/work" "$D/work" && mount -o remount,bind,ro "$D/work" "$D/work"',
        "work",
    ),
    "full (no inodes left)": ('mount -t tmpfs -o size=1m,nr_inodes=1 tmpfs "$D"', "work"),
    "full (no blocks left)": (
        'mount -t tmpfs -o size=64k tmpfs "$D" && mkdir "$D/work" '
        '&& (dd if=/dev/zero of="$D/filler" bs=4k 2>/dev/null || true)',
        "work",
    ),
}
PROBLEMS = ("Read-only file system", "No space left on device")


@pytest.mark.reliability("10.17 A read-only or full work directory exits 3 and names it")
def test_a_read_only_or_full_work_directory_exits_3_naming_it(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path, cases: Cases
) -> None:
    if not _mount_namespace_works(tmp_path):
        pytest.skip("needs `unshare -m` and mount (root, or a user namespace)")
    config = write_config(SHOP)
    shop.open_pull("acme/shop", title="One", head_branch="one")
    for index, (name, (setup, workdir_name)) in enumerate(UNWRITABLE.items()):
        directory = tmp_path / f"d{index}"
        directory.mkdir()
        workdir = directory / workdir_name
        if "work directory" in name:  # one prgen made, in a run before it became read-only
            assert sync(config, workdir).exit_code == 0
            shop.open_pull("acme/shop", title=name, head_branch=f"b{index}")
        argv = [*prgen_command(), "sync", "--config", str(config), "--workdir", str(workdir)]
        done = subprocess.run(
            ["unshare", "-m", "sh", "-c", f'set -e; {setup}; exec "$@"', "sh", *argv],
            env={**os.environ, "D": str(directory)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == ExitCode.FLEET, (name, done.stdout, done.stderr)
        assert f"work directory {workdir}" in done.stderr, (name, done.stderr)
        assert any(problem in done.stderr for problem in PROBLEMS), (name, done.stderr)
        assert "unexpected" not in done.stderr
        cases.add()
