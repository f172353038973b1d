"""A persistent HTTP cache of GitHub's answers, so that every GET prgen makes is conditional.

requests-cache does the HTTP part (ETag, If-None-Match, 304 handling, redaction of the
Authorization header); this module decides where its files go and how they are kept:

- one SQLite file per credential (a token, or a GitHub App installation: app id + installation
  id, never the hourly token), named by a hash, so one credential's answers are never served to
  another; the token itself is never written (requests-cache redacts Authorization);
- every cached answer is revalidated on every use: GitHub's max-age=60 is ignored, a stale
  answer is never served on an error. A cached answer reaches prgen only after a 304;
- SQLite transactions (WAL, a busy timeout) keep it safe against concurrent prgen processes and
  a kill at any point; a corrupt file is removed and rebuilt, a broken entry is a miss;
- bounded: beyond `max_bytes` the answers stored longest ago are dropped at start.

Losing the cache costs one full-price run, nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from requests_cache import CachedSession
from requests_cache.backends.sqlite import SQLiteCache
from requests_cache.models.response import CachedResponse

from prgen.config import GitHubSettings
from prgen.github.pull_json import slim

log = logging.getLogger(__name__)

CACHE_DIR_ENV = "PRGEN_CACHE_DIR"
CACHE_OFF = "off"  # --cache-dir off / PRGEN_CACHE_DIR=off: no cache
DEFAULT_CACHE_MAX_MB = 256
BUSY_TIMEOUT_MS = 10_000  # another prgen process writing its answers: wait for it
_SUFFIXES = ("", "-wal", "-shm", "-journal")


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The user cache directory ($XDG_CACHE_HOME, else ~/.cache) /prgen/http."""
    env = os.environ if environ is None else environ
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prgen" / "http"


