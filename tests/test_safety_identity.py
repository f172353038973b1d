"""Issue 10, items 5-8 and 19: an environment's identity, its removals and its names.

- 5: a moved or duplicated folder is a removal every output counts, and the guard holds.
- 6: two differently configured prgens writing one folder refuse each other's environments.
- 7: no two repositories' templates can make one namespace; no commit hands a name over.
- 8: no system or reserved namespace, no namespace of PR text alone, no lossy slug.
- 19: an escaped `$${X}` from a PR reaches the cluster as itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from prgen.cli import main
from prgen.config import config_identity, parse_config
from prgen.errors import ConfigError
from prgen.inventory import identity_of, read_inventory
from prgen.placeholders import pull_request_values
from prgen.plan import Action, ConflictKind, make_plan
from prgen.render import ANNOTATION_CONFIG, FLUX_SUBSTITUTE, render_environment
from prgen.sync_result import commit_message
from prgen.testing.fake_github import FakeGitHub

from conftest import SHOP, config_text, git
from factories import pull_request, repository

Config = Callable[..., Path]


def sync(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["sync", "--config", str(config), *args])


def sync_json(config: Path, *args: str) -> dict[str, Any]:
    result = sync(config, "--output", "json", *args)
    assert result.exit_code in (0, 1), result.output
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def folders(remote: Path, path: str = "previews/dev") -> set[str]:
    names = git("ls-tree", "-r", "--name-only", "main", "--", path, cwd=remote).split()
    return {name.removeprefix(path + "/").split("/")[0] for name in names if name.count("/") > 2}


def show(remote: Path, path: str) -> str:
    return git("show", f"main:{path}", cwd=remote)


def last_message(remote: Path) -> str:
    return git("log", "-1", "--format=%B", "main", cwd=remote)


def files_of(*envs):  # type: ignore[no-untyped-def]
    """The managed folder after those environments were written."""
    plan = make_plan(list(envs), read_inventory({}), complete={"acme/shop"})
    return {path: content for path, content in plan.writes.items() if content is not None}


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo("acme/shop")
    return github


# -- 5. Every removal is a removal --------------------------------------------------------------


@pytest.mark.reliability("10.5 A namespace change moves every environment: held, then counted")
def test_moving_every_environment_is_held_by_the_guard_and_then_counted_as_removals(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    config = write_config()
    numbers = [shop.open_pull("acme/shop", title=f"PR {n}", head_branch=f"b{n}") for n in range(6)]
    assert sync(config).exit_code == 0
    before = folders(fleet_remote)
    assert before == {f"shop-pr-{n}" for n in numbers}
    head = git("rev-parse", "main", cwd=fleet_remote)

    moved = write_config(SHOP + "    namespace: 'shop-<<PR_NUMBER>>'\n")

    # A new namespace template is a new config identity (item 6): nothing is moved until
    # this config takes the environments over.
    report = sync_json(moved)
    assert report["exitCode"] == 1 and report["commit"] is None
    assert {c["kind"] for c in report["conflicts"]} == {"other-config"}

    dry = sync(moved, "--adopt", "--dry-run")
    assert dry.exit_code == 1, dry.output
    assert "would remove 6 of 6 environments (limit 4), so it removes none and moves none" in (
        dry.output
    )
    report = sync_json(moved, "--adopt")
    # Held: every environment stays where it is, none gets a second namespace.
    assert report["exitCode"] == 1 and report["heldDeletions"]
    assert report["commit"] is None
    assert git("rev-parse", "main", cwd=fleet_remote) == head
    kept = {c["folder"] for c in report["changes"] if c["action"] == "keep"}
    assert kept == {f"previews/dev/{folder}" for folder in before}
    assert all("not moved to shop-" in c["reason"] for c in report["changes"])

    dry = sync(moved, "--adopt", "--dry-run", "--allow-mass-delete")
    assert dry.output.count("- delete") == 6, dry.output
    report = sync_json(moved, "--adopt", "--allow-mass-delete")
    assert report["exitCode"] == 0
    removed = {
        (c["pullRequest"], c["reason"]) for c in report["changes"] if c["action"] == "delete"
    }
    assert removed == {(n, f"moved to shop-{n}") for n in numbers}
    assert folders(fleet_remote) == {f"shop-{n}" for n in numbers}
    message = last_message(fleet_remote)
    assert message.startswith("prgen: 0 created, 6 updated, 6 removed")
    assert f"removed acme/shop#{numbers[0]} from shop-pr-{numbers[0]}: moved to" in message
    assert sync(moved).exit_code == 0  # adopted: this config's own from now on


@pytest.mark.reliability("10.5 A copied folder carrying the marker is a counted removal")
def test_a_copied_folder_is_removed_as_a_duplicate_and_counted() -> None:
    env = render_environment(repository(), pull_request(1))
    current = files_of(env)
    current.update(
        {
            path.replace("shop-pr-1/", "shop-pr-1-copy/"): content
            for path, content in current.items()
            if path.startswith("shop-pr-1/")
        }
    )
    plan = make_plan([env], read_inventory(current), {"acme/shop"})
    (removed,) = plan.of(Action.DELETE)
    assert (removed.folder, removed.reason) == ("shop-pr-1-copy", "duplicate of shop-pr-1")
    assert plan.writes["shop-pr-1-copy/helmrelease.yaml"] is None
    assert "1 removed" in commit_message(plan)
    assert "removed acme/shop#1 from shop-pr-1-copy: duplicate of shop-pr-1" in commit_message(plan)

    held = make_plan([env], read_inventory(current), {"acme/shop"}, hold_deletions="held")
    assert not held.of(Action.DELETE) and "shop-pr-1-copy/helmrelease.yaml" not in held.writes


# -- 6. Two writers that disagree must not flap -------------------------------------------------


def two_configs(tmp_path: Path, github: FakeGitHub, fleet_remote: Path) -> tuple[Path, Path]:
    """The CI step's config and a CronJob's that has not caught up: other labels, one folder."""
    paths = []
    for name, label in (("ci.yaml", "preview"), ("cronjob.yaml", "deploy")):
        path = tmp_path / name
        entry = SHOP + f"    labels: [{label}]\n"
        path.write_text(config_text(github.base_url, str(fleet_remote), entry))
        paths.append(path)
    return paths[0], paths[1]


@pytest.mark.reliability("10.6 Two configs on one folder refuse each other's environments")
def test_two_disagreeing_configs_keep_each_others_environments_and_say_so(
    shop: FakeGitHub, fleet_remote: Path, tmp_path: Path
) -> None:
    ci, cronjob = two_configs(tmp_path, shop, fleet_remote)
    one = shop.open_pull("acme/shop", title="one", head_branch="one", labels=["preview"])
    two = shop.open_pull("acme/shop", title="two", head_branch="two", labels=["deploy"])
    ci_identity = json.loads(sync(ci, "--output", "json").stdout)["repositories"][0]["config"]
    assert folders(fleet_remote) == {f"shop-pr-{one}"}
    release = yaml.safe_load(show(fleet_remote, f"previews/dev/shop-pr-{one}/helmrelease.yaml"))
    assert release["metadata"]["annotations"][ANNOTATION_CONFIG] == ci_identity

    for _ in range(2):  # round after round: nothing flaps
        result = sync(cronjob)
        assert result.exit_code == 1, result.output
        assert f"acme/shop#{one}" in result.output and ci_identity in result.output
        assert folders(fleet_remote) == {f"shop-pr-{one}", f"shop-pr-{two}"}
        report = sync_json(ci)
        assert report["exitCode"] == 1
        (conflict,) = report["conflicts"]
        assert (conflict["pullRequest"], conflict["kind"]) == (two, "other-config")
        assert ci_identity in conflict["reason"]  # this config's identity, and the other's
        cron_identity = report["conflicts"][0]["reason"].split("(config ")[1].split(";")[0]
        assert cron_identity != ci_identity and len(cron_identity) == 12
        assert folders(fleet_remote) == {f"shop-pr-{one}", f"shop-pr-{two}"}

    # The new head commit of the other's PR is not written either: it is not this run's.
    shop.push("acme/shop", two)
    head = git("rev-parse", "main", cwd=fleet_remote)
    assert sync(ci).exit_code == 1
    assert git("rev-parse", "main", cwd=fleet_remote) == head

    # --adopt: the CI config takes the folder over, and removes what it does not want.
    report = sync_json(ci, "--adopt")
    assert report["exitCode"] == 0, report
    assert {(c["action"], c["pullRequest"]) for c in report["changes"]} >= {("delete", two)}
    assert folders(fleet_remote) == {f"shop-pr-{one}"}


def test_an_environment_without_a_recorded_identity_is_this_configs_own() -> None:
    repo = repository()
    env = render_environment(repo, pull_request(1))
    current = {
        path: content.replace(f"    {ANNOTATION_CONFIG}: {repo.identity}\n".encode(), b"")
        for path, content in files_of(env).items()
    }
    assert identity_of(current["shop-pr-1/helmrelease.yaml"]).config is None  # type: ignore[union-attr]
    identities = {"acme/shop": repo.identity}
    plan = make_plan([], read_inventory(current), {"acme/shop"}, identities=identities)
    assert [c.action for c in plan.changes] == [Action.DELETE] and not plan.conflicts


def test_the_identity_follows_what_decides_which_prs_and_where_not_values_or_charts() -> None:
    base = repository()
    assert base.identity == config_identity(base, "previews/dev")
    same = repository("    values: {replicas: 2}\n    report: {comment: false}\n")
    assert same.identity == base.identity
    for extra in (
        "    labels: [preview]\n",
        "    drafts: true\n",
        "    branches: '^feature/'\n",
        "    maxEnvironments: 3\n",
        "    namespace: 'shop-<<PR_NUMBER>>'\n",
        "    forks: trusted\n",
    ):
        assert repository(extra).identity != base.identity, extra


def test_validate_shows_each_repositorys_identity(write_config: Config) -> None:
    config = write_config()
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    identity = parse_config(config.read_text(), base_dir=config.parent).repositories[0].identity
    assert result.exit_code == 0 and f"acme/shop: config {identity}" in result.output


# -- 7. An environment's identity never passes from one PR to another ---------------------------

TWO_APIS = """\
  - name: acme/api
    chart: {chart: api, sourceRef: {kind: HelmRepository, name: charts, namespace: flux-system}}
  - name: other/api
    chart: {chart: api, sourceRef: {kind: HelmRepository, name: charts, namespace: flux-system}}
