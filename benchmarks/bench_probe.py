"""Figures for the probe round at organisation scale (issue 11).

    python benchmarks/bench_probe.py [--environments 1000] [--hanging 0.1] [--timeout 5]
                                     [--latency 0.05] [--report-concurrency 8]

N environments of one repository in a bare fleet repository, a tenth of them hanging
(real HTTP servers on 127.0.0.1 that never answer), the fake GitHub answering each
request after `latency` seconds; both run in a process of their own, so that they do not
share prgen's interpreter lock. Runs `prgen probe`'s round twice, as the CLI does (fetch,
inventory and listing included, one client per report worker): the first writes every
report, the second finds nothing changed. Prints each round's wall time against 2 x the
probe timeout, with and without what comes before the probes, prgen's CPU time, reports
written, GitHub requests by kind, and the threads and memory used. Asserts nothing.
The machine's load average is printed first: the figures are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import collections
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from prgen.config import Config, parse_config
from prgen.feedback import Prober, ProbeRunResult
from prgen.github.client import GitHubClients, make_client
from prgen.github.pulls import GitHubSource
from prgen.sync import Syncer
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub

TOKEN = "bench-token-0123456789"  # noqa: S105 - the fake accepts only this
ENVIRON = {"BENCH_TOKEN": TOKEN}
CONFIG = """\
# writeInterval 0: the fake has no secondary limits. Against GitHub, a first round's 4,000
# writes go a second apart (github.writeInterval) and take many rounds; an idle round has none.
github: {{apiUrl: '{api}', tokenEnv: BENCH_TOKEN, requestInterval: 0, writeInterval: 0, retries: 0}}
fleet: {{url: '{fleet}', path: previews/dev}}
safety: {{maxDeletions: 100000}}
repositories:
  - name: acme/shop
    chart: {{chart: shop, sourceRef: {{kind: HelmRepository, name: charts, namespace: flux-system}}}}
    values: {{image: {{tag: '<<PR_HEAD_SHA>>'}}}}
    healthCheck: {{url: '{envs}/pr-<<PR_NUMBER>>/healthz', timeout: {timeout}s}}
"""


class Sampler:
    """The most threads alive at once while a round runs, sampled every 20 ms."""

    def __init__(self) -> None:
        self.most = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.most = max(self.most, threading.active_count())

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class StandIns:
    """The parent's handle on the stand-ins' process."""

    def __init__(self, args: argparse.Namespace) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=stand_ins, args=(child, args), daemon=True)
        self._process.start()
        self.api, self.envs, self.hanging = self._conn.recv()

    def tell(self, command: str) -> None:
        self._conn.send(command)
        self._conn.recv()

    def requests(self) -> Requests:
        """The requests since the last 'clear'."""
        self._conn.send("requests")
        requests: Requests = self._conn.recv()
        return requests

    def stop(self) -> None:
        self._conn.send("stop")
        self._process.join(10)


Round = Callable[[], tuple[ProbeRunResult, float]]  # the result, seconds before the probes
Row = tuple[str, str]


def round_rows(label: str, servers: StandIns, timeout: float, action: Round) -> list[Row]:
    servers.tell("clear")
    threads_before = threading.active_count()
    with Sampler() as sampler:
        started = time.perf_counter()
        cpu = time.process_time()
        result, before = action()
        cpu = time.process_time() - cpu
        elapsed = time.perf_counter() - started
    requests = servers.requests()
    methods = collections.Counter(requests.methods)
    kinds = ", ".join(f"{method} {count}" for method, count in sorted(methods.items()))
    unknown = "not counted by this fake GitHub"
    not_modified = unknown if requests.not_modified is None else f"{requests.not_modified}"
    points = unknown if requests.points is None else f"{requests.points}"
    writes = sum(e.outcome.writes for e in result.environments)
    return [
        (label, f"{elapsed:7.2f} s  {_verdict(elapsed, timeout)}"),
        ("  of which fetch, inventory, listing", f"{before:7.2f} s"),
        (
            "  of which probes and reports",
            f"{elapsed - before:7.2f} s  {_verdict(elapsed - before, timeout)}",
        ),
        ("  prgen's CPU time", f"{cpu:7.2f} s"),
        ("  environments reported / late / failed", _counts(result)),
        ("  reports written", f"{writes}"),
        ("  GitHub requests", f"{methods.total()}  ({kinds or 'none'})"),
        ("  GitHub requests in flight at most", f"{requests.most_in_flight}"),
        ("  answered 304 Not Modified", not_modified),
        ("  rate-limit points", points),
        ("  threads at most (before the round)", f"{sampler.most}  ({threads_before})"),
    ]


def _verdict(seconds: float, timeout: float) -> str:
    return f"({'within' if seconds <= 2 * timeout else 'OVER'} 2 x timeout = {2 * timeout:g} s)"


def _counts(result: ProbeRunResult) -> str:
    failed = len(result.failed_environments) + len(result.failed_repositories)
    return f"{len(result.environments)} / {len(result.late)} / {failed}"


class Latency:
    """Holds each GitHub request `seconds` before it is answered; counts those held at once."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds
        self._lock = threading.Lock()
        self._now = 0
        self.most = 0

    def __call__(self, _: object) -> None:
        with self._lock:
            self._now += 1
            self.most = max(self.most, self._now)
        try:
            time.sleep(self._seconds)
        finally:
            with self._lock:
                self._now -= 1

    def reset(self) -> None:
        with self._lock:
            self.most = self._now


