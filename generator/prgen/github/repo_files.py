"""Files of the configured repositories' default branches (a repository's `.prgen.yaml`).

Read through the run's HTTP cache like every other read: an unchanged file is a 304 and
costs no rate-limit point.
"""

from __future__ import annotations

from collections.abc import Sequence

from github import Github, GithubException, UnknownObjectException

from prgen.github.client import GitHubClients, each_on_own_client
from prgen.github.errors import describe_error
from prgen.repo_config import RepoFileUnreadable

# The contents API sends a file's text up to 1 MB; a preview config is a few lines.
_FILE_LIMIT = 1024 * 1024


def read_file(client: Github, repository: str, path: str) -> str | RepoFileUnreadable | None:
    """The file's text on the default branch (no ref: GitHub's default), None when there
    is none, or why it could not be read."""
    try:
        found = client.get_repo(repository).get_contents(path)
    except UnknownObjectException:
        return None
    except GithubException as exc:
        return RepoFileUnreadable(f"could not read {path}: {describe_error(exc)}")
    except Exception as exc:  # a broken connection, a malformed answer: unknown, not absent
        return RepoFileUnreadable(f"could not read {path}: {type(exc).__name__}: {exc}")
    if isinstance(found, list):
        return RepoFileUnreadable(f"{path} is a folder, not a file")
    if found.size > _FILE_LIMIT or found.encoding != "base64":
        return RepoFileUnreadable(f"{path} is larger than 1 MB")
    try:
        return found.decoded_content.decode("utf-8")
    except UnicodeDecodeError as exc:
        return RepoFileUnreadable(f"{path} is not UTF-8 text (byte {exc.start})")


class GitHubRepoFiles:
    """repo_config.RepoFileReader over GitHub, files read side by side."""

    def __init__(self, clients: GitHubClients) -> None:
        self._clients = clients

    def read_all(self, files: Sequence[tuple[str, str]]) -> list[str | RepoFileUnreadable | None]:
        if not files:
            return []
        workers = max(1, min(self._clients.settings.concurrency, len(files)))
        return each_on_own_client(
            self._clients.new,
            files,
            lambda client, item: read_file(client, *item),
            workers,
            "prgen-repo-config",
        )
