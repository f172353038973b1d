"""`targets:`, several clusters from one config: the checks a list of targets must pass.

Each target is a folder of the fleet (one cluster's previews) that prgen manages, indexes
and guards on its own. Two folders that overlap or nest would have one target's plan
remove, or index, the other's environments, so they are refused before anything runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prgen.errors import ConfigError
from prgen.placeholders import placeholders_in, unknown_placeholders
from prgen.standing import own_checks

if TYPE_CHECKING:
    from prgen.config import Config, ReportSettings


def _nests(outer: str, inner: str) -> bool:
    return outer == inner or inner.startswith(outer + "/")


def check_targets(document: Mapping[str, Any], source: str) -> None:
    """Names unique, folders apart, every target a repository names defined; the schema has
    checked the shapes. Raises ConfigError naming the field."""
    targets: Sequence[Mapping[str, Any]] = document["targets"]
    if "path" in document["fleet"]:
        raise ConfigError(
            "set either fleet.path (one folder) or targets (a folder each), not both",
            "fleet.path",
            source,
        )
    names: dict[str, int] = {}
    paths: list[str] = []
    for index, target in enumerate(targets):
        name = target["name"]
        if name in names:
            raise ConfigError(
                f"{name} is listed twice (also targets[{names[name]}])",
                f"targets[{index}].name",
                source,
            )
        names[name] = index
        path = target["path"].strip("/")
        for earlier, other in enumerate(paths):
            if _nests(other, path) or _nests(path, other):
                raise ConfigError(
                    f"{path} overlaps {other} (targets[{earlier}].path): each target's folder "
                    "is managed on its own, so no folder may be or hold another's",
                    f"targets[{index}].path",
                    source,
                )
        paths.append(path)
        for where, placeholder in unknown_placeholders(
            target.get("values"), f"targets[{index}].values"
        ):
            raise ConfigError(f"unknown placeholder <<{placeholder}>>", where, source)
    places = [("defaults", document.get("defaults", {}))]
    places += [(f"repositories[{i}]", entry) for i, entry in enumerate(document["repositories"])]
    for at, entry in places:
        for index, name in enumerate(entry.get("targets", ())):
            if name not in names:
                raise ConfigError(
                    f"unknown target {name!r}: the targets are " + ", ".join(names),
                    f"{at}.targets[{index}]",
                    source,
                )


def check_no_target_placeholder(document: Mapping[str, Any], source: str) -> None:
    """<<TARGET>> only where there are targets: without them it would stand for nothing."""
    places = [("defaults", document.get("defaults", {}))]
    places += [(f"repositories[{i}]", entry) for i, entry in enumerate(document["repositories"])]
    for at, entry in places:
        for where, name in placeholders_in(entry, at):
            if name == "TARGET":
                raise ConfigError(
                    "<<TARGET>> is the name of a target, and this config has no targets",
                    where,
                    source,
                )


def target_report(report: ReportSettings, name: str) -> ReportSettings:
    """A target's own report channels: two clusters' environments of one PR report side by
    side (`prgen/preview (eu)`, deployment `pr-1-eu`), never over each other. A deployment
    environment that names <<TARGET>> itself is left as it is."""
    environment = report.deployment_environment
    if environment and "<<TARGET>>" not in environment:
        environment = f"{environment}-{name}"
    return dataclasses.replace(
        report,
        commit_status_context=(
            f"{report.commit_status_context} ({name})" if report.commit_status_context else None
        ),
        check_run=f"{report.check_run} ({name})" if report.check_run else None,
        deployment_environment=environment,
    )


def own_check_names(config: Config) -> dict[str, frozenset[str]]:
    """What prgen reports under for each repository (lower case), in every target: none of
    it is ever a check of a gate, and all of it is prgen's health report."""
    own: dict[str, frozenset[str]] = {}
    for target in config.fleet_targets:
        for repo in target.repositories:
            names = own_checks(repo.report.commit_status_context, repo.report.check_run)
            own[repo.name.lower()] = own.get(repo.name.lower(), frozenset()) | names
    return own


def target_label(name: str) -> str:
    """How a change names its target in messages: nothing for the single fleet.path."""
    return f" [{name}]" if name else ""
