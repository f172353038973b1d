"""Real `prgen sync` processes for the safety tests, and what the fleet remote must hold.

`PrgenProcess` starts the installed prgen in its own process group, with its output in files
(never a pipe that could fill up while the test is busy), so a test can SIGKILL it with all
its git children at any moment. `FleetHistory` checks every commit that
ever reached the bare fleet repository: each one must be whole (no environment folder with a
missing manifest, an index that lists exactly the folders present, every file parsing, no
PR with two folders), and a commit made by prgen may touch nothing outside its folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from conftest import git

MANAGED = "previews/dev"
ENVIRONMENT_FILES = frozenset({"namespace.yaml", "helmrelease.yaml", "kustomization.yaml"})
INDEX = "kustomization.yaml"
MARKER = b"# prgen:managed"
PRGEN_AUTHOR = "prgen-test"  # conftest.config_text's fleet.author


def prgen_command() -> list[str]:
    """The installed console script of the interpreter running the tests, else the same code."""
    script = Path(sys.executable).with_name("prgen")
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-c", "from prgen.cli import main; main()"]


def with_push_retries(config: Path, retries: int) -> None:
    """Set fleet.pushRetries in a prgen.yaml written by conftest.config_text."""
    text = config.read_text()
    author = "  author: {name: prgen-test, email: prgen@example.com}\n"
    assert author in text, "conftest.config_text changed its fleet block"
    config.write_text(text.replace(author, f"{author}  pushRetries: {retries}\n"))


@dataclass(frozen=True)
class Finished:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    killed: bool

    def json(self) -> dict[str, Any]:
        assert self.returncode in (0, 1), self.describe()
        document: dict[str, Any] = json.loads(self.stdout)
        return document

    def describe(self) -> str:
        return (
            f"{' '.join(self.argv[-6:])}: exit {self.returncode} after {self.seconds:.2f}s\n"
            f"--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"
        )


class PrgenProcess:
    """One `prgen` process in a new session (so its git children share its process group)."""

    def __init__(
        self, args: Iterable[str], output: Path, env: Mapping[str, str] | None = None
    ) -> None:
        output.mkdir(parents=True, exist_ok=True)
        self.argv = (*prgen_command(), *args)
        self._stdout_path = output / "stdout"
        self._stderr_path = output / "stderr"
        with self._stdout_path.open("wb") as out, self._stderr_path.open("wb") as err:
            self.started = time.monotonic()
            self.popen = subprocess.Popen(
                self.argv,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
                start_new_session=True,
            )
        self.killed = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL prgen and every git it started, as a crash (or an OOM-killed pod) would."""
        self.killed = self.running()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)

    def reap(self) -> None:
        """Cleanup: end the process (and its group) if it still runs."""
        if self.running():  # once it is reaped, its group id may belong to someone else
            self.kill()
        self.popen.wait(timeout=30)

    def wait(self, timeout: float = 120) -> Finished:
        try:
            returncode = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.popen.wait()
            raise AssertionError(f"prgen did not finish within {timeout}s") from None
        seconds = time.monotonic() - self.started
        return Finished(
            self.argv,
            returncode,
            self._stdout_path.read_text(errors="replace"),
            self._stderr_path.read_text(errors="replace"),
            seconds,
            self.killed,
        )


def start_sync(
    config: Path,
    workdir: Path,
    output: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
    verbose: bool = False,
) -> PrgenProcess:
    args = [*(["-v"] if verbose else []), "sync", "--config", str(config)]
    args += ["--workdir", str(workdir), "--output", "json", *extra]
    return PrgenProcess(args, output, env)


# -- the fleet remote ------------------------------------------------------------------------