"""


def namespace_problem(text: str) -> str:
    """The path of the config's first problem, or "" when it is valid."""
    try:
        parse_config(text)
    except ConfigError as exc:
        return exc.path
    return ""


@pytest.mark.reliability("10.7 Two repositories whose namespaces can meet are a config error")
def test_two_repositories_whose_namespaces_can_meet_are_refused(
    github: FakeGitHub, write_config: Config, fleet_remote: Path, cases: Any
) -> None:
    config = write_config(TWO_APIS)
    for command in ("validate", "sync"):
        result = CliRunner().invoke(main, [command, "--config", str(config)])
        assert result.exit_code == 2, result.output
        assert "repositories[1].namespace" in result.stderr
        assert "other/api" in result.stderr and "acme/api" in result.stderr
        cases.add()
    assert folders(fleet_remote) == set()

    chart = "    chart: {chart: a, sourceRef: {kind: HelmRepository, name: c, namespace: f}}\n"
    meet = [
        ("acme/api", "<<REPO_NAME>>-<<PR_NUMBER>>", "other/API", "<<REPO_NAME>>-<<PR_NUMBER>>"),
        ("acme/a", "x-<<PR_BRANCH_SLUG>>", "acme/b", "x-<<PR_TITLE>>-y"),
        ("acme/a", "pr-<<PR_NUMBER>>", "acme/b", "pr-<<PR_NUMBER>>"),
        (
            "acme/a-b",
            "<<REPO_OWNER>>-<<REPO_NAME>>-<<PR_NUMBER>>",
            "acme-a/b",
            "<<REPO_OWNER>>-<<REPO_NAME>>-<<PR_NUMBER>>",
        ),
        ("acme/a", "shop_1", "acme/b", "shop-1"),
        ("acme/a", "<<PR_NUMBER>>-<<PR_BRANCH_SLUG>>", "acme/b", "<<PR_NUMBER>>"),
    ]
    apart = [
        (
            "acme/api",
            "<<REPO_NAME>>-pr-<<PR_NUMBER>>",
            "acme/web",
            "<<REPO_NAME>>-pr-<<PR_NUMBER>>",
        ),
        (
            "acme/api",
            "<<REPO_NAME>>-pr-<<PR_NUMBER>>",
            "acme/api-v2",
            "<<REPO_NAME>>-pr-<<PR_NUMBER>>",
        ),
        (
            "acme/api",
            "<<REPO_OWNER>>-<<REPO_NAME>>-<<PR_NUMBER>>",
            "other/api",
            "<<REPO_OWNER>>-<<REPO_NAME>>-<<PR_NUMBER>>",
        ),
        ("acme/a", "<<PR_NUMBER>>-a", "acme/b", "<<PR_NUMBER>>-b"),
        ("acme/a", "fixed", "acme/b", "b-<<PR_BRANCH_SLUG>>"),
    ]
    for expected, pairs in ((True, meet), (False, apart)):
        for first, first_ns, second, second_ns in pairs:
            text = (
                "fleet: {url: /tmp/fleet.git, path: previews/dev}\nrepositories:\n"
                f"  - name: {first}\n    namespace: '{first_ns}'\n{chart}"
                f"  - name: {second}\n    namespace: '{second_ns}'\n{chart}"
            )
            refused = namespace_problem(text)
            assert (refused == "repositories[1].namespace") is expected, (first_ns, second_ns)
            assert refused in ("", "repositories[1].namespace"), refused
            cases.add()


