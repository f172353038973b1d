"""A GitHub webhook delivery -> whether it is GitHub's, and which repository to sync. Pure.

GitHub signs each delivery's raw body with the webhook secret (HMAC-SHA256, hex, in
X-Hub-Signature-256): the signature is checked, in constant time, before a byte of the body
is parsed. The payload fields read here are the few GitHub documents for each event.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

SIGNATURE_PREFIX = "sha256="

# pull_request actions that can change what prgen writes for the PR.
PULL_REQUEST_ACTIONS = frozenset(
    {
        "opened",
        "reopened",
        "synchronize",
        "closed",
        "edited",
        "labeled",
        "unlabeled",
        "ready_for_review",
        "converted_to_draft",
    }
)
COMMENT_ACTIONS = frozenset({"created", "edited"})
COMMAND_PREFIX = "/preview"
# What a deploy gate (deployWhen) waits for: reviews and checks. A repository without a
# gate has no use for them.
GATE_EVENTS = frozenset({"check_run", "check_suite", "status", "pull_request_review"})
# Every event named in a metric label: a forged header must not grow the label set.
KNOWN_EVENTS = frozenset({"ping", "pull_request", "issue_comment", "push", *GATE_EVENTS})


class Result(StrEnum):
    ACCEPTED = "accepted"  # its repository will be synced soon
    DUPLICATE = "duplicate"  # this delivery id was handled already
    IGNORED = "ignored"  # an event or action that changes nothing prgen writes
    UNCONFIGURED = "unconfigured"  # a repository prgen.yaml does not list
    PING = "ping"
    UNAUTHORIZED = "unauthorized"  # no signature, or not the secret's
    TOO_LARGE = "too-large"
    MALFORMED = "malformed"  # signed, but not a JSON object with what the event needs


def event_label(event: str | None) -> str:
    return event if event in KNOWN_EVENTS else "other"


def signature_of(secret: bytes, body: bytes) -> str:
    return SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def signed_by(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether `header` (X-Hub-Signature-256) is the secret's signature of `body`."""
    if not header or not secret:
        return False
    expected = signature_of(secret, body).encode()
    return hmac.compare_digest(expected, header.strip().encode("utf-8", "replace"))


@dataclass(frozen=True)
class Hint:
    result: Result
    repository: str | None = None  # as GitHub spells it (repository.full_name)
    action: str | None = None


def _repository(payload: dict[str, Any]) -> str | None:
    repository = payload.get("repository")
    name = repository.get("full_name") if isinstance(repository, dict) else None
    if isinstance(name, str) and name.count("/") == 1 and len(name) <= 200:
        return name
    return None


def _is_command(payload: dict[str, Any]) -> bool:
    issue, comment = payload.get("issue"), payload.get("comment")
    if not isinstance(issue, dict) or not isinstance(comment, dict):
        return False
    body = comment.get("body")
    on_a_pull = isinstance(issue.get("pull_request"), dict)
    return on_a_pull and isinstance(body, str) and body.lstrip().startswith(COMMAND_PREFIX)


def _changes_file(payload: dict[str, Any], path: str) -> bool:
    """Whether a push to the default branch may change `path` there: named among a commit's
    added, modified or removed files, or the push does not say (GitHub lists at most 2048
    commits, and a forced push may list none)."""
    repository = payload.get("repository")
    branch = repository.get("default_branch") if isinstance(repository, dict) else None
    if not isinstance(branch, str) or payload.get("ref") != f"refs/heads/{branch}":
        return False
    commits = payload.get("commits")
    if not isinstance(commits, list) or not commits or len(commits) >= 2048:
        return True
    for commit in commits:
        if not isinstance(commit, dict):
            return True
        for kind in ("added", "modified", "removed"):
            files = commit.get(kind)
            if not isinstance(files, list) or path in files:
                return True
    return False


def hint_of(
    event: str,
    body: bytes,
    configured: Collection[str],
    gated: Collection[str],
    repo_configs: Mapping[str, str] | None = None,
) -> Hint:
    """What a signed delivery asks of prgen. `configured`: the lower-cased names of the
    repositories in the config; `gated`: those with a deploy gate; `repo_configs`: the path
    of the own config file (`.prgen.yaml`) of those that have one, so that a push to the
    default branch that changes it is applied soon."""
    if event == "ping":
        return Hint(Result.PING)
    if event not in KNOWN_EVENTS:
        return Hint(Result.IGNORED)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Hint(Result.MALFORMED)
    if not isinstance(payload, dict):
        return Hint(Result.MALFORMED)
    action = payload.get("action")
    action = action if isinstance(action, str) and len(action) <= 64 else None
    repository = _repository(payload)
    if repository is None:
        return Hint(Result.MALFORMED, None, action)
    if repository.lower() not in configured:
        return Hint(Result.UNCONFIGURED, repository, action)
    handled = (
        (event == "pull_request" and action in PULL_REQUEST_ACTIONS)
        or (event == "issue_comment" and action in COMMENT_ACTIONS and _is_command(payload))
        or (event in GATE_EVENTS and repository.lower() in gated)
        or (
            event == "push"
            and repository.lower() in (repo_configs or {})
            and _changes_file(payload, (repo_configs or {})[repository.lower()])
        )
    )
    return Hint(Result.ACCEPTED if handled else Result.IGNORED, repository, action)


class RecentDeliveries:
    """The ids of the last `size` deliveries: GitHub redelivers with the same id."""

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def first_time(self, delivery: str | None) -> bool:
        """True for an id not seen among the recent ones (and remembers it); a delivery
        without an id is always new."""
        if not delivery:
            return True
        key = delivery[:128]
        with self._lock:
            if key in self._seen:
                self._seen.move_to_end(key)
                return False
            self._seen[key] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True

    def __len__(self) -> int:
        return len(self._seen)
