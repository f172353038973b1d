"""Issue 5, items 4 and 5: prgen processes running at once, and prgen killed with SIGKILL.

Every run here is a real `prgen sync` process (the installed console script) talking HTTP to
the fake GitHub in the test process and real git to a bare fleet repository on disk. The
processes are told apart by their GitHub token, so the fake's request log says which process
listed the PRs when. The fleet remote is checked commit by commit (processes.FleetHistory):
every commit that ever reached it must be whole, and hold each PR at most once.

4. Concurrent writers: four processes, each with its own work directory, sync at once while
   another writer commits unrelated files in a loop; two processes that share one work
   directory take turns; retries after a concurrent push stop at fleet.pushRetries and
   wait a jittered time.
5. Crashes: prgen is killed (SIGKILL, with its git children) at random moments, inside one
   of its git commands, while it lists the PRs, while it clones, and while its push is in
   flight (the fleet remote is served by `git daemon`, so a push may still land after its
   client died); after every kill the remote holds no partial change and the next run from
   the same work directory converges. Separately, each kind of leftover a killed run can
   leave in the work directory is made on purpose and the next run must recover from it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import re
import shutil
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from prgen.cli import main
from prgen.fleet import INVENTORY_CACHE, WORKDIR_MARK
from prgen.testing.fake_github import FakeGitHub, RecordedRequest
from processes import (
    MANAGED,
    PRGEN_AUTHOR,
    FleetHistory,
    GitDaemon,
    PrgenProcess,
    heads,
    start_sync,
    wanted_environments,
    with_push_retries,
)
from stress import scale

from conftest import SHOP, Cases, config_text, git
from manifest_validation import validate_documents

REPO = "acme/shop"
REPOSITORIES = SHOP + "    excludeLabels: [no-preview]\n"
LISTING = f"/repos/{REPO}/pulls"
DEFAULT_PUSH_RETRIES = 5
RETRY_DELAY = re.compile(r"re-planning in (\d+\.\d)s")


def seeded(seed: int) -> random.Random:
    """Test randomness: reproducible from the seed, nothing to do with security."""
    return random.Random(seed)  # noqa: S311


# -- pull requests and their churn -----------------------------------------------------------


class Pulls:
    """acme/shop's PRs on the fake, and random PR events between runs."""

    KINDS = ("ready",) * 8 + ("draft", "fork", "opted-out")

    def __init__(self, github: FakeGitHub, rng: random.Random) -> None:
        self.github = github
        self.rng = rng
        self.numbers: list[int] = []

    def open(self, kind: str = "ready") -> int:
        n = len(self.numbers) + 1
        title, branch = f"change {n}", f"feature/change-{n}"
        if kind == "fork":
            number = self.github.open_pull(
                REPO, title=title, head_branch=branch, head_repo="mallory/shop",
                author_association="NONE",
            )  # fmt: skip
        else:
            number = self.github.open_pull(
                REPO, title=title, head_branch=branch, draft=kind == "draft",
                labels=["no-preview"] if kind == "opted-out" else [],
            )  # fmt: skip
        self.numbers.append(number)
        return number

    def seed(self, count: int) -> None:
        for _ in range(count):
            self.open(self.rng.choice(self.KINDS))

    def wanted(self) -> dict[str, str]:
        """folder -> head SHA: what the fleet must hold after a successful sync."""
        return wanted_environments(self.github, REPO, self.numbers)

    def _pick(self, candidates: list[int]) -> int | None:
        return self.rng.choice(candidates) if candidates else None

    def churn(self, events: int, max_removals: int = 3) -> None:
        """Random PR events. The first one always changes an environment; at most
        `max_removals` take one away, so the mass-deletion guard (at least 4) never holds."""
        github = self.github
        wanted = [int(folder.rsplit("-", 1)[1]) for folder in self.wanted()]
        first = self._pick(wanted)
        if first is None:
            self.open()
        else:
            github.push(REPO, first)
        removals = 0
        for _ in range(events - 1):
            event = self.rng.choice(
                ["open", "push", "close", "reopen", "label", "unlabel", "draft", "ready"]
            )
            if event == "open":
                self.open(self.rng.choice(self.KINDS))
                continue
            pulls = [github.pull(REPO, number) for number in self.numbers]
            wanted = [int(folder.rsplit("-", 1)[1]) for folder in self.wanted()]
            open_ = [p for p in pulls if p.state == "open"]
            if removals >= max_removals:  # close, label and draft may only touch the others
                keep = [p for p in open_ if p.number not in wanted]
            else:
                keep = open_
            candidates = {
                "push": open_,
                "close": keep,
                "reopen": [p for p in pulls if p.state == "closed" and not p.merged],
                "label": [p for p in keep if "no-preview" not in p.labels],
                "unlabel": [p for p in open_ if "no-preview" in p.labels],
                "draft": [p for p in keep if not p.draft],
                "ready": [p for p in open_ if p.draft],
            }[event]
            target = self._pick([p.number for p in candidates])
            if target is None:
                continue
            removals += event in ("close", "label", "draft") and target in wanted
            if event == "push":
                github.push(REPO, target)
            elif event == "close":
                github.close_pull(REPO, target, merged=self.rng.random() < 0.3)
            elif event == "reopen":
                github.reopen_pull(REPO, target)
            elif event in ("label", "unlabel"):
                github.set_labels(REPO, target, ["no-preview"] if event == "label" else [])
            else:
                github.set_draft(REPO, target, event == "draft")


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo(REPO)
    return github


