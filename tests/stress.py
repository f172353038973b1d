"""Stress mode: the same safety tests with many more cases.

    PRGEN_STRESS=1 pytest tests/test_safety_*.py      (see scripts/stress)

The default suite runs each scenario with a few cases so CI stays fast.
"""

from __future__ import annotations

import os

STRESS = os.environ.get("PRGEN_STRESS") == "1"


def scale(default: int, stress: int) -> int:
    """How many cases a scenario runs: `default` in the normal suite, `stress` in stress mode."""
    return stress if STRESS else default