@dataclass
class Requests:
    methods: list[str]  # of each request since the last "clear"
    most_in_flight: int
    not_modified: int | None  # once the fake GitHub counts them
    points: int | None


def stand_ins(conn: Connection, args: argparse.Namespace) -> None:
    """The fake GitHub and the environments, in a process of their own: they answer as
    servers elsewhere would, without taking prgen's interpreter lock. Told over `conn`."""
    latency = Latency(args.latency)
    with FakeGitHub() as github, Environments().running() as envs:
        github.add_token(TOKEN)
        github.add_repo("acme/shop")
        numbers = [
            github.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}")
            for n in range(args.environments)
        ]
        every = max(1, round(1 / args.hanging)) if args.hanging > 0 else 0
        for index, number in enumerate(numbers):
            if every and index % every == 0:
                envs.behaviour[number] = "hanging"
        hanging = sum(1 for b in envs.behaviour.values() if b == "hanging")
        conn.send((github.base_url, envs.url, hanging))
        while (command := conn.recv()) != "stop":
            if command == "latency":
                github.on_request(latency)
            elif command == "clear":
                github.clear_requests()
                latency.reset()
            elif command == "new window":
                github.set_rate_limit_remaining(5000)
            if command == "requests":
                conn.send(_requests(github, latency))
            else:
                conn.send("ok")


def _requests(github: FakeGitHub, latency: Latency) -> Requests:
    # The counts of 304s and points come with the GitHub helper's fake (issue 11).
    not_modified = getattr(github, "not_modified", None)
    points = getattr(github, "points_used", None)
    return Requests(
        [request.method for request in github.requests],
        latency.most,
        not_modified() if callable(not_modified) else None,
        points() if callable(points) else None,
    )


def build_fleet(root: Path, api: str, envs: str, args: argparse.Namespace) -> Config:
    fleet = root / "fleet.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch=main", str(fleet)], check=True)
    config = parse_config(CONFIG.format(api=api, fleet=fleet, envs=envs, timeout=args.timeout))
    client = make_client(config.github, ENVIRON)
    Syncer(config, GitHubSource(client), root / "work").run()
    return config


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--environments", type=int, default=1000)
    parser.add_argument("--hanging", type=float, default=0.1, help="share of environments")
    parser.add_argument("--timeout", type=float, default=5.0, help="probe timeout, seconds")
    parser.add_argument("--latency", type=float, default=0.05, help="per GitHub request")
    parser.add_argument("--report-concurrency", type=int, default=16, help="github.concurrency")
    args = parser.parse_args()
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"load average before: {load} on {os.cpu_count()} cores\n"
        f"probe round: {args.environments} environments, {args.hanging:.0%} hanging, "
        f"probe timeout {args.timeout:g} s, GitHub latency {args.latency * 1000:g} ms, "
        f"{args.report_concurrency} report workers"
    )
    rows: list[Row] = []
    servers = StandIns(args)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            started = time.perf_counter()
            config = build_fleet(root, servers.api, servers.envs, args)
            print(
                f"  fleet of {args.environments} environments ({servers.hanging} hanging) synced"
                f" in {time.perf_counter() - started:.1f} s (no latency; not part of the figures)"
            )
            servers.tell("latency")
            # As `prgen probe` makes them: every client on one transport and HTTP cache.
            clients = GitHubClients(config.github, ENVIRON, cache_dir=root / "http")
            client = clients.main
            syncer = Syncer(config, GitHubSource.for_clients(clients), root / "work")

            def probe_round() -> tuple[ProbeRunResult, float]:
                """What `prgen probe` does (probe_and_report), the time before the probes apart."""
                started = time.perf_counter()
                fleet = syncer.fleet
                snapshot = fleet.refresh()
                removed = fleet.recently_removed(config.probe.closed_lookback)
                inventory = snapshot.inventory
                listings = GitHubSource.for_clients(clients).list_all(
                    [repo.name for repo in config.repositories], inventory.numbers_of
                )
                before = time.perf_counter() - started
                prober = Prober(
                    config,
                    client,
                    fleet,
                    client_factory=clients.new,
                    report_concurrency=args.report_concurrency,
                )
                return prober.run(inventory, listings, removed), before

            first = "first round (every report written)"
            rows += round_rows(first, servers, args.timeout, probe_round)
            # Writes go one at a time (github.writeInterval), so the first round's 4,000 may
            # not fit its budget: rounds go on until one writes nothing, as the CronJob's would.
            for extra in range(1, 6):
                # The first rounds' writes spend more than an hour's 5,000 points of the
                # fake's budget; each round here starts a new window, as rounds an hour apart
                # would (an App installation's budget is larger than the fake's anyway).
                servers.tell("new window")
                result, _ = probe_round()
                written = sum(e.outcome.writes for e in result.environments)
                rows.append((f"  catch-up round {extra}: reports written", f"{written}"))
                if not written and not result.late:
                    break
            servers.tell("new window")
            rows += round_rows("idle round (nothing changed)", servers, args.timeout, probe_round)
    finally:
        servers.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("peak memory of prgen's process", f"{peak:.0f} MB"))
    for label, value in rows:
        print(f"  {label:<48} {value}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