# -- telling processes apart, and holding them at chosen points ------------------------------


def add_tokens(github: FakeGitHub, count: int) -> list[str]:
    tokens = [f"ghp_process{index}_{'0123456789abcdef' * 2}" for index in range(count)]
    for index, token in enumerate(tokens):
        github.add_token(token, login=f"process-{index}")
    return tokens


def process_env(token: str) -> dict[str, str]:
    return {**os.environ, "GITHUB_TOKEN": token}


class ListingLog:
    """When each process listed the PRs, by the index of its token.

    reset(hold=n): the first listing of each of n processes waits until all n have sent
    theirs, so all of them plan from the same fleet commit and race to push.
    """

    def __init__(self, github: FakeGitHub, tokens: list[str]) -> None:
        self._who = {token: index for index, token in enumerate(tokens)}
        self._lock = threading.Lock()
        self._barrier: threading.Barrier | None = None
        self.times: dict[int, list[float]] = {}
        github.on_request(self._record)

    def reset(self, hold: int = 0) -> None:
        with self._lock:
            self.times = {}
            self._barrier = threading.Barrier(hold, timeout=60) if hold else None

    def who(self, request: RecordedRequest) -> int | None:
        if request.method != "GET" or request.path != LISTING:
            return None
        return self._who.get(request.headers.get("authorization", "").rpartition(" ")[2])

    def _record(self, request: RecordedRequest) -> None:
        who = self.who(request)
        if who is None:
            return
        with self._lock:
            first = who not in self.times
            self.times.setdefault(who, []).append(time.monotonic())
            barrier = self._barrier
        if first and barrier is not None:
            barrier.wait()


def kernel_wait_channel(pid: int) -> str:
    """Where in the kernel the process sleeps ("0" while it runs or if the kernel won't say)."""
    try:
        return Path(f"/proc/{pid}/wchan").read_text().strip() or "0"
    except OSError:
        return "0"


def retry_delays(stderr: str) -> list[float]:
    """The back-off of each retry, from the -v log of one process."""
    return [float(delay) for delay in RETRY_DELAY.findall(stderr)]


def delay_errors(delays: list[float]) -> list[str]:
    """sync.py waits min(8, 0.25 * 2**attempt) * uniform(0.5, 1.0); the log rounds to 0.1 s."""
    errors = []
    for attempt, delay in enumerate(delays, start=1):
        ceiling = min(8.0, 0.25 * 2**attempt)
        if not ceiling / 2 - 0.05 <= delay <= ceiling + 0.05:
            errors.append(f"retry {attempt} waited {delay}s, not {ceiling / 2}..{ceiling}s")
    return errors


class UnrelatedWriter(threading.Thread):
    """Someone else who writes the fleet repository: commits unrelated files in a loop,
    rebasing and pushing again when the push is rejected, and says what it pushed."""

    def __init__(self, remote: Path, checkout: Path, seed: int) -> None:
        super().__init__(name="unrelated-writer", daemon=True)
        self.remote = remote
        self.checkout = checkout
        self.rng = seeded(seed)
        self.pushed: list[tuple[str, str, float]] = []  # (path, commit, when)
        self.rejections = 0
        self.error: BaseException | None = None
        self._done = threading.Event()

    def run(self) -> None:
        try:
            git("clone", "--quiet", str(self.remote), str(self.checkout))
            change = 0
            while not self._done.is_set():
                change += 1
                relative = f"apps/unrelated-{change}.yaml"
                (self.checkout / "apps").mkdir(exist_ok=True)
                (self.checkout / relative).write_text(f"# another writer, change {change}\n")
                git("add", relative, cwd=self.checkout)
                git("commit", "--quiet", "-m", f"unrelated change {change}", cwd=self.checkout)
                for _ in range(100):
                    try:
                        git("push", "--quiet", "origin", "HEAD:main", cwd=self.checkout)
                        break
                    except subprocess.CalledProcessError:
                        self.rejections += 1
                        git("pull", "--quiet", "--rebase", "origin", "main", cwd=self.checkout)
                else:
                    raise AssertionError("the unrelated writer could not push in 100 tries")
                commit = git("rev-parse", "HEAD", cwd=self.checkout).strip()
                self.pushed.append((relative, commit, time.monotonic()))
                self._done.wait(self.rng.uniform(1.0, 3.0))
        except BaseException as exc:
            self.error = exc

    def stop(self) -> None:
        self._done.set()
        self.join(timeout=120)


