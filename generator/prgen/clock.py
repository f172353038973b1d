"""The wall clock prgen decides expiry and sleep by, and stamps its fleet commits with.

A test seam, read in this one place: `PRGEN_NOW` (an ISO 8601 time with a zone, such as
`2026-01-08T12:00:00+00:00`) makes prgen act as if it were that time, so a test of the
real CLI can put a run a week after the last one without waiting a week. Every other
fact about time comes from data (the fleet's history, comments' creation times).
Never set it in production.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

NOW_VARIABLE = "PRGEN_NOW"


def now() -> datetime:
    """The current time, aware, in UTC (or what PRGEN_NOW says)."""
    forced = os.environ.get(NOW_VARIABLE)
    if forced:
        when = datetime.fromisoformat(forced)
        if when.tzinfo is None:
            raise ValueError(f"{NOW_VARIABLE} must name its timezone: {forced!r}")
        return when.astimezone(UTC)
    return datetime.now(UTC)
