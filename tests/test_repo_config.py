"""A repository's own `.prgen.yaml`, end to end: `prgen sync` through the real CLI, real HTTP
to the fake GitHub (the contents API, statuses, check runs as GitHub serves them), real git to
a bare fleet.

The file is read from the default branch only, may set only what the central `repoConfig.allow`
lists, and a broken one changes nothing of the repository's environments: every open PR of
the repository is told what is wrong on a `prgen/config` status until the file is fixed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from prgen.cli import main
from prgen.testing.fake_github import FakeGitHub
from test_deploy_gates import run, sync

from conftest import SHOP, as_app, git
from factories import repository

Config = Callable[..., Path]
REPO = "acme/shop"
LABELLED = SHOP + "    labels: [preview]\n"


def allowing(*fields: str, path: str = "") -> str:
    at = f"path: {path}, " if path else ""
    return LABELLED + f"    repoConfig: {{{at}allow: [{', '.join(fields)}]}}\n"


def release(remote: Path, number: int = 1) -> str:
    return git("show", f"main:previews/dev/shop-pr-{number}/helmrelease.yaml", cwd=remote)


def fleet_head(remote: Path) -> str:
    return git("rev-parse", "main", cwd=remote).strip()


def config_statuses(github: FakeGitHub, number: int) -> list[tuple[str, str]]:
    sha = github.pull(REPO, number).head_sha
    return [
        (s.state, s.description or "")
        for s in github.statuses(REPO, sha)
        if s.context == "prgen/config"
    ]


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo(REPO)
    return github


def test_what_the_file_may_set_is_merged_over_the_central_entry(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    shop.set_file(REPO, ".prgen.yaml", "values:\n  replicas: 3\n  image: {pullPolicy: Always}\n")
    config = write_config(allowing("values"))

    document = run(config)

    text = release(fleet_remote)
    assert "replicas: 3" in text and "pullPolicy: Always" in text
    assert "shop-pr-1.preview.example.com" in text  # the central values stay
    assert f"tag: {shop.pull(REPO, 1).head_sha}" in text or shop.pull(REPO, 1).head_sha in text
    assert document["repositoryConfigs"] == [
        {"repository": REPO, "path": ".prgen.yaml", "state": "applied", "problem": None}
    ]


def test_a_file_elsewhere_is_read_where_the_central_config_says(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 9}\n")
    shop.set_file(REPO, "deploy/preview.yaml", "values: {replicas: 2}\n")
    run(write_config(allowing("values", path="deploy/preview.yaml")))
    assert "replicas: 2" in release(fleet_remote)


def test_without_a_file_the_central_entry_is_used_as_it_is(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    document = run(write_config(allowing("values")))
    assert [c["action"] for c in document["changes"]] == ["create"]
    assert document["repositoryConfigs"][0]["state"] == "absent"
    assert config_statuses(shop, 1) == []


def test_the_file_may_choose_which_prs_get_an_environment_when_allowed(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    shop.open_pull(REPO, title="Docs", head_branch="docs", labels=["deploy-me"])
    shop.set_file(REPO, ".prgen.yaml", "labels: [deploy-me]\n")
    document = run(write_config(allowing("labels", "values")))
    assert [(c["action"], c["pullRequest"]) for c in document["changes"]] == [("create", 2)]


def test_a_pr_head_that_changes_the_file_changes_nothing(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    """Only the default branch counts: a PR's author must not decide how that PR is deployed."""
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 1}\n")
    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 50}\nforks: true\n", branch="cart")
    document = run(write_config(allowing("values")))
    assert "replicas: 1" in release(fleet_remote)
    assert "replicas: 50" not in release(fleet_remote)
    assert document["repositoryConfigs"][0]["state"] == "applied"
    reads = [a.request for a in shop.answers if "/contents/" in a.request.path]
    assert reads and all("ref=" not in r.path and "ref" not in r.query for r in reads)