def validate_fleet(remote: Path) -> None:
    """Every manifest on the remote's main validates against the Flux CRDs and Kubernetes."""
    names = git("ls-tree", "-r", "--name-only", "main", "--", MANAGED, cwd=remote).split()
    errors = []
    for name in names:
        if name.endswith(("/helmrelease.yaml", "/namespace.yaml")):
            errors += [
                f"{name}: {e}" for e in validate_documents(git("show", f"main:{name}", cwd=remote))
            ]
    assert not errors, "\n".join(errors)


# -- 4. concurrent writers ---------------------------------------------------------------------

PROCESSES = 4


@pytest.mark.reliability("4. Concurrent writers: four prgen processes and an unrelated writer")
def test_four_processes_and_an_unrelated_writer_converge(
    shop: FakeGitHub,
    write_config: Callable[..., Path],
    fleet_remote: Path,
    tmp_path: Path,
    cases: Cases,
) -> None:
    config = write_config(REPOSITORIES)
    pulls = Pulls(shop, seeded(4))
    pulls.seed(20)
    tokens = add_tokens(shop, PROCESSES)
    listings = ListingLog(shop, tokens)
    history = FleetHistory(fleet_remote)
    writer = UnrelatedWriter(fleet_remote, tmp_path / "unrelated", seed=4)
    retries = gave_up = unrelated_during_sync = 0
    processes: list[PrgenProcess] = []
    writer.start()
    try:
        for round_ in range(scale(1, 20)):
            if round_:
                pulls.churn(4)
            wanted = pulls.wanted()
            # Every other round, no process gets its listing before all four asked for it:
            # they plan at the same moment and race to push.
            racing = round_ % 2 == 0
            listings.reset(hold=PROCESSES if racing else 0)
            began = time.monotonic()
            processes = [
                start_sync(
                    config,
                    tmp_path / f"work-{index}",
                    tmp_path / "out" / f"{round_}-{index}",
                    env=process_env(token),
                    verbose=True,
                )
                for index, token in enumerate(tokens)
            ]
            runs = [process.wait() for process in processes]
            unrelated_during_sync += sum(
                began <= when <= time.monotonic() for *_, when in writer.pushed
            )

            committed = []
            rejected = 0
            for index, run in enumerate(runs):
                delays = retry_delays(run.stderr)
                assert not delay_errors(delays), run.describe()
                rejected += len(delays)
                if run.returncode == 3:  # the bound itself: it gave up, changed nothing
                    assert f"gave up after {DEFAULT_PUSH_RETRIES + 1} attempts" in run.stderr, (
                        run.describe()
                    )
                    # A back-off between attempts, none after the last.
                    assert len(delays) == DEFAULT_PUSH_RETRIES, run.describe()
                    gave_up += 1
                    continue
                assert run.returncode == 0, run.describe()
                report = run.json()
                assert 1 <= report["attempts"] <= DEFAULT_PUSH_RETRIES + 1, run.describe()
                assert len(delays) == report["attempts"] - 1, run.describe()
                assert len(listings.times[index]) == report["attempts"], run.describe()
                retries += report["attempts"] - 1
                if report["commit"]:
                    committed.append(report)
            assert any(run.returncode == 0 for run in runs), "no process got through"
            # Processes that plan the same change from the same commit within one second build
            # byte-identical commits (same tree, parent, message, author and time): the push of
            # the second one finds the branch there already. So one commit may be reported by
            # several processes; different commits never create the same environment.
            by_commit = {report["commit"]: report for report in committed}
            if racing:  # one push wins; the others were refused, or had built the same commit
                same_commit = len(committed) - len(by_commit)
                assert rejected + same_commit >= PROCESSES - 1, [run.describe() for run in runs]

            # The fleet is exactly the eligible set, every commit on the remote is whole and
            # holds each PR once, and no process's pushed commit was lost.
            assert heads(history.environments("main")) == wanted
            history.check_new_commits()
            on_main = set(git("rev-list", "main", cwd=fleet_remote).split())
            assert set(by_commit) <= on_main
            created = Counter(
                change["pullRequest"]
                for report in by_commit.values()
                for change in report["changes"]
                if change["action"] == "create"
            )
            assert not [n for n, times in created.items() if times > 1], created
            cases.add()
    finally:
        writer.stop()
        for process in processes:
            process.reap()

    assert writer.error is None, repr(writer.error)
    assert writer.pushed and unrelated_during_sync, "the other writer never pushed during a sync"
    on_main = set(git("rev-list", "main", cwd=fleet_remote).split())
    lost = [commit for _, commit, _ in writer.pushed if commit not in on_main]
    assert not lost, f"unrelated commits lost: {lost}"
    files = set(git("ls-tree", "-r", "--name-only", "main", "--", "apps", cwd=fleet_remote).split())
    assert {path for path, _, _ in writer.pushed} <= files
    history.check_new_commits()
    validate_fleet(fleet_remote)
    print(
        f"rounds {scale(1, 20)}: {retries} retries, {gave_up} gave up, "
        f"{len(writer.pushed)} unrelated pushes ({writer.rejections} rejected, "
        f"{unrelated_during_sync} during a sync)"
    )


