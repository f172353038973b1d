"""The fleet repository, through GitPython: fetch, read, write one commit, push.

The work directory is a cache: every run first makes it match the remote
exactly (whatever a killed run left behind), so a commit either reaches the
remote whole or not at all, and the next run starts clean. Because every run
resets and cleans it, prgen only uses a work directory that is empty or that it
made itself (marked inside its git directory), writes nothing through a
symbolic link, and sends the fleet's credentials to the fleet's host only.
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
from urllib.parse import unquote, urlsplit, urlunsplit

from git import GitCommandError, InvalidGitRepositoryError, NoSuchPathError, Repo
from git.objects import Blob, Tree

from prgen.config import FleetSettings, is_local_path
from prgen.errors import ConfigError, FleetError
from prgen.inventory import identity_of
from prgen.redact import redact, redact_url, register_secret, url_credentials
from prgen.render import HELMRELEASE_FILE, MARKER

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


# A checkout prgen made holds this file in its git directory, written before anything
# else of the checkout: prgen resets, cleans and re-points only a work directory with it.
WORKDIR_MARK = "prgen-workdir"

# prgen's own files are small (the index lists one short line per environment): a file
# under the managed folder larger than this is hand-written, and is never read whole.
OWNED_FILE_LIMIT = 1024 * 1024

# What the snapshot holds for an entry that is not prgen's: never its content (a
# hand-written file may be huge), never anything that starts with the marker.
NOT_OWNED = b""

_WORKDIR_GIT_ERRORS = (
    "Read-only file system",
    "No space left on device",
    "Disk quota exceeded",
    "File too large",
    "Permission denied",
)


def split_credentials(url: str) -> tuple[str, str | None]:
    """An http(s) URL without its `user:password@`, and that `user:password` (decoded).

    Credentials in a URL would end up on git's command lines and in the checkout's
    .git/config; prgen keeps the URL bare and sends them as a header instead.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), f"{unquote(user)}:{unquote(password)}"


