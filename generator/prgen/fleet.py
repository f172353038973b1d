"""The fleet repository, through git: fetch, read, write one commit, push.

The work directory is a cache of the remote's objects; its files are never checked
out. Every run reads the fetched commit itself (`ls-tree`, blobs by id) and builds
its one commit from that commit with `git fast-import` (contents and message on
stdin, so nothing of unbounded length goes on a command line), so whatever a killed
run left behind in it plays no part, a commit either reaches the remote whole or not
at all, and at 10,000 environments no run pays for a 30,000-file work tree.

What each blob under the managed folder says (prgen's or not, and whose environment
a HelmRelease is) is kept between runs in `.git/prgen-inventory-v1.json`, keyed by
blob id, with the tree ids of the environment folders prgen rendered (a folder still
exactly so, with the same input hash, is kept unread; an edited one is a new tree).
Content-addressed, so never wrong; a broken or missing file is a miss.

prgen only uses a work directory that is empty or that it made itself (marked inside
its git directory), never writes a path through a file or symbolic link of the fleet,
and sends the fleet's credentials to the fleet's host only.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.parse import unquote, urlsplit, urlunsplit

from git import GitCommandError, InvalidGitRepositoryError, NoSuchPathError, Repo
from git.objects import Blob, Tree

from prgen import clock
from prgen.config import FleetSettings, is_local_path
from prgen.errors import ConfigError, FleetError
from prgen.fleet_history import CARRIED_CACHE, FleetHistory
from prgen.git_objects import OWNED_FILE_LIMIT, git_failure
from prgen.inventory import (
    NOT_OWNED,
    FileFacts,
    Identity,
    Inventory,
    StoredFiles,
    assemble_inventory,
    blob_id,
    facts_of,
    is_owned,
    join,
    tree_id,
)
from prgen.redact import redact_url, register_secret, url_credentials
from prgen.render import HELMRELEASE_FILE, KUSTOMIZATION_FILE

log = logging.getLogger(__name__)


class ConcurrentUpdate(Exception):
    """Someone else pushed to the branch between our fetch and our push."""


class SnapshotFiles(Mapping[str, bytes]):
    """Every entry under the managed folder (relative to it): prgen's own files' contents,
    read from git only when asked for, and NOT_OWNED for every other entry."""

    def __init__(self, blobs: Mapping[str, str | None], read: Any) -> None:
        self._blobs = blobs  # path -> blob id of a file of prgen's, None for any other entry
        self._read = read

    def __getitem__(self, path: str) -> bytes:
        sha = self._blobs[path]
        return NOT_OWNED if sha is None else bytes(self._read(sha))

    def __iter__(self) -> Iterator[str]:
        return iter(self._blobs)

    def __len__(self) -> int:
        return len(self._blobs)

    def __contains__(self, path: object) -> bool:
        return path in self._blobs


@dataclass(frozen=True)
class Snapshot:
    commit: str | None  # None: the branch does not exist yet
    files: Mapping[str, bytes]  # every file under the managed path, relative to it
    inventory: Inventory = field(
        default_factory=lambda: Inventory(
            environments=(), handwritten={}, index=None, unrecognised=()
        )
    )


def default_workdir(settings: FleetSettings) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(f"{settings.url}\0{settings.branch}".encode()).hexdigest()[:12]
    return cache / "prgen" / f"fleet-{key}"


# A checkout prgen made holds this file in its git directory, written before anything
# else of the checkout: prgen resets, cleans and re-points only a work directory with it.
WORKDIR_MARK = "prgen-workdir"

# What each blob under the managed folder says, by blob id, kept between runs.
INVENTORY_CACHE = "prgen-inventory-v1.json"
_CACHE_VERSION = 3  # 3: an identity records the controls commands set

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
        # A small commit's objects go loose, like a fetch's, not one more pack every run.
        "fastimport.unpackLimit": "100",
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


def _url_for_git(url: str) -> str:
    # A plain local path works for git, but only an absolute one after we chdir.
    return str(Path(url).expanduser().resolve()) if is_local_path(url) else url


class FleetRepo(FleetHistory):
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
        self._format: str | None = None  # the repository's object format (sha1, sha256)
        self._facts: dict[str, FileFacts] = {}  # by blob id, as the last refresh knew them
        self._rendered: set[str] = set()  # tree ids of folders prgen rendered, ditto
        self._unsaved = False  # learnt something the cache file does not hold yet

    @property
    def display_url(self) -> str:
        return redact_url(self.settings.url)

    def _workdir_error(self, doing: str, exc: OSError) -> FleetError:
        where = f" ({exc.filename})" if exc.filename else ""
        return FleetError(
            f"work directory {self.workdir}: {doing} failed: {exc.strerror or exc}{where}"
        )

    def _git_error(self, action: str, exc: GitCommandError) -> FleetError:
        error = git_failure(action, exc)
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
            if repo is not None:
                self._drop_checkout()
        self._repo = repo or self._clone()
        return self._repo

    def _drop_checkout(self) -> None:
        """Remove the files an older prgen checked out here: nothing reads them any more,
        and at 10,000 environments they are 30,000 files on the cache's volume. Only in a
        work directory prgen made (see _is_ours); never through a link."""
        try:
            for entry in self.workdir.iterdir():
                if entry.name == ".git":
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        except OSError as exc:
            raise self._workdir_error("removing an old checkout", exc) from exc

    def _is_ours(self) -> bool:
        """True for a checkout prgen made, False for a missing or empty directory.

        Anything else (an operator's clone of the fleet, another repository, other files)
        is refused before anything in it is removed or re-pointed.
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
            f"{holds}): prgen removes everything but its own git data there and re-points its "
            "remote, so it uses only an empty or "
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
        """Fetch the branch and read what it holds under the managed folder (the first
        target's, with `targets:`).

        Nothing is checked out: the snapshot is read from the fetched commit's objects.
        """
        return self.refresh_all()[self.settings.path]

    def refresh_all(self) -> dict[str, Snapshot]:
        """Fetch the branch and read each managed folder (fleet.paths) of the one commit."""
        paths = self.settings.paths
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
            empty = self._start_empty_branch(repo)
            return dict.fromkeys(paths, empty)
        commit = repo.commit(self._remote_ref)
        for path in paths:
            self._check_managed_path(commit.tree, path)
        return self._read_managed(repo, commit.hexsha, paths)

    def _recover(self, repo: Repo) -> None:
        """Undo whatever a killed run left: git's lock files, a clone stopped before its remote."""
        git_dir = Path(repo.git_dir)
        for lock in [
            *git_dir.glob("*.lock"),
            *git_dir.glob("refs/**/*.lock"),
            *git_dir.glob(f"{INVENTORY_CACHE}.*"),
            *git_dir.glob(f"{CARRIED_CACHE}.*"),
        ]:
            lock.unlink(missing_ok=True)  # no other prgen holds them: we hold the work dir's lock
        if "origin" in [remote.name for remote in repo.remotes]:
            repo.git.remote("set-url", "origin", self.url)
        else:
            repo.git.remote("add", "origin", self.url)

    def _start_empty_branch(self, repo: Repo) -> Snapshot:
        log.info("branch %s does not exist on %s yet", self.settings.branch, self.display_url)
        try:
            repo.git.update_ref("-d", self._remote_ref)
        except GitCommandError as exc:
            raise self._git_error("preparing an empty branch", exc) from exc
        return Snapshot(None, SnapshotFiles({}, self._read_blob))

    def _check_managed_path(self, tree: Tree, path: str) -> None:
        """Each folder on the way to the managed folder, and the folder itself, is a folder.

        A committed link there (`previews -> /elsewhere`) would have prgen write, read or
        delete outside the work tree: the run stops instead.
        """
        node = tree
        parts = PurePosixPath(path).parts
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

    def _read_blob(self, sha: str) -> bytes:
        data: bytes = self._open().git.get_object_data(sha)[3]
        return data

    def _object_format(self) -> str:
        if self._format is None:
            out = str(self._open().git.rev_parse("--show-object-format")).strip()
            self._format = out or "sha1"
        return self._format

    def _read_managed(self, repo: Repo, commit: str, paths: tuple[str, ...]) -> dict[str, Snapshot]:
        """Every entry under each managed folder, and the facts of prgen's own files.

        Sizes and blob ids come from one `ls-tree -r -l`: a file too big to be prgen's is
        never read; a small one is read (to look for the marker, and to read a HelmRelease's
        identity) only when its blob id is not in the cache from an earlier run. A link or
        a submodule is recorded as a hand-written entry, so prgen leaves it (and the
        environment whose place it takes) alone.
        """
        try:
            listing = repo.git.ls_tree("-r", "-t", "-l", "-z", "--full-tree", commit, "--", *paths)
        except GitCommandError as exc:
            raise self._git_error("reading the fleet tree", exc) from exc
        known, rendered = self._load_cache()
        seen: dict[str, FileFacts] = {}
        # Per managed folder (targets' folders never nest: each entry is of one at most):
        facts_of_path: dict[str, dict[str, FileFacts]] = {p: {} for p in paths}
        blobs_of_path: dict[str, dict[str, str | None]] = {p: {} for p in paths}
        trees_of_path: dict[str, dict[str, str]] = {p: {} for p in paths}
        prefixes = [(p.rstrip("/") + "/", p) for p in paths]
        for entry in filter(None, listing.split("\0")):
            meta, _, path = entry.partition("\t")
            mode, kind, sha, size = meta.split()
            managed = next((p for prefix, p in prefixes if path.startswith(prefix)), None)
            if managed is None:
                continue  # a folder on the way to a managed folder
            relative = path.removeprefix(managed.rstrip("/") + "/")
            facts = facts_of_path[managed]
            blobs = blobs_of_path[managed]  # relative path -> blob id of an owned file
            if kind == "tree":
                trees_of_path[managed][relative] = sha  # folder (relative path) -> tree id
                continue
            blobs[relative] = None
            if kind != "blob" or int(mode, 8) == Blob.link_mode or int(size) > OWNED_FILE_LIMIT:
                facts[relative] = FileFacts(False, None)
                continue
            name = relative.rpartition("/")[2]
            fact = seen.get(sha) or known.get(sha)
            if fact is None or (name == HELMRELEASE_FILE and fact.owned and fact.identity is None):
                # Not met before, or met under another name (a HelmRelease's identity is
                # only read as one), or a HelmRelease that did not read as one: read it.
                fact = facts_of(name, self._read_blob(sha))
            seen[sha] = fact
            facts[relative] = fact
            if fact.owned:
                blobs[relative] = sha
        still = rendered & {sha for trees in trees_of_path.values() for sha in trees.values()}
        self._facts, self._rendered = seen, still
        # Written when it learnt something, or when entries of blobs and folders the fleet no
        # longer holds pile up: not for the one file a push replaced (the commit writes it).
        stale = len(known.keys() - seen.keys()) + len(rendered - still)
        self._unsaved = bool(seen.keys() - known.keys()) or stale > max(256, len(seen) // 10)
        self.save_cache()
        return {
            path: self._snapshot(
                commit, facts_of_path[path], blobs_of_path[path], trees_of_path[path], still
            )
            for path in paths
        }

    def _snapshot(
        self,
        commit: str,
        facts: Mapping[str, FileFacts],
        blobs: Mapping[str, str | None],
        trees: Mapping[str, str],
        still: set[str],
    ) -> Snapshot:
        object_format = self._object_format()

        def folder_files(folder: str, names: list[str]) -> StoredFiles:
            ids = {name: blobs[join(folder, name)] or "" for name in names}
            unedited = trees.get(folder) in still
            return StoredFiles(ids, self._read_blob, object_format, rendered=unedited)

        index = None
        if KUSTOMIZATION_FILE in blobs:
            sha = blobs[KUSTOMIZATION_FILE]
            index = NOT_OWNED if sha is None else self._read_blob(sha)
        inventory = assemble_inventory(facts, folder_files, index, index_known=True)
        return Snapshot(commit, SnapshotFiles(blobs, self._read_blob), inventory)

    # -- the cache of what each blob says --

    @property
    def _cache_path(self) -> Path:
        return self.local_file(INVENTORY_CACHE)

    def local_file(self, name: str) -> Path:
        """A file of this runner's own beside the fleet's objects, never committed: what a
        run remembers for the next one on the same volume (a cache, not a fact)."""
        return self.workdir / ".git" / name

    def _load_cache(self) -> tuple[dict[str, FileFacts], set[str]]:
        """The facts of blobs earlier runs read, and the tree ids of folders prgen rendered;
        both empty when the file is missing or not exactly as written."""
        try:
            document = json.loads(self._cache_path.read_bytes())
            if document.get("version") != _CACHE_VERSION:
                return {}, set()
            facts = {}
            for sha, (owned, identity) in document["blobs"].items():
                if not isinstance(sha, str) or not isinstance(owned, bool):
                    return {}, set()
                facts[sha] = FileFacts(owned, None if identity is None else _identity(identity))
            rendered = document["rendered"]
            if not isinstance(rendered, list) or not all(isinstance(t, str) for t in rendered):
                return {}, set()
            return facts, set(rendered)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}, set()

    def _save_cache(self, facts: Mapping[str, FileFacts], rendered: set[str]) -> None:
        """Written whole to a new file, then renamed: a killed run leaves the old one or none."""
        document = {
            "version": _CACHE_VERSION,
            "blobs": {
                sha: [fact.owned, None if fact.identity is None else list(fact.identity)]
                for sha, fact in sorted(facts.items())
            },
            "rendered": sorted(rendered),
        }
        temporary = self._cache_path.with_name(f"{INVENTORY_CACHE}.{os.getpid()}")
        try:
            temporary.write_text(json.dumps(document, separators=(",", ":")))
            os.replace(temporary, self._cache_path)
        except OSError as exc:  # a cache that cannot be written costs time, nothing else
            log.debug("could not write %s: %s", self._cache_path, exc)
            temporary.unlink(missing_ok=True)

    def _remember(
        self, writes: Mapping[str, bytes | None], identities: Mapping[str, Identity]
    ) -> None:
        """Add the facts of the blobs a commit wrote, so the next run reads none of them."""
        facts = dict(self._facts)  # what the refresh before this commit knew
        object_format = self._object_format()
        for relative, content in writes.items():
            if content is None:
                continue
            name = relative.rpartition("/")[2]
            if name == HELMRELEASE_FILE and is_owned(content):
                identity = identities.get(relative)
                if identity is None:
                    continue  # unknown here: read from the blob when next met
                fact = FileFacts(True, identity)
            else:
                fact = FileFacts(is_owned(content), None)
            facts[blob_id(content, object_format)] = fact
        self._facts = facts
        self._unsaved = True
        self.save_cache()

    def remember_renderings(self, folders: Iterable[Mapping[str, bytes]]) -> None:
        """Record the tree id of each folder prgen rendered (its files, by name): a folder
        found exactly so in a later run is kept unread when its inputs are the same.
        Kept in memory until the commit or save_cache writes it."""
        object_format = self._object_format()
        new = {tree_id(files, object_format) for files in folders} - self._rendered
        if new:
            self._rendered |= new
            self._unsaved = True

    def save_cache(self) -> None:
        """Write what this run learnt, if anything (never raises: a cache is only a cache)."""
        if self._unsaved:
            self._save_cache(self._facts, self._rendered)
            self._unsaved = False

    # -- writing: one commit built from the snapshot's commit, never from a work tree --

    def _check_writes(
        self, snapshot: Snapshot, writes: Mapping[str, bytes | None], managed: str
    ) -> None:
        """Every path inside the managed folder, and none through a file or link of the fleet."""
        files = snapshot.files
        ordered: list[str] | None = None  # the fleet's paths, sorted: is a path a folder?
        for relative in writes:
            parts = relative.split("/")
            if relative.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise FleetError(f"refusing to write {relative!r}: outside {managed}")
            for depth in range(1, len(parts)):
                above = "/".join(parts[:depth])
                if above in files:
                    raise FleetError(
                        f"refusing to write {managed}/{relative}: "
                        f"{managed}/{above} is a file or a symbolic link"
                    )
            if writes[relative] is not None:
                ordered = ordered if ordered is not None else sorted(files)
                below = bisect.bisect_left(ordered, relative + "/")
                if below < len(ordered) and ordered[below].startswith(relative + "/"):
                    raise FleetError(f"refusing to write {managed}/{relative}: it is a folder")

    def _author(self) -> bytes:
        # No <, > or line break can come from the config into fast-import's stream.
        name = " ".join(self.settings.author_name.replace("<", "").replace(">", "").split())
        email = "".join(self.settings.author_email.replace("<", "").replace(">", "").split())
        return f"{name} <{email}> {int(clock.now().timestamp())} +0000".encode()

    def _import(
        self,
        parent: str | None,
        writes: Mapping[str, bytes | None],
        message: str,
    ) -> str:
        """One commit on `parent` with `writes`, through `git fast-import` on stdin: the
        message and every path and content go down a pipe, never on a command line."""
        ref = "refs/prgen/commit"
        command = ["git", "fast-import", "--quiet", "--done", "--force", "--date-format=raw"]
        environment = {**os.environ, **self._env}
        process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert process.stdin is not None and process.stderr is not None
        stderr = b""
        try:
            paths = iter(sorted(writes.items()))
            _write_import(process.stdin, ref, parent, self._author(), message, paths)
            process.stdin.close()
        except BrokenPipeError:
            pass  # fast-import stopped early: its exit status and stderr say why
        finally:
            stderr = process.stderr.read()
            process.wait()
        if process.returncode != 0:
            raise GitCommandError(command, process.returncode, stderr)
        return str(self._open().git.rev_parse(ref)).strip()

    def commit_and_push(
        self,
        snapshot: Snapshot,
        writes: Mapping[str, bytes | None],
        message: str,
        identities: Mapping[str, Identity] | None = None,
    ) -> str | None:
        """One commit with all `writes`, pushed. None if it would change nothing.

        `identities`: what each HelmRelease written says about itself (by path), for the
        cache; one not given is read back from git when next met.
        """
        return self.commit_and_push_targets(
            {self.settings.path: snapshot},
            {self.settings.path: writes},
            message,
            {self.settings.path: identities or {}},
        )

    def commit_and_push_targets(
        self,
        snapshots: Mapping[str, Snapshot],
        writes: Mapping[str, Mapping[str, bytes | None]],
        message: str,
        identities: Mapping[str, Mapping[str, Identity]],
    ) -> str | None:
        """One commit with the writes of every managed folder (by its path; the snapshots
        are of one commit), pushed. None if it would change nothing."""
        repo = self._open()
        commits = {snapshot.commit for snapshot in snapshots.values()}
        if len(commits) != 1:
            raise FleetError("the managed folders were read from different commits")
        parent = commits.pop()
        everything: dict[str, bytes | None] = {}
        written: dict[str, Identity] = {}
        for managed, files in writes.items():
            self._check_writes(snapshots[managed], files, managed)
            prefix = managed.rstrip("/") + "/"
            everything.update({prefix + relative: content for relative, content in files.items()})
            for relative, identity in identities.get(managed, {}).items():
                written[prefix + relative] = identity
        try:
            sha = self._import(parent, everything, message)
            if parent is not None:
                trees = str(repo.git.rev_parse(f"{sha}^{{tree}}", f"{parent}^{{tree}}"))
                new_tree, old_tree = trees.split()
                if new_tree == old_tree:
                    return None
        except GitCommandError as exc:
            raise self._git_error("committing", exc) from exc
        self._remember(everything, written)
        self._push(repo, parent, sha)
        return sha

    def _push(self, repo: Repo, parent: str | None, sha: str) -> None:
        branch = self.settings.branch
        # --force-with-lease to the exact commit we built on: a push that raced with
        # another writer is refused by the remote, never overwrites their commit.
        lease = f"--force-with-lease=refs/heads/{branch}:{parent or ''}"
        try:
            repo.git.push("--porcelain", lease, "origin", f"{sha}:refs/heads/{branch}")
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
            if tip != parent:
                raise ConcurrentUpdate(branch) from exc
            raise self._git_error(f"pushing to {self.display_url}", exc) from exc

    def _remote_tip(self, repo: Repo) -> str | None:
        """The commit the remote's branch points at now; None if it has no such branch."""
        out = str(repo.git.ls_remote("origin", f"refs/heads/{self.settings.branch}"))
        return out.split()[0] if out.strip() else None


def _identity(value: Any) -> Identity:
    repository, number, head_sha, config, inputs, controls = value
    for text in (head_sha, config, inputs, controls):
        if text is not None and not isinstance(text, str):
            raise TypeError("not an identity")
    if not isinstance(repository, str) or not isinstance(number, int):
        raise TypeError("not an identity")
    return Identity(repository, number, head_sha, config, inputs, controls)


def _fast_import_path(path: str) -> bytes:
    """A path as fast-import reads it: C-quoted when it starts with a quote or holds a line
    break (a hand-made file of prgen's may have any name), so it is one path, never more."""
    if not path.startswith('"') and "\n" not in path:
        return path.encode()
    escaped = path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return b'"' + escaped.encode() + b'"'


def _write_import(
    stream: IO[bytes],
    ref: str,
    parent: str | None,
    author: bytes,
    message: str,
    paths: Iterator[tuple[str, bytes | None]],
) -> None:
    data = message.encode()
    stream.write(f"reset {ref}\ncommit {ref}\n".encode())
    stream.write(b"author " + author + b"\ncommitter " + author + b"\n")
    stream.write(b"data %d\n" % len(data) + data + b"\n")
    if parent is not None:
        stream.write(f"from {parent}\n".encode())
    for path, content in paths:
        if content is None:
            stream.write(b"D " + _fast_import_path(path) + b"\n")
        else:
            stream.write(b"M 100644 inline " + _fast_import_path(path) + b"\n")
            stream.write(b"data %d\n" % len(content) + content + b"\n")
    stream.write(b"done\n")
