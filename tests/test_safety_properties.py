"""Issue 5, item 2: random PR events, faults and syncs; the fleet stays safe and converges.

A hypothesis state machine drives two repositories of one FakeGitHub (fresh repositories
per example on a server shared by all examples) and one bare fleet repository per example
through random sequences of PR events (open, open from a fork, push, label, unlabel,
draft, ready, close, reopen) and sync runs, some with a fault at GitHub: a failing
listing, a rate limit, a failing page 2, a failing look-up of one PR, or a page that
shifts during pagination because a PR closes or opens meanwhile. Syncs go through the
Python API (`Syncer` with `GitHubSource(make_client(...))`, as `prgen sync` does); the
client asks for 2 PRs a page instead of 100 so that pagination happens with a handful of
PRs. After every sync:

- no environment of a PR that is open and eligible is removed;
- prgen calls a repository's listing complete exactly when no failure was injected into
  it, and the exit code says so; an incomplete repository's environments stay as they are;
- after a complete listing, the repository's environments are exactly its eligible PRs
  (at their head commits), except PRs that changed while the sync was running; in
  particular no environment outlives two consecutive complete listings in which its PR
  was not open and eligible;

and at the end of each example, with the faults gone, one sync makes the fleet exactly
the eligible set. The eligible set is computed from the fake's own state (open, labelled
`preview`, not a draft, not from a fork), the fleet from the bare repository's tree.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from prgen.config import parse_config
from prgen.github.client import make_client
from prgen.github.pulls import GitHubSource
from prgen.sync import Syncer
from prgen.sync_result import SyncResult
from prgen.testing.fake_github import FakeGitHub, PullState, RecordedRequest
from scenarios import (
    LABEL,
    Fleet,
    Key,
    Switch,
    eligible,
    is_eligible,
    pulls,
    read_fleet,
    repository_entry,
)
from stress import scale

from conftest import Cases, config_text

PER_PAGE = 2
EXAMPLES = scale(5, 500)
STEPS = scale(20, 30)
FORK = "mallory/fork"
FAILURES = ("listing-fails", "rate-limited", "page-2-fails", "lookup-fails")
LISTING_FAILURES = FAILURES[:3]
SHIFTS = ("pr-closes-while-paginating", "pr-opens-while-paginating")
RATE_LIMITED = {
    "status": 403,
    "body": {"message": "API rate limit exceeded for installation ID 4242."},
    "headers": {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1893456000"},
}


@dataclass
class Harness:
    """What all examples of one test share: the server, its client, a folder, the counter."""

    github: FakeGitHub
    source: GitHubSource
    tmp: Path
    cases: Cases
    switch: Switch = field(default_factory=Switch)
    examples: int = 0
    syncs: Counter[str] = field(default_factory=Counter)  # by fault, and whether it hit


@dataclass
class Shift:
    """A change to one repository's PRs that the server makes during pagination.

    `opens`: on page 2, a new PR opens; newest first, it lands on page 1 and pushes page 1's
    last PR onto page 2, where it is served twice. Otherwise a PR of the pages read already
    closes, and the first PR of the page being asked for slides back onto them: the listing
    misses it although it is open. It happens on the first page whose first PR has an
    environment (`with_environment`), else on the last page.
    """

    github: FakeGitHub
    repository: str
    opens: bool
    with_environment: set[Key]
    changed: list[Key] = field(default_factory=list)
    hidden: Key | None = None

    def __call__(self, request: RecordedRequest) -> None:
        if self.changed or request.path != f"/repos/{self.repository}/pulls":
            return
        if request.page < 2:
            return
        if self.opens:
            number = self.github.open_pull(
                self.repository, title="opened meanwhile", head_branch="late", labels=[LABEL]
            )
            self.changed.append((self.repository, number))
            return
        order = sorted(
            (p for p in pulls(self.github, self.repository) if p.state == "open"),
            key=lambda p: p.number,
            reverse=True,
        )
        read, rest = order[: (request.page - 1) * PER_PAGE], order[(request.page - 1) * PER_PAGE :]
        last_page = len(rest) <= PER_PAGE
        if not read or not rest:
            return
        if (self.repository, rest[0].number) not in self.with_environment and not last_page:
            return
        victim = next((p for p in read if is_eligible(p)), read[0])
        self.github.close_pull(self.repository, victim.number)
        self.changed.append((self.repository, victim.number))
        self.hidden = (self.repository, rest[0].number)


def pick(candidates: list[PullState], index: int) -> PullState:
    return candidates[index % len(candidates)]


class SafetyMachine(RuleBasedStateMachine):
    harness: ClassVar[Harness]

    def __init__(self) -> None:
        super().__init__()
        h = self.harness
        h.examples += 1
        h.cases.add()
        self.github = h.github
        self.repositories = (f"ex{h.examples}/shop", f"ex{h.examples}/cart")
        for name in self.repositories:
            self.github.add_repo(name)
        self.home = h.tmp / f"example-{h.examples}"
        self.bare = self.home / "fleet.git"
        subprocess.run(
            ["git", "init", "--quiet", "--bare", "--initial-branch=main", str(self.bare)],
            check=True,
        )
        text = config_text(
            self.github.base_url,
            str(self.bare),
            "".join(repository_entry(name) for name in self.repositories),
            extra="safety: {maxDeletions: 1000}\n",
        )
        config = parse_config(text, source="prgen.yaml", base_dir=self.home)
        self.syncer = Syncer(config, h.source, self.home / "work", sleep=lambda _: None)
        self.fleet = Fleet({}, {}, [])
        # Consecutive complete listings in which a PR was not open and eligible.
        self.misses: dict[Key, int] = {}
        self.branches = 0
        self.in_step = False

    # -- PR events -------------------------------------------------------------

    def _open(self, repository: str, labelled: bool, *, fork: bool = False) -> None:
        self.branches += 1
        self.github.open_pull(
            repository,
            title=f"change {self.branches}",
            head_branch=f"feature/{self.branches}",
            labels=[LABEL] if labelled else [],
            head_repo=FORK if fork else repository,
            author="mallory" if fork else "alice",
            author_association="CONTRIBUTOR" if fork else "MEMBER",
        )

    def _pulls(self, wanted: Callable[[PullState], bool]) -> list[PullState]:
        return [p for name in self.repositories for p in pulls(self.github, name) if wanted(p)]

    def _any_open(self) -> bool:
        return bool(self._pulls(lambda p: p.state == "open"))

    @initialize(shop=st.lists(st.booleans(), max_size=6), cart=st.lists(st.booleans(), max_size=6))
    def some_pull_requests(self, shop: list[bool], cart: list[bool]) -> None:
        for repository, labelled in ((self.repositories[0], shop), (self.repositories[1], cart)):
            for label in labelled:
                self._open(repository, label)

    @rule(repository=st.integers(0, 1), labelled=st.booleans())
    def open(self, repository: int, labelled: bool) -> None:
        self._open(self.repositories[repository], labelled)

    @rule(repository=st.integers(0, 1), labelled=st.booleans())
    def open_from_a_fork(self, repository: int, labelled: bool) -> None:
        self._open(self.repositories[repository], labelled, fork=True)

    @precondition(_any_open)
    @rule(index=st.integers(0, 1000))
    def push(self, index: int) -> None:
        pull = pick(self._pulls(lambda p: p.state == "open"), index)
        self.github.push(pull.repo, pull.number)

    @precondition(_any_open)
    @rule(index=st.integers(0, 1000))
    def label(self, index: int) -> None:
        pull = pick(self._pulls(lambda p: p.state == "open"), index)
        self.github.set_labels(pull.repo, pull.number, [*pull.labels, LABEL])

    @precondition(_any_open)
    @rule(index=st.integers(0, 1000))
    def unlabel(self, index: int) -> None:
        pull = pick(self._pulls(lambda p: p.state == "open"), index)
        self.github.set_labels(pull.repo, pull.number, [n for n in pull.labels if n != LABEL])

    @precondition(_any_open)
    @rule(index=st.integers(0, 1000))
    def draft(self, index: int) -> None:
        pull = pick(self._pulls(lambda p: p.state == "open"), index)
        self.github.set_draft(pull.repo, pull.number, True)

    @precondition(_any_open)
    @rule(index=st.integers(0, 1000))
    def ready(self, index: int) -> None:
        pull = pick(self._pulls(lambda p: p.state == "open"), index)
        self.github.set_draft(pull.repo, pull.number, False)

    @precondition(_any_open)
    @rule(index=st.integers(0, 1000), merged=st.booleans())
    def close(self, index: int, merged: bool) -> None:
        pull = pick(self._pulls(lambda p: p.state == "open"), index)
        self.github.close_pull(pull.repo, pull.number, merged=merged)

    @precondition(lambda self: bool(self._pulls(lambda p: p.state == "closed" and not p.merged)))
    @rule(index=st.integers(0, 1000))
    def reopen(self, index: int) -> None:
        pull = pick(self._pulls(lambda p: p.state == "closed" and not p.merged), index)
        self.github.reopen_pull(pull.repo, pull.number)

    # -- syncs -----------------------------------------------------------------

    @rule()
    def sync(self) -> None:
        self._sync(None, None)

    @rule(repository=st.integers(0, 1), fault=st.sampled_from(LISTING_FAILURES))
    def sync_with_a_failure(self, repository: int, fault: str) -> None:
        self._sync(self.repositories[repository], fault)

    def _closed_with_environment(self) -> list[str]:
        return sorted(
            name
            for name, number in self.fleet.environments
            if self.github.pull(name, number).state != "open"
        )

    @precondition(lambda self: bool(self._closed_with_environment()))
    @rule(index=st.integers(0, 1000))
    def sync_with_a_failed_lookup(self, index: int) -> None:
        """A PR with an environment closed: prgen looks it up on its own, and that fails."""
        candidates = self._closed_with_environment()
        self._sync(candidates[index % len(candidates)], "lookup-fails")

    def _most_open(self) -> tuple[int, str]:
        return max(
            (sum(p.state == "open" for p in pulls(self.github, name)), name)
            for name in self.repositories
        )

    @precondition(lambda self: self._most_open()[0] > PER_PAGE)
    @rule(fault=st.sampled_from(SHIFTS))
    def sync_with_a_shifting_page(self, fault: str) -> None:
        self._sync(self._most_open()[1], fault)

    def _inject(self, repository: str, fault: str) -> tuple[str, int | None, Shift | None]:
        """Set the fault up; returns the route and page a failure hits, and a shift."""
        listing = f"/repos/{repository}/pulls"
        github = self.github
        if fault == "listing-fails":
            github.inject("GET", re.escape(listing), status=502)
            return listing, 1, None
        if fault == "rate-limited":
            github.inject("GET", re.escape(listing), **RATE_LIMITED)
            return listing, 1, None
        if fault == "page-2-fails":
            github.inject("GET", re.escape(listing), status=500, page=2)
            return listing, 2, None
        if fault == "lookup-fails":
            github.inject("GET", re.escape(listing) + r"/\d+", status=503)
            return listing + "/", None, None
        shift = Shift(
            github,
            repository,
            opens=fault == "pr-opens-while-paginating",
            with_environment=set(self.fleet.environments),
        )
        self.harness.switch.current = shift
        return "", None, shift

    def _hit(self, route: str, page: int | None) -> bool:
        """Whether the sync sent a request that the injected failure answered."""
        for request in self.github.requests:
            if page is None and request.path.startswith(route):
                return True
            if page is not None and request.path == route and request.page == page:
                return True
        return False

    def _sync(self, repository: str | None, fault: str | None) -> None:
        self.in_step = True
        github = self.github
        before = self.fleet
        truth_before = eligible(github, self.repositories)
        github.clear_requests()
        failed: set[str] = set()
        route, page, shift = "", None, None
        try:
            if repository is not None and fault is not None:
                route, page, shift = self._inject(repository, fault)
            result = self.syncer.run()
            if repository is not None and fault in FAILURES and self._hit(route, page):
                failed.add(repository)
            hit = bool(failed or (shift and shift.changed))
            kind = f"{fault or 'no fault'}{'' if hit or not fault else ' (missed)'}"
            if shift and shift.hidden in self.fleet.environments:
                kind += " (hid a PR with an environment)"
            self.harness.syncs[kind] += 1
        finally:
            self.harness.switch.current = None
            github.clear_faults()
        self._check(before, truth_before, result, failed, shift.changed if shift else [])
        self.in_step = False

    def _check(
        self,
        before: Fleet,
        truth_before: dict[Key, str],
        result: SyncResult,
        failed: set[str],
        changed: list[Key],
    ) -> None:
        after = read_fleet(self.bare)
        assert not after.problems, after.problems
        truth = eligible(self.github, self.repositories)

        # Never removes the environment of a PR that is open and eligible.
        lost = sorted(k for k in before.environments if k in truth and k not in after.environments)
        assert not lost, f"environments of open, eligible PRs were removed: {lost}"

        # The listing is complete exactly when no failure hit it; the exit code says so.
        complete = {r.name: r.complete for r in result.repositories}
        assert complete == {name: name not in failed for name in self.repositories}, result
        assert int(result.exit_code) == (1 if failed else 0)

        for name in self.repositories:
            if name in failed:
                assert after.of(name) == before.of(name), f"{name}: a failed listing changed it"
                continue
            # A complete listing: exactly the eligible set, but for PRs changed meanwhile; and
            # when a page shifted, an eligible PR without an environment may have been
            # hidden from it (it is created next time; one with an environment is looked up).
            have = {k: sha for k, sha in after.of(name).items() if k not in changed}
            want = {k: sha for k, sha in truth.items() if k[0] == name and k not in changed}
            if any(k[0] == name for k in changed):
                want = {k: sha for k, sha in want.items() if k in have or k in before.environments}
            assert have == want, f"{name}: fleet {have} but eligible {want}"
            for pull in pulls(self.github, name):
                key = (name, pull.number)
                # Not open and eligible for this listing: neither when it began nor at its end.
                gone = key not in truth and key not in truth_before
                self.misses[key] = self.misses.get(key, 0) + 1 if gone else 0
                if self.misses[key] >= 2:
                    assert key not in after.environments, (
                        f"{key} is not open and eligible for two complete listings, "
                        "yet it has an environment"
                    )
        self.fleet = after

    def teardown(self) -> None:
        try:
            if not self.in_step:  # a failed step has reported already
                # Faults stop: one sync makes the fleet exactly the eligible set.
                result = self.syncer.run()
                assert int(result.exit_code) == 0, result
                assert all(r.complete for r in result.repositories)
                after = read_fleet(self.bare)
                assert not after.problems, after.problems
                assert after.environments == eligible(self.github, self.repositories)
        finally:
            repo: Any = getattr(self.syncer.fleet, "_repo", None)
            if repo is not None:  # GitPython keeps git cat-file processes per repository
                repo.close()
            shutil.rmtree(self.home, ignore_errors=True)


@pytest.mark.reliability("2. Property test: random PR events, faults and syncs")
def test_random_events_faults_and_syncs_keep_the_fleet_safe(
    github: FakeGitHub, tmp_path: Path, cases: Cases
) -> None:
    text = config_text(github.base_url, str(tmp_path / "unused"), repository_entry("a/b"))
    client = make_client(parse_config(text).github)
    client.per_page = PER_PAGE
    harness = Harness(github, GitHubSource(client), tmp_path, cases)
    github.on_request(harness.switch)
    SafetyMachine.harness = harness
    started = time.monotonic()
    run_state_machine_as_test(
        SafetyMachine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    seconds = time.monotonic() - started
    print(f"{cases.count} examples, {harness.syncs.total()} syncs in {seconds:.1f}s:")
    for kind, count in sorted(harness.syncs.items()):
        print(f"  {count:6} {kind}")
    assert cases.count >= EXAMPLES
