"""What git says about the fleet's past: since when an environment's folder carries a head
(the probe's deadline, the activity expiry and sleep are judged by), and which environments
went lately (the closed-PR report). Derived from history, so every runner agrees; what a
walk found is kept between runs in the work directory, keyed by the fleet's tip.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from git import GitCommandError, Repo

from prgen.config import FleetSettings
from prgen.git_objects import file_contains, git_failure, small_blob
from prgen.inventory import identity_of
from prgen.render import HELMRELEASE_FILE

log = logging.getLogger(__name__)

# Since when each environment's head is carried (see carried_since_each), by fleet tip.
CARRIED_CACHE = "prgen-carried-v1.json"


@dataclass(frozen=True)
class RemovedEnvironment:
    repository: str
    number: int
    head_sha: str | None
    folder: str
    target: str = ""  # with `targets:`, whose folder it was in


class FleetHistory:
    """The history half of FleetRepo (which provides the work directory and the fetched
    branch): read-only, from the fetched commits."""

    settings: FleetSettings
    workdir: Path
    _env: dict[str, str]

    def _open(self) -> Repo:
        raise NotImplementedError

    @property
    def _remote_ref(self) -> str:
        raise NotImplementedError

    def carried_since(
        self, folder: str, head_sha: str, managed: str | None = None
    ) -> datetime | None:
        """When the fleet branch started carrying `head_sha` in this environment's HelmRelease.

        Derived from history, so no state is kept between runs: the start of the
        current unbroken run of commits whose file contains the SHA. A later commit
        that only changes how often it appears (a config change) does not move it;
        a SHA that went away and came back (A, B, A again; a removed environment
        made again) starts at its return. None when the branch does not carry it.
        """
        path = f"{managed or self.settings.path}/{folder}/{HELMRELEASE_FILE}"
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
                    if not file_contains(repo, sha, path, head_sha):
                        return None  # the newest change took it away: not carried now
                    if not any(file_contains(repo, p, path, head_sha) for p in parents.split()):
                        return datetime.fromtimestamp(int(when), UTC)
                if not out.strip():
                    return None  # never carried
        except GitCommandError as exc:
            raise git_failure("reading the fleet history", exc) from exc
        return None

    def carried_since_each(
        self, heads: Mapping[str, str], managed: str | None = None
    ) -> dict[str, datetime | None]:
        """`carried_since` of each folder's head (folder -> head SHA, folders of the managed
        folder `managed`, by default fleet.path), as of the fetched tip.

        Remembered between runs in the work directory (CARRIED_CACHE) with the tip it was
        read at: a run at the same tip reads no history; after new commits, only the
        folders whose HelmRelease one of them changed are read again (one `git log` over
        the new commits says which). A tip that does not descend from the remembered one
        (a rewritten branch) reads all again. Derived from git alone, so never wrong.
        """
        if not heads:
            return {}
        repo = self._open()
        try:
            tip = str(repo.git.rev_parse(self._remote_ref)).strip()
        except GitCommandError:
            return dict.fromkeys(heads)  # no branch yet: nothing is carried
        managed = managed or self.settings.path
        known = self._carried_known(repo, tip, managed)
        unknown = {folder: head for folder, head in heads.items() if (folder, head) not in known}
        walked = self._carried_walk(repo, tip, unknown, managed) if unknown else {}
        found: dict[str, datetime | None] = {}
        entries = []
        for folder, head in sorted(heads.items()):
            stamp = known[(folder, head)] if folder not in unknown else walked.get(folder)
            found[folder] = None if stamp is None else datetime.fromtimestamp(stamp, UTC)
            entries.append([folder, head, stamp])
        document = {"version": 1, "tip": tip, "entries": entries}
        path = self._carried_cache(repo, managed)
        text = json.dumps(document, separators=(",", ":"))
        with contextlib.suppress(OSError):
            if path.read_text() == text:
                return found  # an idle run: nothing new to remember
        temporary = path.with_name(f"{path.name}.{os.getpid()}")
        try:
            temporary.write_text(text)
            os.replace(temporary, path)
        except OSError as exc:  # a cache that cannot be written costs time, nothing else
            log.debug("could not write %s: %s", path, exc)
            temporary.unlink(missing_ok=True)
        return found

    def _carried_cache(self, repo: Repo, managed: str) -> Path:
        """CARRIED_CACHE of fleet.path; another target's folder has a file of its own."""
        if managed == self.settings.path:
            return Path(repo.git_dir) / CARRIED_CACHE
        key = hashlib.sha256(managed.encode("utf-8")).hexdigest()[:12]
        return Path(repo.git_dir) / f"{CARRIED_CACHE}.{key}"

    def _carried_walk(
        self, repo: Repo, tip: str, heads: Mapping[str, str], managed: str
    ) -> dict[str, int]:
        """Since when (a Unix time) `tip` carries each folder's head (folder -> head SHA),
        in one walk of the managed folder's history, newest first, for all of them at once.

        Walking back from the tip, a HelmRelease's head is carried since the commit that
        added the file, or that changed it from a version without the head (read by blob
        id). The walk stops once every folder is placed, so heads deployed lately cost
        little; a folder it never places (not carried at `tip`) is left out. Merge commits
        are passed over (their parents' own commits are walked), as prgen writes none.
        """
        prefix = managed.rstrip("/") + "/"
        wanted = {
            f"{prefix}{folder}/{HELMRELEASE_FILE}": (folder, head) for folder, head in heads.items()
        }
        found: dict[str, int] = {}
        command = [
            "git",
            "log",
            "--format=@%ct",
            "--raw",
            "--no-renames",
            "--no-abbrev",
            tip,
            "--",
            prefix,
        ]
        process = subprocess.Popen(
            command,
            cwd=self.workdir,
            env={**os.environ, **self._env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert process.stdout is not None
        try:
            when = 0
            for line in process.stdout:
                if line.startswith("@"):
                    when = int(line[1:])
                    continue
                meta, _, path = line.rstrip("\n").partition("\t")
                target = wanted.get(path)
                if target is None or target[0] in found or not meta.startswith(":"):
                    continue
                old, status = meta.split()[2], meta.split()[4]
                folder, head = target
                before = None if status.startswith("A") else small_blob(repo, old)
                if before is None or head.encode() not in before:
                    found[folder] = when
                    if len(found) == len(wanted):
                        break  # every folder placed: the rest of history is not read
        finally:
            process.kill()
            process.wait()
        return found

    def _carried_known(
        self, repo: Repo, tip: str, managed: str
    ) -> dict[tuple[str, str], int | None]:
        """What CARRIED_CACHE holds that is still true at `tip` (empty when unsure)."""
        try:
            document = json.loads(self._carried_cache(repo, managed).read_bytes())
            if document.get("version") != 1:
                return {}
            old_tip = document["tip"]
            known: dict[tuple[str, str], int | None] = {}
            for folder, head, stamp in document["entries"]:
                if not isinstance(folder, str) or not isinstance(head, str):
                    return {}
                known[(folder, head)] = None if stamp is None else int(stamp)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return {}
        if old_tip == tip:
            return known
        prefix = managed.rstrip("/") + "/"
        try:
            repo.git.merge_base("--is-ancestor", old_tip, tip)
            changed = str(
                repo.git.log("--format=", "--name-only", f"{old_tip}..{tip}", "--", prefix)
            ).split("\n")
        except GitCommandError:
            return {}  # not an ancestor, or gone: read all again
        touched = {
            path.removeprefix(prefix).rpartition("/")[0]
            for path in changed
            if path.endswith("/" + HELMRELEASE_FILE)
        }
        return {key: stamp for key, stamp in known.items() if key[0] not in touched}

    def recently_removed(
        self, lookback: int, managed: str | None = None
    ) -> list[RemovedEnvironment]:
        """Environments whose HelmRelease was deleted in the last `lookback` commits of the
        managed folder (`managed`, by default fleet.path)."""
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
                managed or self.settings.path,
            )
        except GitCommandError as exc:
            raise git_failure("reading the fleet history", exc) from exc
        removed: list[RemovedEnvironment] = []
        commit = ""
        for line in log.splitlines():
            if line.startswith("@"):
                commit = line[1:]
                continue
            status, _, path = line.partition("\t")
            if status != "D" or not path.endswith("/" + HELMRELEASE_FILE):
                continue
            content = small_blob(repo, f"{commit}^:{path}")
            identity = identity_of(content) if content is not None else None
            if identity:
                folder = PurePosixPath(path).parent.name
                removed.append(RemovedEnvironment(identity[0], identity[1], identity[2], folder))
        return removed
