"""Untrusted text -> Kubernetes names (DNS-1123 labels).

A name that had to be cut gets a short hash of the full input, so two
different inputs that share a long prefix still get different names.
Text a PR chose goes through `pr_text_label`, which keeps every difference:
two branches that slug alike still get different names.
"""

from __future__ import annotations

import hashlib
import re

DNS_LABEL_MAX = 63
HELM_RELEASE_NAME_MAX = 53
_HASH_LEN = 8
_INVALID = re.compile(r"[^a-z0-9]+")
_VALID_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_LEN]


def is_dns_label(name: str, max_length: int = DNS_LABEL_MAX) -> bool:
    return len(name) <= max_length and bool(_VALID_LABEL.match(name))


def slug(text: str) -> str:
    """Lower-case, runs of anything but [a-z0-9] become '-', trimmed; may be empty or long."""
    return _INVALID.sub("-", text.lower()).strip("-")


def _check_room(max_length: int) -> None:
    if max_length <= _HASH_LEN + 1:
        raise ValueError(f"max_length {max_length} leaves no room for a hash")


def _with_hash(text: str, slugged: str, max_length: int) -> str:
    """As much of `slugged` as fits beside a short hash of `text` itself."""
    head = slugged[: max_length - _HASH_LEN - 1].rstrip("-")
    return f"{head}-{short_hash(text)}" if head else "x" + short_hash(text)


def dns_label(text: str, max_length: int = DNS_LABEL_MAX) -> str:
    """The slug of `text`, cut with a hash when too long (or empty)."""
    _check_room(max_length)
    slugged = slug(text)
    if slugged and len(slugged) <= max_length:
        return slugged
    return _with_hash(text, slugged, max_length)


def pr_text_label(text: str, max_length: int = DNS_LABEL_MAX) -> str:
    """A DNS label for text a PR chose, different for different texts.

    Text that already is a label stays exactly as it is; any other text becomes its
    slug plus a short hash of the text itself, so `feature/login`, `feature_login` and
    `FEATURE.LOGIN` (one slug, `feature-login`) never share a namespace, folder or URL.
    """
    _check_room(max_length)
    if is_dns_label(text, max_length):
        return text
    return _with_hash(text, slug(text), max_length)
