"""Keep secrets out of every message prgen prints, logs or commits.

Secrets are registered the moment they are read (token, App key, fleet
credentials); `redact` is applied wherever text leaves the process.
"""

from __future__ import annotations

import re
import threading

_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Remember a secret (and each line of a multi-line one, such as a PEM key)."""
    if not value:
        return
    with _lock:
        for part in (value, *value.splitlines()):
            part = part.strip()
            if len(part) >= 6:  # shorter fragments would redact ordinary words
                _secrets.add(part)


def url_credentials(url: str) -> str | None:
    """The `user:password` part of a URL, if it has one."""
    match = _URL_CREDENTIALS.match(url)
    return match.group(0)[len(match.group("scheme")) : -1] if match else None


def redact_url(url: str) -> str:
    return _URL_CREDENTIALS.sub(r"\g<scheme>***@", url)


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return redact_url(text)