class GitDaemon:
    """A git:// server for the bare repositories in one folder, in a process group of its own.

    A remote on a path is served by a git-receive-pack that prgen's git starts, so killing
    prgen's process group would kill the server side of a push too. Behind `git daemon` the
    server side lives on, as it would on GitHub: a push whose client dies may still land.
    """

    def __init__(self, base: Path, log: Path) -> None:
        self.base = base
        self.log = log
        self.popen: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self) -> str:
        for _ in range(5):  # the port is picked before the daemon binds it, so it may be taken
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            with self.log.open("ab") as log:
                self.popen = subprocess.Popen(
                    [
                        "git",
                        "daemon",
                        "--reuseaddr",
                        "--listen=127.0.0.1",
                        f"--port={port}",
                        f"--base-path={self.base}",
                        "--export-all",
                        "--enable=receive-pack",
                        "--informative-errors",
                        str(self.base),
                    ],
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            deadline = time.monotonic() + 10
            while self.popen.poll() is None and time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    time.sleep(0.02)
                    continue
                self.url = f"git://127.0.0.1:{port}"
                return self.url
            self.stop()
        raise AssertionError(f"git daemon did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=30)
        self.popen = None


@dataclass(frozen=True)
class Environment:
    folder: str
    repository: str
    number: int
    head_sha: str


def _load(content: bytes) -> Any:
    return yaml.load(content, Loader=yaml.CSafeLoader)


class FleetHistory:
    """Checks every commit of a bare fleet repository once; remembers what it checked."""

    def __init__(self, remote: Path) -> None:
        self.remote = remote
        self._checked: set[str] = set()
        self._parsed: dict[str, Any] = {}  # blob sha -> parsed document, or an error text

    def _blobs(self, shas: Iterable[str]) -> None:
        wanted = [sha for sha in dict.fromkeys(shas) if sha not in self._parsed]
        if not wanted:
            return
        out = subprocess.run(
            ["git", "cat-file", "--batch"],
            cwd=self.remote,
            input="\n".join(wanted).encode() + b"\n",
            capture_output=True,
            check=True,
        ).stdout
        position = 0
        for sha in wanted:
            header_end = out.index(b"\n", position)
            _, kind, size = out[position:header_end].decode().split()
            assert kind == "blob", (sha, kind)
            content = out[header_end + 1 : header_end + 1 + int(size)]
            position = header_end + 1 + int(size) + 1
            if not content.startswith(MARKER):
                self._parsed[sha] = "has no prgen marker on its first line"
                continue
            try:
                self._parsed[sha] = _load(content)
            except yaml.YAMLError as exc:
                self._parsed[sha] = f"does not parse: {exc}"

    def environments(self, commit: str = "main") -> dict[str, Environment]:
        """The environments a commit holds, by folder; raises if the commit is not whole."""
        environments, errors = self._read(commit)
        assert not errors, "\n".join(errors)
        return environments

    def _read(self, commit: str) -> tuple[dict[str, Environment], list[str]]:
        listing = git("ls-tree", "-r", "-z", commit, "--", MANAGED, cwd=self.remote)
        files: dict[str, str] = {}
        for entry in filter(None, listing.split("\0")):
            meta, _, path = entry.partition("\t")
            files[path.removeprefix(MANAGED + "/")] = meta.split()[2]
        self._blobs(files.values())
        short = commit[:10]
        errors: list[str] = []
        parsed: dict[str, Any] = {}
        for path, sha in files.items():
            document = self._parsed[sha]
            if isinstance(document, str):
                errors.append(f"{short}: {MANAGED}/{path} {document}")
            elif not isinstance(document, dict):
                errors.append(f"{short}: {MANAGED}/{path} is not one YAML mapping")
            else:
                parsed[path] = document
        folders: dict[str, set[str]] = {}
        for path in files:
            folder, _, name = path.partition("/")
            if not name:
                if path != INDEX:
                    errors.append(f"{short}: unexpected file {MANAGED}/{path}")
                continue
            folders.setdefault(folder, set()).add(name)
        environments: dict[str, Environment] = {}
        owners: dict[tuple[str, int], str] = {}
        for folder, names in sorted(folders.items()):
            if names != ENVIRONMENT_FILES:
                errors.append(
                    f"{short}: {MANAGED}/{folder} is partial: it holds {sorted(names)}, "
                    f"not {sorted(ENVIRONMENT_FILES)}"
                )
                continue
            environment = self._environment(folder, parsed, short, errors)
            if environment is None:
                continue
            key = (environment.repository.lower(), environment.number)
            if key in owners:
                errors.append(
                    f"{short}: {environment.repository}#{environment.number} has two folders, "
                    f"{owners[key]} and {folder}"
                )
            owners[key] = folder
            environments[folder] = environment
        index = parsed.get(INDEX)
        if folders and INDEX not in files:
            errors.append(f"{short}: environment folders but no {MANAGED}/{INDEX}")
        if index is not None:
            resources = index.get("resources") or []
            if len(resources) != len(set(resources)):
                errors.append(f"{short}: the index lists an entry twice: {resources}")
            if set(resources) != set(folders):
                errors.append(
                    f"{short}: the index lists {sorted(set(resources) - set(folders))} that are "
                    f"not there and misses {sorted(set(folders) - set(resources))}"
                )
        return environments, errors

    @staticmethod
    def _environment(
        folder: str, parsed: Mapping[str, Any], short: str, errors: list[str]
    ) -> Environment | None:
        try:
            release = parsed[f"{folder}/helmrelease.yaml"]
            namespace = parsed[f"{folder}/namespace.yaml"]
            kustomization = parsed[f"{folder}/kustomization.yaml"]
        except KeyError:
            return None  # reported as unparsable already
        annotations = (release.get("metadata") or {}).get("annotations") or {}
        problems = []
        if release.get("kind") != "HelmRelease" or namespace.get("kind") != "Namespace":
            problems.append("kinds are not HelmRelease and Namespace")
        if release["metadata"].get("namespace") != folder:
            problems.append(f"HelmRelease is in namespace {release['metadata'].get('namespace')}")
        if (namespace.get("metadata") or {}).get("name") != folder:
            problems.append("the Namespace is not named after the folder")
        if set(kustomization.get("resources") or []) != {"namespace.yaml", "helmrelease.yaml"}:
            problems.append(f"its kustomization lists {kustomization.get('resources')}")
        try:
            environment = Environment(
                folder,
                str(annotations["prgen.io/repository"]),
                int(annotations["prgen.io/pull-request"]),
                str(annotations["prgen.io/head-sha"]),
            )
        except (KeyError, ValueError) as exc:
            problems.append(f"no identity annotation {exc}")
            environment = None
        errors.extend(f"{short}: {MANAGED}/{folder}: {problem}" for problem in problems)
        return None if problems else environment

    def check_new_commits(self) -> int:
        """Check every commit on any ref not checked yet; returns how many were checked."""
        log = git("log", "--all", "--format=%H%x00%an%x00%P", cwd=self.remote)
        errors: list[str] = []
        new = 0
        for line in log.splitlines():
            commit, author, parents = line.split("\0")
            if commit in self._checked:
                continue
            new += 1
            errors.extend(self._read(commit)[1])
            if author == PRGEN_AUTHOR and parents:
                changed = git(
                    "diff-tree",
                    "--no-commit-id",
                    "--name-only",
                    "-r",
                    "-z",
                    parents.split()[0],
                    commit,
                    cwd=self.remote,
                )
                outside = [p for p in changed.split("\0") if p and not p.startswith(MANAGED + "/")]
                if outside:
                    errors.append(f"{commit[:10]}: a prgen commit touched {outside}")
        assert not errors, "commits on the fleet remote that are not whole:\n" + "\n".join(errors)
        self._checked.update(line.split("\0")[0] for line in log.splitlines())
        return new


def wanted_environments(github: Any, repository: str, numbers: Iterable[int]) -> dict[str, str]:
    """folder -> head SHA of every open, ready, same-repository PR without the no-preview label.

    This mirrors the test configuration (excludeLabels: [no-preview], drafts and forks off,
    namespace <<REPO_NAME>>-pr-<<PR_NUMBER>>), computed from the fake's own state.
    """
    name = repository.split("/")[1]
    wanted = {}
    for number in numbers:
        pull = github.pull(repository, number)
        if (
            pull.state == "open"
            and not pull.draft
            and pull.head_repo == repository
            and "no-preview" not in pull.labels
        ):
            wanted[f"{name}-pr-{number}"] = pull.head_sha
    return wanted


def heads(environments: Mapping[str, Environment]) -> dict[str, str]:
    return {folder: env.head_sha for folder, env in environments.items()}
