#!/usr/bin/env python3
"""Fails when a chart here changed but its Chart.yaml version did not.

The previews install charts/preview-app with `reconcileStrategy: ChartVersion`:
Flux rebuilds a chart only when its version changes. A change made without a
version bump reaches the previews created afterwards but none of the running
ones, and two previews then run different charts under the same version.

charts/fingerprints.txt records, per chart and version, a sha256 of the chart's
files (Chart.yaml without its `version:` line and comment lines; files
.helmignore leaves out of the package are not counted). This script recomputes it and compares:

    python3 charts/fingerprint.py           # check; exit 1 with what to do
    python3 charts/fingerprint.py --print   # the line for each chart as it is now

After changing a chart: bump `version` in its Chart.yaml, then append the line
--print shows to charts/fingerprints.txt. Never edit a line already there: it
records what the clusters run under that version. Standard library only, so a
CI job of the fleet repository can run it as it is.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import sys
from pathlib import Path

CHARTS = Path(__file__).resolve().parent
RECORD = CHARTS / "fingerprints.txt"
_NOT_CONTENT = re.compile(rb"^(version:.*|[ \t]*#.*)$\n?", re.M)  # in Chart.yaml
_VERSION = re.compile(r"^version:\s*[\"']?([^\"'\s#]+)", re.M)


def _helmignore(chart: Path) -> list[str]:
    ignore = chart / ".helmignore"
    if not ignore.is_file():
        return []
    lines = (line.strip() for line in ignore.read_text(encoding="utf-8").splitlines())
    return [line.rstrip("/") for line in lines if line and not line.startswith("#")]


def _packaged(chart: Path) -> list[Path]:
    patterns = _helmignore(chart)
    files = []
    for path in sorted(chart.rglob("*")):
        relative = path.relative_to(chart).as_posix()
        parts = relative.split("/")
        if path.is_file() and not any(
            fnmatch.fnmatch(relative, pattern) or any(fnmatch.fnmatch(p, pattern) for p in parts)
            for pattern in patterns
        ):
            files.append(path)
    return files


def fingerprint(chart: Path) -> str:
    """sha256 over the chart's packaged files, Chart.yaml's version and comments left out."""
    digest = hashlib.sha256()
    for path in _packaged(chart):
        relative = path.relative_to(chart).as_posix()
        data = path.read_bytes().replace(b"\r\n", b"\n")
        if relative == "Chart.yaml":
            data = _NOT_CONTENT.sub(b"", data)
        digest.update(relative.encode() + b"\0" + hashlib.sha256(data).digest())
    return f"sha256:{digest.hexdigest()}"


def version(chart: Path) -> str:
    match = _VERSION.search((chart / "Chart.yaml").read_text(encoding="utf-8"))
    if not match:
        raise SystemExit(f"{chart.name}/Chart.yaml: no version")
    return match.group(1)


def _semver(text: str) -> tuple[int, ...]:
    core = re.match(r"\d+(\.\d+)*", text)
    return tuple(int(n) for n in core.group(0).split(".")) if core else ()


def recorded() -> dict[str, list[tuple[str, str]]]:
    """chart name -> [(version, fingerprint)] in the order of charts/fingerprints.txt."""
    found: dict[str, list[tuple[str, str]]] = {}
    if RECORD.is_file():
        for line in RECORD.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.startswith("#"):
                name, chart_version, value = line.split()
                found.setdefault(name, []).append((chart_version, value))
    return found


def charts() -> list[Path]:
    return sorted(p.parent for p in CHARTS.glob("*/Chart.yaml"))


def problems() -> list[str]:
    out = []
    history = recorded()
    for chart in charts():
        now, current = fingerprint(chart), version(chart)
        line = f"{chart.name} {current} {now}"
        entries = history.get(chart.name, [])
        versions = [v for v, _ in entries]
        recorded_now = dict(entries).get(current)
        if len(set(versions)) != len(versions) or versions != sorted(versions, key=_semver):
            out.append(f"{RECORD.name}: {chart.name}'s versions must be unique and ascending")
        if recorded_now is None:
            out.append(
                f"charts/{chart.name} {current} has no fingerprint: append `{line}` "
                f"to charts/{RECORD.name}"
            )
        elif recorded_now != now:
            out.append(
                f"charts/{chart.name} changed, but its version is still {current}: bump "
                f"charts/{chart.name}/Chart.yaml version and update the fingerprint (append "
                f"`{chart.name} <new version> {now}` to charts/{RECORD.name})"
            )
        elif versions[-1] != current:
            out.append(f"charts/{chart.name}: version {current} is older than {versions[-1]}")
    return out


def main(argv: list[str]) -> int:
    if argv == ["--print"]:
        for chart in charts():
            print(f"{chart.name} {version(chart)} {fingerprint(chart)}")
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