@pytest.mark.reliability("4. Concurrent writers: two processes sharing one work directory")
def test_two_processes_sharing_a_work_directory_take_turns(
    shop: FakeGitHub,
    write_config: Callable[..., Path],
    fleet_remote: Path,
    tmp_path: Path,
    cases: Cases,
) -> None:
    config = write_config(REPOSITORIES)
    pulls = Pulls(shop, seeded(2))
    pulls.seed(12)
    tokens = add_tokens(shop, 2)
    listings = ListingLog(shop, tokens)
    history = FleetHistory(fleet_remote)
    workdir = tmp_path / "shared-work"
    pids: dict[int, int] = {}
    seen_waiting: list[bool | None] = []

    def hold_the_first_listing(request: RecordedRequest) -> None:
        # Keep the first process inside its lock until the other one waits for that lock.
        who = listings.who(request)
        if who is None or len(listings.times.get(who, ())) != 1 or len(listings.times) != 1:
            return
        channels = set()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            channels.add(kernel_wait_channel(pids[1 - who]))
            if any("lock" in channel for channel in channels):
                seen_waiting.append(True)
                return
            time.sleep(0.01)
        seen_waiting.append(None if channels == {"0"} else False)

    shop.on_request(hold_the_first_listing)
    for round_ in range(scale(1, 10)):
        if round_:
            pulls.churn(3)
        wanted = pulls.wanted()
        listings.reset()
        seen_waiting.clear()
        before = set(git("rev-list", "main", cwd=fleet_remote).split())
        processes = []
        for index, token in enumerate(tokens):
            out = tmp_path / "out" / f"{round_}-{index}"
            processes.append(start_sync(config, workdir, out, env=process_env(token)))
            pids[index] = processes[-1].pid
        runs = [process.wait() for process in processes]
        for run in runs:
            assert run.returncode == 0, run.describe()
        reports = [run.json() for run in runs]
        first, second = sorted(range(2), key=lambda index: listings.times[index][0])
        # The second waited for the lock while the first held it (where the kernel says so
        # in /proc/<pid>/wchan), and listed nothing until the first had pushed:
        assert seen_waiting in ([True], [None]), seen_waiting
        assert listings.times[first][-1] < listings.times[second][0]
        assert reports[first]["commit"] and reports[first]["attempts"] == 1, runs[first].describe()
        assert reports[second]["commit"] is None, runs[second].describe()
        assert reports[second]["attempts"] == 1, runs[second].describe()
        new = set(git("rev-list", "main", cwd=fleet_remote).split()) - before
        assert new == {reports[first]["commit"]}
        assert heads(history.environments("main")) == wanted
        history.check_new_commits()
        cases.add()


