"""Signed GitHub webhook deliveries, as GitHub sends them, for tests and benchmarks.

Only the fields prgen reads, in the shapes GitHub documents ("Webhook events and payloads"):
`action`, `repository.full_name`, `number` / `pull_request.number`, `issue.pull_request`,
`comment.body`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests


def pull_request_payload(
    repository: str, number: int, action: str = "synchronize", head_sha: str = "0" * 40
) -> dict[str, Any]:
    return {
        "action": action,
        "number": number,
        "pull_request": {"number": number, "state": "open", "head": {"sha": head_sha}},
        "repository": {"full_name": repository},
    }


def issue_comment_payload(
    repository: str, number: int, body: str, action: str = "created", *, on_pull: bool = True
) -> dict[str, Any]:
    issue: dict[str, Any] = {"number": number}
    if on_pull:
        issue["pull_request"] = {"url": f"https://api.github.com/repos/{repository}/pulls/{number}"}
    return {
        "action": action,
        "issue": issue,
        "comment": {"body": body, "user": {"login": "alice"}},
        "repository": {"full_name": repository},
    }


def repository_payload(repository: str, action: str | None = None) -> dict[str, Any]:
    """check_run, check_suite, status, pull_request_review: what prgen reads of them."""
    payload: dict[str, Any] = {"repository": {"full_name": repository}}
    if action is not None:
        payload["action"] = action
    return payload


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Sent:
    status: int
    body: Any
    delivery: str


def send_delivery(
    url: str,
    secret: str | None,
    event: str,
    payload: Mapping[str, Any] | bytes,
    *,
    delivery: str | None = None,
    signature: str | None = None,
    session: requests.Session | None = None,
    timeout: float = 10,
) -> Sent:
    """POST one delivery to `url`, signed with `secret` (None: unsigned; `signature`: this
    header instead, for a forged one)."""
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    delivery = delivery or str(uuid.uuid4())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/fake",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
    }
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    elif secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    answer = (session or requests).post(url, data=body, headers=headers, timeout=timeout)
    try:
        document = answer.json()
    except ValueError:
        document = answer.text
    return Sent(answer.status_code, document, delivery)
