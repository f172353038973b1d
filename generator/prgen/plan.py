"""Desired environments + what the fleet holds -> the changes to make. Pure.

The one rule that matters most: an environment is deleted only when its
repository's listing was complete. Anything else keeps it as it is.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from prgen.inventory import CurrentEnvironment, Inventory, holds_same, unedited
from prgen.render import KUSTOMIZATION_FILE, RenderedEnvironment, render_index

# The reason of an update that is neither a new head nor a move (lifecycle.py says better).
TEMPLATE_CHANGED = "configuration or template changed"


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    KEEP = "keep"
    HOLD = "hold"  # kept at the last head that passed its deploy gate; the new head waits


@dataclass(frozen=True)
class Change:
    action: Action
    repository: str
    number: int
    folder: str
    head_sha: str | None
    reason: str = ""
    replaced_by: str = ""  # a DELETE of the folder an environment moved from: its new folder
    target: str = ""  # with `targets:`, the target whose folder it is in


class ConflictKind(StrEnum):
    NAME = "name"  # another PR, an unrecognised folder or hand-written files hold the name
    HANDOVER = "handover"  # another PR leaves the name in this commit: taken in a later run
    RESERVED = "reserved"  # a system namespace, or one in safety.reservedNamespaces
    OTHER_CONFIG = "other-config"  # written by a prgen configured differently


@dataclass(frozen=True)
class Conflict:
    repository: str
    number: int
    reason: str
    kind: ConflictKind = ConflictKind.NAME
    target: str = ""  # with `targets:`, the target it is in


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    conflicts: tuple[Conflict, ...]
    writes: Mapping[str, bytes | None] = field(default_factory=dict)  # relative to managed path
    rendered: tuple[RenderedEnvironment, ...] = ()  # the desired environments it was made from

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
        if not holds_same(old, name, content):
            writes[f"{folder}/{name}"] = content
    for name in old.keys() - new.keys():
        writes[f"{folder}/{name}"] = None
    return writes


def _rendered_alike(old: CurrentEnvironment | None, new: RenderedEnvironment) -> bool:
    """Whether `old` is a folder prgen rendered, untouched since, from the same inputs as
    `new`: then it holds the same bytes (rendering is byte-stable), kept without comparing.
    A folder someone edited is compared, and so written again (prgen overwrites edits).
    """
    return (
        old is not None
        and bool(new.inputs)
        and old.inputs == new.inputs
        and unedited(old.files)
        and old.files.keys() == new.files.keys()
    )


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


def _written_elsewhere(
    envs: Sequence[CurrentEnvironment], identities: Mapping[str, str] | None
) -> Conflict | None:
    """A conflict when a differently configured prgen wrote one of this PR's folders.

    Its filters, namespace template or fleet path differ from this config's, so what this
    run wants for the PR is no guide to what the other wants: removing or rewriting it
    would only be undone by the other's next run, and so on every round.
    """
    env = envs[0]
    mine = (identities or {}).get(env.repository.lower())
    theirs = sorted({e.config_identity for e in envs if e.config_identity not in (None, mine)})
    if mine is None or not theirs:
        return None
    folders = ", ".join(e.folder for e in envs)
    return Conflict(
        env.repository,
        env.number,
        f"{folders} was written by a prgen configured differently (config "
        f"{', '.join(str(t) for t in theirs)}; this config is {mine}: filters, namespace "
        "or fleet.path differ): kept as is; take it over with prgen sync --adopt if this "
        "config is the one that should decide",
        ConflictKind.OTHER_CONFIG,
    )


def make_plan(
    desired: Sequence[RenderedEnvironment],
    inventory: Inventory,
    complete: Collection[str],
    *,
    hold_deletions: str | None = None,
    configured: Collection[str] | None = None,
    identities: Mapping[str, str] | None = None,
    adopt: bool = False,
    blocked: Sequence[Conflict] = (),
    reserved: Collection[str] = (),
) -> Plan:
    """`complete`: lower-cased names of the repositories whose listing succeeded in full.

    `hold_deletions`: when set, environments that would be removed are kept, with this reason;
    so are the old folders of environments that would move (they stay where they are).
    `configured`: lower-cased names of the repositories in the config, to tell an environment
    of a repository that is no longer configured from one whose listing failed.
    `identities`: this config's identity per lower-cased repository name; an environment
    another identity wrote is kept as is and is a conflict, unless `adopt`.
    `blocked`: eligible PRs that get no environment (a reserved namespace): their
    conflicts, and whatever folder they have now stays as it is.
    `reserved`: namespaces no environment may have. One written before prgen refused them
    is never removed or rewritten either: removing it would have Flux prune the namespace.
    """
    current: dict[tuple[str, int], list[CurrentEnvironment]] = {}
    for existing_env in inventory.environments:
        current.setdefault(existing_env.key, []).append(existing_env)
    wanted = {(env.repository.lower(), env.number) for env in desired}

    changes: list[Change] = []
    conflicts: list[Conflict] = list(blocked)
    deletes: dict[str, None] = {}
    writes: dict[str, bytes | None] = {}
    # Folders this commit leaves where they are or writes, and for whom: the index lists them.
    claimed: dict[str, str] = {
        folder: "unrecognised prgen files" for folder in inventory.unrecognised
    }
    # Who holds each folder in the fleet now: a folder one PR leaves in this commit is
    # another's only after that is committed, so no commit ever hands a name over.
    holders = {env.folder: env for env in inventory.environments}

    for conflict in blocked:
        _keep_in_place(current.pop((conflict.repository.lower(), conflict.number), []), claimed)
    for system in inventory.environments:
        if system.folder in reserved and system.key in current:
            conflicts.append(
                Conflict(
                    system.repository,
                    system.number,
                    f"{system.folder} is a reserved namespace: prgen never removes or rewrites "
                    "it, as Flux would prune the namespace itself with it; move it by hand",
                    ConflictKind.RESERVED,
                )
            )
            _keep_in_place(current.pop(system.key), claimed)
            wanted.discard(system.key)
    if not adopt:
        for key in list(current):
            foreign = _written_elsewhere(current[key], identities)
            if foreign is not None:
                conflicts.append(foreign)
                _keep_in_place(current.pop(key), claimed)
                wanted.discard(key)

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
        if key not in wanted:
            continue  # written by another config: a conflict above
        owner = claimed.get(env.namespace)
        holder = holders.get(env.namespace)
        if owner is not None:
            conflicts.append(
                Conflict(
                    env.repository, env.number, f"namespace {env.namespace} is taken by {owner}"
                )
            )
            _keep_in_place(current.pop(key, []), claimed)  # its current folder stays as it is
            continue
        if holder is not None and holder.key != key:
            conflicts.append(
                Conflict(
                    env.repository,
                    env.number,
                    f"namespace {env.namespace} is still held by {holder.repository}"
                    f"#{holder.number}, which this run removes or moves: it is given to "
                    f"{env.repository}#{env.number} only once that is committed (a later run)",
                    ConflictKind.HANDOVER,
                )
            )
            _keep_in_place(current.pop(key, []), claimed)
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
        existing = current.pop(key, [])
        old = next((c for c in existing if c.folder == env.namespace), None)
        elsewhere = [c for c in existing if c is not old]
        if elsewhere and hold_deletions is not None:
            # Moving would remove its old folder: the guard keeps it, and with it the
            # environment where it is, so no PR ever has two namespaces.
            for kept in elsewhere:
                claimed[kept.folder] = f"{kept.repository}#{kept.number}"
                changes.append(
                    Change(
                        Action.KEEP,
                        kept.repository,
                        kept.number,
                        kept.folder,
                        kept.head_sha,
                        f"{hold_deletions}: not moved to {env.namespace} this run",
                    )
                )
            if old is None:
                continue
            elsewhere = []
        claimed[env.namespace] = f"{env.repository}#{env.number}"
        for moved in elsewhere:
            deletes.update(dict.fromkeys(f"{moved.folder}/{name}" for name in moved.files))
            changes.append(
                Change(
                    Action.DELETE,
                    moved.repository,
                    moved.number,
                    moved.folder,
                    moved.head_sha,
                    f"duplicate of {env.namespace}" if old else f"moved to {env.namespace}",
                    env.namespace,
                )
            )
        env_writes = (
            {}
            if _rendered_alike(old, env)
            else _file_writes(env.namespace, old.files if old else {}, env.files)
        )
        writes.update(env_writes)
        if not existing:
            action, reason = Action.CREATE, "new pull request"
        elif old is None:
            action = Action.UPDATE
            reason = "moved from " + ", ".join(moved.folder for moved in elsewhere)
        elif env_writes:
            action = Action.UPDATE
            reason = (
                f"new head commit (was {old.head_sha[:7]})"
                if old.head_sha and old.head_sha != env.head_sha
                else TEMPLATE_CHANGED
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
        # The index is parsed only when an unrecognised folder asks what it lists.
        indexed = inventory.indexed if inventory.unrecognised else frozenset()
        environments = [f for f in claimed if f not in inventory.unrecognised or f in indexed]
        index = render_index([*environments, *inventory.top_level_handwritten()])
        if index != inventory.index:
            all_writes[KUSTOMIZATION_FILE] = index
    changes.sort(key=lambda c: (c.repository.lower(), c.number, c.action != Action.DELETE))
    return Plan(tuple(changes), tuple(conflicts), all_writes, tuple(desired))


def deletion_limit(current: int, max_deletions: int | None) -> int:
    """How many environments one run may remove. Default: half of them, but always 4."""
    if max_deletions is not None:
        return max_deletions
    return max(current // 2, 4)
