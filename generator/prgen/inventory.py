"""What the fleet repository holds now under the managed folder: a pure reading of its files.

A file is prgen's only if it starts with the ownership marker; everything else
under the folder is hand-written and is never changed or removed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from prgen.render import (
    ANNOTATION_CONFIG,
    ANNOTATION_HEAD_SHA,
    ANNOTATION_PULL_REQUEST,
    ANNOTATION_REPOSITORY,
    HELMRELEASE_FILE,
    KUSTOMIZATION_FILE,
    MARKER,
)


@dataclass(frozen=True)
class CurrentEnvironment:
    repository: str
    number: int
    head_sha: str | None
    folder: str
    files: Mapping[str, bytes]  # prgen's own files in the folder, by name
    # The identity of the config that wrote it; None when written before prgen recorded one.
    config_identity: str | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.repository.lower(), self.number)


@dataclass(frozen=True)
class Inventory:
    environments: tuple[CurrentEnvironment, ...]
    handwritten: Mapping[str, bytes]  # paths relative to the managed folder
    index: bytes | None  # the managed folder's kustomization.yaml, if any
    unrecognised: tuple[str, ...]  # folders with prgen files but no readable identity

    @property
    def indexed(self) -> frozenset[str]:
        """The entries prgen's index lists now: what Flux applies today."""
        if self.index is None or self.index_is_handwritten:
            return frozenset()
        try:
            with _LOADER_LOCK:
                document: Any = _LOADER.load(self.index.decode("utf-8"))
            return frozenset(str(entry) for entry in document.get("resources") or ())
        except (YAMLError, UnicodeDecodeError, AttributeError, TypeError):
            return frozenset()

    def numbers_of(self, repository: str) -> frozenset[int]:
        """The PR numbers of `repository` that have an environment here."""
        name = repository.lower()
        return frozenset(e.number for e in self.environments if e.repository.lower() == name)

    @property
    def index_is_handwritten(self) -> bool:
        return self.index is not None and not is_owned(self.index)

    def top_level_handwritten(self) -> list[str]:
        """Hand-written entries beside the environments, for the index to include."""
        entries: set[str] = set()
        for path in self.handwritten:
            top, _, rest = path.partition("/")
            if (
                not rest and top != KUSTOMIZATION_FILE and top.endswith((".yaml", ".yml"))
            ) or rest == KUSTOMIZATION_FILE:
                entries.add(top)
        return sorted(entries)


def is_owned(content: bytes) -> bool:
    return content.startswith(MARKER.encode())


# Every sync and probe reads every environment's HelmRelease: libyaml's parser (through
# ruamel.yaml.clib, when installed) does it about five times faster than the pure one, and
# one loader, built once, saves building one per file. A loader is not thread-safe: the lock.
_LOADER = YAML(typ="safe")
_LOADER_LOCK = threading.Lock()


class Identity(NamedTuple):
    repository: str
    number: int
    head_sha: str | None
    config: str | None  # which config wrote it (see config.config_identity)


def identity_of(content: bytes) -> Identity | None:
    """Whose environment a HelmRelease prgen wrote is, and which config wrote it."""
    try:
        text = content.decode("utf-8")
        with _LOADER_LOCK:
            document: Any = _LOADER.load(text)
        annotations = document["metadata"]["annotations"]
        config = annotations.get(ANNOTATION_CONFIG)
        return Identity(
            str(annotations[ANNOTATION_REPOSITORY]),
            int(annotations[ANNOTATION_PULL_REQUEST]),
            annotations.get(ANNOTATION_HEAD_SHA),
            None if config is None else str(config),
        )
    except (YAMLError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return None


def read_inventory(files: Mapping[str, bytes]) -> Inventory:
    """`files`: every file under the managed folder, by path relative to it."""
    handwritten: dict[str, bytes] = {}
    owned_by_folder: dict[str, dict[str, bytes]] = {}
    for path, content in files.items():
        if not is_owned(content):
            if path != KUSTOMIZATION_FILE:
                handwritten[path] = content
            continue
        folder, _, name = path.partition("/")
        if name and "/" not in name:
            owned_by_folder.setdefault(folder, {})[name] = content
    environments = []
    unrecognised = []
    for folder, owned in sorted(owned_by_folder.items()):
        identity = identity_of(owned[HELMRELEASE_FILE]) if HELMRELEASE_FILE in owned else None
        if identity is None:
            unrecognised.append(folder)
            continue
        environments.append(
            CurrentEnvironment(
                identity.repository,
                identity.number,
                identity.head_sha,
                folder,
                owned,
                identity.config,
            )
        )
    return Inventory(
        environments=tuple(environments),
        handwritten=handwritten,
        index=files.get(KUSTOMIZATION_FILE),
        unrecognised=tuple(unrecognised),
    )
