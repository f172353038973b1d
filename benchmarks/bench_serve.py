"""Figures for `prgen serve`: webhook-to-push latency under load, and a soak of webhooks.

    python benchmarks/bench_serve.py latency [--rate 50 --seconds 30 --repos 20]
    python benchmarks/bench_serve.py soak [--webhooks 10000]

The server runs as its own process (`prgen serve`), against the fake GitHub on 127.0.0.1
and a bare fleet repository on disk, with the HTTP cache on. Prints figures; asserts nothing.

latency: `--rate` pull_request events a second, each after a real push to a random PR of
`--repos` repositories, for `--seconds`. For each event: the time from sending it to the
moment the fleet branch holds a commit with that head (or a later one of the same PR),
watched on the bare repository every 20 ms.

soak: `--webhooks` deliveries (pushes with their events, ignored events, duplicates,
forged ones) as fast as 4 senders go; the server's peak RSS growth after a warm-up of a
tenth of them, and its threads and open file descriptors before and after.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import requests

from prgen.testing.fake_github import FakeGitHub
from prgen.testing.fake_github.webhooks import (
    issue_comment_payload,
    pull_request_payload,
    repository_payload,
    send_delivery,
)

TOKEN = "bench-token-0123456789"  # noqa: S105 - the fake accepts only this
SECRET = "bench-webhook-secret"  # noqa: S105
API_TOKEN = "bench-api-token"  # noqa: S105
PULLS_PER_REPO = 5
CONFIG = """\
github: {{apiUrl: '{api}', tokenEnv: BENCH_TOKEN, requestInterval: 0, writeInterval: 0, retries: 0}}
fleet: {{url: '{fleet}', path: previews/dev, author: {{name: prgen, email: prgen@example.com}}}}
safety: {{maxDeletions: 100000}}
server: {{host: 127.0.0.1, port: 0, interval: 10m, quietPeriod: {quiet}, maxDelay: {max_delay}}}
defaults:
  chart: {{chart: app, sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}}}
  values: {{image: {{tag: '<<PR_HEAD_SHA>>'}}}}