@pytest.mark.reliability("4. Concurrent writers: retries are bounded and jittered")
def test_push_retries_are_bounded_and_jittered(
    shop: FakeGitHub,
    write_config: Callable[..., Path],
    fleet_remote: Path,
    tmp_path: Path,
    cases: Cases,
) -> None:
    """Another writer pushes while each process lists the PRs, so every push of theirs is
    refused: each must try exactly pushRetries + 1 times, wait a jittered back-off between
    tries (not the same for all), give up with exit 3 and leave no commit of its own. A fifth
    process, on a fleet of its own, is refused one push fewer: its last try gets through."""
    retries = 2
    config = write_config(REPOSITORIES)
    with_push_retries(config, retries)
    last_remote = tmp_path / "fleet-last.git"
    git("clone", "--quiet", "--bare", str(fleet_remote), str(last_remote))
    last_config = tmp_path / "prgen-last.yaml"
    last_config.write_text(config.read_text().replace(str(fleet_remote), str(last_remote)))
    pulls = Pulls(shop, seeded(3))
    pulls.seed(6)
    tokens = add_tokens(shop, PROCESSES + 1)
    listings = ListingLog(shop, tokens)
    remotes = [fleet_remote] * PROCESSES + [last_remote]
    others = {}
    for remote in (fleet_remote, last_remote):
        others[remote] = tmp_path / f"other-writer-{remote.name}"
        git("clone", "--quiet", str(remote), str(others[remote]))
    interfere = [1000] * PROCESSES + [retries]
    pushed: dict[Path, list[str]] = {fleet_remote: [], last_remote: []}
    lock = threading.Lock()

    # Another writer pushes between a process's fleet read and its push: on the first read
    # of PR comments after each listing (that read comes once the fleet is read, whereas the
    # listing runs beside the fleet read and may come before it on a busy machine).
    listed: set[int] = set()
    by_token = {token: index for index, token in enumerate(tokens)}

    def push_while_listing(request: RecordedRequest) -> None:
        who = by_token.get(request.headers.get("authorization", "").rpartition(" ")[2])
        with lock:
            if who is None:
                return
            if listings.who(request) is not None:
                listed.add(who)
                return
            if request.path != f"/repos/{REPO}/issues/comments" or who not in listed:
                return
            listed.discard(who)
            if interfere[who] <= 0:
                return
            interfere[who] -= 1
            other = others[remotes[who]]
            (other / "unrelated.txt").write_text(f"change {len(pushed[remotes[who]])}\n")
            git("add", "unrelated.txt", cwd=other)
            git("commit", "--quiet", "-m", "unrelated", cwd=other)
            git("push", "--quiet", "origin", "HEAD:main", cwd=other)
            pushed[remotes[who]].append(git("rev-parse", "HEAD", cwd=other).strip())

    shop.on_request(push_while_listing)
    processes = [
        start_sync(
            config if index < PROCESSES else last_config,
            tmp_path / f"work-{index}",
            tmp_path / "out" / str(index),
            env=process_env(tokens[index]),
            verbose=True,
        )
        for index in range(PROCESSES + 1)
    ]
    runs = [process.wait() for process in processes]
    sequences = []
    for index, run in enumerate(runs[:PROCESSES]):
        assert run.returncode == 3, run.describe()
        assert f"gave up after {retries + 1} attempts" in run.stderr, run.describe()
        assert len(listings.times[index]) == retries + 1, run.describe()
        delays = retry_delays(run.stderr)
        assert len(delays) == retries, run.describe()  # between attempts, none after the last
        assert not delay_errors(delays), run.describe()
        times = listings.times[index]
        gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
        slept = zip(gaps, delays, strict=False)
        assert all(gap >= delay - 0.05 for gap, delay in slept), (gaps, delays)
        sequences.append(tuple(delays))
        cases.add()
    assert len(set(sequences)) > 1, f"all processes backed off in lockstep: {sequences}"
    by_prgen = git("log", f"--author={PRGEN_AUTHOR}", "--format=%H", "main", cwd=fleet_remote)
    assert not by_prgen.strip()
    assert set(pushed[fleet_remote]) <= set(git("rev-list", "main", cwd=fleet_remote).split())
    FleetHistory(fleet_remote).check_new_commits()

    last = runs[PROCESSES]
    assert last.returncode == 0, last.describe()
    assert last.json()["attempts"] == retries + 1
    assert not delay_errors(retry_delays(last.stderr))
    assert len(retry_delays(last.stderr)) == retries
    history = FleetHistory(last_remote)
    history.check_new_commits()
    assert heads(history.environments("main")) == pulls.wanted()
    assert set(pushed[last_remote]) <= set(git("rev-list", "main", cwd=last_remote).split())
    cases.add()


def install_pre_receive_hook(remote: Path, script: str) -> None:
    """A hook of the bare fleet repository: it runs in the remote, never in prgen's checkout."""
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(script)
    hook.chmod(0o755)


