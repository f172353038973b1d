"""A repository's own `.prgen.yaml`: checked and merged over its central entry.

The file is read from the repository's default branch (never from a PR's head: a PR's
author must not decide how that PR is deployed). The central `repoConfig.allow` says which
fields it may set; anything else is refused. A problem is told as editors tell one:
`.prgen.yaml:3:5: healthCheck.url: <reason>`, so the developer finds it at once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import jsonschema
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from prgen.config import (
    Config,
    RepositorySettings,
    check_namespace_not_reserved,
    check_namespaces_apart,
    compile_repository,
    merge_entries,
)
from prgen.config_schema import explain_schema_error, schema, yaml_problem
from prgen.errors import ConfigError
from prgen.targets import target_report

_AT = "@"  # stands for the repository entry in paths compile_repository makes
_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


class RepoConfigError(Exception):
    """A `.prgen.yaml` that can't be used: each problem as (where, reason), where being
    `path:line:column: field` as far as it is known."""

    def __init__(self, repository: str, path: str, problems: list[tuple[str, str]]) -> None:
        self.repository = repository
        self.path = path
        self.problems = problems
        super().__init__(self.summary)

    @property
    def summary(self) -> str:
        """The first problem, in one line: what a commit status can say."""
        where, reason = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"{where}: {reason}{more}"

    def __str__(self) -> str:
        return "; ".join(f"{where}: {reason}" for where, reason in self.problems)


class RepoFileReader(Protocol):
    def read_all(self, files: Sequence[tuple[str, str]]) -> list[str | RepoFileUnreadable | None]:
        """For each (repository, path): the file's text on the default branch, None when
        there is none, or why GitHub could not say."""


class RepoFileUnreadable(Exception):
    """GitHub did not answer what the file holds (an error, a folder, too large)."""


@dataclass(frozen=True)
class RepoConfigOutcome:
    """What one repository's file did in this run."""

    repository: str
    path: str
    state: str  # "applied", "absent", "broken" or "unread"
    problem: str | None = None  # broken or unread: why, in one line

    @property
    def failed(self) -> bool:
        return self.state in ("broken", "unread")


def _locate(document: Any, path: str) -> tuple[int, int] | None:
    """(line, column), 1-based, of the deepest part of `path` the document holds."""
    found: tuple[int, int] | None = None
    node = document
    for name, index in _PART.findall(path):
        if isinstance(node, CommentedMap) and name and name in node:
            line, column = node.lc.key(name)
            node = node[name]
        elif isinstance(node, CommentedSeq) and index and int(index) < len(node):
            line, column = node.lc.item(int(index))
            node = node[int(index)]
        else:
            break
        found = (line + 1, column + 1)
    return found


def _where(file: str, document: Any, field: str) -> str:
    position = _locate(document, field)
    at = f"{file}:{position[0]}:{position[1]}" if position else file
    return f"{at}: {field}" if field and field != "(top level)" else at


def _allowed_schema(allow: Iterable[str]) -> dict[str, Any]:
    full = schema()
    properties = full["$defs"]["repositorySettings"]["properties"]
    return {
        "$defs": full["$defs"],
        "type": "object",
        "additionalProperties": False,
        "properties": {name: properties[name] for name in sorted(allow)},
    }