repositories:
{repositories}"""
CHANGE = re.compile(r"^(?:created|updated) (\S+)#(\d+) in \S+ at ([0-9a-f]{40})", re.M)


def prgen() -> list[str]:
    script = Path(sys.executable).with_name("prgen")
    return [str(script)] if script.exists() else [sys.executable, "-m", "prgen"]


@dataclass
class Setup:
    github: FakeGitHub
    fleet: Path
    process: subprocess.Popen[bytes]
    url: str
    repos: list[str]
    stderr: Path


@contextmanager
def running(repos: int, quiet: str, max_delay: str) -> Iterator[Setup]:
    with tempfile.TemporaryDirectory() as tmp, FakeGitHub() as github:
        root = Path(tmp)
        fleet = root / "fleet.git"
        subprocess.run(
            ["git", "init", "-q", "--bare", "--initial-branch=main", str(fleet)], check=True
        )
        github.add_token(TOKEN)
        names = [f"acme/app{i:02d}" for i in range(repos)]
        for name in names:
            github.add_repo(name)
            for n in range(PULLS_PER_REPO):
                github.open_pull(name, title=f"PR {n}", head_branch=f"b{n}")
        entries = "".join(f"  - name: {name}\n" for name in names)
        config = root / "prgen.yaml"
        config.write_text(
            CONFIG.format(
                api=github.base_url,
                fleet=fleet,
                quiet=quiet,
                max_delay=max_delay,
                repositories=entries,
            )
        )
        env = {
            **os.environ,
            "BENCH_TOKEN": TOKEN,
            "PRGEN_WEBHOOK_SECRET": SECRET,
            "PRGEN_API_TOKEN": API_TOKEN,
            "PRGEN_CACHE_DIR": str(root / "http"),
            "HOME": str(root),
        }
        stderr = root / "stderr"
        with stderr.open("wb") as err:
            process = subprocess.Popen(
                [*prgen(), "serve", "--config", str(config), "--workdir", str(root / "work")],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env,
            )
        try:
            port = _port(stderr, process)
            url = f"http://127.0.0.1:{port}"
            _wait_ready(url)
            yield Setup(github, fleet, process, url, names, stderr)
        finally:
            process.terminate()
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()


def _port(stderr: Path, process: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"serving on 127\.0\.0\.1:(\d+)", stderr.read_text(errors="replace"))
        if found:
            return int(found.group(1))
        if process.poll() is not None:
            raise SystemExit(f"prgen serve exited:\n{stderr.read_text()}")
        time.sleep(0.05)
    raise SystemExit("prgen serve did not start")


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 120
    while requests.get(f"{url}/readyz", timeout=5).status_code != 200:
        if time.monotonic() > deadline:
            raise SystemExit("prgen serve not ready after 120s")
        time.sleep(0.1)


# -- latency ---------------------------------------------------------------------------------


@dataclass
class Watcher:
    """The fleet branch's commits as they arrive: which head of which PR each one carries."""

    fleet: Path
    seen: dict[tuple[str, int], list[tuple[str, float]]] = field(default_factory=dict)
    commits: int = 0
    stop: threading.Event = field(default_factory=threading.Event)

    def _tip(self) -> str:
        return subprocess.run(
            ["git", "rev-parse", "main"], cwd=self.fleet, capture_output=True, text=True, check=True
        ).stdout.strip()

    def run(self) -> None:
        tip = self._tip()
        while not self.stop.is_set():
            time.sleep(0.02)
            new = self._tip()
            if new == tip:
                continue
            now = time.monotonic()
            log = subprocess.run(
                ["git", "log", "--format=%B", f"{tip}..{new}"],
                cwd=self.fleet,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            self.commits += int(
                subprocess.run(
                    ["git", "rev-list", "--count", f"{tip}..{new}"],
                    cwd=self.fleet,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            for repo, number, sha in CHANGE.findall(log):
                self.seen.setdefault((repo, int(number)), []).append((sha, now))
            tip = new


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency(rate: float, seconds: float, repos: int, quiet: str, max_delay: str) -> None:
    with running(repos, quiet, max_delay) as setup:
        watcher = Watcher(setup.fleet)
        watching = threading.Thread(target=watcher.run)
        watching.start()
        session = requests.Session()
        sent: list[tuple[str, int, int, float]] = []  # repo, number, push index, time
        pushes: dict[tuple[str, int], list[str]] = {}
        rng = random.Random(13)  # noqa: S311 - a repeatable benchmark
        start = time.monotonic()
        count = int(rate * seconds)
        for i in range(count):
            due = start + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            repo, number = rng.choice(setup.repos), rng.randint(1, PULLS_PER_REPO)
            sha = setup.github.push(repo, number)
            shas = pushes.setdefault((repo, number), [])
            shas.append(sha)
            at = time.monotonic()
            send_delivery(
                f"{setup.url}/webhook",
                SECRET,
                "pull_request",
                pull_request_payload(repo, number, "synchronize", sha),
                session=session,
            )
            sent.append((repo, number, len(shas) - 1, at))
        sending = time.monotonic() - start
        time.sleep(15)  # the last ones land
        watcher.stop.set()
        watching.join()
        metrics = requests.get(f"{setup.url}/metrics", timeout=10).text
    waits, missing = [], 0
    for repo, number, index, at in sent:
        shas = pushes[(repo, number)]
        landed = [
            t
            for sha, t in watcher.seen.get((repo, number), [])
            if t >= at and shas.index(sha) >= index
        ]
        if landed:
            waits.append(min(landed) - at)
        else:
            missing += 1
    scoped = re.search(r'prgen_sync_runs_total\{outcome="ok",scope="scoped"\} (\S+)', metrics)
    print(
        f"latency: {count} pull_request events in {sending:.1f}s ({count / sending:.1f}/s) across {repos} repositories"
    )
    print(
        f"  event -> fleet commit pushed: p50 {statistics.median(waits):.2f}s, p95 {percentile(waits, 95):.2f}s, max {max(waits):.2f}s"
    )
    print(f"  events whose head never landed: {missing}")
    print(f"  fleet commits: {watcher.commits}; scoped syncs: {scoped.group(1) if scoped else '?'}")


# -- soak ------------------------------------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            values[key] = int(rest.split()[0])
    values["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return values


def soak(webhooks: int, repos: int, quiet: str, max_delay: str) -> None:
    with running(repos, quiet, max_delay) as setup:
        pid = setup.process.pid
        before = proc_status(pid)
        rng = random.Random(7)  # noqa: S311 - a repeatable benchmark
        lock = threading.Lock()
        local = threading.local()
        results: dict[int, int] = {}
        peak_rss = 0

        def one(i: int) -> None:
            if not hasattr(local, "session"):
                local.session = requests.Session()
            repo, number = rng.choice(setup.repos), rng.randint(1, PULLS_PER_REPO)
            kind = i % 10
            url = f"{setup.url}/webhook"
            if kind < 5:
                sha = setup.github.push(repo, number)
                sent = send_delivery(
                    url,
                    SECRET,
                    "pull_request",
                    pull_request_payload(repo, number, "synchronize", sha),
                    session=local.session,
                )
            elif kind == 5:
                sent = send_delivery(
                    url,
                    SECRET,
                    "issue_comment",
                    issue_comment_payload(repo, number, "/preview help"),
                    session=local.session,
                )
            elif kind == 6:
                sent = send_delivery(
                    url, SECRET, "push", repository_payload(repo), session=local.session
                )
            elif kind == 7:
                sent = send_delivery(
                    url,
                    "forged",
                    "pull_request",
                    pull_request_payload(repo, number),
                    session=local.session,
                )
            elif kind == 8:
                sent = send_delivery(
                    url,
                    SECRET,
                    "check_run",
                    repository_payload(repo, "completed"),
                    delivery=f"dup-{i % 50}",
                    session=local.session,
                )
            else:
                sent = send_delivery(
                    url,
                    SECRET,
                    "pull_request",
                    pull_request_payload(repo, number, "labeled"),
                    session=local.session,
                )
            with lock:
                results[sent.status] = results.get(sent.status, 0) + 1

        warm = webhooks // 10
        started = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, range(warm)))
        time.sleep(3)
        warmed = proc_status(pid)
        with ThreadPoolExecutor(4) as pool:
            for done, _ in enumerate(pool.map(one, range(warm, webhooks))):
                if done % 500 == 0:
                    peak_rss = max(peak_rss, proc_status(pid)["VmRSS"])
        elapsed = time.monotonic() - started
        time.sleep(10)  # the last syncs end
        after = proc_status(pid)
        peak_rss = max(peak_rss, after["VmRSS"])
        metrics = requests.get(f"{setup.url}/metrics", timeout=10).text
    runs = re.findall(r'prgen_sync_runs_total\{outcome="(\w+)",scope="(\w+)"\} (\S+)', metrics)
    print(
        f"soak: {webhooks} webhooks in {elapsed:.1f}s ({webhooks / elapsed:.0f}/s), answers {dict(sorted(results.items()))}"
    )
    print(f"  sync runs: {', '.join(f'{s} {o}: {float(n):.0f}' for o, s, n in runs)}")
    print(
        f"  RSS: start {before['VmRSS'] / 1024:.1f} MB, after warm-up {warmed['VmRSS'] / 1024:.1f} MB, end {after['VmRSS'] / 1024:.1f} MB"
    )
    print(
        f"  peak RSS growth after warm-up: {(max(peak_rss, after['VmHWM']) - warmed['VmRSS']) / 1024:.1f} MB (VmHWM {after['VmHWM'] / 1024:.1f} MB, at warm-up {warmed['VmHWM'] / 1024:.1f} MB)"
    )
    print(
        f"  threads: start {before['Threads']}, after warm-up {warmed['Threads']}, end {after['Threads']}"
    )
    print(f"  open fds: start {before['fds']}, after warm-up {warmed['fds']}, end {after['fds']}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=["latency", "soak", "both"], nargs="?", default="both")
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--repos", type=int, default=20)
    parser.add_argument("--webhooks", type=int, default=10_000)
    parser.add_argument("--quiet", default="1s")
    parser.add_argument("--max-delay", default="3s")
    args = parser.parse_args()
    if args.mode in ("latency", "both"):
        latency(args.rate, args.seconds, args.repos, args.quiet, args.max_delay)
    if args.mode in ("soak", "both"):
        soak(args.webhooks, args.repos, args.quiet, args.max_delay)


if __name__ == "__main__":
    main()