@pytest.mark.parametrize(
    ("text", "where", "reason"),
    [
        (
            "values: {replicas: 2}\nforks: true\n",
            ".prgen.yaml:2:1: forks",
            "'forks' may not be set by the repository",
        ),
        (
            "values: {replicas: 2}\nvaluez: {}\n",
            ".prgen.yaml:2:1: valuez",
            "unknown field 'valuez' (did you mean 'values'?)",
        ),
        ("values: [1, 2\nx: 1\n", ".prgen.yaml:2:2", "expected ',' or ']'"),
        (
            "values: {replicas: 2}\nbranches: '(unclosed'\n",
            ".prgen.yaml:2:1: branches",
            "not a valid regular expression",
        ),
        (
            "healthCheck:\n  url: 'http://x.example.com/<<PR_TITLE>>'\n",
            ".prgen.yaml:2:3: healthCheck.url",
            "PR text",
        ),
        ("- values\n", ".prgen.yaml", "must be a YAML mapping"),
        (
            "templates: {helmRelease: /etc/passwd}\n",
            ".prgen.yaml:1:1: templates",
            "may not be set by the repository",
        ),
    ],
)
def test_a_broken_file_changes_nothing_and_says_where_it_is_broken(
    shop: FakeGitHub,
    write_config: Config,
    fleet_remote: Path,
    text: str,
    where: str,
    reason: str,
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 2}\n")
    config = write_config(allowing("values", "branches", "healthCheck"))
    run(config)
    before, kept = fleet_head(fleet_remote), release(fleet_remote)
    shop.push(REPO, 1)  # a new head that would be deployed
    shop.open_pull(REPO, title="New", head_branch="new", labels=["preview"])  # would be created
    shop.close_pull(REPO, 1)  # ... and one that would be removed
    shop.set_file(REPO, ".prgen.yaml", text)

    document = run(config, code=1)

    assert fleet_head(fleet_remote) == before and release(fleet_remote) == kept
    assert [c for c in document["changes"] if c["action"] != "keep"] == []
    outcome = document["repositoryConfigs"][0]
    assert outcome["state"] == "broken"
    assert outcome["problem"].startswith(where + ": ") or outcome["problem"].startswith(where)
    assert reason in outcome["problem"]
    [failed] = [r for r in document["repositories"] if not r["synced"]]
    assert where in failed["error"]


def test_every_open_pr_is_told_and_a_fix_clears_it(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    shop.open_pull(REPO, title="Docs", head_branch="docs")  # no environment, told all the same
    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 2}\nforks: true\n")
    config = write_config(allowing("values"))

    run(config, code=1)
    for number in (1, 2):
        [(state, description)] = config_statuses(shop, number)
        assert state == "failure"
        assert description.startswith(".prgen.yaml:2:1: forks: 'forks' may not be set")
    shop.clear_requests()
    run(config, code=1)  # still broken: already said, nothing written again
    assert shop.count_requests("POST", r".*/statuses/.*") == 0

    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 2}\n")
    document = run(config)
    assert [c["action"] for c in document["changes"]] == ["create"]
    for number in (1, 2):  # the newest says so
        assert [state for state, _ in config_statuses(shop, number)] == ["failure", "success"]
    shop.clear_requests()
    run(config)  # fine and known fine: no head is read or written for it
    assert shop.count_requests("GET", r".*/status.*") == 0
    assert shop.count_requests("POST", r".*") == 0


def test_a_repository_whose_file_was_always_fine_writes_no_status(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 2}\n")
    run(write_config(allowing("values")))
    assert config_statuses(shop, 1) == []


def test_an_unchanged_file_costs_no_rate_limit(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    for n in range(3):
        shop.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}", labels=["preview"])
    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 2}\n")
    config = write_config(allowing("values"))
    run(config)
    shop.clear_requests()

    assert run(config)["commit"] is None

    assert shop.count_requests("GET", rf"/repos/{REPO}/contents/\.prgen\.yaml") == 1
    assert shop.points_used() == 0
    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 4}\n")  # a change is read at once
    assert len([c for c in run(config)["changes"] if c["action"] == "update"]) == 3