def resolve_cache_dir(option: str | None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The cache directory from --cache-dir, else $PRGEN_CACHE_DIR, else the default; None: off."""
    env = os.environ if environ is None else environ
    value = option if option is not None else env.get(CACHE_DIR_ENV)
    if value is None or value == "":
        return default_cache_dir(env)
    if value.strip().lower() == CACHE_OFF:
        return None
    return Path(value).expanduser()


def credential_key(settings: GitHubSettings, token: str | None) -> str:
    """A name for the credential's cache file that reveals nothing of the credential.

    An installation is keyed by its ids (its tokens change every hour, its answers do not);
    a token by a hash of itself. The API URL is part of both: two GitHubs never share a file.
    """
    if settings.app is not None:
        identity = f"app\0{settings.app.app_id}\0{settings.app.installation_id}"
    else:
        identity = f"token\0{token or ''}"
    return hashlib.sha256(f"{settings.api_url}\0{identity}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class HttpCache:
    """The cache file of one credential; `session()` gives a session that reads and fills it."""

    path: Path

    @classmethod
    def open(cls, directory: Path, key: str, max_bytes: int) -> HttpCache | None:
        """The cache of `key` under `directory`, checked and pruned; None (with a warning)
        when it cannot be used: prgen then runs without a cache, at full price."""
        path = directory / f"{key}.sqlite"
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not os.access(directory, os.W_OK | os.X_OK):
                raise PermissionError(f"{directory} is not writable")
        except OSError as exc:
            log.warning("the HTTP cache is off for this run: %s", exc)
            return None
        cache = cls(path)
        try:
            cache._check_and_prune(max_bytes)
        except sqlite3.DatabaseError as exc:
            log.warning("the HTTP cache file %s is unreadable (%s): starting afresh", path, exc)
            cache._remove()
            try:
                cache._check_and_prune(max_bytes)
            except (sqlite3.Error, OSError) as again:
                log.warning("the HTTP cache is off for this run: %s", again)
                return None
        except (sqlite3.Error, OSError) as exc:
            log.warning("the HTTP cache is off for this run: %s", exc)
            return None
        return cache

    def _remove(self) -> None:
        for suffix in _SUFFIXES:
            with contextlib.suppress(FileNotFoundError):
                Path(f"{self.path}{suffix}").unlink()

    def _backend(self) -> SQLiteCache:
        return _Backend(
            str(self.path),
            serializer="json",  # plain data: a tampered file cannot run code as pickle could
            wal=True,
            busy_timeout=BUSY_TIMEOUT_MS,
        )

    def _check_and_prune(self, max_bytes: int) -> None:
        """Create the tables, read every row's size (a corrupt file fails here), and drop the
        answers stored longest ago until the rest fits in `max_bytes`."""
        backend = self._backend()
        try:
            table = backend.responses.table_name
            with backend.responses.connection(commit=True) as connection:
                if self._stored_bytes() <= max_bytes:
                    # Within the limit as a whole: no need to weigh each answer (a scan of
                    # every stored byte). A read of one row still finds a file that is no
                    # database; damage deeper in is found by the read that meets it, which
                    # then goes without the cache.
                    connection.execute(f"SELECT key FROM {table} LIMIT 1").fetchall()  # noqa: S608
                    return
                rows = connection.execute(
                    f"SELECT key, length(value) FROM {table} ORDER BY expires DESC"  # noqa: S608
                ).fetchall()
                total, dropped = 0, []
                for key, size in rows:
                    total += size or 0
                    if total > max_bytes:
                        dropped.append((key,))
                if dropped:
                    connection.executemany(f"DELETE FROM {table} WHERE key = ?", dropped)  # noqa: S608
                    log.info("HTTP cache: dropped %d answers beyond its size limit", len(dropped))
        finally:
            backend.close()  # type: ignore[no-untyped-call]

    def _stored_bytes(self) -> int:
        """The database's size on disk, its write-ahead log included."""
        sizes = (Path(f"{self.path}{suffix}") for suffix in ("", "-wal"))
        return sum(path.stat().st_size for path in sizes if path.exists())

    def session(self) -> requests.Session:
        """A new session on this cache; one per thread (each holds its own SQLite connection)."""
        return _RevalidatingSession(
            backend=self._backend(),
            key_fn=_cache_key,
            allowable_methods=("GET",),
            allowable_codes=(200,),
            expire_after=0,  # stored, but stale at once: every use is revalidated first
            always_revalidate=True,
            cache_control=False,  # GitHub's max-age=60 would serve answers unconfirmed
            stale_if_error=False,  # an error is an error, never the last answer
            stale_while_revalidate=False,
        )


def _cache_key(
    request: Any,
    ignored_parameters: Iterable[str] | None = None,
    match_headers: Iterable[str] | bool | None = None,
    **_: Any,
) -> str:
    """The key of a request's answer: its method, its URL as sent, and the headers its answer
    varies by (`Vary`) but those never stored (Authorization: one file per credential anyway).

    requests-cache's own key normalises the URL (IDNA, percent-encoding, sorted query) on
    every call, three calls a request: most of an idle run's CPU. PyGithub and GitHub's Link
    headers spell each URL the same way every time, so the URL as sent is key enough.
    """
    ignored = {name.lower() for name in ignored_parameters or ()}
    headers = request.headers
    names = headers if match_headers is True else match_headers or ()
    parts = [request.method or "", request.url or ""]
    parts += [
        f"{name.lower()}={headers[name]}"
        for name in sorted(names, key=str.lower)
        if name.lower() not in ignored and name in headers
    ]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


# Answers that are pull requests: a listing's page (also by repository id, after a rename),
# or one PR. The cache keeps only what prgen reads of them (pull_json.slim).
_PULLS_PATH = re.compile(r"/(?:repos/[^/]+/[^/]+|repositories/\d+)/pulls(?:/\d+)?$")


class _Backend(SQLiteCache):
    """SQLite storage that leaves a stored answer alone when GitHub confirmed it (a 304), and
    stores of a pull request answer only the fields prgen reads.

    requests-cache would store it again for the 304's new rate-limit headers and expiry time:
    a serialisation and a committed write per free request, most of an idle run's work. The
    answer is the same; only the pruning order then goes by when an answer last changed.
    """

    def save_response(self, response: Any, *args: Any, **kwargs: Any) -> None:
        if getattr(response, "revalidated", False):
            return
        url = getattr(response, "url", None) or ""
        if response.status_code == 200 and _PULLS_PATH.search(urlsplit(url).path):
            slimmed = slim(response.content)
            if slimmed is not None:
                response = CachedResponse.from_response(response)
                response._content = slimmed
        super().save_response(response, *args, **kwargs)


class _RevalidatingSession(CachedSession):
    """A CachedSession whose cache failing (locked too long, a disk error) only costs points.

    The request is then sent again without the cache, and the cache is off for this session:
    an answer the cache could not store or read is never an answer prgen lacks or misreads.
    """

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        if self.settings.disabled:
            return requests.Session.send(self, request, **kwargs)
        try:
            return super().send(request, *args, **kwargs)
        except sqlite3.Error as exc:
            log.warning("the HTTP cache failed (%s): going on without it", exc)
            self.settings.disabled = True
            request.headers.pop("If-None-Match", None)
            request.headers.pop("If-Modified-Since", None)
            return requests.Session.send(self, request, **kwargs)
