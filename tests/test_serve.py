"""`prgen serve` over real HTTP on 127.0.0.1: webhooks, debounced scoped syncs, the full
sync on schedule, metrics, health and the status API."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from prgen.testing.fake_github import FakeGitHub
from prgen.testing.fake_github.webhooks import (
    issue_comment_payload,
    pull_request_payload,
    repository_payload,
    sign,
)
from scenarios import read_fleet, repository_entry
from serve_support import (
    API_TOKEN,
    SECRET,
    SECRETS,
    commits,
    open_pull,
    server_section,
    serving_prgen,
    wait_for,
)

from conftest import as_app, git

Config = Callable[..., Path]
REPOS = ("acme/shop", "acme/cart", "acme/blog")


@pytest.fixture
def three(github: FakeGitHub, write_config: Config) -> Path:
    for name in REPOS:
        github.add_repo(name)
        open_pull(github, name)
    return write_config("".join(repository_entry(n) for n in REPOS), server_section())


def patient(config: Path) -> None:
    """A burst is never cut by maxDelay: the test sends it well within 10 s."""
    text = config.read_text()
    assert "  maxDelay: 2s\n" in text
    config.write_text(text.replace("  maxDelay: 2s\n", "  maxDelay: 10s\n"))


def metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_a_signed_synchronize_updates_the_environment_in_a_scoped_sync(
    github: FakeGitHub, three: Path, fleet_remote: Path, tmp_path: Path
) -> None:
    with serving_prgen(three, tmp_path / "work") as served:
        assert read_fleet(fleet_remote).environments[("acme/shop", 1)]
        before = commits(fleet_remote)
        github.clear_requests()
        sha = github.push("acme/shop", 1)
        sent = served.synchronize("acme/shop", 1, sha)
        assert (sent.status, sent.body) == (202, {"result": "accepted"})
        wait_for(lambda: read_fleet(fleet_remote).environments[("acme/shop", 1)] == sha)
        assert commits(fleet_remote) == before + 1
        # The run is recorded a moment after its push lands.
        wait_for(lambda: served.runs >= 2)
        last = served.server.app.runner.last
        assert last is not None and last.scope == frozenset({"acme/shop"})
        # Only shop was listed: the other repositories cost nothing.
        assert github.count_requests("GET", r"/repos/acme/(cart|blog)/.*") == 0


def test_forged_unsigned_and_oversized_deliveries_change_nothing(
    github: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    github.add_repo("acme/shop")
    open_pull(github, "acme/shop")
    config = write_config(repository_entry("acme/shop"), server_section(maxBodyBytes=2048))
    with serving_prgen(config, tmp_path / "work") as served:
        runs = served.runs
        payload = pull_request_payload("acme/shop", 1)
        body = json.dumps(payload).encode()
        assert served.deliver("pull_request", payload, secret=None).status == 401
        assert served.deliver("pull_request", payload, secret="not-the-secret").status == 401
        forged = sign(SECRET, body + b" ")  # a signature of another body
        assert served.deliver("pull_request", body, signature=forged).status == 401
        assert served.deliver("pull_request", body, signature="sha1=abc").status == 401
        big = {**payload, "padding": "x" * 4096}
        assert served.deliver("pull_request", big).status == 413
        # A body far over the limit is refused by waitress before it is read.
        assert served.deliver("pull_request", {"padding": "x" * 200_000}).status == 413
        # Signed but not JSON: a bad request, nothing marked.
        assert served.deliver("pull_request", b"{not json").status == 400
        assert served.server.worker.pending == 0
        found = metrics(served.get("/metrics").text)
        assert (
            found[
                (
                    "prgen_webhook_deliveries_total",
                    (("event", "pull_request"), ("result", "unauthorized")),
                )
            ]
            == 4
        )
        assert (
            found[
                (
                    "prgen_webhook_deliveries_total",
                    (("event", "pull_request"), ("result", "too-large")),
                )
            ]
            == 1
        )
        assert (
            found[
                (
                    "prgen_webhook_deliveries_total",
                    (("event", "pull_request"), ("result", "malformed")),
                )
            ]
            == 1
        )
        assert served.runs == runs


def test_a_rejected_delivery_is_logged_without_its_body(
    github: FakeGitHub, three: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="prgen.serve")
    with serving_prgen(three, tmp_path / "work") as served:
        payload = pull_request_payload("acme/shop", 1)
        payload["pull_request"]["title"] = "SECRET-LOOKING-TITLE"
        served.deliver("pull_request", payload, secret="wrong", delivery="d-forged")
        served.deliver("pull_request", payload, delivery="d-good")
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("prgen.serve.app")]
    assert any("d-forged" in line and "unauthorized" in line for line in lines), lines
    assert any("d-good" in line and "acme/shop" in line and "accepted" in line for line in lines)
    assert not any("SECRET-LOOKING-TITLE" in r.getMessage() for r in caplog.records)
    assert not any(SECRET in r.getMessage() for r in caplog.records)


def test_ping_unhandled_events_unknown_repositories_and_duplicates(
    github: FakeGitHub, three: Path, tmp_path: Path
) -> None:
    with serving_prgen(three, tmp_path / "work") as served:
        assert served.deliver("ping", {"zen": "Keep it logically awesome."}).status == 200
        for event, payload in (
            ("push", repository_payload("acme/shop")),
            ("issues", repository_payload("acme/shop", "opened")),
            ("pull_request", pull_request_payload("acme/shop", 1, "assigned")),
            ("issue_comment", issue_comment_payload("acme/shop", 1, "looks good")),
            (
                "issue_comment",
                issue_comment_payload("acme/shop", 1, "/preview redeploy", on_pull=False),
            ),
            ("issue_comment", issue_comment_payload("acme/shop", 1, "/preview pause", "deleted")),
            # No deploy gate in this config: reviews and checks change nothing.
            ("check_run", repository_payload("acme/shop", "completed")),
            ("status", repository_payload("acme/shop")),
        ):
            sent = served.deliver(event, payload)
            assert (sent.status, sent.body["result"]) == (202, "ignored"), (event, payload)
        elsewhere = served.deliver("pull_request", pull_request_payload("other/repo", 1, "opened"))
        assert (elsewhere.status, elsewhere.body["result"]) == (202, "unconfigured")
        assert served.server.worker.pending == 0

        first = served.deliver(
            "issue_comment", issue_comment_payload("acme/cart", 1, " /preview redeploy")
        )
        assert first.body["result"] == "accepted"
        again = served.deliver(
            "issue_comment",
            issue_comment_payload("acme/cart", 1, " /preview redeploy"),
            delivery=first.delivery,
        )
        assert (again.status, again.body["result"]) == (200, "duplicate")
        found = metrics(served.get("/metrics").text)
        assert (
            found[("prgen_webhook_deliveries_total", (("event", "ping"), ("result", "ping")))] == 1
        )
        assert (
            found[("prgen_webhook_deliveries_total", (("event", "other"), ("result", "ignored")))]
            == 1  # issues
        )
        # push is known (a repository's own .prgen.yaml), ignored where there is none
        assert (
            found[("prgen_webhook_deliveries_total", (("event", "push"), ("result", "ignored")))]
            == 1
        )
        assert (
            found[
                (
                    "prgen_webhook_deliveries_total",
                    (("event", "issue_comment"), ("result", "duplicate")),
                )
            ]
            == 1
        )


def test_gate_events_mark_a_repository_with_a_deploy_gate(
    github: FakeGitHub, write_config: Config, tmp_path: Path
) -> None:
    github.add_repo("acme/shop")
    github.add_repo("acme/cart")
    gated = repository_entry("acme/shop") + "    deployWhen: {checks: all}\n"
    config = write_config(
        gated + repository_entry("acme/cart"), server_section(max_delay="30s", quiet="20s")
    )
    with serving_prgen(config, tmp_path / "work") as served:
        for event in ("check_run", "check_suite", "status", "pull_request_review"):
            assert (
                served.deliver(event, repository_payload("acme/shop", "completed")).body["result"]
                == "accepted"
            )
            assert (
                served.deliver(event, repository_payload("acme/cart", "completed")).body["result"]
                == "ignored"
            )
        assert served.server.worker.pending == 1


def test_a_burst_of_50_pushes_to_one_pr_is_one_sync_and_one_commit(
    github: FakeGitHub, three: Path, fleet_remote: Path, tmp_path: Path
) -> None:
    patient(three)
    with serving_prgen(three, tmp_path / "work") as served:
        runs, before = served.runs, commits(fleet_remote)
        sha = ""
        for _ in range(50):
            sha = github.push("acme/shop", 1)
            assert served.synchronize("acme/shop", 1, sha).status == 202
        served.wait_runs(runs + 1)
        served.settle()
        assert served.runs == runs + 1
        assert commits(fleet_remote) == before + 1
        assert read_fleet(fleet_remote).environments[("acme/shop", 1)] == sha
        changed = git("show", "--name-only", "--format=", "main", cwd=fleet_remote).split()
        assert changed == ["previews/dev/shop-pr-1/helmrelease.yaml"]


def test_events_across_repositories_are_one_scoped_run(
    github: FakeGitHub, three: Path, fleet_remote: Path, tmp_path: Path
) -> None:
    patient(three)
    with serving_prgen(three, tmp_path / "work") as served:
        runs, before = served.runs, commits(fleet_remote)
        github.clear_requests()
        new = open_pull(github, "acme/cart")
        sha = github.push("acme/shop", 1)
        served.deliver("pull_request", pull_request_payload("acme/cart", new, "opened"))
        served.synchronize("acme/shop", 1, sha)
        served.wait_runs(runs + 1)
        served.settle()
        last = served.server.app.runner.last
        assert last is not None and last.scope == frozenset({"acme/shop", "acme/cart"})
        assert commits(fleet_remote) == before + 1
        fleet = read_fleet(fleet_remote)
        assert (
            fleet.environments[("acme/shop", 1)] == sha and ("acme/cart", new) in fleet.environments
        )
        assert github.count_requests("GET", r"/repos/acme/blog/.*") == 0


def test_closed_removes_that_environment_and_nothing_else(
    github: FakeGitHub, three: Path, fleet_remote: Path, tmp_path: Path
) -> None:
    with serving_prgen(three, tmp_path / "work") as served:
        before = read_fleet(fleet_remote)
        # blog's PR closes without a webhook: a scoped sync of shop must keep it.
        github.close_pull("acme/blog", 1)
        github.close_pull("acme/shop", 1)
        served.synchronize("acme/shop", 1, before.environments[("acme/shop", 1)], "closed")
        wait_for(lambda: ("acme/shop", 1) not in read_fleet(fleet_remote).environments)
        served.settle()
        after = read_fleet(fleet_remote)
        assert after.problems == []
        assert set(after.environments) == set(before.environments) - {("acme/shop", 1)}
        assert "removed acme/shop#1" in git("log", "-1", "--format=%B", "main", cwd=fleet_remote)


def test_the_full_sync_on_schedule_removes_what_vanished_without_an_event(
    github: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    for name in REPOS:
        github.add_repo(name)
        open_pull(github, name)
    config = write_config(
        "".join(repository_entry(n) for n in REPOS), server_section(interval="1s")
    )
    with serving_prgen(config, tmp_path / "work") as served:
        assert len(read_fleet(fleet_remote).environments) == 3
        github.close_pull("acme/blog", 1)
        wait_for(lambda: ("acme/blog", 1) not in read_fleet(fleet_remote).environments, 15)
        full = ("prgen_sync_runs_total", (("outcome", "ok"), ("scope", "full")))
        # The run is counted once it has finished, a moment after its push lands.
        found = wait_for(
            lambda: (m := metrics(served.get("/metrics").text)).get(full, 0) >= 2 and m, 15
        )
        # No delivery came: only full syncs ran.
        scoped = ("prgen_sync_runs_total", (("outcome", "ok"), ("scope", "scoped")))
        assert found.get(scoped, 0) == 0


def test_metrics_parse_and_count(
    github: FakeGitHub, three: Path, fleet_remote: Path, tmp_path: Path
) -> None:
    with serving_prgen(three, tmp_path / "work", cache_dir=tmp_path / "http") as served:
        sha = github.push("acme/shop", 1)
        served.synchronize("acme/shop", 1, sha)
        served.wait_runs(2)
        served.server.worker.request_full()
        served.wait_runs(3)
        response = served.get("/metrics")
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        found = metrics(response.text)
    assert found[("prgen_sync_runs_total", (("outcome", "ok"), ("scope", "full")))] == 2
    assert found[("prgen_sync_runs_total", (("outcome", "ok"), ("scope", "scoped")))] == 1
    assert found[("prgen_sync_duration_seconds_count", (("outcome", "ok"), ("scope", "full")))] == 2
    assert found[("prgen_environments", (("state", "current"),))] == 3
    assert found[("prgen_fleet_commits_total", ())] == 2  # the first full sync and the update
    assert found[("prgen_github_requests_total", (("status", "200"),))] >= 3
    # The second full sync found the lists unchanged: GitHub said 304.
    assert found[("prgen_github_requests_total", (("status", "304"),))] >= 2
    assert found[("prgen_github_rate_limit_remaining", ())] > 0
    assert 0 <= found[("prgen_seconds_since_last_full_sync", ())] < 30
    assert found[("prgen_last_full_sync_success_timestamp_seconds", ())] > 1.7e9
    assert (
        found[
            ("prgen_webhook_deliveries_total", (("event", "pull_request"), ("result", "accepted")))
        ]
        == 1
    )


def test_healthz_and_readyz(
    github: FakeGitHub, three: Path, tmp_path: Path, fleet_remote: Path
) -> None:
    github.inject("GET", r"/repos/acme/shop/pulls", status=0, delay=1.5)
    with serving_prgen(three, tmp_path / "work", first_run=False) as served:
        assert served.get("/healthz").status_code == 200
        early = served.get("/readyz")
        assert early.status_code == 503
        assert "no full sync has completed yet" in early.json()["reasons"]
        served.wait_runs(1)
        assert served.get("/readyz").status_code == 200
        assert served.get("/nothing").status_code == 404
        assert served.session.post(f"{served.url}/metrics", timeout=5).status_code == 405
        assert served.get("/webhook").status_code == 405
    # A fleet that cannot be reached: not ready.
    unreachable = tmp_path / "unreachable.yaml"
    unreachable.write_text(three.read_text().replace(str(fleet_remote), str(tmp_path / "gone.git")))
    with serving_prgen(unreachable, tmp_path / "work2") as served:
        not_ready = served.get("/readyz")
        assert not_ready.status_code == 503
        assert any(r.startswith("fleet repository:") for r in not_ready.json()["reasons"])


def test_the_status_api_needs_the_bearer_token_and_is_cached(
    github: FakeGitHub, three: Path, tmp_path: Path
) -> None:
    with serving_prgen(three, tmp_path / "work") as served:
        assert served.get("/api/v1/status").status_code == 401
        assert served.get("/api/v1/status", Authorization="Bearer wrong").status_code == 401
        assert served.get("/api/v1/status", Authorization=f"Basic {API_TOKEN}").status_code == 401
        github.clear_requests()
        answer = served.get("/api/v1/status", Authorization=f"Bearer {API_TOKEN}")
        assert answer.status_code == 200, answer.text
        document = answer.json()
        assert [r["name"] for r in document["repositories"]] == list(REPOS)
        shop = document["repositories"][0]
        assert shop["pullRequests"][0]["environment"]["name"] == "shop-pr-1"
        asked = len(github.requests)
        again = served.get("/api/v1/status", Authorization=f"Bearer {API_TOKEN}")
        assert again.json() == document
        assert len(github.requests) == asked  # from the cache: GitHub was not asked again


def test_a_missing_secret_is_a_config_error(
    github: FakeGitHub, three: Path, tmp_path: Path
) -> None:
    from conftest import run

    result = run("serve", "--config", str(three), "--workdir", str(tmp_path / "w"))
    assert result.exit_code == 2
    assert "server.webhookSecretEnv" in result.output and "PRGEN_WEBHOOK_SECRET" in result.output


def test_a_pr_comment_command_is_applied_by_the_scoped_sync_its_delivery_starts(
    github: FakeGitHub, three: Path, fleet_remote: Path, tmp_path: Path
) -> None:
    """issue_comment → that repository syncs soon → the sync reads the comment, checks the
    author's permission and applies it in the fleet, then answers 👍 on the comment."""
    github.set_permission("acme/shop", "alice", "write")
    with serving_prgen(three, tmp_path / "work") as served:
        held = read_fleet(fleet_remote).environments[("acme/shop", 1)]
        comment = github.add_comment("acme/shop", 1, "/preview pause", user="alice")
        sent = served.deliver(
            "issue_comment", issue_comment_payload("acme/shop", 1, "/preview pause")
        )
        assert sent.status == 202
        wait_for(lambda: "+1" in {r.content for r in github.reactions("acme/shop", comment.id)})
        paused = git("show", "main:previews/dev/shop-pr-1/helmrelease.yaml", cwd=fleet_remote)
        assert f"prgen.io/paused-at: {held}" in paused
        # A push now moves nothing: the environment stays at the head it was paused at.
        sha = github.push("acme/shop", 1)
        served.synchronize("acme/shop", 1, sha)
        served.settle()
        assert read_fleet(fleet_remote).environments[("acme/shop", 1)] == held