def test_a_failed_read_of_the_file_keeps_everything(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    config = write_config(allowing("values"))
    run(config)
    before = fleet_head(fleet_remote)
    shop.close_pull(REPO, 1)
    shop.inject("GET", r".*/contents/.*", status=500, times=10)

    document = run(config, code=1)

    assert fleet_head(fleet_remote) == before
    assert document["repositoryConfigs"][0]["state"] == "unread"
    assert config_statuses(shop, 1) == []  # not known to be broken: nothing said


def test_as_an_app_a_broken_file_fails_a_check_run(
    shop: FakeGitHub,
    write_config: Config,
    fleet_remote: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    shop.set_file(REPO, ".prgen.yaml", "forks: true\n")
    config = as_app(write_config(allowing("values")), shop, monkeypatch)
    run(config, code=1)
    [check] = [r for r in shop.check_runs(REPO, shop.pull(REPO, 1).head_sha)]
    assert (check.name, check.status, check.conclusion) == ("prgen/config", "completed", "failure")
    assert "forks" in (check.output[1] or "")
    assert config_statuses(shop, 1) == []


def test_the_file_cannot_take_another_repositorys_namespaces(
    github: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    github.add_repo(REPO)
    github.add_repo("acme/blog")
    github.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    github.set_file(REPO, ".prgen.yaml", "namespace: 'blog-pr-<<PR_NUMBER>>'\n")
    blog = (
        SHOP.replace("acme/shop", "acme/blog").replace("shop-pr", "blog-pr")
        + "    namespace: 'blog-pr-<<PR_NUMBER>>'\n"
    )
    document = run(write_config(allowing("namespace") + blog), code=1)
    outcome = document["repositoryConfigs"][0]
    assert outcome["state"] == "broken" and "acme/blog" in outcome["problem"]


@pytest.mark.parametrize(
    ("allow", "reason"),
    [
        ("[templates]", "'templates' can only be set here, never by the repository"),
        ("[repoConfig]", "'repoConfig' can only be set here"),
        ("[valuez]", "unknown field 'valuez' (did you mean 'values'?)"),
    ],
)
def test_the_central_config_may_allow_only_known_repository_fields(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, allow: str, reason: str
) -> None:
    config = write_config(LABELLED + f"    repoConfig: {{allow: {allow}}}\n")
    result = sync(config)
    assert result.exit_code == 2
    assert "repositories[0].repoConfig.allow[0]" in result.output and reason in result.output
    assert git("rev-list", "--count", "main", cwd=fleet_remote).strip() == "1"


def test_line_numbers_point_into_the_file_for_nested_fields() -> None:
    from prgen.repo_config import RepoConfigError, apply_repo_config

    repo = repository("    repoConfig: {allow: [healthCheck, deployWhen]}\n")
    text = "# preview settings\ndeployWhen:\n  approvals: -1\n"
    with pytest.raises(RepoConfigError) as caught:
        apply_repo_config(repo, text, [repo], frozenset())
    [(where, reason)] = caught.value.problems
    assert where == ".prgen.yaml:3:3: deployWhen.approvals"
    assert "-1" in reason


def test_validate_checks_a_local_copy_of_the_file_before_it_is_merged(
    write_config: Config, tmp_path: Path
) -> None:
    """What the application repository's CI can run on a PR that changes `.prgen.yaml`."""
    config = write_config(allowing("values"))
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("values: {replicas: 2}\n")
    bad.write_text("values: {replicas: 2}\n\nforks: true\n")
    args = ["validate", "--config", str(config), "--repository", REPO, "--repo-config"]

    passed = CliRunner().invoke(main, [*args, str(good)])
    failed = CliRunner().invoke(main, [*args, str(bad)])

    assert passed.exit_code == 0, passed.output
    assert "valid for acme/shop (sets values)" in passed.output
    assert failed.exit_code == 2
    assert "acme/shop: .prgen.yaml:3:1: forks: 'forks' may not be set" in failed.output
    alone = CliRunner().invoke(main, ["validate", "--config", str(config), "--repo-config", "x"])
    assert alone.exit_code == 2 and "go together" in alone.output


def test_a_repository_may_choose_its_own_lifecycle_when_allowed() -> None:
    from prgen.repo_config import RepoConfigError, apply_repo_config

    repo = repository("    repoConfig: {allow: [expireAfter, keepLabel]}\n")
    merged = apply_repo_config(repo, "expireAfter: 3d\nkeepLabel: keep\n", [repo], frozenset())
    assert (merged.expire_after, merged.keep_label) == (3 * 86400, "keep")
    assert merged.identity == repo.identity  # what decides stays the central entry's
    with pytest.raises(RepoConfigError) as caught:
        apply_repo_config(repo, "sleepAfter: 1h\n", [repo], frozenset())
    assert caught.value.problems[0][0] == ".prgen.yaml:1:1: sleepAfter"


def test_a_runner_that_lost_its_memory_reads_no_head_for_a_fine_file(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, tmp_path: Path
) -> None:
    """A new pod without its volume: the fine file costs no read of the PRs' heads."""
    for n in range(3):
        shop.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}", labels=["preview"])
    shop.set_file(REPO, ".prgen.yaml", "values: {replicas: 2}\n")
    config = write_config(allowing("values"))
    run(config, "--workdir", str(tmp_path / "new-pod"))
    assert shop.count_requests("GET", r".*/commits/.*/status.*") == 0


def test_status_sees_the_repositorys_own_settings_as_a_sync_does(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    shop.open_pull(REPO, title="Docs", head_branch="docs", labels=["deploy-me"])
    shop.open_pull(REPO, title="Cart", head_branch="cart", labels=["preview"])
    shop.set_file(REPO, ".prgen.yaml", "labels: [deploy-me]\n")
    config = write_config(allowing("labels"))
    run(config)
    status = CliRunner().invoke(main, ["status", "--config", str(config), "--output", "json"])
    assert status.exit_code == 0, status.output
    pulls = json.loads(status.stdout)["repositories"][0]["pullRequests"]
    docs, cart = sorted(pulls, key=lambda pull: int(pull["number"]))
    assert docs["environment"] is not None
    assert cart["environment"] is None and "deploy-me" in cart["skipped"]
