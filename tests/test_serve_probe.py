"""Probe rounds in `prgen serve`: reports reach the PRs, hanging probes never pile up threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from prgen.commands.options import load
from prgen.serve.metrics import Metrics
from prgen.serve.probing import ProbeLoop, leftover_threads
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub
from serve_support import open_pull, server_section, serving_prgen, wait_for

from conftest import HEALTH, SHOP

Config = Callable[..., Path]
FAST = "probe: {roundTimeout: 3s}\n"


def healthy_and_hanging(github: FakeGitHub, envs: Environments) -> tuple[int, int]:
    github.add_repo("acme/shop")
    healthy = open_pull(github, "acme/shop", labels=())
    hanging = open_pull(github, "acme/shop", labels=())
    envs.behaviour[hanging] = "hanging"
    return healthy, hanging


def prgen_threads() -> int:
    return sum(t.name.startswith("prgen") for t in threading.enumerate())


def test_the_server_probes_and_reports_on_the_pr(
    github: FakeGitHub, envs: Environments, write_config: Config, tmp_path: Path
) -> None:
    healthy, hanging = healthy_and_hanging(github, envs)
    config = write_config(SHOP + HEALTH.format(url=envs.url), FAST + server_section(probe="1s"))
    with serving_prgen(config, tmp_path / "work") as served:
        prober = served.server.prober
        assert prober is not None
        wait_for(lambda: prober.rounds >= 2, 60)
        text = served.get("/metrics").text
    head = github.pull("acme/shop", healthy).head_sha
    assert any(s.state == "success" for s in github.statuses("acme/shop", head))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("prgen_probe_environments", (("health", "success"),))] == 1
    assert samples[("prgen_probe_rounds_total", (("outcome", "ok"),))] >= 1
    assert hanging  # its probe timed out (1 s) and was left behind, each round


def test_hanging_probes_never_pile_up_threads(
    github: FakeGitHub, envs: Environments, write_config: Config, tmp_path: Path
) -> None:
    healthy_and_hanging(github, envs)
    for _ in range(3):
        envs.behaviour[open_pull(github, "acme/shop", labels=())] = "hanging"
    config = write_config(SHOP + HEALTH.format(url=envs.url), FAST + server_section())
    loaded = load(config)
    with serving_prgen(config, tmp_path / "work"):
        pass  # the environments exist now
    before = prgen_threads()
    prober = ProbeLoop(loaded, tmp_path / "probe", None, Metrics(), interval=600)
    peak = 0
    for _ in range(6):
        prober.run_round()
        peak = max(peak, leftover_threads())
    # Each round's hanging probes end at their deadline (the watchdog shuts their sockets):
    # six rounds leave no more behind than one.
    assert peak <= prober.leftover_limit
    wait_for(lambda: leftover_threads() == 0, 30)
    # (The stand-in environments' own server threads still hang: they are not prgen's.)
    assert prgen_threads() == before


def test_a_round_is_skipped_while_threads_of_earlier_rounds_hang(
    github: FakeGitHub, envs: Environments, write_config: Config, tmp_path: Path
) -> None:
    healthy_and_hanging(github, envs)
    config = write_config(SHOP + HEALTH.format(url=envs.url), FAST + server_section())
    metrics = Metrics()
    prober = ProbeLoop(load(config), tmp_path / "probe", None, metrics, interval=600)
    stuck = threading.Event()
    hung = threading.Thread(target=stuck.wait, name="prgen-probe-stuck", daemon=True)
    hung.start()
    try:
        prober.leftover_limit = 1
        assert prober.run_round() is None
        assert metrics.probe_rounds.labels("skipped")._value.get() == 1
        assert metrics.probe_leftover_threads._value.get() == 1
        assert github.count_requests("*", r".*") == 0  # nothing was asked of GitHub
    finally:
        stuck.set()
        hung.join()
