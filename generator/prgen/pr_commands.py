"""Commands written as PR comments (`/preview pause`, ...): parsing and what each one does to
an environment's recorded state. Pure: no GitHub, no git.

What a command changes lives in the fleet (see render.py): `Controls` in the environment's
HelmRelease annotations, and the PRs deleted on request in one marker file under prgen's
path. So every runner (CronJob, CI step, server) sees the same state, and the id of the last
command applied tells an old command from a new one after a restart or on a second runner.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

PREFIX = "/preview"
# A command's word is echoed in a reply: bounded, so a long first line never is.
ECHO_LIMIT = 40


class Verb(StrEnum):
    REDEPLOY = "redeploy"
    PAUSE = "pause"
    RESUME = "resume"
    DELETE = "delete"
    CREATE = "create"
    WAKE = "wake"
    SLEEP = "sleep"
    HELP = "help"
    UNKNOWN = "unknown"  # `/preview` followed by anything else: answered with the list


DESCRIPTIONS = {
    Verb.REDEPLOY: "Flux reconciles the environment and upgrades its release again",
    Verb.PAUSE: "keep the environment at its current head until `/preview resume`",
    Verb.RESUME: "follow the pull request's head again",
    Verb.DELETE: "remove the environment, and create none until `/preview create`",
    Verb.CREATE: "undo `/preview delete` or an expiry: the pull request gets an environment again",
    Verb.WAKE: "wake a sleeping environment (any command counts as activity against sleep "
    "and expiry)",
    Verb.SLEEP: "put the environment to sleep now, until a push or `/preview wake`",
    Verb.HELP: "list these commands",
}


@dataclass(frozen=True)
class Command:
    verb: Verb
    word: str = ""  # what followed /preview (lower case, bounded): shown for an unknown one


def parse(body: str | None) -> Command | None:
    """The command on the comment's first line, or None when it is no command.

    Case and the whitespace around it are ignored; `/preview` must be a word of its own.
    """
    lines = (body or "").strip().splitlines()
    if not lines:
        return None
    line = lines[0].strip().lower()
    if not line.startswith(PREFIX):
        return None
    rest = line[len(PREFIX) :]
    if rest and not rest[0].isspace():
        return None  # `/previewer`, `/preview-x`: another word
    word = " ".join(rest.split())
    # Echoed in a reply inside a code span: nothing that could end it or mention anyone.
    word = re.sub(r"[^a-z0-9 ._-]", "?", word)
    try:
        verb = Verb(word)
    except ValueError:
        verb = Verb.UNKNOWN
    if verb is Verb.UNKNOWN:
        return Command(verb, word[:ECHO_LIMIT])
    return Command(verb)


def help_text() -> str:
    lines = ["Commands for this pull request's preview environment (first line of a comment):", ""]
    lines += [f"- `{PREFIX} {verb}`: {text}" for verb, text in DESCRIPTIONS.items()]
    lines += [
        "",
        "Only people with write, maintain or admin permission on the repository may use them.",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class Controls:
    """What commands set on one environment; recorded in its HelmRelease annotations."""

    last_command: int = 0  # id of the last command comment applied: older ones never replay
    paused_at: str | None = None  # the head /preview pause keeps it at
    redeploy_at: str | None = None  # reconcile.fluxcd.io/requestedAt and forceAt
    # When the last command applied was written (its comment's created_at, as GitHub wrote
    # it): activity that puts off sleep and expiry (see lifecycle.py).
    last_command_at: str | None = None
    sleeping: bool = False  # values carry prgen: {sleeping: true} (see lifecycle.py)
    sleep_head: str | None = None  # the head /preview sleep put it to sleep at

    @property
    def empty(self) -> bool:
        return self == Controls()

    def encode(self) -> str | None:
        """A canonical text of these controls (None when empty): in the input hash and in
        the fleet's cache of what each HelmRelease says. Without lifecycle fields, the text
        prgen wrote before they existed, so nothing is re-rendered for them."""
        if self.empty:
            return None
        fields: list[Any] = [self.last_command, self.paused_at, self.redeploy_at]
        if self.last_command_at is not None or self.sleeping or self.sleep_head is not None:
            fields += [self.last_command_at, self.sleeping]
        if self.sleep_head is not None:
            fields.append(self.sleep_head)
        return json.dumps(fields)

    @classmethod
    def decode(cls, text: str | None) -> Controls:
        if text is None:
            return cls()
        last, paused, redeploy, *lifecycle = json.loads(text)
        # Written before lifecycle fields existed: none; before /preview sleep: two.
        at, sleeping, sleep_head = [*lifecycle, None, False, None][:3]
        return cls(int(last), paused, redeploy, at, bool(sleeping), sleep_head)


@dataclass(frozen=True)
class PullState:
    """One PR's state as commands see it, before or after a command."""

    controls: Controls
    deleted: int | None  # id of the /preview delete in force, None: not deleted on request
    environment_head: str | None  # the head its environment is at; None: it has none

    @property
    def last_command(self) -> int:
        return max(self.controls.last_command, self.deleted or 0)


