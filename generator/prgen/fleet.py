"""The fleet repository, through GitPython: fetch, read, write one commit, push.

The work directory is a cache: every run first makes it match the remote
exactly (whatever a killed run left behind), so a commit either reaches the
remote whole or not at all, and the next run starts clean.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from git import GitCommandError, InvalidGitRepositoryError, NoSuchPathError, Repo
from git.objects import Blob, Tree

from prgen.config import FleetSettings, is_local_path
from prgen.errors import ConfigError, FleetError
from prgen.inventory import identity_of
from prgen.redact import redact, redact_url, register_secret, url_credentials
from prgen.render import HELMRELEASE_FILE

log = logging.getLogger(__name__)


class ConcurrentUpdate(Exception):
    """Someone else pushed to the branch between our fetch and our push."""


@dataclass(frozen=True)
class RemovedEnvironment:
    repository: str
    number: int
    head_sha: str | None
    folder: str


@dataclass(frozen=True)
class Snapshot:
    commit: str | None  # None: the branch does not exist yet
    files: Mapping[str, bytes]  # every file under the managed path, relative to it


def default_workdir(settings: FleetSettings) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(f"{settings.url}\0{settings.branch}".encode()).hexdigest()[:12]
    return cache / "prgen" / f"fleet-{key}"


def _git_environment(settings: FleetSettings) -> dict[str, str]:
    config = {
        "core.hooksPath": os.devnull,  # never run hooks from a fleet checkout
        "commit.gpgSign": "false",
        "gc.auto": "0",
    }
    if settings.token_env:
        token = os.environ.get(settings.token_env)
        if not token:
            raise ConfigError(
                f"environment variable {settings.token_env} is not set", "fleet.tokenEnv"
            )
        register_secret(token)
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        register_secret(basic)
        config["http.extraHeader"] = f"Authorization: Basic {basic}"
    env = {
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": settings.author_name,
        "GIT_AUTHOR_EMAIL": settings.author_email,
        "GIT_COMMITTER_NAME": settings.author_name,
        "GIT_COMMITTER_EMAIL": settings.author_email,
        "GIT_CONFIG_COUNT": str(len(config)),
    }
    if "GIT_SSH_COMMAND" not in os.environ:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    for index, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    return env


def _git_error(action: str, exc: GitCommandError) -> FleetError:
    stderr = exc.stderr if isinstance(exc.stderr, str) else ""
    detail = " ".join(line.strip() for line in stderr.splitlines() if line.strip())
    detail = detail.removeprefix("stderr: ").strip("'\" ")
    return FleetError(redact(f"{action} failed: {detail or exc.status}"))


def _url_for_git(url: str) -> str:
    # A plain local path works for git, but only an absolute one after we chdir.
    return str(Path(url).expanduser().resolve()) if is_local_path(url) else url


def _file_contains(repo: Repo, commit: str, path: str, text: str) -> bool:
    """Whether `path` exists in `commit` and contains `text`.

    Asked of GitPython's long-running `git cat-file --batch` by `<commit>:<path>`: no
    process per file and no parsing of the managed folder's big tree, and a probe round
    asks this for every environment.
    """
    try:
        _, kind, _, data = repo.git.get_object_data(f"{commit}:{path}")
    except ValueError:
        return False  # no such file in that commit
    if isinstance(kind, bytes):  # GitPython gives bytes, whatever its annotations say
        kind = kind.decode()
    return kind == "blob" and text.encode() in data


class FleetRepo:
    def __init__(self, settings: FleetSettings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        self.url = _url_for_git(settings.url)
        credentials = url_credentials(settings.url)
        if credentials:
            register_secret(credentials)
            register_secret(credentials.partition(":")[2])
        self._env = _git_environment(settings)
        self._repo: Repo | None = None

    @property
    def display_url(self) -> str:
        return redact_url(self.settings.url)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One prgen at a time per work directory; other writers are handled by push retries."""
        self.workdir.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.workdir.with_name(self.workdir.name + ".lock")
        with lock_path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _open(self) -> Repo:
        if self._repo is not None:
            return self._repo
        try:
            repo = Repo(self.workdir)
            repo.git.update_environment(**self._env)
            repo.git.rev_parse("--git-dir")
        except (InvalidGitRepositoryError, NoSuchPathError, GitCommandError):
            repo = self._clone()
        self._repo = repo
        return repo

    def _clone(self) -> Repo:
        if self.workdir.exists():
            if any(self.workdir.iterdir()) and not (self.workdir / ".git").exists():
                raise FleetError(f"work directory {self.workdir} exists and is not a git checkout")
            shutil.rmtree(self.workdir)  # a half-made clone of ours, from a killed run
        log.info("cloning %s into %s", self.display_url, self.workdir)
        self.workdir.mkdir(parents=True)
        try:
            repo = Repo.init(self.workdir)
            repo.git.update_environment(**self._env)
            repo.git.remote("add", "origin", self.url)
        except GitCommandError as exc:
            raise _git_error("creating the work directory", exc) from exc
        return repo

    @property
    def _remote_ref(self) -> str:
        return f"refs/remotes/origin/{self.settings.branch}"

    def refresh(self) -> Snapshot:
        """Fetch the branch and make the work tree match it exactly; read the managed files."""
        repo = self._open()
        branch = self.settings.branch
        try:
            self._recover(repo)
        except GitCommandError as exc:
            raise _git_error("preparing the work directory", exc) from exc
        try:
            repo.git.fetch(
                "--prune", "--no-tags", "origin", f"+refs/heads/{branch}:{self._remote_ref}"
            )
        except GitCommandError as exc:
            if "couldn't find remote ref" not in str(exc.stderr):
                raise _git_error(f"fetching {self.display_url}", exc) from exc
            return self._start_empty_branch(repo)
        try:
            repo.git.checkout("--force", "-B", branch, self._remote_ref)
            repo.git.reset("--hard", self._remote_ref)
            repo.git.clean("-ffdx")
        except GitCommandError as exc:
            raise _git_error("resetting the work directory", exc) from exc
        commit = repo.commit(self._remote_ref)
        return Snapshot(commit.hexsha, self._read_managed(commit.tree))

    def _recover(self, repo: Repo) -> None:
        """Undo whatever a killed run left: git's lock files, a clone stopped before its remote."""
        git_dir = Path(repo.git_dir)
        for lock in [*git_dir.glob("*.lock"), *git_dir.glob("refs/**/*.lock")]:
            lock.unlink(missing_ok=True)  # no other prgen holds them: we hold the work dir's lock
        if "origin" in [remote.name for remote in repo.remotes]:
            repo.git.remote("set-url", "origin", self.url)
        else:
            repo.git.remote("add", "origin", self.url)

    def _start_empty_branch(self, repo: Repo) -> Snapshot:
        log.info("branch %s does not exist on %s yet", self.settings.branch, self.display_url)
        try:
            repo.git.checkout("--force", "--orphan", f"prgen-new-{os.getpid()}")
            repo.git.rm("-r", "-f", "--cached", "--ignore-unmatch", "--quiet", ".")
            repo.git.clean("-ffdx")
            repo.git.update_ref("-d", self._remote_ref)
        except GitCommandError as exc:
            raise _git_error("preparing an empty branch", exc) from exc
        return Snapshot(None, {})

    def _read_managed(self, tree: Tree) -> dict[str, bytes]:
        try:
            managed = tree / self.settings.path
        except KeyError:
            return {}
        if not isinstance(managed, Tree):
            raise FleetError(
                f"{self.settings.path} in the fleet repository is a file, not a folder"
            )
        files: dict[str, bytes] = {}
        for item in managed.traverse():
            if isinstance(item, Blob) and item.mode != Blob.link_mode:
                relative = PurePosixPath(item.path).relative_to(self.settings.path)
                files[str(relative)] = item.data_stream.read()
        return files

    def _managed_file(self, relative: str) -> Path:
        root = (self.workdir / self.settings.path).resolve()
        target = (root / relative).resolve()
        if root not in target.parents:
            raise FleetError(f"refusing to write {relative!r}: outside {self.settings.path}")
        return target

    def commit_and_push(
        self, snapshot: Snapshot, writes: Mapping[str, bytes | None], message: str
    ) -> str | None:
        """One commit with all `writes`, pushed. None if it would change nothing."""
        repo = self._open()
        for relative, content in writes.items():
            target = self._managed_file(relative)
            if content is None:
                target.unlink(missing_ok=True)
                with contextlib.suppress(OSError):  # the folder may hold hand-written files
                    target.parent.rmdir()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        try:
            repo.git.add("--all", "--", self.settings.path)
            if snapshot.commit is not None and not repo.index.diff(snapshot.commit):
                return None
            repo.git.commit("--quiet", "--no-verify", "-m", message)
        except GitCommandError as exc:
            raise _git_error("committing", exc) from exc
        sha = repo.head.commit.hexsha
        self._push(repo, snapshot)
        return sha

    def _push(self, repo: Repo, snapshot: Snapshot) -> None:
        branch = self.settings.branch
        # --force-with-lease to the exact commit we built on: a push that raced with
        # another writer is refused by the remote, never overwrites their commit.
        lease = f"--force-with-lease=refs/heads/{branch}:{snapshot.commit or ''}"
        try:
            repo.git.push("--porcelain", lease, "origin", f"HEAD:refs/heads/{branch}")
        except GitCommandError as exc:
            # However the refusal is worded (stale info, fetch first, or "failed to update
            # ref" when another push landed inside the remote), a moved branch means re-plan.
            if self._remote_moved(repo, snapshot):
                raise ConcurrentUpdate(branch) from exc
            raise _git_error(f"pushing to {self.display_url}", exc) from exc

    def _remote_moved(self, repo: Repo, snapshot: Snapshot) -> bool:
        try:
            out = str(repo.git.ls_remote("origin", f"refs/heads/{self.settings.branch}"))
        except GitCommandError:
            return False  # the remote can't be asked: report the push's own error
        return (out.split()[0] if out.strip() else None) != snapshot.commit

    # -- history: what the deadline and the closed-PR report are derived from --

    def carried_since(self, folder: str, head_sha: str) -> datetime | None:
        """When the fleet branch started carrying `head_sha` in this environment's HelmRelease.

        Derived from history, so no state is kept between runs: the start of the
        current unbroken run of commits whose file contains the SHA. A later commit
        that only changes how often it appears (a config change) does not move it;
        a SHA that went away and came back (A, B, A again; a removed environment
        made again) starts at its return. None when the branch does not carry it.
        """
        path = f"{self.settings.path}/{folder}/{HELMRELEASE_FILE}"
        try:
            repo = self._open()
            # The commits that changed how often the SHA appears, newest first. Almost always
            # the newest is the start, so ask for it alone, and walk the whole history only
            # when it is not (a config change that used the SHA once more, say).
            for limit in (["-1"], []):
                out = repo.git.log(
                    *limit, f"-S{head_sha}", "--format=%H %ct %P", self._remote_ref, "--", path
                )
                for line in out.splitlines():
                    sha, _, rest = line.partition(" ")
                    when, _, parents = rest.partition(" ")
                    if not _file_contains(repo, sha, path, head_sha):
                        return None  # the newest change took it away: not carried now
                    if not any(_file_contains(repo, p, path, head_sha) for p in parents.split()):
                        return datetime.fromtimestamp(int(when), UTC)
                if not out.strip():
                    return None  # never carried
        except GitCommandError as exc:
            raise _git_error("reading the fleet history", exc) from exc
        return None

    def recently_removed(self, lookback: int) -> list[RemovedEnvironment]:
        """Environments whose HelmRelease was deleted in the last `lookback` commits of the path."""
        if lookback <= 0:
            return []
        try:
            repo = self._open()
            log = repo.git.log(
                f"-{lookback}",
                "--format=@%H",
                "--name-status",
                "--no-renames",
                self._remote_ref,
                "--",
                self.settings.path,
            )
        except GitCommandError as exc:
            raise _git_error("reading the fleet history", exc) from exc
        removed: list[RemovedEnvironment] = []
        commit = ""
        for line in log.splitlines():
            if line.startswith("@"):
                commit = line[1:]
                continue
            status, _, path = line.partition("\t")
            if status != "D" or not path.endswith("/" + HELMRELEASE_FILE):
                continue
            content = repo.git.show(f"{commit}^:{path}", stdout_as_string=False)
            identity = identity_of(content) if isinstance(content, bytes) else None
            if identity:
                folder = PurePosixPath(path).parent.name
                removed.append(RemovedEnvironment(identity[0], identity[1], identity[2], folder))
        return removed