def test_an_app_keeps_its_token_across_syncs_so_an_idle_sync_costs_nothing(
    github: FakeGitHub, three: Path, fleet_remote: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """GitHub's ETags are specific to the token that fetched them (the fake's too): a token
    minted per sync would have every read answered in full. The server keeps one."""
    as_app(three, github, monkeypatch)
    environ = {**SECRETS, "APP_KEY": os.environ["APP_KEY"]}
    with serving_prgen(three, tmp_path / "work", environ, cache_dir=tmp_path / "http") as served:
        github.clear_requests()
        served.server.worker.request_full()
        served.wait_runs(2)
        found = metrics(served.get("/metrics").text)
    assert github.count_requests("POST", r"/app/installations/\d+/access_tokens") == 0
    reads = [a for a in github.answers if a.request.method == "GET"]
    assert reads and all(a.status == 304 for a in reads), [
        (a.request.path, a.status) for a in reads
    ]
    assert github.points_used() == 0
    # The metrics count each run's own answers, not the clients' running total.
    assert found[("prgen_github_requests_total", (("status", "304"),))] == len(reads)


def push_payload(repository: str, files: list[str], ref: str = "refs/heads/main") -> dict[str, Any]:
    """A push as GitHub delivers it, with what prgen reads of it."""
    return {
        "ref": ref,
        "repository": {"full_name": repository, "default_branch": "main"},
        "commits": [{"id": "c" * 40, "added": [], "modified": files, "removed": []}],
    }


def test_a_push_that_changes_a_repositorys_own_config_is_applied_by_a_scoped_sync(
    github: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    """push to the default branch touching .prgen.yaml → that repository syncs soon with the
    new file; a push elsewhere, or of other files, starts nothing."""
    for name in REPOS:
        github.add_repo(name)
        open_pull(github, name)
    entries = [repository_entry(n) for n in REPOS]
    entries[0] += "    repoConfig: {allow: [values]}\n"
    config = write_config("".join(entries), server_section())
    with serving_prgen(config, tmp_path / "work") as served:
        runs = served.runs
        ignored = [
            push_payload("acme/shop", ["README.md"]),
            push_payload("acme/shop", [".prgen.yaml"], ref="refs/heads/feature"),
            push_payload("acme/cart", [".prgen.yaml"]),  # no repoConfig: nothing to read
        ]
        for payload in ignored:
            assert served.deliver("push", payload).body == {"result": "ignored"}
        github.set_file("acme/shop", ".prgen.yaml", "values: {replicas: 4}\n")
        sent = served.deliver("push", push_payload("acme/shop", [".prgen.yaml"]))
        assert sent.body == {"result": "accepted"}

        def applied() -> bool:
            text = git("show", "main:previews/dev/shop-pr-1/helmrelease.yaml", cwd=fleet_remote)
            return "replicas: 4" in text

        wait_for(applied)
        wait_for(lambda: served.runs > runs)  # recorded a moment after its push lands
        last = served.server.app.runner.last
        assert last is not None and last.scope == frozenset({"acme/shop"})
