"""One sync run: list, filter, render, plan, commit, push; re-plan on a concurrent push."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from prgen import clock
from prgen.config import Config, RepositorySettings, Target
from prgen.errors import FleetError
from prgen.filters import Skipped, select
from prgen.fleet import ConcurrentUpdate, FleetRepo, Snapshot
from prgen.github.pulls import PullRequestSource
from prgen.inventory import (
    CurrentEnvironment,
    Identity,
    Inventory,
    StoredFiles,
    unedited,
    union_of,
)
from prgen.lifecycle import (
    EXPIRED_FILE,
    NOTICE_FILE,
    Expired,
    LifecycleRun,
    read_expired,
    read_notices,
    uses_activity,
)
from prgen.logs import phase
from prgen.model import Listing, PullRequest
from prgen.plan import Action, Change, Conflict, ConflictKind, Plan, deletion_limit, make_plan
from prgen.pr_commands import (
    PAUSED_REASON,
    REFUSAL,
    Ack,
    Command,
    CommandComment,
    CommandsQuery,
    Controls,
    Outcome,
    PullState,
    RepositoryCommands,
    Settled,
    Verb,
    apply,
)
from prgen.render import (
    DELETED_FILE,
    ENVIRONMENT_FILES,
    HELMRELEASE_FILE,
    RenderedEnvironment,
    ReservedNamespace,
    checked_namespace,
    config_digest,
    input_hash,
    read_deleted,
    render_deleted,
    render_environment,
    with_controls,
)
from prgen.repo_config import RepoConfigOutcome, RepoFileReader, effective_config
from prgen.standing import HeadFacts, HeadQuery, gate_reason, own_checks
from prgen.sync_result import (
    RepositoryOutcome,
    SyncResult,
    Waiting,
    combined_results,
    commit_message,
    unified_diff,
)
from prgen.targets import own_check_names

log = logging.getLogger(__name__)

PullKey = tuple[str, int]  # (repository in lower case, PR number)


class HeadReader(Protocol):
    def read_heads(self, heads: Sequence[HeadQuery]) -> Mapping[PullKey, HeadFacts | str]:
        """The facts of each head (by its PR's key); a str says why they could not be read."""
        ...


class CommandReader(Protocol):
    """Commands from PR comments (github.commands.GitHubCommands)."""

    def read_all(
        self, queries: Sequence[CommandsQuery], *, acknowledge: bool
    ) -> list[RepositoryCommands]:
        """Each query's new commands (in order), oldest first; `acknowledge`: react 👀."""
        ...

    def settle(self, settled: Sequence[Settled]) -> list[str]:
        """React (and reply once) to each command; what failed, as warnings."""
        ...


@dataclass
class CommandEffects:
    """What the new commands of a run make of the fleet's recorded state."""

    controls: dict[PullKey, Controls]  # per PR: what its environment must record
    deleted: dict[PullKey, int]  # PRs deleted on request -> the comment that asked
    marker: bytes | None  # the marker file of deleted PRs as the fleet holds it now
    changed: dict[PullKey, str] = field(default_factory=dict)  # what a command did, by PR
    settled: list[Settled] = field(default_factory=list)
    unread: list[str] = field(default_factory=list)  # repositories whose commands failed
    recreated: set[PullKey] = field(default_factory=set)  # /preview create: forget an expiry

    @property
    def marker_write(self) -> bytes | None:
        return render_deleted(self.deleted)


def _desired(
    repo: RepositorySettings,
    pr: PullRequest,
    digest: str,
    current: dict[tuple[tuple[str, int], str], CurrentEnvironment],
    controls: Controls | None = None,
) -> RenderedEnvironment:
    """The PR's environment: the one in its folder as it is when prgen rendered it from the
    same inputs and nobody edited it since (so an idle run renders and compares nothing),
    else freshly rendered.

    Raises ReservedNamespace, as rendering would.
    """
    namespace = checked_namespace(repo, pr)
    inputs = input_hash(digest, pr, controls)
    old = current.get(((repo.name.lower(), pr.number), namespace))
    if (
        old is not None
        and old.inputs == inputs
        and unedited(old.files)
        and old.files.keys() == ENVIRONMENT_FILES
    ):
        return RenderedEnvironment(
            repo.name,
            pr.number,
            pr.head_sha,
            namespace,
            old.files,
            inputs,
            repo.identity,
            (controls or Controls()).encode(),
        )
    return render_environment(repo, pr, digest, namespace, controls)


def _as_it_is(
    env: CurrentEnvironment, repo: RepositorySettings, controls: Controls | None = None
) -> RenderedEnvironment:
    """An environment held by its deploy gate or paused: its folder's files as they are,
    but for what commands record in its HelmRelease when that changed."""
    files, inputs, recorded = env.files, env.inputs or "", env.controls
    if controls is not None and controls != Controls.decode(env.controls):
        files, inputs = with_controls(env.files, controls, inputs)
        recorded = controls.encode()
    return RenderedEnvironment(
        repo.name,
        env.number,
        env.head_sha or "",
        env.folder,
        files,
        inputs,
        env.config_identity or repo.identity,
        recorded,
    )


def _held(change: Change, holds: Mapping[PullKey, tuple[str, str]]) -> Change:
    """A KEEP of an environment its gate holds or that is paused, said as the HOLD it is; an
    UPDATE of one too (it can only be what a command records in its HelmRelease)."""
    hold = holds.get((change.repository.lower(), change.number))
    if hold is None:
        return change
    reason, waiting = hold
    if change.action in (Action.KEEP, Action.UPDATE):
        waits = f" (head {waiting[:7]} waits)" if waiting != change.head_sha else ""
        return replace(change, action=Action.HOLD, reason=f"{reason}{waits}")
    return change


def _said(change: Change, changed: Mapping[PullKey, str]) -> Change:
    """An update a command made, with the command as its reason."""
    reason = changed.get((change.repository.lower(), change.number))
    if reason is None or change.action is not Action.UPDATE:
        return change
    return replace(change, reason=reason)


DELETED_REASON = "deleted by /preview delete (/preview create brings it back)"


def _with_commands(plan: Plan, effects: CommandEffects) -> Plan:
    """The plan with the commands' reasons on what they changed, and the marker file of PRs
    deleted on request written where it changed."""
    changes = tuple(_said(change, effects.changed) for change in plan.changes)
    wanted = effects.marker_write
    if wanted == effects.marker:
        return replace(plan, changes=changes)
    return replace(plan, changes=changes, writes={**plan.writes, DELETED_FILE: wanted})


def _command_lines(effects: CommandEffects) -> list[str]:
    lines = [
        f"{s.comment.repository}#{s.comment.number}: {s.outcome.changed} "
        f"(comment {s.comment.comment_id} by {s.comment.author})"
        for s in effects.settled
        if s.outcome.changed
    ]
    asked = {(s.comment.repository.lower(), s.comment.number) for s in effects.settled}
    lines.extend(
        f"{repository}#{number}: closed, no longer remembered as deleted on request"
        for repository, number in sorted(
            read_deleted(effects.marker).keys() - effects.deleted.keys()
        )
        if (repository, number) not in asked
    )
    return lines


def _written_identities(plan: Plan) -> dict[str, Identity]:
    """What each HelmRelease this commit writes says about itself, for the fleet's cache
    (the same as reading it back would give: see inventory.identity_of)."""
    return {
        f"{env.namespace}/{HELMRELEASE_FILE}": Identity(
            env.repository,
            env.number,
            env.head_sha,
            env.config_identity or None,
            env.inputs,
            env.controls,
        )
        for env in plan.rendered
        if f"{env.namespace}/{HELMRELEASE_FILE}" in plan.writes
    }


class Syncer:
    def __init__(
        self,
        config: Config,
        source: PullRequestSource,
        workdir: Path,
        *,
        sleep: Callable[[float], None] = time.sleep,
        allow_mass_delete: bool = False,
        adopt: bool = False,
        heads: HeadReader | None = None,
        scope: Collection[str] | None = None,
        commands: CommandReader | None = None,
        repo_files: RepoFileReader | None = None,
    ) -> None:
        self.commands = commands  # commands from PR comments (None: not read)
        self.repo_files = repo_files  # each repository's own `.prgen.yaml` (None: not read)
        self.allow_mass_delete = allow_mass_delete
        self.adopt = adopt
        # Every configured repository: an environment of one outside the scope is still
        # "configured" (kept quietly), never "no longer in prgen.yaml".
        self.configured = frozenset(repo.name.lower() for repo in config.repositories)
        # What each target's folder is configured for (`targets:`; else one, named "").
        self.configured_in = {
            target.name: frozenset(repo.name.lower() for repo in target.repositories)
            for target in config.fleet_targets
        }
        # A scoped run (`prgen serve` after a webhook) lists only these repositories: every
        # environment of the others is kept exactly as it is, as for a failed listing.
        self.scope = None if scope is None else frozenset(name.lower() for name in scope)
        if self.scope is not None:
            in_scope = self.scope
            config = replace(
                config,
                repositories=tuple(r for r in config.repositories if r.name.lower() in in_scope),
                targets=tuple(
                    replace(
                        target,
                        repositories=tuple(
                            r for r in target.repositories if r.name.lower() in in_scope
                        ),
                    )
                    for target in config.targets
                ),
            )
        self.config = config
        # What prgen.yaml says; `config` is that with this run's repository files merged in.
        self.central = config
        self.source = source
        self.heads = heads  # reads reviews and checks for the deploy gates (deployWhen)
        self.fleet = FleetRepo(config.fleet, workdir)
        self._sleep = sleep

    def _list(self) -> list[Listing]:
        """Every repository's open PRs. Runs beside the fleet read (it needs nothing of it):
        the PRs with an environment that a listing misses are read in _confirm_removals."""
        with phase("list pull requests") as counts:
            listings = self.source.list_all(
                [repo.name for repo in self.config.repositories], lambda _: ()
            )
            counts["repositories"] = len(listings)
            counts["failed"] = sum(not listing.complete for listing in listings)
            counts["pullRequests"] = sum(len(listing.pull_requests) for listing in listings)
        return listings

    def _read_and_list(self, attempt: int) -> tuple[dict[str, Snapshot], list[Listing]]:
        """The fleet read and the listing side by side: one waits on git, the other on GitHub.
        The fleet's snapshot of each target's folder, by its path, all of one commit."""
        with ThreadPoolExecutor(1, thread_name_prefix="prgen-list") as pool:
            listing = pool.submit(self._list)
            with phase("read the fleet", attempt=attempt) as counts:
                snapshots = self.fleet.refresh_all()
                counts["environments"] = sum(
                    len(s.inventory.environments) for s in snapshots.values()
                )
            return snapshots, listing.result()

    def _apply_repo_configs(
        self, listings: list[Listing]
    ) -> tuple[list[Listing], list[RepoConfigOutcome], dict[str, tuple[PullRequest, ...]]]:
        """This run's config: each completely listed repository's own file merged in. A
        repository whose file is broken or unreadable counts as not listed: its environments
        stay exactly as they are (nothing created, updated or removed) until the file is fixed."""
        assert self.repo_files is not None
        listed = [listing.repository for listing in listings if listing.complete]
        self.config, outcomes = effective_config(self.central, self.repo_files, listed)
        failed = {outcome.repository.lower(): outcome for outcome in outcomes if outcome.failed}
        pulls: dict[str, tuple[PullRequest, ...]] = {}
        kept = []
        for listing in listings:
            outcome = failed.get(listing.repository.lower())
            if outcome is None:
                kept.append(listing)
                continue
            pulls[listing.repository] = listing.pull_requests
            kept.append(Listing(listing.repository, (), outcome.problem))
        return kept, outcomes, pulls

    def _confirm_removals(self, inventory: Inventory, listings: list[Listing]) -> list[Listing]:
        """Each PR with an environment that the listing misses or shows open but no longer
        eligible, read again on its own: only that second answer may remove it.

        Missing: a PR closing mid-pagination shifts later PRs onto pages already read.
        Repeated until nothing new is in doubt: a confirmed PR that is eligible after all
        can push another one past `maxEnvironments`.
        """
        confirmed = []
        for repo, listing in zip(self.config.repositories, listings, strict=True):
            have = inventory.numbers_of(repo.name)
            missing = set(have) - {pr.number for pr in listing.pull_requests}
            listing = self.source.confirm(listing, missing)
            read: set[int] = set(missing)
            while listing.complete:
                doubtful = {s.number for s in select(repo, listing.pull_requests)[1]} & have
                if not doubtful - read:
                    break
                listing = self.source.confirm(listing, doubtful - read)
                read |= doubtful
            confirmed.append(listing)
        return confirmed

    def _check_gates(
        self,
        inventory: Inventory,
        listings: list[Listing],
        expired: Mapping[PullKey, Expired] | None = None,
    ) -> tuple[dict[PullKey, str], set[PullKey]]:
        """Why each gated PR's head may not be deployed yet, and which could not be read.

        Only PRs of a repository with `deployWhen` whose head is not the one their environment
        holds are asked about: a head that was deployed passed its gate then. Facts that
        cannot be read hold the PR as a failing gate would: nothing moves, nothing goes.
        """
        deployed = {env.key: env.head_sha for env in inventory.environments}
        own = own_check_names(self.config)  # the names prgen reports under, in every target
        wanted: list[tuple[RepositorySettings, PullRequest]] = []
        for repo, listing in zip(self.config.repositories, listings, strict=True):
            if repo.deploy_when is None:
                continue
            for pr in select(repo, listing.pull_requests)[0]:
                key = (repo.name.lower(), pr.number)
                gone = (expired or {}).get(key)
                if gone is not None and gone.head_sha == pr.head_sha and key not in deployed:
                    continue  # expired at this head: no environment to gate
                if deployed.get(key) != pr.head_sha:
                    wanted.append((repo, pr))
        if not wanted:
            return {}, set()
        heads = [
            HeadQuery(
                r.name,
                pr.number,
                pr.head_sha,
                pr.requested_reviewers,
                own.get(r.name.lower())
                or own_checks(r.report.commit_status_context, r.report.check_run),
            )
            for r, pr in wanted
        ]
        facts: Mapping[PullKey, HeadFacts | str] = (
            self.heads.read_heads(heads) if self.heads is not None else {}
        )
        reasons: dict[PullKey, str] = {}
        unread: set[PullKey] = set()
        for repo, pr in wanted:
            key = (repo.name.lower(), pr.number)
            found = facts.get(key, "no reader of GitHub's checks in this run")
            gate = repo.deploy_when
            assert gate is not None
            if isinstance(found, str) or found.head_sha != pr.head_sha:
                unread.add(key)
                reason: str | None = (
                    f"checks could not be read ({found if isinstance(found, str) else 'another head'})"
                )
            else:
                reason = gate_reason(found, gate.checks, gate.approvals, gate.check_entries)
            if reason is not None:
                reasons[key] = reason
        return reasons, unread

    def _plan(
        self,
        inventory: Inventory,
        listings: list[Listing],
        gates: Mapping[PullKey, str] | None = None,
        unread: set[PullKey] | None = None,
        effects: CommandEffects | None = None,
        life: LifecycleRun | None = None,
        target: Target | None = None,
    ) -> tuple[Plan, SyncResult]:
        """The plan of one target's folder (by default the first, fleet.path's)."""
        target = target or self.config.fleet_targets[0]
        listing_of = {
            repo.name.lower(): listing
            for repo, listing in zip(self.config.repositories, listings, strict=True)
        }
        desired: list[RenderedEnvironment] = []
        refused: list[Conflict] = []
        skipped: list[Skipped] = []
        outcomes = []
        holds: dict[PullKey, tuple[str, str]] = {}  # -> (reason, the head that waits)
        waits: list[Waiting] = []
        current = {(env.key, env.folder): env for env in inventory.environments}
        by_pull = {env.key: env for env in inventory.environments}
        for repo in target.repositories:
            listing = listing_of[repo.name.lower()]
            # A PR deleted on request has no environment and takes no place under
            # maxEnvironments: it is set aside before the filters choose.
            deleted = {n for r, n in (effects.deleted if effects else {}) if r == repo.name.lower()}
            pulls = [pr for pr in listing.pull_requests if pr.number not in deleted]
            skipped.extend(
                Skipped(repo.name, pr.number, DELETED_REASON)
                for pr in listing.pull_requests
                if pr.number in deleted
            )
            if life is not None:  # so is one that expired at its head (lifecycle.py)
                pulls, gone = life.set_aside(repo, pulls, inventory.numbers_of(repo.name))
                skipped.extend(gone)
            eligible, left_out = select(repo, pulls)
            digest = config_digest(repo) if eligible else ""
            for pr in eligible:
                key = (repo.name.lower(), pr.number)
                controls = effects.controls.get(key) if effects else None
                old = by_pull.get(key)
                if controls is not None and controls.paused_at and old is not None:
                    desired.append(_as_it_is(old, repo, controls))  # never moved, never removed
                    holds[key] = (PAUSED_REASON, pr.head_sha)
                    continue
                waiting = (gates or {}).get(key)
                if waiting is not None:
                    if key not in (unread or set()):
                        waits.append(Waiting(repo.name, pr.number, pr.head_sha, waiting))
                    if old is None:
                        skipped.append(Skipped(repo.name, pr.number, f"deploy gate: {waiting}"))
                    else:  # stays exactly as it is, at the last head that passed
                        desired.append(_as_it_is(old, repo, controls))
                        holds[key] = (waiting, pr.head_sha)
                    continue
                if life is not None:  # expiry and sleep (lifecycle.py)
                    where = (old.folder, old.head_sha) if old is not None else None
                    decision = life.judge(repo, pr, where, controls)
                    if decision.gone is not None:
                        skipped.append(Skipped(repo.name, pr.number, decision.gone))
                    if decision.gone is not None or decision.expired is not None:
                        continue  # not desired: an expiry is removed by the plan, guarded
                    controls = decision.controls
                try:
                    desired.append(_desired(repo, pr, digest, current, controls))
                except ReservedNamespace as exc:
                    refused.append(Conflict(repo.name, pr.number, str(exc), ConflictKind.RESERVED))
            for left in left_out:
                # A paused environment stays while its PR is open, eligible or not.
                key = (repo.name.lower(), left.number)
                controls = effects.controls.get(key) if effects else None
                old = by_pull.get(key)
                if controls is not None and controls.paused_at and old is not None:
                    desired.append(_as_it_is(old, repo, controls))
                    holds[key] = (PAUSED_REASON, old.head_sha or "")
            skipped.extend(left_out)
            outcomes.append(
                RepositoryOutcome(
                    repo.name,
                    listing.complete,
                    listing.error,
                    len(listing.pull_requests),
                    len(eligible),
                    repo.identity,
                )
            )
        complete = {
            repo.name.lower()
            for repo in target.repositories
            if listing_of[repo.name.lower()].complete
        }
        configured = self.configured_in[target.name]
        identities = {repo.name.lower(): repo.identity for repo in target.repositories}
        path = target.path

        def plan_with(held: str | None) -> Plan:
            return make_plan(
                desired,
                inventory,
                complete,
                hold_deletions=held,
                configured=configured,
                identities=identities,
                adopt=self.adopt,
                blocked=refused,
                reserved=self.config.reserved_namespaces,
            )

        plan = plan_with(None)
        held = self._deletions_to_hold(plan, len(inventory.environments))
        if held and target.name:
            held = f"target {target.name}: {held}"
        if held:
            plan = plan_with(held)
        if holds:
            plan = replace(plan, changes=tuple(_held(change, holds) for change in plan.changes))
        if effects is not None:
            plan = _with_commands(plan, effects)
        if life is not None:
            plan = life.finish(plan, complete)
        result = SyncResult(
            self.fleet.display_url,
            path,
            outcomes,
            plan,
            skipped,
            listings=listings,
            waiting=waits,
        )
        if held:
            result.held_deletions = held
            result.warnings.append(held + "; run with --allow-mass-delete if this is intended")
        if result.written_by_another_config:
            result.warnings.append(
                f"{len(result.written_by_another_config)} environment(s) under "
                f"{path} were written by a prgen configured differently: "
                "kept as they are (see the conflicts). If you changed prgen.yaml's filters, "
                "namespace or fleet.path, run prgen sync --adopt once to take them over; if "
                "another prgen writes this folder, make the two configs agree"
            )
        unconfigured = sorted(
            {e.repository for e in inventory.environments if e.repository.lower() not in configured}
        )
        lists = f"target {target.name}" if target.name else "prgen.yaml"
        result.warnings.extend(
            f"environments of {name} are kept, but {lists} no longer lists {name}: add it back, "
            f"or remove its folders under {path} by hand"
            for name in unconfigured
        )
        if inventory.index_is_handwritten:
            result.warnings.append(
                f"{path}/kustomization.yaml is hand-written: prgen leaves it alone, "
                "so list the environment folders in it yourself"
            )
        result.warnings.extend(
            f"{path}/{folder} holds prgen files without a readable HelmRelease: left alone"
            for folder in inventory.unrecognised
        )
        return plan, result

    def _plan_targets(
        self,
        snapshots: Mapping[str, Snapshot],
        listings: list[Listing],
        gates: Mapping[PullKey, str],
        unread: set[PullKey],
        effects: CommandEffects,
        markers: Mapping[str, bytes | None],
        lives: Mapping[str, LifecycleRun],
    ) -> tuple[dict[str, Plan], Plan, SyncResult]:
        """Each target's plan (by its folder), against its own inventory and guard; and the
        plan and result of them all, each change naming its target. Without `targets:`,
        the one folder's plan is both."""
        targets = self.config.fleet_targets
        if not self.config.targets:
            path = targets[0].path
            plan, result = self._plan(
                snapshots[path].inventory, listings, gates, unread, effects, lives[path]
            )
            return {path: plan}, plan, result
        plans: dict[str, Plan] = {}
        results: list[SyncResult] = []
        for target in targets:
            own = replace(effects, marker=markers[target.path])
            plan, result = self._plan(
                snapshots[target.path].inventory,
                listings,
                gates,
                unread,
                own,
                lives[target.path],
                target,
            )
            plans[target.path] = replace(
                plan,
                changes=tuple(replace(c, target=target.name) for c in plan.changes),
                conflicts=tuple(replace(c, target=target.name) for c in plan.conflicts),
            )
            results.append(result)
        return plans, *combined_results(targets, plans, results)

    def _read_commands(
        self,
        inventory: Inventory,
        listings: list[Listing],
        markers: Sequence[bytes | None],
        dry_run: bool,
        expired: Mapping[PullKey, Expired] | None = None,
    ) -> CommandEffects:
        """The new commands of each completely listed repository, applied to the state the
        fleet records. A repository whose comments could not be read gets none applied (a
        warning): its environments stay as the fleet says, none goes because of it.

        `markers`: each target's file of PRs deleted on request (a PR deleted in one is
        deleted in all); the effects hold the first's.
        """
        deleted: dict[PullKey, int] = {}
        for marker in reversed(markers):
            deleted.update(read_deleted(marker))
        controls: dict[PullKey, Controls] = {}
        heads: dict[PullKey, str | None] = {}
        for env in inventory.environments:
            recorded = Controls.decode(env.controls)
            if recorded.last_command >= controls.get(env.key, Controls()).last_command:
                controls[env.key] = recorded
            heads[env.key] = env.head_sha
        effects = CommandEffects(controls, dict(deleted), markers[0])
        queries: list[CommandsQuery] = []
        for repo, listing in zip(self.config.repositories, listings, strict=True):
            if not listing.complete:
                continue
            name = repo.name.lower()
            open_now = {pr.number: pr for pr in listing.pull_requests}
            for key in [k for k in deleted if k[0] == name and k[1] not in open_now]:
                del effects.deleted[key]  # its PR closed: nothing left to remember
            asked = {pr.number for pr in select(repo, listing.pull_requests)[0]}
            asked |= {n for n in inventory.numbers_of(repo.name) if n in open_now}
            asked |= {n for (r, n) in deleted if r == name and n in open_now}
            if self.commands is None or not asked:
                continue
            handled = {
                n: max(
                    PullState(
                        controls.get((name, n), Controls()), deleted.get((name, n)), None
                    ).last_command,
                    (expired or {}).get((name, n), Expired("", 0)).last_command,
                )
                for n in asked
            }
            pulls = {n: open_now[n].created_at for n in sorted(asked)}
            queries.append(CommandsQuery(repo.name, pulls, handled))
        if self.commands is None or not queries:
            return effects
        for read in self.commands.read_all(queries, acknowledge=not dry_run):
            if read.error is not None:
                effects.unread.append(f"{read.repository}: {read.error}")
                continue
            for comment in read.comments:
                self._apply_command(effects, heads, comment, expired or {})
        return effects

    @staticmethod
    def _apply_command(
        effects: CommandEffects,
        heads: dict[PullKey, str | None],
        comment: CommandComment,
        expired: Collection[PullKey] = (),
    ) -> None:
        key = (comment.repository.lower(), comment.number)
        if not comment.allowed:
            effects.settled.append(Settled(comment, Outcome(Ack.REFUSED, REFUSAL)))
            return
        before = PullState(
            effects.controls.get(key, Controls()),
            effects.deleted.get(key),
            None if key in effects.deleted else heads.get(key),
        )
        command = comment.command
        revived = (
            key in expired
            and before.environment_head is None
            and before.deleted is None
            and command.verb in (Verb.WAKE, Verb.REDEPLOY)
        )
        if revived:  # what asks for an expired environment brings it back, as create does
            command = Command(Verb.CREATE)
        after, outcome = apply(before, command, comment.comment_id, comment.created_at)
        if revived:
            outcome = replace(
                outcome,
                changed=f"created again by /preview {comment.command.verb} (it had expired)",
            )
            command = comment.command
        effects.controls[key] = after.controls
        if after.deleted is None:
            effects.deleted.pop(key, None)
        else:
            effects.deleted[key] = after.deleted
            heads[key] = None
        if outcome.changed:
            effects.changed[key] = outcome.changed
        if (revived or command.verb is Verb.CREATE) and outcome.ack is Ack.DONE:
            effects.recreated.add(key)
        effects.settled.append(Settled(comment, outcome))

    def _carried(
        self, inventory: Inventory, listings: list[Listing], target: Target
    ) -> Mapping[str, datetime | None]:
        """Since when the target's folder carries each head that expiry or sleep may judge:
        the environments of repositories with a lifecycle whose open PR is still at that head."""
        heads: dict[str, str] = {}
        by_pull = {env.key: env for env in inventory.environments}
        listing_of = {listing.repository.lower(): listing for listing in listings}
        for repo in target.repositories:
            listing = listing_of.get(repo.name.lower())
            if listing is None or not uses_activity(repo):
                continue
            for pr in listing.pull_requests:
                env = by_pull.get((repo.name.lower(), pr.number))
                if env is not None and env.head_sha == pr.head_sha:
                    heads[env.folder] = pr.head_sha
        return self.fleet.carried_since_each(heads, target.path)

    def _deletions_to_hold(self, plan: Plan, current: int) -> str | None:
        deleting = len(plan.of(Action.DELETE))
        limit = deletion_limit(current, self.config.max_deletions)
        if self.allow_mass_delete or deleting <= limit:
            return None
        moves = sum(1 for change in plan.of(Action.DELETE) if change.replaced_by)
        return (
            f"mass-deletion guard: this run would remove {deleting} of {current} environments "
            f"(limit {limit}), so it removes none"
            + (
                f" and moves none ({moves} of the removals are old folders of moves)"
                if moves
                else ""
            )
        )

    def run(self, *, dry_run: bool = False) -> SyncResult:
        with self.fleet.locked():
            try:
                result = self._in_scope(self._run(dry_run))
            finally:
                self.fleet.save_cache()  # what this run rendered, whether it committed or not
        if result.commands and not dry_run and self.commands is not None:
            # Done means pushed: only now 👍 (or 😕), and one reply where one is due.
            with phase("answer PR commands", commands=len(result.commands)):
                result.warnings.extend(self.commands.settle(result.commands))
        return result

    def _in_scope(self, result: SyncResult) -> SyncResult:
        """A scoped run's result says nothing of the repositories it did not look at (their
        environments were kept as they are, which is no news)."""
        if self.scope is None:
            return result
        plan = result.plan
        result.plan = replace(
            plan,
            changes=tuple(c for c in plan.changes if c.repository.lower() in self.scope),
            conflicts=tuple(c for c in plan.conflicts if c.repository.lower() in self.scope),
        )
        return result

    def _run(self, dry_run: bool) -> SyncResult:
        retries = self.config.fleet.push_retries
        for attempt in range(1, retries + 2):
            snapshots, listings = self._read_and_list(attempt)
            repo_configs: list[RepoConfigOutcome] = []
            config_pulls: dict[str, tuple[PullRequest, ...]] = {}
            if self.repo_files is not None and any(
                repo.repo_config for repo in self.central.repositories
            ):
                with phase("read repository configs") as counts:
                    listings, repo_configs, config_pulls = self._apply_repo_configs(listings)
                    counts["failed"] = len(config_pulls)
            targets = self.config.fleet_targets
            # Confirmations, gates and commands are asked once per PR, of every target's.
            inventory = union_of([snapshots[target.path].inventory for target in targets])
            with phase("confirm removals"):
                listings = self._confirm_removals(inventory, listings)
            # Each target's record of expired PRs; gates and commands ask once per PR, so
            # they see a PR expired where any target says so.
            expired_markers = {
                path: snapshot.files.get(EXPIRED_FILE) if EXPIRED_FILE in snapshot.files else None
                for path, snapshot in snapshots.items()
            }
            expired_of = {path: read_expired(marker) for path, marker in expired_markers.items()}
            expired: dict[PullKey, Expired] = {}
            for target in reversed(targets):
                expired.update(expired_of[target.path])
            gates: dict[PullKey, str] = {}
            unread: set[PullKey] = set()
            if any(repo.deploy_when is not None for repo in self.config.repositories):
                with phase("check deploy gates") as counts:
                    # An expired head was deployed, so it passed its gate: none is asked.
                    gates, unread = self._check_gates(inventory, listings, expired)
                    counts["waiting"] = len(gates)
            with phase("read PR commands") as counts:
                markers = {
                    path: snapshot.files.get(DELETED_FILE)
                    if DELETED_FILE in snapshot.files
                    else None
                    for path, snapshot in snapshots.items()
                }
                effects = self._read_commands(
                    inventory,
                    listings,
                    [markers[target.path] for target in targets],
                    dry_run,
                    expired,
                )
                counts["commands"] = len(effects.settled)
                counts["failed"] = len(effects.unread)
            # Always: an environment asleep under a config that no longer says so wakes.
            lives: dict[str, LifecycleRun] = {}
            now = clock.now()
            active = any(uses_activity(repo) for repo in self.config.repositories)
            reading: AbstractContextManager[dict[str, Any]] = (
                phase("read activity") if active else nullcontext({})
            )
            with reading as counts:
                for target in targets:
                    carried: Mapping[str, datetime | None] = {}
                    if any(uses_activity(repo) for repo in target.repositories):
                        carried = self._carried(snapshots[target.path].inventory, listings, target)
                        counts["environments"] = counts.get("environments", 0) + len(carried)
                    files = snapshots[target.path].files
                    notices = files.get(NOTICE_FILE) if NOTICE_FILE in files else None
                    lives[target.path] = LifecycleRun(
                        now,
                        carried,
                        expired_of[target.path],
                        expired_markers[target.path],
                        effects.recreated,
                        read_notices(notices),
                        notices,
                    )
            with phase("render and plan") as counts:
                plans, plan, result = self._plan_targets(
                    snapshots, listings, gates, unread, effects, markers, lives
                )
                result.commands = effects.settled
                result.unread_commands = len(effects.unread)
                result.repo_configs, result.repo_config_pulls = repo_configs, config_pulls
                result.warnings.extend(
                    f"commands from PR comments of {error}; none applied this run, "
                    "its environments are kept as the fleet records them"
                    for error in effects.unread
                )
                result.unread_gates = len(unread)
                if unread:
                    result.warnings.append(
                        f"the checks of {len(unread)} gated PR(s) could not be read: "
                        "their environments are kept as they are"
                    )
                fresh = [env for env in plan.rendered if not isinstance(env.files, StoredFiles)]
                counts["rendered"] = len(fresh)
                counts["unchanged"] = len(plan.rendered) - len(fresh)
                counts["filesToWrite"] = len(plan.writes)
            result.attempts = attempt
            # Each folder rendered afresh, as a tree id: the next run keeps it unread
            # if it is still exactly that (whether this run writes it or finds it equal).
            self.fleet.remember_renderings(env.files for env in fresh)
            if dry_run:
                result.dry_run = True
                result.diff = "".join(
                    unified_diff(target.path, snapshots[target.path], plans[target.path])
                    for target in targets
                )
                return result
            if not plan.has_changes:
                return result
            try:
                with phase("commit and push", files=len(plan.writes)):
                    result.commit = self.fleet.commit_and_push_targets(
                        {path: snapshots[path] for path in plans},
                        {path: each.writes for path, each in plans.items()},
                        commit_message(plan, _command_lines(effects)),
                        {path: _written_identities(each) for path, each in plans.items()},
                    )
                return result
            except ConcurrentUpdate:
                if attempt > retries:
                    break
                delay = min(8.0, 0.25 * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311
                log.info("the fleet branch moved during the sync: re-planning in %.1fs", delay)
                self._sleep(delay)
        raise FleetError(f"gave up after {retries + 1} attempts: the fleet branch kept moving")
