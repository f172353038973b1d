"""A pull request from GitHub's JSON, checked field by field. Pure.

Every field prgen reads must be there with its type: a missing label list or draft flag
read as "none" or "false" would turn an open PR into "not eligible", and that removes its
environment. So a field that is missing or of another type is an error, never a default.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple

from prgen.model import PullRequest

SHA = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")  # SHA-1, or SHA-256 repositories
STATES = ("open", "closed")


class MalformedPull(ValueError):
    """An answer that is not a well-formed pull request."""


class PullAnswer(NamedTuple):
    state: str  # "open" or "closed"
    pull: PullRequest


def _clean(text: str) -> str:
    # JSON may carry lone surrogates; they could not be written as UTF-8.
    return text.encode("utf-8", "replace").decode("utf-8")


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _is_object(value: Any) -> bool:
    return type(value) is dict or isinstance(value, Mapping)  # a JSON object is a dict: fast


def _get(data: Any, path: str, *kinds: type, nullable: bool = False, within: str = "") -> Any:
    value = data
    keys = _KEYS.get(path) or _KEYS.setdefault(path, tuple(path.split(".")))
    for depth, key in enumerate(keys):
        if not _is_object(value) or key not in value:
            walked = ".".join(keys[: depth + 1])
            raise MalformedPull(
                f"{within}.{walked} is missing" if within else f"{walked} is missing"
            )
        value = value[key]
    if value is None and nullable:
        return None
    # bool is an int to Python, never to JSON: a number or a flag is one or the other.
    if type(value) in kinds:
        return value  # the common case, and exact: a bool's type is bool, not int
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        wanted = " or ".join(kind.__name__ for kind in kinds)
        walked = f"{within}.{path}" if within else path
        raise MalformedPull(f"{walked} is {_kind(value)}, not {wanted}")
    return value


_KEYS: dict[str, tuple[str, ...]] = {}


def _time(data: Any, path: str, *, nullable: bool = False) -> datetime | None:
    text = _get(data, path, str, nullable=nullable)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MalformedPull(f"{path} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _labels(data: Any) -> tuple[str, ...]:
    names = []
    for index, label in enumerate(_get(data, "labels", list)):
        if not _is_object(label):
            raise MalformedPull(f"labels[{index}] is {_kind(label)}, not an object")
        names.append(_clean(_get(label, "name", str, within=f"labels[{index}]")))
    return tuple(sorted(names))


def _requested(data: Any, path: str, name: str) -> int:
    """How many users (or teams) the PR asks for a review: each must be one, with its name."""
    asked = _get(data, path, list)
    for index, item in enumerate(asked):
        if not _is_object(item):
            raise MalformedPull(f"{path}[{index}] is {_kind(item)}, not an object")
        _get(item, name, str, within=f"{path}[{index}]")
    return len(asked)


def parse_pull(data: Any, repository: str) -> PullAnswer:
    """The pull request in `data` (one item of a listing, or one PR read on its own).

    `repository`: the configured name, which the PullRequest carries; the base repository
    as GitHub names it is kept beside it, for the caller to check.
    """
    if not isinstance(data, Mapping):
        raise MalformedPull(f"not a pull request but {_kind(data)}")
    number = _get(data, "number", int)
    if number < 1:
        raise MalformedPull(f"number is {number}")
    try:
        return PullAnswer(_state(data), _pull(data, repository, number))
    except MalformedPull as exc:
        raise MalformedPull(f"#{number}: {exc}") from None


def _state(data: Any) -> str:
    state: str = _get(data, "state", str)
    if state not in STATES:
        raise MalformedPull(f"state is {state[:20]!r}, not open or closed")
    return state


def _pull(data: Any, repository: str, number: int) -> PullRequest:
    head_sha = _get(data, "head.sha", str)
    if not SHA.fullmatch(head_sha):
        raise MalformedPull("head.sha is not a commit sha")
    user = _get(data, "user", Mapping, nullable=True)
    head_repo = _get(data, "head.repo", Mapping, nullable=True)
    created_at = _time(data, "created_at")
    assert created_at is not None
    return PullRequest(
        repository=repository,
        number=number,
        title=_clean(_get(data, "title", str)),
        head_sha=head_sha,
        head_branch=_clean(_get(data, "head.ref", str)),
        # null: the fork was deleted. A missing key is no such statement.
        head_repository=None
        if head_repo is None
        else _get(head_repo, "full_name", str, within="head.repo"),
        base_branch=_clean(_get(data, "base.ref", str)),
        author="ghost" if user is None else _clean(_get(user, "login", str, within="user")),
        author_association=_get(data, "author_association", str),
        labels=_labels(data),
        draft=_get(data, "draft", bool),
        created_at=created_at,
        updated_at=_time(data, "updated_at", nullable=True) or created_at,
        html_url=_get(data, "html_url", str),
        base_repository=_get(data, "base.repo.full_name", str),
        requested_reviewers=_requested(data, "requested_reviewers", "login")
        + _requested(data, "requested_teams", "slug"),
    )


# Every field parse_pull reads, as a tree: a leaf (None) is kept whole; a subtree keeps only
# its own fields of an object (a list: of each object in it). slim() is this tree's only user.
READ: dict[str, Any] = {
    "number": None,
    "state": None,
    "title": None,
    "user": {"login": None},
    "labels": {"name": None},
    "draft": None,
    "head": {"sha": None, "ref": None, "repo": {"full_name": None}},
    "base": {"ref": None, "repo": {"full_name": None}},
    "author_association": None,
    "created_at": None,
    "updated_at": None,
    "html_url": None,
    "requested_reviewers": {"login": None},
    "requested_teams": {"slug": None},
}


def _slim(value: Any, read: dict[str, Any]) -> Any:
    if type(value) is dict:
        return {
            key: item if read[key] is None else _slim(item, read[key])
            for key, item in value.items()
            if key in read
        }
    if type(value) is list:
        return [_slim(item, read) for item in value]
    return value  # anything else stays as it is: as malformed as it came


def slim(body: bytes) -> bytes | None:
    """A PR answer (one PR, or a listing's page of them) with only the fields prgen reads.

    GitHub sends ~16 KB per PR; prgen reads a few hundred bytes of it. The HTTP cache stores
    this instead, so an idle run loads and parses a tenth of it: parse_pull reads the same
    from it as from the full answer, whatever the answer (tests/test_safety_listing_json.py).
    None: not JSON (stored as it came).
    """
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return json.dumps(_slim(data, READ), separators=(",", ":"), ensure_ascii=False).encode()
