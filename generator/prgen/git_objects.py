"""Small reads of git objects, and git's errors as prgen says them: shared by the fleet's
present (fleet.py) and its past (fleet_history.py)."""

from __future__ import annotations

from git import GitCommandError, Repo

from prgen.errors import FleetError
from prgen.redact import redact

# prgen's own files are small (the index lists one short line per environment): a file
# under the managed folder larger than this is hand-written, and is never read whole.
OWNED_FILE_LIMIT = 1024 * 1024


def git_failure(action: str, exc: GitCommandError) -> FleetError:
    stderr = exc.stderr if isinstance(exc.stderr, str) else ""
    detail = " ".join(line.strip() for line in stderr.splitlines() if line.strip())
    detail = detail.removeprefix("stderr: ").strip("'\" ")
    return FleetError(redact(f"{action} failed: {detail or exc.status}"))


def file_contains(repo: Repo, commit: str, path: str, text: str) -> bool:
    """Whether `path` exists in `commit` and contains `text`.

    Asked of GitPython's long-running `git cat-file --batch` by `<commit>:<path>`: no
    process per file and no parsing of the managed folder's big tree, and a probe round
    asks this for every environment.
    """
    data = small_blob(repo, f"{commit}:{path}")
    return data is not None and text.encode() in data


def small_blob(repo: Repo, ref: str) -> bytes | None:
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