@pytest.mark.reliability("10.7 A name one PR leaves is another's only after a commit")
def test_a_folder_another_pr_leaves_is_not_handed_over_in_the_same_commit() -> None:
    fixed = repository("    namespace: preview\n")
    first = render_environment(fixed, pull_request(1))
    second = render_environment(fixed, pull_request(2))
    current = files_of(first)

    # PR 1 closed and PR 2 wants its namespace: PR 1's removal is committed alone.
    plan = make_plan([second], read_inventory(current), {"acme/shop"})
    assert [(c.action, c.number) for c in plan.changes] == [(Action.DELETE, 1)]
    (waiting,) = plan.conflicts
    assert (waiting.number, waiting.kind) == (2, ConflictKind.HANDOVER)
    assert (
        "preview/helmrelease.yaml" in plan.writes
        and plan.writes["preview/helmrelease.yaml"] is None
    )
    after = {path: c for path, c in current.items() if not path.startswith("preview/")}

    # The next run, from the committed state, gives it to PR 2.
    plan = make_plan([second], read_inventory(after), {"acme/shop"})
    assert [(c.action, c.number) for c in plan.changes] == [(Action.CREATE, 2)]
    assert not plan.conflicts

    # The same across repositories (a fleet written before both were configured together):
    # acme/api#1's folder is never rewritten for other/api#1 in the commit that removes it.
    api = repository(name="acme/api")
    other = repository(name="other/api")
    current = {
        path: content
        for path, content in make_plan(
            [render_environment(api, pull_request(1, "acme/api"))], read_inventory({}), set()
        ).writes.items()
        if content is not None
    }
    plan = make_plan(
        [render_environment(other, pull_request(1, "other/api"))],
        read_inventory(current),
        {"acme/api", "other/api"},
    )
    assert [(c.action, c.repository) for c in plan.changes] == [(Action.DELETE, "acme/api")]
    assert plan.conflicts[0].kind is ConflictKind.HANDOVER
    assert all(content is None for path, content in plan.writes.items() if "/" in path)