def apply_repo_config(
    repo: RepositorySettings,
    text: str,
    others: Sequence[RepositorySettings],
    reserved: frozenset[str],
) -> RepositorySettings:
    """`repo` with its file's settings merged over its central entry. Raises RepoConfigError
    naming the file, line and field of each problem; nothing is merged then."""
    settings = repo.repo_config
    assert settings is not None
    file = settings.path

    def fail(problems: list[tuple[str, str]]) -> RepoConfigError:
        return RepoConfigError(repo.name, file, problems)

    try:
        document = YAML(typ="rt", pure=True).load(text)
    except YAMLError as exc:
        raise fail([yaml_problem(exc, file)]) from exc
    if document is None:
        document = CommentedMap()  # an empty file sets nothing
    if not isinstance(document, CommentedMap):
        raise fail([(file, "the file must be a YAML mapping of preview settings")])
    properties = schema()["$defs"]["repositorySettings"]["properties"]
    forbidden = [key for key in document if key in properties and key not in settings.allow]
    if forbidden:
        allowed = ", ".join(sorted(settings.allow)) or "nothing"
        raise fail(
            [
                (
                    _where(file, document, str(key)),
                    f"'{key}' may not be set by the repository (repoConfig.allow: {allowed})",
                )
                for key in forbidden
            ]
        )
    plain = _plain(document)
    validator = jsonschema.Draft202012Validator(_allowed_schema(settings.allow))
    errors = sorted(validator.iter_errors(plain), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise fail(
            [
                (_where(file, document, field), reason)
                for field, reason in map(explain_schema_error, errors)
            ]
        )
    merged = merge_entries(dict(repo.entry), plain)
    try:
        compiled = compile_repository(merged, _AT, file, settings.base_dir)
        compiled = dataclasses.replace(
            compiled,
            reserved_namespaces=repo.reserved_namespaces,
            identity=repo.identity,  # what decides is the central entry, as every runner reads
            repo_config=settings,
            target=repo.target,
            # A target reports under its own names (targets.target_report), as parse_config made them.
            report=target_report(compiled.report, repo.target) if repo.target else compiled.report,
        )
        check_namespace_not_reserved(compiled, reserved, _AT, file)
        check_namespaces_apart(
            tuple(compiled if other.name == repo.name else other for other in others), file
        )
    except ConfigError as exc:
        raise fail(
            [(_where(file, document, _field(path)), reason) for path, reason in exc.problems]
        ) from exc
    return compiled


def repo_fields(text: str) -> list[str]:
    """The top-level fields a (valid) file sets."""
    document = YAML(typ="safe", pure=True).load(text)
    return [str(key) for key in document] if isinstance(document, dict) else []


def _field(path: str) -> str:
    """A compile error's path, said of the file: `@.healthCheck.url` -> `healthCheck.url`;
    another repository's path is kept as it is."""
    if path == _AT:
        return ""
    return path.removeprefix(f"{_AT}.")


def _plain(node: Any) -> Any:
    """Plain dicts, lists and scalars: what the schema and the renderer expect."""
    if isinstance(node, Mapping):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def effective_config(
    config: Config, reader: RepoFileReader, names: Iterable[str] | None = None
) -> tuple[Config, list[RepoConfigOutcome]]:
    """`config` with each repository's file merged in (into every target's entry of it too),
    and what each file did. A repository whose file is broken or could not be read keeps
    its central settings here; the caller must keep its environments as they are (see
    RepoConfigOutcome.failed)."""
    wanted = None if names is None else {name.lower() for name in names}
    chosen = [
        (repo, repo.repo_config)
        for repo in config.repositories
        if repo.repo_config is not None and (wanted is None or repo.name.lower() in wanted)
    ]
    texts = reader.read_all([(repo.name, settings.path) for repo, settings in chosen])
    outcomes = []
    # Each place a repository is rendered from: prgen.yaml's list, and each target's.
    lists = [list(config.repositories)] + [list(t.repositories) for t in config.targets]
    for (repo, settings), text in zip(chosen, texts, strict=True):
        if isinstance(text, RepoFileUnreadable):
            outcomes.append(RepoConfigOutcome(repo.name, settings.path, "unread", str(text)))
            continue
        if text is None:
            outcomes.append(RepoConfigOutcome(repo.name, settings.path, "absent"))
            continue
        try:
            merged = [
                [
                    apply_repo_config(each, text, entries, config.reserved_namespaces)
                    if each.name == repo.name
                    else each
                    for each in entries
                ]
                for entries in lists
            ]
        except RepoConfigError as exc:
            outcomes.append(RepoConfigOutcome(repo.name, settings.path, "broken", exc.summary))
            continue
        lists = merged
        outcomes.append(RepoConfigOutcome(repo.name, settings.path, "applied"))
    targets = tuple(
        dataclasses.replace(target, repositories=tuple(entries))
        for target, entries in zip(config.targets, lists[1:], strict=True)
    )
    return dataclasses.replace(config, repositories=tuple(lists[0]), targets=targets), outcomes
