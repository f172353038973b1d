"""prgen sync end to end: real PyGithub over HTTP to the fake on 127.0.0.1, real git to a bare repo."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from prgen.cli import main
from prgen.testing.fake_github import FakeGitHub, RecordedRequest

from conftest import SHOP, git
from manifest_validation import kustomize_build, require_kubectl, validate_documents

Config = Callable[..., Path]


def sync(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["sync", "--config", str(config), *args])


def sync_json(config: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = sync(config, "--output", "json", *args)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def remote_files(remote: Path, folder: str = "previews/dev") -> dict[str, str]:
    names = git("ls-tree", "-r", "--name-only", "main", "--", folder, cwd=remote).split()
    return {
        name.removeprefix(folder + "/"): git("show", f"main:{name}", cwd=remote) for name in names
    }


def commit_count(remote: Path) -> int:
    return int(git("rev-list", "--count", "main", cwd=remote))


def envs(remote: Path) -> set[str]:
    return {name.split("/")[0] for name in remote_files(remote) if "/" in name}


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo("acme/shop")
    return github


def test_create_update_and_delete_across_syncs(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    config = write_config()
    one = shop.open_pull("acme/shop", title="One", head_branch="feature/one")
    two = shop.open_pull("acme/shop", title="Two", head_branch="feature/two")

    result = sync(config)
    assert result.exit_code == 0, result.output
    assert envs(fleet_remote) == {f"shop-pr-{one}", f"shop-pr-{two}"}
    assert "2 created" in git("log", "-1", "--format=%B", "main", cwd=fleet_remote)

    new_sha = shop.push("acme/shop", one)
    shop.close_pull("acme/shop", two)
    report = sync_json(config)
    assert {(c["action"], c["pullRequest"]) for c in report["changes"]} == {
        ("update", one),
        ("delete", two),
    }
    files = remote_files(fleet_remote)
    assert envs(fleet_remote) == {f"shop-pr-{one}"}
    assert new_sha in files[f"shop-pr-{one}/helmrelease.yaml"]
    message = git("log", "-1", "--format=%B", "main", cwd=fleet_remote)
    assert "1 updated, 1 removed" in message and f"removed acme/shop#{two}" in message
    # The pre-existing, hand-written parts of the fleet are untouched.
    assert git("show", "main:clusters/flux.yaml", cwd=fleet_remote) == "# hand-written\n"


def test_a_sync_with_nothing_new_makes_no_commit(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    config = write_config()
    shop.open_pull("acme/shop", title="One", head_branch="feature/one")
    assert sync(config).exit_code == 0
    commits = commit_count(fleet_remote)
    result = sync(config)
    assert result.exit_code == 0 and "nothing changed" in result.output
    assert commit_count(fleet_remote) == commits


def test_250_open_prs_all_get_an_environment_in_one_commit(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    for n in range(250):
        shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}")
    commits = commit_count(fleet_remote)
    report = sync_json(write_config())
    assert report["repositories"][0]["openPullRequests"] == 250
    assert len(envs(fleet_remote)) == 250
    assert commit_count(fleet_remote) == commits + 1
    listing = [r for r in shop.requests if r.method == "GET" and r.path.endswith("/pulls")]
    assert [r.query.get("per_page") for r in listing] == ["100"] * 3
    # Everything filters and templates need comes from the list call: no request per PR.
    # (and the one read of PR commands for the repository).
    others = [r for r in shop.requests if r not in listing]
    assert [(r.method, r.path) for r in others] == [("GET", "/repos/acme/shop/issues/comments")]


def test_a_failed_listing_deletes_nothing_and_exits_1(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    config = write_config()
    for n in range(3):
        shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}")
    assert sync(config).exit_code == 0
    before = remote_files(fleet_remote)

    shop.inject("GET", r"/repos/acme/shop/pulls", status=502, times=1)
    result = sync(config)
    assert result.exit_code == 1
    assert "acme/shop: NOT SYNCED (HTTP 502" in result.output
    assert remote_files(fleet_remote) == before


def test_a_failure_on_page_2_deletes_nothing(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    config = write_config()
    for n in range(150):
        shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}")
    assert sync(config).exit_code == 0
    before = remote_files(fleet_remote)
    shop.inject("GET", r"/repos/acme/shop/pulls", status=500, page=2, times=1)
    report = sync_json(config)
    assert report["exitCode"] == 1
    assert report["repositories"][0]["synced"] is False
    assert remote_files(fleet_remote) == before
    assert report["commit"] is None


def test_a_pr_that_shifts_between_pages_is_confirmed_not_deleted(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    config = write_config()
    numbers = [
        shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}") for n in range(150)
    ]
    assert sync(config).exit_code == 0
    victim = numbers[100]  # on page 1 (newest first); closing it shifts page 2 up by one

    def close_during_pagination(request: RecordedRequest) -> None:
        on_page_2 = request.path.endswith("/pulls") and request.query.get("page") == "2"
        if on_page_2 and shop.pull("acme/shop", victim).state == "open":
            shop.close_pull("acme/shop", victim)

    shop.on_request(close_during_pagination)
    report = sync_json(config)
    assert report["exitCode"] == 0
    assert not [c for c in report["changes"] if c["action"] == "delete"]
    assert len(envs(fleet_remote)) == 150
    # The next run sees the close and removes exactly that one.
    report = sync_json(config)
    assert [c["pullRequest"] for c in report["changes"] if c["action"] == "delete"] == [victim]


def test_a_concurrent_push_between_plan_and_push_is_replanned_and_kept(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    config = write_config()
    shop.open_pull("acme/shop", title="One", head_branch="feature/one")
    other = tmp_path / "other-writer"
    git("clone", str(fleet_remote), str(other))
    pushed: list[bool] = []

    def someone_else_pushes(request: RecordedRequest) -> None:
        # On the read of PR comments, which comes once the fleet is read (the listing runs
        # beside the fleet read, and on a busy machine may come before it).
        if request.path.endswith("/issues/comments") and not pushed:
            pushed.append(True)
            (other / "apps.yaml").write_text("kind: ConfigMap\n")
            git("add", "apps.yaml", cwd=other)
            git("commit", "-m", "unrelated", cwd=other)
            git("push", "origin", "HEAD:main", cwd=other)

    shop.on_request(someone_else_pushes)
    report = sync_json(config)
    assert report["attempts"] == 2
    assert git("show", "main:apps.yaml", cwd=fleet_remote) == "kind: ConfigMap\n"
    assert envs(fleet_remote) == {"shop-pr-1"}
    log = git("log", "--format=%s", "main", cwd=fleet_remote).splitlines()
    assert log[:2] == ["prgen: 1 created, 0 updated, 0 removed", "unrelated"]


def test_hand_written_files_in_the_managed_folder_survive(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    config = write_config()
    number = shop.open_pull("acme/shop", title="One", head_branch="feature/one")
    assert sync(config).exit_code == 0
    clone = tmp_path / "human"
    git("clone", str(fleet_remote), str(clone))
    (clone / "previews/dev/limits.yaml").write_text("apiVersion: v1\nkind: LimitRange\n")
    (clone / f"previews/dev/shop-pr-{number}/notes.md").write_text("mine\n")
    git("add", "-A", cwd=clone)
    git("commit", "-m", "hand-written", cwd=clone)
    git("push", "origin", "HEAD:main", cwd=clone)

    shop.close_pull("acme/shop", number)
    assert sync(config).exit_code == 0
    files = remote_files(fleet_remote)
    assert files["limits.yaml"] == "apiVersion: v1\nkind: LimitRange\n"
    assert files[f"shop-pr-{number}/notes.md"] == "mine\n"
    assert f"shop-pr-{number}/helmrelease.yaml" not in files
    assert "- limits.yaml" in files["kustomization.yaml"]


def test_losing_the_opt_in_label_removes_the_environment(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    config = write_config(SHOP + "    labels: [preview]\n")
    labelled = shop.open_pull("acme/shop", title="A", head_branch="a", labels=["preview"])
    shop.open_pull("acme/shop", title="B", head_branch="b")
    assert sync(config).exit_code == 0
    assert envs(fleet_remote) == {f"shop-pr-{labelled}"}
    shop.set_labels("acme/shop", labelled, [])
    assert sync(config).exit_code == 0
    assert envs(fleet_remote) == set()


def test_dry_run_prints_the_plan_and_a_diff_and_writes_nothing(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    config = write_config()
    shop.open_pull("acme/shop", title="One", head_branch="feature/one")
    commits = commit_count(fleet_remote)
    result = sync(config, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "+ create acme/shop#1" in result.output
    assert "+++ b/previews/dev/shop-pr-1/helmrelease.yaml" in result.output
    assert "dry run: nothing was written" in result.output
    assert commit_count(fleet_remote) == commits


def test_one_failing_repository_does_not_stop_the_others(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    shop.open_pull("acme/shop", title="One", head_branch="one")
    missing = SHOP.replace("acme/shop", "acme/missing")
    report = sync_json(write_config(SHOP + missing))
    assert report["exitCode"] == 1
    by_name = {r["name"]: r for r in report["repositories"]}
    assert by_name["acme/shop"]["synced"] and not by_name["acme/missing"]["synced"]
    assert "404" in by_name["acme/missing"]["error"]
    assert envs(fleet_remote) == {"shop-pr-1"}


def test_a_bad_config_exits_2_and_touches_nothing(tmp_path: Path, fleet_remote: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(f"fleet: {{url: {fleet_remote}, path: ../x}}\nrepositories: []\n")
    workdir = tmp_path / "work"
    result = CliRunner().invoke(main, ["sync", "-c", str(config), "--workdir", str(workdir)])
    assert result.exit_code == 2
    assert "fleet.path" in result.stderr and "repositories" in result.stderr
    assert not workdir.exists()


def test_an_unreachable_fleet_exits_3_with_the_url_redacted(
    shop: FakeGitHub, tmp_path: Path, write_config: Config
) -> None:
    config = write_config()
    text = config.read_text().replace(
        str(tmp_path / "fleet.git"), "https://user:s3cr3t-pass@127.0.0.1:9/x.git"
    )
    config.write_text(text)
    result = sync(config)
    assert result.exit_code == 3
    assert "s3cr3t-pass" not in result.output + result.stderr
    assert "https://***@127.0.0.1:9/x.git" in result.stderr


def test_the_synced_fleet_folder_builds_and_validates(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    for n in range(3):
        shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}")
    assert sync(write_config()).exit_code == 0
    checkout = tmp_path / "check"
    git("clone", str(fleet_remote), str(checkout))
    for path in (checkout / "previews/dev").rglob("*.yaml"):
        if path.name != "kustomization.yaml":
            assert validate_documents(path.read_text()) == [], path
    require_kubectl()
    built = kustomize_build(checkout / "previews/dev")
    assert validate_documents(built) == []
    assert built.count("kind: HelmRelease") == 3 and built.count("kind: Namespace") == 3


def test_a_github_app_installation_can_sync(
    shop: FakeGitHub, tmp_path: Path, fleet_remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import as_app, config_text

    monkeypatch.delenv("GITHUB_TOKEN")
    config = tmp_path / "app.yaml"
    config.write_text(config_text(shop.base_url, str(fleet_remote), SHOP))
    as_app(config, shop, monkeypatch)
    shop.open_pull("acme/shop", title="One", head_branch="one")
    result = sync(config)
    assert result.exit_code == 0, result.output
    assert envs(fleet_remote) == {"shop-pr-1"}
    assert any(r.path == "/app/installations/99/access_tokens" for r in shop.requests)


def test_a_bad_token_fails_the_listing_keeps_everything_and_never_shows_the_token(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config()
    shop.open_pull("acme/shop", title="One", head_branch="one")
    assert sync(config).exit_code == 0
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrongwrongwrongwrong")
    result = sync(config)
    assert result.exit_code == 1
    assert "HTTP 401" in result.output
    assert "ghp_wrongwrongwrongwrong" not in result.output
    assert envs(fleet_remote) == {"shop-pr-1"}


def test_a_missing_token_is_a_config_error(
    write_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    result = sync(write_config())
    assert result.exit_code == 2
    assert "GITHUB_TOKEN is not set" in result.stderr


@pytest.mark.reliability("3. Mass-deletion guard: 6 of 10 closing is held, then allowed")
def test_the_mass_deletion_guard_removes_none_unless_allowed(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    config = write_config()
    numbers = [shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}") for n in range(10)]
    assert sync(config).exit_code == 0
    for number in numbers[:6]:
        shop.close_pull("acme/shop", number)
    new = shop.open_pull("acme/shop", title="new", head_branch="new")

    result = sync(config)
    assert result.exit_code == 1
    assert (
        "mass-deletion guard: this run would remove 6 of 10 environments (limit 5)" in result.output
    )
    assert len(envs(fleet_remote)) == 11  # nothing removed; the new PR still got its environment
    assert f"shop-pr-{new}" in envs(fleet_remote)

    result = sync(config, "--allow-mass-delete")
    assert result.exit_code == 0, result.output
    assert len(envs(fleet_remote)) == 5


@pytest.mark.reliability("3. Mass-deletion guard: the floor of 5 and safety.maxDeletions")
def test_a_few_deletions_pass_the_guard_and_a_configured_limit_applies(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    numbers = [shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}") for n in range(4)]
    assert sync(write_config()).exit_code == 0
    for number in numbers:
        shop.close_pull("acme/shop", number)
    strict = write_config(extra="safety: {maxDeletions: 3}\n")
    assert sync(strict).exit_code == 1 and len(envs(fleet_remote)) == 4
    assert sync(write_config()).exit_code == 0  # 4 of 4: under the default's floor of 5
    assert envs(fleet_remote) == set()


def test_an_environment_whose_pr_does_not_exist_is_kept_and_the_run_says_why(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    # A fleet copied from elsewhere (or a deleted PR): GitHub answers 404 for that number.
    # Only an explicit "closed" closes: a 404 while the repository answers is no such answer.
    config = write_config()
    shop.open_pull("acme/shop", title="One", head_branch="one")
    assert sync(config).exit_code == 0
    clone = tmp_path / "copy"
    git("clone", str(fleet_remote), str(clone))
    source, target = clone / "previews/dev/shop-pr-1", clone / "previews/dev/shop-pr-42"
    target.mkdir()
    for name in ("namespace.yaml", "kustomization.yaml", "helmrelease.yaml"):
        text = (source / name).read_text().replace("shop-pr-1", "shop-pr-42")
        (target / name).write_text(text.replace('pull-request: "1"', 'pull-request: "42"'))
    git("add", "-A", cwd=clone)
    git("commit", "-m", "copied", cwd=clone)
    git("push", "origin", "HEAD:main", cwd=clone)
    report = sync_json(config)
    assert report["exitCode"] == 1
    assert not [c for c in report["changes"] if c["action"] != "keep"]
    (shop_outcome,) = report["repositories"]
    assert shop_outcome["synced"] is False
    assert "#42" in shop_outcome["error"] and "404" in shop_outcome["error"]
    assert "remove its folder by hand" in shop_outcome["error"]
    assert envs(fleet_remote) == {"shop-pr-1", "shop-pr-42"}


def test_a_missing_fleet_token_is_a_config_error(
    shop: FakeGitHub, write_config: Config, tmp_path: Path
) -> None:
    config = write_config()
    config.write_text(
        config.read_text().replace("  branch: main\n", "  branch: main\n  tokenEnv: FLEET_T\n")
    )
    result = CliRunner().invoke(main, ["sync", "-c", str(config), "--workdir", str(tmp_path / "w")])
    assert result.exit_code == 2
    assert "fleet.tokenEnv: environment variable FLEET_T is not set" in result.stderr
    assert not (tmp_path / "w").exists()


def test_the_dry_run_diff_applied_to_the_fleet_gives_exactly_what_the_sync_writes(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    config = write_config()
    one = shop.open_pull("acme/shop", title="One", head_branch="feature/one")
    two = shop.open_pull("acme/shop", title="Two", head_branch="feature/two")
    assert sync(config).exit_code == 0
    shop.push("acme/shop", one)
    shop.close_pull("acme/shop", two)
    shop.open_pull("acme/shop", title="Three", head_branch="feature/three")

    diff = sync_json(config, "--dry-run")["diff"]
    applied = tmp_path / "applied"
    git("clone", "--quiet", str(fleet_remote), str(applied))
    (tmp_path / "plan.diff").write_text(diff)
    git("apply", "--index", str(tmp_path / "plan.diff"), cwd=applied)

    assert sync(config).exit_code == 0
    synced = git("ls-tree", "-r", "main", cwd=fleet_remote)
    tree = git("write-tree", cwd=applied).strip()
    assert git("ls-tree", "-r", tree, cwd=applied) == synced


def test_a_fork_pr_from_the_real_listing_gets_nothing_by_default(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    own = shop.open_pull("acme/shop", title="Own", head_branch="feature/own")
    fork = shop.open_pull("acme/shop", title="Fork", head_branch="main", head_repo="mallory/shop")
    gone = shop.open_pull("acme/shop", title="Gone", head_branch="x", head_repo=None)
    report = sync_json(write_config())
    assert envs(fleet_remote) == {f"shop-pr-{own}"}
    skipped = {s["pullRequest"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {fork, gone}
    assert all("fork" in reason for reason in skipped.values())
    report = sync_json(write_config(SHOP + "    forks: true\n"))
    assert envs(fleet_remote) == {f"shop-pr-{n}" for n in (own, fork, gone)}


def test_a_repository_dropped_from_the_config_keeps_its_environments_and_says_why(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    shop.add_repo("acme/blog")
    shop.open_pull("acme/shop", title="One", head_branch="one")
    shop.open_pull("acme/blog", title="Post", head_branch="post")
    blog = SHOP.replace("acme/shop", "acme/blog")
    assert sync(write_config(SHOP + blog)).exit_code == 0
    assert envs(fleet_remote) == {"shop-pr-1", "blog-pr-1"}

    report = sync_json(write_config(SHOP))
    assert envs(fleet_remote) == {"shop-pr-1", "blog-pr-1"}
    (kept,) = [c for c in report["changes"] if c["repository"] == "acme/blog"]
    assert kept["action"] == "keep" and "not in the config any more" in kept["reason"]
    assert any("no longer lists acme/blog" in w for w in report["warnings"])
    assert report["exitCode"] == 0


def test_a_malformed_app_key_is_a_config_error_that_touches_nothing(
    shop: FakeGitHub, tmp_path: Path, fleet_remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import config_text

    secret = "-----BEGIN PRIVATE KEY-----\nnot-really-a-key-but-secret\n-----END PRIVATE KEY-----\n"
    monkeypatch.setenv("APP_KEY", secret)
    config = tmp_path / "app.yaml"
    config.write_text(
        config_text(shop.base_url, str(fleet_remote), SHOP).replace(
            "github:\n", "github:\n  app: {id: 4242, installationId: 99, privateKeyEnv: APP_KEY}\n"
        )
    )
    commits = commit_count(fleet_remote)
    workdir = tmp_path / "work"
    result = sync(config, "--workdir", str(workdir))
    assert result.exit_code == 2, result.output
    assert "github.app.privateKeyEnv: not a PEM private key" in result.output
    assert "not-really-a-key" not in result.output
    assert shop.requests == [] and not workdir.exists()
    assert commit_count(fleet_remote) == commits


def test_a_relative_fleet_path_is_relative_to_the_config_file(
    shop: FakeGitHub, tmp_path: Path, fleet_remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import config_text

    here = tmp_path / "conf"
    here.mkdir()
    config = here / "prgen.yaml"
    relative = Path("..") / fleet_remote.relative_to(tmp_path)
    config.write_text(config_text(shop.base_url, str(relative), SHOP))
    shop.open_pull("acme/shop", title="One", head_branch="one")
    monkeypatch.chdir("/")
    result = sync(config, "--workdir", str(tmp_path / "work"))
    assert result.exit_code == 0, result.output
    assert envs(fleet_remote) == {"shop-pr-1"}
