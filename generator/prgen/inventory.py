"""What the fleet repository holds now under the managed folder: a pure reading of its files.

A file is prgen's only if it starts with the ownership marker; everything else
under the folder is hand-written and is never changed or removed.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Callable, Iterator, KeysView, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from prgen.render import (
    ANNOTATION_CONFIG,
    ANNOTATION_HEAD_SHA,
    ANNOTATION_INPUTS,
    ANNOTATION_PULL_REQUEST,
    ANNOTATION_REPOSITORY,
    HELMRELEASE_FILE,
    KUSTOMIZATION_FILE,
    MARKER,
    controls_of,
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
    # What it was rendered from (see render.input_hash); None when written before prgen
    # recorded it. The same inputs give the same files: such an environment is kept unread.
    inputs: str | None = None
    # What commands from PR comments set on it (pr_commands.Controls.encode; None: nothing).
    controls: str | None = None
    target: str = ""  # with `targets:`, whose folder it is in (set where several are read)

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
        return self._numbers.get(repository.lower(), frozenset())

    @functools.cached_property
    def _numbers(self) -> dict[str, frozenset[int]]:
        # Asked once per repository and run: one pass over the environments, not one each.
        numbers: dict[str, set[int]] = {}
        for env in self.environments:
            numbers.setdefault(env.repository.lower(), set()).add(env.number)
        return {name: frozenset(found) for name, found in numbers.items()}

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


# What the inventory holds for a file that is not prgen's: never its content (a
# hand-written file may be huge), never anything that starts with the marker.
NOT_OWNED = b""


def union_of(inventories: list[Inventory]) -> Inventory:
    """Every target's environments as one inventory (`targets:`): what the fleet holds of
    each PR, anywhere, for what is asked once per PR. One inventory is itself."""
    if len(inventories) == 1:
        return inventories[0]
    return Inventory(
        environments=tuple(env for inventory in inventories for env in inventory.environments),
        handwritten={},
        index=None,
        unrecognised=(),
    )


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
    inputs: str | None = None  # what it was rendered from (see render.input_hash)
    controls: str | None = None  # what commands set on it (pr_commands.Controls.encode)


def identity_of(content: bytes) -> Identity | None:
    """Whose environment a HelmRelease prgen wrote is, and which config wrote it."""
    try:
        text = content.decode("utf-8")
        with _LOADER_LOCK:
            document: Any = _LOADER.load(text)
        annotations = document["metadata"]["annotations"]
        config = annotations.get(ANNOTATION_CONFIG)
        inputs = annotations.get(ANNOTATION_INPUTS)
        if not isinstance(annotations, dict):
            raise TypeError("annotations are not a mapping")
        return Identity(
            str(annotations[ANNOTATION_REPOSITORY]),
            int(annotations[ANNOTATION_PULL_REQUEST]),
            annotations.get(ANNOTATION_HEAD_SHA),
            None if config is None else str(config),
            None if inputs is None else str(inputs),
            controls_of(annotations).encode(),
        )
    except (YAMLError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        return None


class FileFacts(NamedTuple):
    """What prgen needs to know of one file under the managed folder."""

    owned: bool  # starts with the marker (and is a small plain file)
    identity: Identity | None  # of an owned HelmRelease, when it reads as one


def facts_of(name: str, content: bytes) -> FileFacts:
    """The facts of a file called `name` (its last path part) holding `content`."""
    if not is_owned(content):
        return FileFacts(False, None)
    return FileFacts(True, identity_of(content) if name == HELMRELEASE_FILE else None)


def blob_id(content: bytes, object_format: str = "sha1") -> str:
    """The id git gives `content` as a blob: comparing ids compares contents, unread."""
    digest = hashlib.new(object_format)
    digest.update(b"blob %d\0" % len(content))
    digest.update(content)
    return digest.hexdigest()


class StoredFiles(Mapping[str, bytes]):
    """prgen's files of one folder as git stores them: names and blob ids.

    A content is read (through `read`, by blob id) only when asked for: a sync that keeps
    an environment or compares a new rendering to it never reads it (see `same`).
    """

    def __init__(
        self,
        blobs: Mapping[str, str],
        read: Callable[[str], bytes],
        object_format: str,
        *,
        rendered: bool = False,
    ) -> None:
        self.blobs = blobs
        self._read = read
        self._format = object_format
        # The folder's tree is, file for file, one prgen rendered (so nobody edited it since):
        # with the same input hash it is what rendering again would give, unread.
        self.rendered = rendered

    def __getitem__(self, name: str) -> bytes:
        return self._read(self.blobs[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self.blobs)

    def __len__(self) -> int:
        return len(self.blobs)

    def __contains__(self, name: object) -> bool:
        return name in self.blobs  # never read a content to say whether it is there

    def keys(self) -> KeysView[str]:
        return self.blobs.keys()

    def same(self, name: str, content: bytes) -> bool:
        return self.blobs.get(name) == blob_id(content, self._format)


def unedited(files: Mapping[str, bytes]) -> bool:
    """Whether `files` are a folder exactly as prgen rendered it (see StoredFiles.rendered)."""
    return isinstance(files, StoredFiles) and files.rendered


def tree_id(files: Mapping[str, bytes], object_format: str = "sha1") -> str:
    """The id git gives a folder holding exactly `files` (plain files, by name)."""
    body = b"".join(
        b"100644 " + name.encode() + b"\0" + bytes.fromhex(blob_id(files[name], object_format))
        for name in sorted(files, key=lambda name: name.encode())
    )
    digest = hashlib.new(object_format)
    digest.update(b"tree %d\0" % len(body))
    digest.update(body)
    return digest.hexdigest()


def holds_same(files: Mapping[str, bytes], name: str, content: bytes) -> bool:
    """Whether `files` holds `content` as `name`: by blob id when stored, else by bytes."""
    if isinstance(files, StoredFiles):
        return files.same(name, content)
    return files.get(name) == content


def read_inventory(files: Mapping[str, bytes]) -> Inventory:
    """`files`: every file under the managed folder, by path relative to it."""
    facts = {path: facts_of(path.rpartition("/")[2], content) for path, content in files.items()}
    return assemble_inventory(
        facts, lambda folder, names: {name: files[join(folder, name)] for name in names}
    )


def join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def assemble_inventory(
    facts: Mapping[str, FileFacts],
    folder_files: Callable[[str, list[str]], Mapping[str, bytes]],
    index: bytes | None = None,
    *,
    index_known: bool = False,
) -> Inventory:
    """The inventory from each file's facts, by path relative to the managed folder.

    `folder_files(folder, names)`: the files of an environment (contents, or stored
    files read on demand). `index`: the managed folder's kustomization.yaml when the
    caller read it (`index_known`), else it is taken through `folder_files`.
    """
    handwritten: dict[str, bytes] = {}
    owned_by_folder: dict[str, dict[str, FileFacts]] = {}
    for path, fact in facts.items():
        if not fact.owned:
            if path != KUSTOMIZATION_FILE:
                handwritten[path] = NOT_OWNED
            continue
        folder, _, name = path.partition("/")
        if name and "/" not in name:
            owned_by_folder.setdefault(folder, {})[name] = fact
    environments = []
    unrecognised = []
    for folder, owned in sorted(owned_by_folder.items()):
        release = owned.get(HELMRELEASE_FILE)
        identity = release.identity if release is not None else None
        if identity is None:
            unrecognised.append(folder)
            continue
        environments.append(
            CurrentEnvironment(
                identity.repository,
                identity.number,
                identity.head_sha,
                folder,
                folder_files(folder, sorted(owned)),
                identity.config,
                identity.inputs,
                identity.controls,
            )
        )
    if not index_known and KUSTOMIZATION_FILE in facts:
        index = folder_files("", [KUSTOMIZATION_FILE])[KUSTOMIZATION_FILE]
    return Inventory(
        environments=tuple(environments),
        handwritten=handwritten,
        index=index,
        unrecognised=tuple(unrecognised),
    )