@pytest.mark.reliability("4. Concurrent writers: a push that loses the race inside the remote")
def test_a_push_that_loses_the_race_inside_the_remote_is_replanned(
    shop: FakeGitHub,
    write_config: Callable[..., Path],
    fleet_remote: Path,
    tmp_path: Path,
    cases: Cases,
) -> None:
    """prgen's push passes the lease check (the remote still advertised the commit it built
    on), then another writer's push lands before the remote updates the branch: the remote
    refuses prgen's update. That is a concurrent push like any other: re-plan and retry."""
    config = write_config(REPOSITORIES)
    pulls = Pulls(shop, seeded(6))
    pulls.seed(3)
    hold, started, release = (tmp_path / name for name in ("hold", "started", "release"))
    install_pre_receive_hook(
        fleet_remote,
        f"""#!/bin/sh
cat > /dev/null
if [ -e "{hold}" ]; then
  rm -f "{hold}"
  : > "{started}"
  for _ in $(seq 300); do [ -e "{release}" ] && break; sleep 0.1; done
fi
""",
    )
    hold.touch()
    process = start_sync(config, tmp_path / "work", tmp_path / "out")
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert process.running() and time.monotonic() < deadline, process.wait().describe()
            time.sleep(0.02)
        other = tmp_path / "other-writer"
        git("clone", "--quiet", str(fleet_remote), str(other))
        (other / "unrelated.txt").write_text("pushed while prgen's push waited in the remote\n")
        git("add", "unrelated.txt", cwd=other)
        git("commit", "--quiet", "-m", "unrelated", cwd=other)
        git("push", "--quiet", "origin", "HEAD:main", cwd=other)
    finally:
        release.touch()
    run = process.wait()
    cases.add()
    assert run.returncode == 0, run.describe()
    assert run.json()["attempts"] == 2
    assert heads(FleetHistory(fleet_remote).environments("main")) == pulls.wanted()
    assert git("rev-parse", "HEAD", cwd=other).strip() in git("rev-list", "main", cwd=fleet_remote)


# -- 5. crashes ----------------------------------------------------------------------------------

SLOW_PUSH_HOOK = """#!/bin/sh
# While {flag} exists, a push waits half a second in the remote and is then taken
# ("accept") or refused ("refuse"), whatever became of the client that sent it.
cat > /dev/null
mode=$(cat "{flag}" 2>/dev/null) || exit 0
: > "{started}"
sleep 0.5
: > "{done}"
[ "$mode" = accept ]
"""


class ListingGate:
    """Holds the next listing of the PRs until opened, so prgen sits mid-listing."""

    def __init__(self, github: FakeGitHub) -> None:
        self.armed = False
        self.reached = threading.Event()
        self._opened = threading.Event()
        github.on_request(self._hold)

    def arm(self) -> None:
        self.reached.clear()
        self._opened.clear()
        self.armed = True

    def open(self) -> None:
        self.armed = False
        self._opened.set()

    def _hold(self, request: RecordedRequest) -> None:
        if self.armed and request.method == "GET" and request.path == LISTING:
            self.armed = False
            self.reached.set()
            self._opened.wait(60)


def wait_until(condition: Callable[[], bool], process: PrgenProcess, what: str) -> None:
    deadline = time.monotonic() + 60
    while not condition():
        if not process.running():
            raise AssertionError(f"prgen ended before {what}:\n{process.wait().describe()}")
        assert time.monotonic() < deadline, f"prgen never got to {what}"
        time.sleep(0.002)