# -- 8. No system namespaces, no slug collisions ------------------------------------------------

SLUGGED = SHOP + "    namespace: '<<REPO_NAME>>-<<PR_BRANCH_SLUG>>'\n"
BY_BRANCH = SHOP + "    namespace: '<<PR_BRANCH_SLUG>>'\n    namespaceFromPullRequestText: true\n"


@pytest.mark.reliability("10.8 A PR never gets a system or reserved namespace")
def test_a_pr_naming_a_system_or_reserved_namespace_gets_nothing(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, cases: Any
) -> None:
    config = write_config(BY_BRANCH, "safety: {reservedNamespaces: [staging]}\n")
    hostile = ["kube-system", "default", "flux-system", "kube-public", "kube-node-lease", "staging"]
    numbers = {shop.open_pull("acme/shop", title=b, head_branch=b): b for b in hostile}
    fine = shop.open_pull("acme/shop", title="fine", head_branch="fine")
    report = sync_json(config)
    assert folders(fleet_remote) == {"fine"}
    refused = {c["pullRequest"]: c for c in report["conflicts"]}
    assert set(refused) == set(numbers) and fine not in refused
    for number, branch in numbers.items():
        assert refused[number]["kind"] == "reserved"
        assert f"namespace {branch}, which is reserved" in refused[number]["reason"]
        cases.add()


