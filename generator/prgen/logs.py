"""prgen's logging: plain lines on a terminal, or one JSON object per line for log collectors.

Every line goes through `redact`, whatever its format. A long run says what it is doing
phase by phase (`phase`): at -v each phase logs its counts and how long it took, and in
JSON those are fields of their own (phase, duration, and the counts), so a cluster's log
collector can chart them without parsing text.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from prgen.redact import redact

LOG_FORMATS = ("text", "json")
FIELDS = "prgen_fields"  # the LogRecord attribute that carries a line's structured fields
# Fields every JSON line may carry, in this order, when the line is about one of them.
_KNOWN = ("repository", "pullRequest", "environment", "phase", "duration")

log = logging.getLogger("prgen.progress")
_chosen = {"format": "text"}  # what configure() was last told: the summary printer follows it


def current_format() -> str:
    return _chosen["format"]


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: structured fields of one line (None values are left out)."""
    return {FIELDS: {key: value for key, value in values.items() if value is not None}}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("prgen: %(levelname)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the line's fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra: Mapping[str, Any] = getattr(record, FIELDS, None) or {}
        for key in (*_KNOWN, *sorted(extra.keys() - set(_KNOWN))):
            if key in extra:
                document[key] = extra[key]
        if record.exc_info:
            document["error"] = self.formatException(record.exc_info)
        # Redacted as a whole: a secret can't hide in a field either.
        return redact(json.dumps(document, default=str, ensure_ascii=False))


def configure(verbosity: int, log_format: str = "text") -> None:
    _chosen["format"] = log_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(
        logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    )
    if verbosity < 3:  # urllib3 and PyGithub at DEBUG print request headers
        for noisy in ("urllib3", "github"):
            logging.getLogger(noisy).setLevel(max(logging.INFO, root.level))


def _words(key: str) -> str:
    """A count's JSON name as words: `pullRequests` -> `pull requests`."""
    return re.sub(r"(?<=[a-z])([A-Z])", lambda m: " " + m.group(1).lower(), key)


def _describe(counts: Mapping[str, Any]) -> str:
    return ", ".join(f"{value} {_words(key)}" for key, value in counts.items() if value is not None)


@contextlib.contextmanager
def phase(name: str, **counts: Any) -> Iterator[dict[str, Any]]:
    """Time one phase of a run and log it at INFO when it ends, with the counts it gathered.

    The caller fills the yielded dict (`counts["rendered"] = 12`; names in camelCase, as
    they appear in JSON); a phase that raises is logged as failed, with what it had counted
    so far.
    """
    found: dict[str, Any] = dict(counts)
    start = time.perf_counter()
    outcome = "failed"
    try:
        yield found
        outcome = "done"
    finally:
        duration = time.perf_counter() - start
        said = _describe(found)
        log.info(
            "%s %s in %.2fs%s",
            name,
            outcome,
            duration,
            f": {said}" if said else "",
            extra=fields(phase=name, duration=round(duration, 3), outcome=outcome, **found),
        )
