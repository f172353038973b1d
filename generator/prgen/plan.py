"""Desired environments + what the fleet holds -> the changes to make. Pure.

The one rule that matters most: an environment is deleted only when its
repository's listing was complete. Anything else keeps it as it is.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from prgen.inventory import CurrentEnvironment, Inventory
from prgen.render import KUSTOMIZATION_FILE, RenderedEnvironment, render_index


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    KEEP = "keep"


@dataclass(frozen=True)
class Change:
    action: Action
    repository: str
    number: int
    folder: str
    head_sha: str | None
    reason: str = ""


@dataclass(frozen=True)
class Conflict:
    repository: str
    number: int
    reason: str


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    conflicts: tuple[Conflict, ...]
    writes: Mapping[str, bytes | None] = field(default_factory=dict)  # relative to managed path

    def of(self, action: Action) -> list[Change]:
        return [change for change in self.changes if change.action is action]

    @property
    def has_changes(self) -> bool:
        return bool(self.writes)


def _file_writes(
    folder: str, old: Mapping[str, bytes], new: Mapping[str, bytes]
) -> dict[str, bytes | None]:
    writes: dict[str, bytes | None] = {}
    for name, content in new.items():
        if old.get(name) != content:
            writes[f"{folder}/{name}"] = content
    for name in old.keys() - new.keys():
        writes[f"{folder}/{name}"] = None
    return writes


def _blocked_by_handwritten(
    folder: str, files: Iterable[str], handwritten: Collection[str]
) -> bool:
    return folder in handwritten or any(f"{folder}/{name}" in handwritten for name in files)


def _kept_because(
    env: CurrentEnvironment,
    complete: Collection[str],
    hold_deletions: str | None,
    configured: Collection[str] | None,
) -> str:
    repository = env.repository.lower()
    if repository in complete and hold_deletions is not None:
        return hold_deletions
    if configured is not None and repository not in configured:
        return f"{env.repository} is not in the config any more: kept as is"
    return f"listing of {env.repository} failed: kept as is"


def _keep_in_place(kept: Iterable[CurrentEnvironment], claimed: dict[str, str]) -> None:
    for env in kept:
        claimed.setdefault(env.folder, f"{env.repository}#{env.number}")


def make_plan(
    desired: Sequence[RenderedEnvironment],
    inventory: Inventory,
    complete: Collection[str],
    *,
    hold_deletions: str | None = None,
    configured: Collection[str] | None = None,
) -> Plan:
    """`complete`: lower-cased names of the repositories whose listing succeeded in full.

    `hold_deletions`: when set, environments that would be removed are kept, with this reason.
    `configured`: lower-cased names of the repositories in the config, to tell an environment
    of a repository that is no longer configured from one whose listing failed.
    """
    current: dict[tuple[str, int], list[CurrentEnvironment]] = {}
    for existing_env in inventory.environments:
        current.setdefault(existing_env.key, []).append(existing_env)
    wanted = {(env.repository.lower(), env.number) for env in desired}

    changes: list[Change] = []
    conflicts: list[Conflict] = []
    deletes: dict[str, None] = {}
    writes: dict[str, bytes | None] = {}
    claimed: dict[str, str] = {
        folder: "unrecognised prgen files" for folder in inventory.unrecognised
    }

    # Environments nobody asked for: removed only on a complete listing, else kept untouched.
    for key, unwanted in current.items():
        if key in wanted:
            continue
        for old_env in unwanted:
            who = (old_env.repository, old_env.number, old_env.folder, old_env.head_sha)
            if old_env.repository.lower() in complete and hold_deletions is None:
                deletes.update(dict.fromkeys(f"{old_env.folder}/{name}" for name in old_env.files))
                changes.append(
                    Change(Action.DELETE, *who, "pull request closed or no longer eligible")
                )
            else:
                claimed[old_env.folder] = f"{old_env.repository}#{old_env.number}"
                changes.append(
                    Change(
                        Action.KEEP,
                        *who,
                        _kept_because(old_env, complete, hold_deletions, configured),
                    )
                )

    # Environments already in their folder claim it first: a newcomer whose name
    # collides gets the conflict, never an existing environment's folder.
    incumbents = {(e.key, e.folder) for e in inventory.environments}
    ordered = sorted(
        desired, key=lambda e: ((e.repository.lower(), e.number), e.namespace) not in incumbents
    )
    for env in ordered:
        key = (env.repository.lower(), env.number)
        owner = claimed.get(env.namespace)
        if owner is not None:
            conflicts.append(
                Conflict(
                    env.repository, env.number, f"namespace {env.namespace} is taken by {owner}"
                )
            )
            _keep_in_place(current.pop(key, []), claimed)  # its current folder stays as it is
            continue
        if _blocked_by_handwritten(env.namespace, env.files, inventory.handwritten):
            conflicts.append(
                Conflict(
                    env.repository,
                    env.number,
                    f"folder {env.namespace} holds hand-written files prgen will not overwrite",
                )
            )
            _keep_in_place(current.pop(key, []), claimed)
            continue
        claimed[env.namespace] = f"{env.repository}#{env.number}"
        existing = current.pop(key, [])
        old = next((c for c in existing if c.folder == env.namespace), None)
        for moved in existing:
            if moved is not old:
                deletes.update(dict.fromkeys(f"{moved.folder}/{name}" for name in moved.files))
        env_writes = _file_writes(env.namespace, old.files if old else {}, env.files)
        writes.update(env_writes)
        if not existing:
            action, reason = Action.CREATE, "new pull request"
        elif env_writes or len(existing) > 1 or old is None:
            previous = old or existing[0]
            action = Action.UPDATE
            reason = (
                f"new head commit (was {previous.head_sha[:7]})"
                if previous.head_sha and previous.head_sha != env.head_sha
                else "configuration or template changed"
            )
        else:
            action, reason = Action.KEEP, "up to date"
        changes.append(
            Change(action, env.repository, env.number, env.namespace, env.head_sha, reason)
        )

    all_writes: dict[str, bytes | None] = {**deletes, **writes}
    if not inventory.index_is_handwritten:
        # A folder leaves the index only when prgen deletes it: dropping one it left alone
        # (unrecognised, or kept through a conflict) would make Flux prune a live preview.
        indexed = inventory.indexed
        environments = [f for f in claimed if f not in inventory.unrecognised or f in indexed]
        index = render_index([*environments, *inventory.top_level_handwritten()])
        if index != inventory.index:
            all_writes[KUSTOMIZATION_FILE] = index
    changes.sort(key=lambda c: (c.repository.lower(), c.number, c.action != Action.DELETE))
    return Plan(tuple(changes), tuple(conflicts), all_writes)


def deletion_limit(current: int, max_deletions: int | None) -> int:
    """How many environments one run may remove. Default: half of them, but always 4."""
    if max_deletions is not None:
        return max_deletions
    return max(current // 2, 4)