def git_commands(pid: int) -> dict[int, str]:
    """The git commands a process runs right now, by process id (GitPython's long-lived
    `git cat-file --batch` readers aside)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return {}
    commands = {}
    for child in children:
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[0].endswith(b"git") and argv[1] != b"cat-file":
            commands[int(child)] = argv[1].decode(errors="replace")
    return commands


def leftover_state(workdir: Path, remote: Path) -> list[str]:
    """What a killed run left in the work directory."""
    gitdir = workdir / ".git"
    if not workdir.exists():
        return ["no work directory"]
    if not (gitdir / "HEAD").exists():
        return ["a half-made clone (no repository yet)"]
    states = [f"a stale .git/{lock.relative_to(gitdir)}" for lock in sorted(gitdir.rglob("*.lock"))]
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def query(*args: str, cwd: Path = workdir) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)

    if "origin" not in query("remote").stdout.split():
        states.append("a half-made clone (no origin remote)")
    head = query("rev-parse", "--verify", "--quiet", "HEAD").stdout.strip()
    if not head:
        states.append("a half-made clone (nothing checked out)")
    elif query("cat-file", "-e", f"{head}^{{commit}}", cwd=remote).returncode != 0:
        states.append("a local commit that never reached the remote")
    if query("status", "--porcelain", "--untracked-files=all").stdout.strip():
        states.append("uncommitted or half-written files")
    return states or ["a clean checkout"]


@pytest.mark.reliability("5. Crashes: prgen killed with SIGKILL at random points")
def test_a_killed_sync_leaves_no_partial_change_and_the_next_run_converges(
    shop: FakeGitHub, fleet_remote: Path, tmp_path: Path, cases: Cases
) -> None:
    seed = random.randrange(2**32)  # noqa: S311 - printed with every failure
    rng = seeded(seed)
    flag, started, done = (tmp_path / name for name in ("slow-push", "push-started", "push-done"))
    install_pre_receive_hook(
        fleet_remote, SLOW_PUSH_HOOK.format(flag=flag, started=started, done=done)
    )
    daemon = GitDaemon(tmp_path, tmp_path / "git-daemon.log")
    config = tmp_path / "prgen.yaml"
    config.write_text(
        config_text(shop.base_url, f"{daemon.start()}/{fleet_remote.name}", REPOSITORIES)
    )
    pulls = Pulls(shop, rng)
    pulls.seed(scale(30, 50))
    gate = ListingGate(shop)
    history = FleetHistory(fleet_remote)
    workdir = tmp_path / "work"
    runs = iter(range(1_000_000))

    def sync() -> PrgenProcess:
        return start_sync(config, workdir, tmp_path / "out" / str(next(runs)))

    # How long a normal run takes (this one clones and creates every environment).
    normal = sync().wait()
    assert normal.returncode == 0, normal.describe()
    assert heads(history.environments("main")) == pulls.wanted()
    lifetime = normal.seconds

    # random: any moment of a normal run's lifetime; git: while its n-th git command runs;
    # listing: while GitHub holds its listing; push: while the remote holds its push, which
    # lands or is refused after the kill; clone: while it clones into an empty work directory.
    modes = ["random", "git", "listing", "push", "clone"]
    leftovers: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    process: PrgenProcess | None = None
    try:
        for cycle in range(scale(5, 100)):
            mode = modes[cycle % len(modes)]
            where = f"cycle {cycle} ({mode}, seed {seed})"
            if cycle:
                pulls.churn(rng.randint(2, 6))
            wanted = pulls.wanted()
            for marker in (started, done):
                marker.unlink(missing_ok=True)
            if mode == "clone":
                shutil.rmtree(workdir, ignore_errors=True)
            if mode == "push":
                landing = rng.random() < 0.5
                mode = "push (lands)" if landing else "push (refused)"
                flag.write_text("accept" if landing else "refuse")
            if mode == "listing":
                gate.arm()
            process = sync()
            try:
                if mode == "random":
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        process.popen.wait(timeout=rng.uniform(0, 1.2 * lifetime))
                elif mode == "git":
                    target, seen = rng.randrange(10), dict[int, str]()
                    while process.running() and len(seen) <= target:
                        seen.update(git_commands(process.pid))
                        time.sleep(0.0005)
                    if len(seen) > target:
                        mode = f"git {list(seen.values())[target]}"
                        time.sleep(rng.uniform(0, 0.01))
                elif mode == "listing":
                    wait_until(gate.reached.is_set, process, "listing the PRs")
                    time.sleep(rng.uniform(0, 0.1))
                elif mode == "clone":
                    wait_until((workdir / ".git").exists, process, "cloning")
                    time.sleep(rng.uniform(0, 0.15))
                else:
                    wait_until(started.exists, process, "pushing")
                    time.sleep(rng.uniform(0, 0.4))
                process.kill()
            finally:
                gate.open()
                flag.unlink(missing_ok=True)
            crashed = process.wait()
            outcomes[f"{mode}: {'killed' if crashed.killed else 'finished first'}"] += 1
            assert crashed.killed or crashed.returncode == 0, crashed.describe()
            history.check_new_commits()  # nothing partial reached the remote

            if mode.startswith("push"):
                deadline = time.monotonic() + 30
                while not done.exists():  # the remote is through with the dead run's push
                    assert time.monotonic() < deadline, f"{where}: the slow push never ended"
                    time.sleep(0.02)
                history.check_new_commits()
            states = leftover_state(workdir, fleet_remote)
            leftovers.update(states)
            recovery = sync().wait()
            assert recovery.returncode == 0, f"{where}: left {states}, then\n{recovery.describe()}"
            assert recovery.json()["exitCode"] == 0
            history.check_new_commits()
            assert heads(history.environments("main")) == wanted, where
            cases.add()
    finally:
        gate.open()
        if process is not None:
            process.reap()
        daemon.stop()
    validate_fleet(fleet_remote)
    print(f"\nnormal run {lifetime:.2f}s; {dict(outcomes)}\nleft behind: {dict(leftovers)}")


# -- 5. the leftovers of a killed run, made on purpose -------------------------------------------


# prgen never checks the fleet out: its commit is built from the fetched commit's objects
# (git fast-import), so what a killed run can leave is in the git directory: a commit made
# but not pushed, an inventory cache half-written, a remote-tracking ref left behind.


def _stale(relative: str) -> Callable[[Path, Path], str | None]:
    def leave(workdir: Path, remote: Path) -> str | None:
        lock = workdir / ".git" / relative
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_bytes(b"")
        return None

    return leave


def _half_written_files(workdir: Path, remote: Path) -> str | None:
    git_dir = workdir / ".git"
    cache = git_dir / INVENTORY_CACHE
    cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])  # not JSON any more
    (git_dir / f"{INVENTORY_CACHE}.12345").write_text('{"version": 1, "blo')
    return None


def _unpushed_partial_commit(workdir: Path, remote: Path) -> str | None:
    """A commit prgen made with half of its changes, killed before the push."""
    tip = git("rev-parse", "refs/remotes/origin/main", cwd=workdir).strip()
    stream = (
        "commit refs/prgen/commit\n"
        "committer prgen <prgen@example.com> 0 +0000\n"
        "data 13\nhalf a change\n"
        f"from {tip}\n"
        f"D {MANAGED}\n"
        "done\n"
    )
    subprocess.run(
        ["git", "fast-import", "--quiet", "--done", "--force"],
        cwd=workdir,
        input=stream.encode(),
        check=True,
    )
    return git("rev-parse", "refs/prgen/commit", cwd=workdir).strip()


def _fresh(workdir: Path) -> None:
    """What a clone killed at its start leaves: prgen's mark, written before anything else."""
    shutil.rmtree(workdir)
    (workdir / ".git").mkdir(parents=True)
    (workdir / ".git" / WORKDIR_MARK).write_text("made by prgen\n")


