"""prgen.yaml's shape: its JSON Schema, YAML read with positions, and each schema error said as
one line that names the field (`repositories[0].lables: unknown field 'lables' (did you mean
'labels'?)`). Shared by prgen.yaml (config.py) and a repository's `.prgen.yaml`."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from prgen.errors import ConfigError
from prgen.resources import data_path


@cache
def schema() -> dict[str, Any]:
    with data_path("schemas", "prgen.schema.json").open(encoding="utf-8") as f:
        document: dict[str, Any] = json.load(f)
    return document


def _format_path(parts: Iterable[str | int]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_yaml(text: str, source: str) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        where, problem = yaml_problem(exc, source)
        raise ConfigError(problem, source=where) from exc


def yaml_problem(exc: YAMLError, source: str) -> tuple[str, str]:
    """`prgen.yaml:11:13: expected ',' or ']', but got ':' (while parsing a flow sequence at
    10:7)`: where the problem is, as editors and compilers say it (`prgen.yaml:11:13`), and
    what it is, then what was being read."""
    if not isinstance(exc, MarkedYAMLError):
        return source, f"not valid YAML: {exc}".replace("\n", " ")
    mark = exc.problem_mark or exc.context_mark
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    problem = (exc.problem or exc.context or "not valid YAML").strip().splitlines()[0]
    context = (exc.context or "").strip().splitlines()[0] if exc.problem and exc.context else ""
    if context and exc.context_mark is not None and exc.context_mark is not mark:
        at = exc.context_mark
        problem = f"{problem} ({context} at {at.line + 1}:{at.column + 1})"
    return where, problem


def check_schema(document: Mapping[str, Any], source: str) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    problems = [explain_schema_error(error) for error in errors]
    raise ConfigError.many(problems, source=source)


_ABOUT_THE_VALUES_KIND = frozenset({"type", "const", "enum"})


def explain_schema_error(error: jsonschema.ValidationError) -> tuple[str, str]:
    """(path, reason) for one schema error.

    For a oneOf/anyOf, the reason comes from the alternative the value was meant
    for: the one whose complaint is not about the value's type. If every
    alternative rejects the type, the reason lists what each would accept.
    """
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        return _unknown_field(error, error.instance)
    if not error.context:
        return _format_path(error.absolute_path), error.message
    branches: dict[Any, list[jsonschema.ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    meant = [
        subs
        for subs in branches.values()
        if any(sub.validator not in _ABOUT_THE_VALUES_KIND or sub.relative_path for sub in subs)
    ]
    if len(meant) == 1:
        return explain_schema_error(jsonschema.exceptions.best_match(meant[0]))
    reasons = " or ".join(dict.fromkeys(sub.message for subs in branches.values() for sub in subs))
    return _format_path(error.absolute_path), reasons


def _unknown_field(
    error: jsonschema.ValidationError, instance: Mapping[str, Any]
) -> tuple[str, str]:
    """The path of the first unknown key itself, and the known key it was probably meant to be."""
    known = sorted(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
    patterns = error.schema.get("patternProperties", {}) if isinstance(error.schema, dict) else {}
    unknown = sorted(
        str(key)
        for key in instance
        if key not in known and not any(re.search(p, str(key)) for p in patterns)
    )
    if not unknown:
        return _format_path(error.absolute_path), error.message
    name = unknown[0]
    guess = difflib.get_close_matches(name, known, n=1)
    reason = f"unknown field '{name}'" + (f" (did you mean '{guess[0]}'?)" if guess else "")
    if not guess and known:
        reason += ": expected one of " + ", ".join(known)
    return _format_path([*error.absolute_path, name]), reason
