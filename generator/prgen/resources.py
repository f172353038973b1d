"""Where prgen's own data files are: inside the wheel, or beside `generator/` in a checkout."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_INSTALLED = Path(str(files("prgen"))) / "_data"
_CHECKOUT = Path(__file__).resolve().parents[2]


def data_path(*parts: str) -> Path:
    """A file shipped with prgen: `templates/`, `schemas/` or `fleet-repo-example/`."""
    root = _INSTALLED if _INSTALLED.is_dir() else _CHECKOUT
    return root.joinpath(*parts)
