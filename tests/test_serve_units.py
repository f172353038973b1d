"""The pieces of `prgen serve` on their own: its config, the signature, what a delivery asks
for, the memory of deliveries, the debounce, the metrics of environments."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from prgen.config import ServerSettings, parse_config
from prgen.errors import ConfigError
from prgen.plan import Action, Change
from prgen.serve.metrics import Metrics
from prgen.serve.server import read_secrets
from prgen.serve.webhook import RecentDeliveries, Result, hint_of, signature_of, signed_by
from prgen.serve.worker import Scope, SyncWorker, Timing
from prgen.testing.fake_github.webhooks import (
    issue_comment_payload,
    pull_request_payload,
    repository_payload,
    sign,
)

BASE = """\
fleet: {url: /tmp/fleet.git, path: previews/dev}
repositories:
  - name: acme/shop
    chart: {chart: shop, sourceRef: {kind: HelmRepository, name: charts}}
"""


# -- config ----------------------------------------------------------------------------------


def test_the_server_section_has_documented_defaults() -> None:
    settings = parse_config(BASE).server
    assert settings == ServerSettings()
    assert (settings.port, settings.interval, settings.quiet_period, settings.max_delay) == (
        8080,
        600.0,
        1.0,
        3.0,
    )
    assert (settings.webhook_secret_env, settings.api_token_env) == (
        "PRGEN_WEBHOOK_SECRET",
        "PRGEN_API_TOKEN",
    )


def test_the_server_section_is_read() -> None:
    text = BASE + (
        "server: {port: 9000, interval: 5m, quietPeriod: 500ms, maxDelay: 2s, "
        "webhookSecretEnv: HOOK, apiTokenEnv: API, maxBodyBytes: 4096, statusCacheTtl: 0s, "
        "probeInterval: 0s}\n"
    )
    settings = parse_config(text).server
    assert settings == ServerSettings(
        port=9000,
        interval=300.0,
        quiet_period=0.5,
        max_delay=2.0,
        webhook_secret_env="HOOK",
        api_token_env="API",
        max_body_bytes=4096,
        status_cache_ttl=0.0,
        probe_interval=0.0,
    )


@pytest.mark.parametrize(
    ("server", "path", "reason"),
    [
        ("{port: 70000}", "server.port", "70000"),
        ("{interval: 10}", "server.interval", "10"),
        ("{interval: 0s}", "server.interval", "more than zero"),
        ("{quietPeriod: 2s, maxDelay: 1s}", "server.maxDelay", "at least server.quietPeriod"),
        ("{webhookSecretEnv: 'not a name'}", "server.webhookSecretEnv", "not a name"),
        ("{maxBodyBytes: 10}", "server.maxBodyBytes", "10"),
        ("{debounce: 1s}", "server.debounce", "debounce"),
    ],
)
def test_a_bad_server_section_names_the_field(server: str, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE + f"server: {server}\n")
    assert caught.value.path == path
    assert reason in str(caught.value)


def test_missing_secrets_are_config_errors_naming_the_field() -> None:
    config = parse_config(BASE)
    with pytest.raises(ConfigError) as caught:
        read_secrets(config, {"PRGEN_API_TOKEN": "t"})
    assert caught.value.path == "server.webhookSecretEnv"
    with pytest.raises(ConfigError) as caught:
        read_secrets(config, {"PRGEN_WEBHOOK_SECRET": "s", "PRGEN_API_TOKEN": "  "})
    assert caught.value.path == "server.apiTokenEnv"
    secrets = read_secrets(config, {"PRGEN_WEBHOOK_SECRET": "s", "PRGEN_API_TOKEN": "t"})
    assert (secrets.webhook, secrets.api_token) == (b"s", b"t")


# -- signature and payloads ------------------------------------------------------------------


def test_the_signature_is_githubs_hmac_sha256_of_the_raw_body() -> None:
    # GitHub's documented example ("Validating webhook deliveries").
    secret, body = b"It's a Secret to Everybody", b"Hello, World!"
    expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature_of(secret, body) == expected
    assert sign(secret.decode(), body) == expected
    assert signed_by(secret, body, expected)
    assert not signed_by(secret, body + b" ", expected)
    assert not signed_by(secret, body, expected.upper())
    assert not signed_by(secret, body, None)
    assert not signed_by(secret, body, "")
    assert not signed_by(b"", body, signature_of(b"", body))  # never without a secret
    assert not signed_by(secret, body, "sha256=\udcff")


CONFIGURED = frozenset({"acme/shop", "acme/cart"})
GATED = frozenset({"acme/cart"})


def hint(event: str, payload: object) -> tuple[Result, str | None]:
    found = hint_of(event, json.dumps(payload).encode(), CONFIGURED, GATED)
    return found.result, found.repository


@pytest.mark.parametrize(
    "action",
    [
        "opened",
        "reopened",
        "synchronize",
        "closed",
        "edited",
        "labeled",
        "unlabeled",
        "ready_for_review",
        "converted_to_draft",
    ],
)
def test_pull_request_actions_that_change_an_environment(action: str) -> None:
    assert hint("pull_request", pull_request_payload("Acme/Shop", 3, action)) == (
        Result.ACCEPTED,
        "Acme/Shop",
    )


def test_what_a_delivery_asks_for() -> None:
    assert (
        hint("pull_request", pull_request_payload("acme/shop", 3, "assigned"))[0] is Result.IGNORED
    )
    assert hint("pull_request", pull_request_payload("other/x", 3, "opened")) == (
        Result.UNCONFIGURED,
        "other/x",
    )
    comment = issue_comment_payload("acme/shop", 3, "/preview redeploy")
    assert hint("issue_comment", comment)[0] is Result.ACCEPTED
    edited = issue_comment_payload("acme/shop", 3, "\n /preview pause", "edited")
    assert hint("issue_comment", edited)[0] is Result.ACCEPTED
    for ignored in (
        issue_comment_payload("acme/shop", 3, "/preview redeploy", "deleted"),
        issue_comment_payload("acme/shop", 3, "please /preview redeploy"),
        issue_comment_payload("acme/shop", 3, "/preview redeploy", on_pull=False),
    ):
        assert hint("issue_comment", ignored)[0] is Result.IGNORED
    for event in ("check_run", "check_suite", "status", "pull_request_review"):
        assert hint(event, repository_payload("acme/cart", "completed"))[0] is Result.ACCEPTED
        assert hint(event, repository_payload("acme/shop", "completed"))[0] is Result.IGNORED
    assert hint("push", repository_payload("acme/shop"))[0] is Result.IGNORED


def test_a_push_is_a_hint_only_where_it_may_change_a_repositorys_own_config() -> None:
    own = {"acme/shop": ".prgen.yaml"}

    def push(files: object, ref: str = "refs/heads/main", commits: object = None) -> Result:
        payload = {
            "ref": ref,
            "repository": {"full_name": "acme/shop", "default_branch": "main"},
            "commits": commits
            if commits is not None
            else [{"added": [], "modified": files, "removed": []}],
        }
        return hint_of("push", json.dumps(payload).encode(), CONFIGURED, GATED, own).result

    assert push([".prgen.yaml"]) is Result.ACCEPTED
    assert push(["README.md"]) is Result.IGNORED
    assert push([".prgen.yaml"], ref="refs/heads/feature") is Result.IGNORED  # not the default
    assert push([], commits=[]) is Result.ACCEPTED  # a push that lists nothing: look
    assert push(None) is Result.ACCEPTED  # files not listed: look
    many = [{"added": [], "modified": ["x"], "removed": []}] * 2048
    assert push([], commits=many) is Result.ACCEPTED  # GitHub lists at most 2048 commits
    other = {
        "ref": "refs/heads/main",
        "repository": {"full_name": "acme/cart", "default_branch": "main"},
    }
    assert (
        hint_of("push", json.dumps(other).encode(), CONFIGURED, GATED, own).result is Result.IGNORED
    )
    assert hint("ping", {})[0] is Result.PING
    for malformed in ([], {"repository": "acme/shop"}, {"repository": {"full_name": 3}}):
        assert hint("pull_request", malformed)[0] is Result.MALFORMED
    assert hint_of("pull_request", b"\xff{", CONFIGURED, GATED).result is Result.MALFORMED


def test_recent_deliveries_are_bounded() -> None:
    recent = RecentDeliveries(size=3)
    assert recent.first_time("a") and recent.first_time("b") and not recent.first_time("a")
    assert recent.first_time("c") and recent.first_time("d")  # "b" is forgotten
    assert len(recent) == 3
    assert recent.first_time("b") and not recent.first_time("d")
    assert recent.first_time(None) and recent.first_time(None)


# -- debounce --------------------------------------------------------------------------------


class Recorder:
    def __init__(self, seconds: float = 0.0) -> None:
        self.scopes: list[Scope] = []
        self.seconds = seconds
        self.lock = threading.Lock()

    def __call__(self, scope: Scope) -> None:
        with self.lock:
            self.scopes.append(scope)
        time.sleep(self.seconds)


def wait_until(condition: object, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_a_burst_is_one_run_after_the_quiet_period() -> None:
    runs = Recorder()
    worker = SyncWorker(runs, Timing(interval=600, quiet_period=0.2, max_delay=5))
    worker.start()
    try:
        wait_until(lambda: runs.scopes == [None])  # the full sync at start
        for _ in range(20):
            worker.mark("acme/Shop")
            worker.mark("acme/cart")
            time.sleep(0.01)
        wait_until(lambda: len(runs.scopes) == 2)
        time.sleep(0.4)
        assert runs.scopes == [None, frozenset({"acme/shop", "acme/cart"})]
    finally:
        assert worker.stop(5)


def test_a_busy_repository_is_synced_within_the_max_delay() -> None:
    runs = Recorder()
    worker = SyncWorker(runs, Timing(interval=600, quiet_period=0.2, max_delay=0.5))
    worker.start()
    try:
        wait_until(lambda: runs.scopes == [None])
        started = time.monotonic()
        while time.monotonic() - started < 1.6:  # never quiet for 0.2 s
            worker.mark("acme/shop")
            time.sleep(0.02)
        # Runs every max_delay, not once the events stop.
        assert 2 <= len(runs.scopes) - 1 <= 4, runs.scopes
    finally:
        assert worker.stop(5)


def test_the_full_sync_comes_every_interval_and_takes_the_marks_with_it() -> None:
    runs = Recorder()
    worker = SyncWorker(runs, Timing(interval=0.3, quiet_period=5, max_delay=10))
    worker.start()
    try:
        worker.mark("acme/shop")
        wait_until(lambda: len(runs.scopes) >= 3, 5)
        assert set(runs.scopes[:3]) == {None}  # the mark was covered by a full sync
    finally:
        assert worker.stop(5)


def test_stop_lets_the_run_in_progress_finish_and_starts_no_other() -> None:
    runs = Recorder(seconds=0.5)
    worker = SyncWorker(runs, Timing(interval=600, quiet_period=0.01, max_delay=0.01))
    worker.start()
    wait_until(lambda: runs.scopes == [None])
    worker.mark("acme/shop")
    started = time.monotonic()
    assert worker.stop(5)
    assert time.monotonic() - started >= 0.3  # it waited for the run in progress
    assert runs.scopes == [None]


# -- metrics ---------------------------------------------------------------------------------


def change(repo: str, number: int, action: Action, reason: str = "up to date") -> Change:
    return Change(action, repo, number, f"{repo}-{number}", "a" * 40, reason)


def test_environments_by_state_follow_full_and_scoped_runs() -> None:
    metrics = Metrics()
    metrics.record_environments(
        ["acme/shop", "acme/cart"],
        [
            change("acme/shop", 1, Action.CREATE, "new pull request"),
            change("acme/shop", 2, Action.HOLD, "waits"),
            change("acme/cart", 1, Action.KEEP, "listing of acme/cart failed: kept as is"),
            change("acme/cart", 2, Action.DELETE, "closed"),
        ],
        full=True,
    )
    state = metrics.environments
    assert [state.labels(s)._value.get() for s in ("current", "held", "kept")] == [1, 1, 1]
    # A scoped run of cart replaces cart's count only.
    metrics.record_environments(
        ["acme/cart"],
        [change("acme/cart", 1, Action.KEEP), change("acme/cart", 3, Action.CREATE)],
        full=False,
    )
    assert [state.labels(s)._value.get() for s in ("current", "held", "kept")] == [3, 1, 0]


def test_renewing_clients_are_kept_for_their_age_then_made_anew(tmp_path: Path) -> None:
    from prgen.config import GitHubSettings
    from prgen.github.client import RenewingClients

    now = [0.0]
    renewing = RenewingClients(
        GitHubSettings(), tmp_path / "http", max_age=100.0, clock=lambda: now[0]
    )
    first = renewing.get()
    now[0] = 99.0
    assert renewing.get() is first
    now[0] = 100.0
    second = renewing.get()
    assert second is not first and renewing.made == 2
    renewing.drop()
    assert renewing.get() is not second and renewing.made == 3