class Ack(StrEnum):
    DONE = "done"  # 👍
    REFUSED = "refused"  # 😕 and one reply saying why


@dataclass(frozen=True)
class Outcome:
    ack: Ack
    reply: str | None = None  # posted once, with the reaction that settles the comment
    changed: str = ""  # what it changed, for the plan's reason and the commit message


REFUSAL = (
    "sorry, preview commands are accepted only from people with write, maintain or admin "
    "permission on this repository, so nothing was changed."
)


def apply(
    state: PullState, command: Command, comment_id: int, created_at: str
) -> tuple[PullState, Outcome]:
    """`command` (from someone allowed to give it) applied to `state`.

    `created_at`: the comment's creation time as GitHub wrote it; a redeploy records it, so
    the same comment always gives the same bytes.
    """
    verb = command.verb
    if verb is Verb.HELP:
        return state, Outcome(Ack.DONE, help_text())
    if verb is Verb.UNKNOWN:
        said = f"`{PREFIX} {command.word}`" if command.word else f"`{PREFIX}` alone"
        return state, Outcome(Ack.REFUSED, f"{said} is not a command I know.\n\n{help_text()}")
    controls = replace(
        state.controls,
        last_command=max(comment_id, state.last_command),
        last_command_at=created_at,
    )
    if verb is Verb.DELETE:
        gone = PullState(Controls(), comment_id, None)
        return gone, Outcome(Ack.DONE, changed="deleted by /preview delete")
    if verb is Verb.CREATE:
        return replace(state, controls=controls, deleted=None), Outcome(
            Ack.DONE, changed="created again by /preview create"
        )
    if state.environment_head is None:
        why = (
            "it was deleted by `/preview delete` (`/preview create` brings it back)"
            if state.deleted
            else "it has none yet"
        )
        return state, Outcome(
            Ack.REFUSED, f"`{PREFIX} {verb}` needs a preview environment, and {why}."
        )
    if verb is Verb.WAKE:
        awake = replace(controls, sleep_head=None)
        return replace(state, controls=awake), Outcome(Ack.DONE, changed=WOKEN_REASON)
    if verb is Verb.SLEEP:
        slept = replace(controls, sleep_head=state.environment_head)
        return replace(state, controls=slept), Outcome(Ack.DONE, changed=SLEEP_REASON)
    if verb is Verb.PAUSE:
        paused = replace(controls, paused_at=controls.paused_at or state.environment_head)
        return replace(state, controls=paused), Outcome(Ack.DONE, changed=PAUSED_REASON)
    if verb is Verb.RESUME:
        resumed = replace(controls, paused_at=None)
        return replace(state, controls=resumed), Outcome(
            Ack.DONE, changed="resumed by /preview resume"
        )
    assert verb is Verb.REDEPLOY
    again = replace(controls, redeploy_at=created_at)
    return replace(state, controls=again), Outcome(
        Ack.DONE, changed="redeploy by /preview redeploy"
    )


PAUSED_REASON = "paused by /preview pause"
WOKEN_REASON = "woken by /preview wake"
SLEEP_REASON = "asleep by /preview sleep"


@dataclass(frozen=True)
class CommandComment:
    """A new command comment on an open PR prgen handles, as read from GitHub."""

    repository: str
    number: int
    comment_id: int
    author: str
    created_at: str  # as GitHub wrote it: recorded by a redeploy, so stable
    command: Command
    allowed: bool  # its author may give commands (write, maintain or admin)


@dataclass(frozen=True)
class CommandsQuery:
    """What to read of one repository: its PRs prgen handles (number -> when it was opened)
    and, per PR, the id of the last command the fleet applied (that one and older are old)."""

    repository: str
    pulls: Mapping[int, datetime]
    handled: Mapping[int, int]


@dataclass(frozen=True)
class RepositoryCommands:
    """The new commands of one repository, oldest first; `error`: why they could not be read
    (then none is applied this run, and nothing is removed because of that)."""

    repository: str
    comments: tuple[CommandComment, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class Settled:
    """A command and what came of it: the reaction and reply it gets once the run is done."""

    comment: CommandComment
    outcome: Outcome