def test_an_environment_already_in_a_system_namespace_is_never_removed_or_rewritten() -> None:
    # Written before prgen refused system namespaces: removing the folder would have Flux
    # prune the namespace itself.
    repo = repository(
        "    namespace: '<<PR_BRANCH_SLUG>>'\n    namespaceFromPullRequestText: true\n"
    )
    old = render_environment(
        parse_config(
            "fleet: {url: /tmp/fleet.git, path: previews/dev}\nrepositories:\n  - name: acme/shop\n"
            "    namespace: 'ns-<<PR_NUMBER>>'\n"
            "    chart: {chart: a, sourceRef: {kind: HelmRepository, name: c, namespace: f}}\n"
        ).repositories[0],
        pull_request(1),
    )
    current = {path.replace("ns-1/", "kube-system/"): c for path, c in files_of(old).items()}
    current["kustomization.yaml"] = current["kustomization.yaml"].replace(b"ns-1", b"kube-system")
    for desired in ([], [render_environment(repo, pull_request(1, head_branch="main"))]):
        plan = make_plan(
            desired, read_inventory(current), {"acme/shop"}, reserved=repo.reserved_namespaces
        )
        assert not plan.of(Action.DELETE) and not any("kube-system" in p for p in plan.writes)
        assert [c.kind for c in plan.conflicts] == [ConflictKind.RESERVED]


def test_a_namespace_of_nothing_but_pr_text_is_a_config_error(write_config: Config) -> None:
    for template in ("<<PR_BRANCH_SLUG>>", "<<PR_BRANCH>>-<<PR_AUTHOR>>", "<<PR_TITLE>>"):
        config = write_config(SHOP + f"    namespace: '{template}'\n")
        result = CliRunner().invoke(main, ["validate", "--config", str(config)])
        assert result.exit_code == 2, template
        assert "repositories[0].namespace" in result.stderr
        assert "namespaceFromPullRequestText" in result.stderr
    for template in ("pr-<<PR_BRANCH_SLUG>>", "<<REPO_NAME>>-<<PR_BRANCH>>", "<<PR_NUMBER>>"):
        config = write_config(SHOP + f"    namespace: '{template}'\n")
        assert CliRunner().invoke(main, ["validate", "--config", str(config)]).exit_code == 0
    config = write_config(SHOP + "    namespace: kube-system\n")
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 2 and "reserved namespace" in result.stderr


@pytest.mark.reliability("10.8 Branches that slug alike get different names")
def test_branches_that_slug_alike_get_different_namespaces_folders_and_urls(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    config = write_config(SLUGGED)
    branches = ["feature/login", "feature_login", "FEATURE.LOGIN", "feature-login"]
    for branch in branches:
        shop.open_pull("acme/shop", title=branch, head_branch=branch)
    report = sync_json(config)
    assert report["exitCode"] == 0 and not report["conflicts"]
    made = folders(fleet_remote)
    assert len(made) == 4
    assert "shop-feature-login" in made  # a branch that is a valid name keeps it
    for folder in made:
        release = yaml.safe_load(show(fleet_remote, f"previews/dev/{folder}/helmrelease.yaml"))
        assert release["metadata"]["namespace"] == folder
    # Probe and environment URLs take the same slug: one host each.
    slugs = {
        pull_request_values(pull_request(1, head_branch=b))["PR_BRANCH_SLUG"] for b in branches
    }
    assert len(slugs) == 4 and "feature-login" in slugs


# -- 19. `$${` survives ---------------------------------------------------------------------------


@pytest.mark.reliability("10.19 An escaped $${X} in a PR title disables Flux substitution")
def test_an_escaped_flux_variable_in_pr_text_reaches_the_cluster_verbatim(cases: Any) -> None:
    repo = repository("    values: {title: '<<PR_TITLE>>', cluster: '${CLUSTER}'}\n")
    for title in ("$${ESCAPED}", "$$", "a $${X} b", "$$$${X}", "costs $$"):
        env = render_environment(repo, pull_request(3, title=title))
        release = yaml.safe_load(env.files["helmrelease.yaml"])
        assert release["spec"]["values"]["title"] == title
        assert release["metadata"]["annotations"][FLUX_SUBSTITUTE] == "disabled", title
        cases.add()
    # Without PR-made `$`, the config's own variables stay Flux's to expand.
    env = render_environment(repo, pull_request(3, title="plain title"))
    release = yaml.safe_load(env.files["helmrelease.yaml"])
    assert FLUX_SUBSTITUTE not in release["metadata"]["annotations"]