def _fleet_host(url: str) -> str | None:
    """`scheme://host[:port]/` of an http(s) URL: the scope of the fleet's credentials."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        return None
    return f"{parts.scheme.lower()}://{parts.netloc}/"


def _git_environment(settings: FleetSettings, url: str, credentials: str | None) -> dict[str, str]:
    """`url`: the fleet URL without credentials; `credentials`: its `user:password`, if any."""
    config = {
        "core.hooksPath": os.devnull,  # never run hooks from a fleet checkout
        "commit.gpgSign": "false",
        "gc.auto": "0",
        # git sends an extraHeader along to wherever a redirect leads (and then talks to that
        # host alone): a fleet remote that redirects is refused, never followed.
        "http.followRedirects": "false",
        # Blobs above this are streamed, never held whole, by git's fetch and checkout: a
        # large hand-written file in the fleet does not cost its size in memory.
        "core.bigFileThreshold": "8m",
    }
    if settings.token_env:
        token = os.environ.get(settings.token_env)
        if not token:
            raise ConfigError(
                f"environment variable {settings.token_env} is not set", "fleet.tokenEnv"
            )
        register_secret(token)
        if credentials:
            # One credential per remote: say which one is used rather than send both.
            log.warning(
                "fleet.url carries credentials and fleet.tokenEnv is set: the token from %s "
                "is used, the URL's credentials are not",
                settings.token_env,
            )
        credentials = f"x-access-token:{token}"
    host = _fleet_host(url)
    if credentials and host:
        basic = base64.b64encode(credentials.encode()).decode()
        register_secret(basic)
        # Scoped to the fleet's host: no other URL a git process may meet gets it.
        config[f"http.{host}.extraHeader"] = f"Authorization: Basic {basic}"
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
    data = _small_blob(repo, f"{commit}:{path}")
    return data is not None and text.encode() in data


def _small_blob(repo: Repo, ref: str) -> bytes | None:
    """The blob at `ref` if it is one and small enough to be prgen's; None otherwise.

    The size is asked first, so a large file is never read (see OWNED_FILE_LIMIT).
    """
    try:
        _, kind, size = repo.git.get_object_header(ref)
    except ValueError:
        return None  # no such object
    if isinstance(kind, bytes):  # GitPython gives bytes, whatever its annotations say
        kind = kind.decode()
    if kind != "blob" or size > OWNED_FILE_LIMIT:
        return None
    data: bytes = repo.git.get_object_data(ref)[3]
    return data


class FleetRepo:
    def __init__(self, settings: FleetSettings, workdir: Path) -> None:
        self.settings = settings
        self.workdir = workdir
        url, credentials = split_credentials(_url_for_git(settings.url))
        self.url = url  # what git is given: never with credentials
        for secret in (credentials, url_credentials(settings.url)):
            if secret:
                register_secret(secret)
                register_secret(secret.partition(":")[2])
        self._env = _git_environment(settings, url, credentials)
        self._repo: Repo | None = None

    @property
    def display_url(self) -> str:
        return redact_url(self.settings.url)

    def _workdir_error(self, doing: str, exc: OSError) -> FleetError:
        where = f" ({exc.filename})" if exc.filename else ""
        return FleetError(
            f"work directory {self.workdir}: {doing} failed: {exc.strerror or exc}{where}"
        )

    def _git_error(self, action: str, exc: GitCommandError) -> FleetError:
        error = _git_error(action, exc)
        if any(problem in str(error) for problem in _WORKDIR_GIT_ERRORS):
            return FleetError(f"work directory {self.workdir}: {error}")
        return error

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One prgen at a time per work directory; other writers are handled by push retries."""
        lock_path = self.workdir.with_name(self.workdir.name + ".lock")
        try:
            self.workdir.parent.mkdir(parents=True, exist_ok=True)
            handle = lock_path.open("a")
        except OSError as exc:
            raise self._workdir_error("creating its lock file", exc) from exc
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _open(self) -> Repo:
        if self._repo is not None:
            return self._repo
        repo = None
        if self._is_ours():
            try:
                repo = Repo(self.workdir)
                repo.git.update_environment(**self._env)
                repo.git.rev_parse("--git-dir")
            except (InvalidGitRepositoryError, NoSuchPathError, GitCommandError):
                repo = None  # a clone of ours that a killed run left half-made
        self._repo = repo or self._clone()
        return self._repo

    def _is_ours(self) -> bool:
        """True for a checkout prgen made, False for a missing or empty directory.

        Anything else (an operator's clone of the fleet, another repository, other files)
        is refused before anything in it is reset, cleaned or re-pointed.
        """
        git_dir = self.workdir / ".git"
        try:
            if not self.workdir.exists():
                return False
            entries = list(self.workdir.iterdir())
            if not git_dir.is_symlink() and (git_dir / WORKDIR_MARK).is_file():
                return True
            if not entries or (
                entries == [git_dir]
                and git_dir.is_dir()
                and not git_dir.is_symlink()
                and not any(git_dir.iterdir())
            ):
                return False
        except OSError as exc:
            raise self._workdir_error("reading it", exc) from exc
        holds = "a git checkout" if os.path.lexists(git_dir) else "files"
        raise FleetError(
            f"work directory {self.workdir} exists and is not a git checkout prgen made (it holds "
            f"{holds}): prgen resets and cleans its work directory, so it uses only an empty or "
            "new directory, or one it created; choose another with --workdir or PRGEN_WORKDIR"
        )

    def _clone(self) -> Repo:
        log.info("cloning %s into %s", self.display_url, self.workdir)
        git_dir = self.workdir / ".git"
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            for entry in self.workdir.iterdir():  # ours or empty (see _is_ours)
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            # The mark comes first: whatever a run killed from here on leaves is marked ours.
            git_dir.mkdir()
            (git_dir / WORKDIR_MARK).write_text(
                f"made by prgen for {self.display_url} {self.settings.branch}\n"
            )
        except OSError as exc:
            raise self._workdir_error("creating it", exc) from exc
        try:
            repo = Repo.init(self.workdir)
            repo.git.update_environment(**self._env)
            repo.git.remote("add", "origin", self.url)
        except GitCommandError as exc:
            raise self._git_error("creating the work directory", exc) from exc
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
            raise self._git_error("preparing the work directory", exc) from exc
        except OSError as exc:
            raise self._workdir_error("removing stale lock files", exc) from exc
        try:
            repo.git.fetch(
                "--prune", "--no-tags", "origin", f"+refs/heads/{branch}:{self._remote_ref}"
            )
        except GitCommandError as exc:
            if "couldn't find remote ref" not in str(exc.stderr):
                raise self._git_error(f"fetching {self.display_url}", exc) from exc
            return self._start_empty_branch(repo)
        commit = repo.commit(self._remote_ref)
        self._check_managed_path(commit.tree)
        try:
            repo.git.checkout("--force", "-B", branch, self._remote_ref)
            repo.git.reset("--hard", self._remote_ref)
            repo.git.clean("-ffdx")
        except GitCommandError as exc:
            raise self._git_error("resetting the work directory", exc) from exc
        return Snapshot(commit.hexsha, self._read_managed(repo, commit.hexsha))

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
            raise self._git_error("preparing an empty branch", exc) from exc
        return Snapshot(None, {})

    def _check_managed_path(self, tree: Tree) -> None:
        """Each folder on the way to the managed folder, and the folder itself, is a folder.

        A committed link there (`previews -> /elsewhere`) would have prgen write, read or
        delete outside the work tree: the run stops instead.
        """
        node = tree
        parts = PurePosixPath(self.settings.path).parts
        for depth, part in enumerate(parts, start=1):
            where = "/".join(parts[:depth])
            try:
                child = node / part
            except KeyError:
                return  # nothing managed yet: prgen makes the folders
            if getattr(child, "mode", 0) == Blob.link_mode:
                raise FleetError(
                    f"{where} in the fleet repository is a symbolic link: prgen never writes or "
                    f"reads through a link; make {where} a plain folder"
                )
            if not isinstance(child, Tree):
                raise FleetError(f"{where} in the fleet repository is a file, not a folder")
            node = child

    def _read_managed(self, repo: Repo, commit: str) -> dict[str, bytes]:
        """Every entry under the managed folder; the content of prgen's own files only.

        Sizes come first (`ls-tree -l`): a file too big to be prgen's is never read, a
        small one is read to look for the marker and kept only if it is prgen's. A link
        or a submodule is recorded as a hand-written entry, so prgen leaves it (and the
        environment whose place it takes) alone.
        """
        try:
            listing = repo.git.ls_tree(
                "-r", "-l", "-z", "--full-tree", commit, "--", self.settings.path
            )
        except GitCommandError as exc:
            raise self._git_error("reading the fleet tree", exc) from exc
        files: dict[str, bytes] = {}
        for entry in filter(None, listing.split("\0")):
            meta, _, path = entry.partition("\t")
            mode, kind, sha, size = meta.split()
            relative = str(PurePosixPath(path).relative_to(self.settings.path))
            files[relative] = NOT_OWNED
            if kind != "blob" or int(mode, 8) == Blob.link_mode:
                continue
            if int(size) > OWNED_FILE_LIMIT:
                continue
            _, _, _, data = repo.git.get_object_data(sha)
            if data.startswith(MARKER.encode()):
                files[relative] = data
        return files

    def _managed_file(self, relative: str) -> Path:
        """The path to write `relative` (under the managed folder) at, never through a link."""
        parts = PurePosixPath(self.settings.path, relative).parts
        if PurePosixPath(relative).is_absolute() or ".." in parts:
            raise FleetError(f"refusing to write {relative!r}: outside {self.settings.path}")
        path = self.workdir
        for part in parts:
            path = path / part
            if path.is_symlink():
                raise FleetError(
                    f"refusing to write {self.settings.path}/{relative}: "
                    f"{path.relative_to(self.workdir)} is a symbolic link"
                )
        return path

    def commit_and_push(
        self, snapshot: Snapshot, writes: Mapping[str, bytes | None], message: str
    ) -> str | None:
        """One commit with all `writes`, pushed. None if it would change nothing."""
        repo = self._open()
        try:
            for relative, content in writes.items():
                target = self._managed_file(relative)
                if content is None:
                    target.unlink(missing_ok=True)
                    with contextlib.suppress(OSError):  # the folder may hold hand-written files
                        target.parent.rmdir()
                else:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    self._managed_file(relative)  # the folders just made are no links either
                    target.write_bytes(content)
        except OSError as exc:
            raise self._workdir_error("writing the fleet files", exc) from exc
        try:
            repo.git.add("--all", "--", self.settings.path)
            if snapshot.commit is not None and not repo.index.diff(snapshot.commit):
                return None
            repo.git.commit("--quiet", "--no-verify", "-m", message)
        except GitCommandError as exc:
            raise self._git_error("committing", exc) from exc
        sha = repo.head.commit.hexsha
        self._push(repo, snapshot, sha)
        return sha

    def _push(self, repo: Repo, snapshot: Snapshot, sha: str) -> None:
        branch = self.settings.branch
        # --force-with-lease to the exact commit we built on: a push that raced with
        # another writer is refused by the remote, never overwrites their commit.
        lease = f"--force-with-lease=refs/heads/{branch}:{snapshot.commit or ''}"
        try:
            repo.git.push("--porcelain", lease, "origin", f"HEAD:refs/heads/{branch}")
        except GitCommandError as exc:
            # The answer failed, not necessarily the push: the remote's tip says what happened.
            try:
                tip = self._remote_tip(repo)
            except GitCommandError:
                raise self._git_error(f"pushing to {self.display_url}", exc) from exc
            if tip == sha:
                log.warning(
                    "the answer to the push failed, but %s holds commit %s: it landed",
                    self.display_url,
                    sha[:12],
                )
                return
            # However the refusal is worded (stale info, fetch first, or "failed to update
            # ref" when another push landed inside the remote), a moved branch means re-plan.
            if tip != snapshot.commit:
                raise ConcurrentUpdate(branch) from exc
            raise self._git_error(f"pushing to {self.display_url}", exc) from exc

    def _remote_tip(self, repo: Repo) -> str | None:
        """The commit the remote's branch points at now; None if it has no such branch."""
        out = str(repo.git.ls_remote("origin", f"refs/heads/{self.settings.branch}"))
        return out.split()[0] if out.strip() else None

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
            content = _small_blob(repo, f"{commit}^:{path}")
            identity = identity_of(content) if content is not None else None
            if identity:
                folder = PurePosixPath(path).parent.name
                removed.append(RemovedEnvironment(identity[0], identity[1], identity[2], folder))
        return removed