def _init_only(workdir: Path, remote: Path) -> str | None:
    _fresh(workdir)
    git("init", "--quiet", cwd=workdir)
    return None


def _remote_but_no_fetch(workdir: Path, remote: Path) -> str | None:
    _init_only(workdir, remote)
    git("remote", "add", "origin", str(remote), cwd=workdir)
    return None


def _git_dir_without_head(workdir: Path, remote: Path) -> str | None:
    _fresh(workdir)
    (workdir / ".git" / "objects").mkdir()
    return None


def _detached_at_an_older_commit(workdir: Path, remote: Path) -> str | None:
    # The remote-tracking ref an older run left (the run after fetches anew).
    git("update-ref", "refs/remotes/origin/main", "refs/remotes/origin/main~1", cwd=workdir)
    return None


def _fetch_leftovers(workdir: Path, remote: Path) -> str | None:
    for lock in ("refs/remotes/origin/main.lock", "packed-refs.lock", "ORIG_HEAD.lock"):
        _stale(lock)(workdir, remote)
    (workdir / ".git" / "objects" / "pack" / "tmp_pack_Xq7Ab2").write_bytes(b"PACK\0\0\0\2half")
    return None


LEFTOVERS: dict[str, Callable[[Path, Path], str | None]] = {
    "stale index.lock": _stale("index.lock"),
    "stale HEAD.lock": _stale("HEAD.lock"),
    "stale refs/heads/main.lock": _stale("refs/heads/main.lock"),
    "stale config.lock": _stale("config.lock"),
    "what a killed fetch or reset leaves": _fetch_leftovers,
    "half-written files": _half_written_files,
    "unpushed partial commit": _unpushed_partial_commit,
    "clone killed after git init": _init_only,
    "clone killed before the fetch": _remote_but_no_fetch,
    "git dir without HEAD": _git_dir_without_head,
    "detached at an older commit": _detached_at_an_older_commit,
}


@pytest.mark.reliability("5. Crashes: the next run recovers from what a killed run left")
@pytest.mark.parametrize("leftover", list(LEFTOVERS))
def test_the_next_run_recovers_from_a_leftover(
    leftover: str,
    shop: FakeGitHub,
    write_config: Callable[..., Path],
    fleet_remote: Path,
    tmp_path: Path,
    cases: Cases,
) -> None:
    config = write_config(REPOSITORIES)
    pulls = Pulls(shop, seeded(8))
    pulls.seed(6)
    workdir = tmp_path / "work"
    args = ["sync", "--config", str(config), "--workdir", str(workdir), "--output", "json"]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    pulls.churn(3)  # so the next run has work to do
    unpushed = LEFTOVERS[leftover](workdir, fleet_remote)

    result = CliRunner().invoke(main, args)
    cases.add()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["commit"]
    history = FleetHistory(fleet_remote)
    history.check_new_commits()
    assert heads(history.environments("main")) == pulls.wanted()
    if unpushed:
        assert unpushed not in git("rev-list", "main", cwd=fleet_remote).split()
