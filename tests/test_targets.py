"""`targets:`: one config renders environments into several clusters' folders of one fleet.

Real PyGithub over HTTP to the fake GitHub, real git to a bare fleet: each target's folder
is planned, indexed and guarded on its own, and one run makes one commit for all of them.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import Result

from prgen.config import load_config, parse_config
from prgen.errors import ConfigError
from prgen.fleet import FleetRepo
from prgen.render import DELETED_FILE
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub, RecordedRequest
from scenarios import LABEL, read_fleet, repository_entry

from conftest import git, run, writes
from manifest_validation import validate_documents

EU, US = "clusters/eu/previews", "clusters/us/previews"
CHART = "chart: {chart: app, sourceRef: {kind: HelmRepository, name: charts}}"
TARGETS = f"""\
targets:
  - name: eu
    path: {EU}
    values: {{region: eu, ingress: {{host: 'pr-<<PR_NUMBER>>.eu.example.com'}}}}
  - name: us
    path: {US}
    values: {{region: us, ingress: {{host: 'pr-<<PR_NUMBER>>.us.example.com'}}}}
"""


def targets_config(
    tmp_path: Path, github: FakeGitHub, fleet: Path, repositories: str, extra: str = ""
) -> Path:
    path = tmp_path / "prgen.yaml"
    path.write_text(
        f"""\
github: {{apiUrl: {github.base_url}, timeout: 5, retries: 0, writeInterval: 0}}
fleet:
  url: {fleet}
  author: {{name: prgen-test, email: prgen@example.com}}
{TARGETS}{extra}repositories:
{repositories}"""
    )
    return path


def sync(config: Path, *args: str) -> Result:
    return run("sync", "--config", str(config), *args)


def sync_json(config: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = sync(config, "--output", "json", *args)
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def commits(fleet: Path) -> int:
    return int(git("rev-list", "--count", "main", cwd=fleet))


def release(fleet: Path, path: str, folder: str) -> dict:  # type: ignore[type-arg]
    text = git("show", f"main:{path}/{folder}/helmrelease.yaml", cwd=fleet)
    return yaml.safe_load(text)  # type: ignore[no-any-return]


def index(fleet: Path, path: str) -> list[str]:
    text = git("show", f"main:{path}/kustomization.yaml", cwd=fleet)
    return list(yaml.safe_load(text)["resources"])


# -- config -------------------------------------------------------------------------------

BASE = f"""\
fleet: {{url: /tmp/fleet.git}}
defaults: {{{CHART}, values: {{replicas: 1, region: none, size: s}}}}
"""


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        (
            BASE + "targets: [{name: eu, path: a}]\n"
            "repositories: [{name: acme/shop, targets: [eu, mars]}]\n",
            "repositories[0].targets[1]",
            "unknown target 'mars'",
        ),
        (
            "fleet: {url: /f}\ntargets: [{name: eu, path: a}]\ndefaults: {targets: [us]}\n"
            "repositories: [{name: acme/shop, " + CHART + "}]\n",
            "defaults.targets[0]",
            "unknown target 'us'",
        ),
        (
            BASE + "targets: [{name: eu, path: clusters/eu}, {name: us, path: clusters/eu/us}]\n"
            "repositories: [{name: acme/shop}]\n",
            "targets[1].path",
            "overlaps clusters/eu",
        ),
        (
            BASE + "targets: [{name: eu, path: clusters/x}, {name: us, path: clusters/x}]\n"
            "repositories: [{name: acme/shop}]\n",
            "targets[1].path",
            "overlaps",
        ),
        (
            BASE + "targets: [{name: eu, path: a/b}, {name: us, path: a}]\n"
            "repositories: [{name: acme/shop}]\n",
            "targets[1].path",
            "overlaps a/b",
        ),
        (
            BASE + "targets: [{name: eu, path: a}, {name: eu, path: b}]\n"
            "repositories: [{name: acme/shop}]\n",
            "targets[1].name",
            "eu is listed twice",
        ),
        (
            "fleet: {url: /tmp/f, path: p}\ntargets: [{name: eu, path: a}]\n"
            "repositories: [{name: acme/shop, " + CHART + "}]\n",
            "fleet.path",
            "either fleet.path",
        ),
        (
            "fleet: {url: /tmp/f}\nrepositories: [{name: acme/shop, " + CHART + "}]\n",
            "fleet",
            "'path' is a required property",
        ),
        (
            BASE + "targets: [{name: EU, path: a}]\nrepositories: [{name: acme/shop}]\n",
            "targets[0].name",
            "does not match",
        ),
        (
            BASE + "targets: [{name: eu, path: a, values: {x: '<<NOPE>>'}}]\n"
            "repositories: [{name: acme/shop}]\n",
            "targets[0].values.x",
            "unknown placeholder <<NOPE>>",
        ),
        (
            "fleet: {url: /f, path: p}\n"
            "repositories: [{name: acme/shop, values: {host: '<<TARGET>>.x.io'}, " + CHART + "}]\n",
            "repositories[0].values.host",
            "this config has no targets",
        ),
        (
            BASE + "targets: [{name: eu, path: a}]\n"
            "repositories: [{name: acme/shop, namespace: 'shop-<<TARGET>>-<<PR_NUMBER>>'}]\n",
            "repositories[0].namespace",
            "<<TARGET>> can't be used in the namespace",
        ),
    ],
)
def test_a_bad_targets_config_names_the_field_and_the_reason(
    text: str, path: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert caught.value.path == path, str(caught.value)
    assert reason in str(caught.value)


def test_values_merge_defaults_then_target_then_repository_and_targets_default_to_all() -> None:
    config = parse_config(
        BASE
        + """\
targets:
  - {name: eu, path: clusters/eu/previews, values: {region: eu, size: m}}
  - {name: us, path: clusters/us/previews, values: {region: us}}
repositories:
  - {name: acme/shop, values: {size: l}}
  - {name: acme/api, targets: [us]}
"""
    )
    eu, us = config.fleet_targets
    assert [r.name for r in eu.repositories] == ["acme/shop"]
    assert [r.name for r in us.repositories] == ["acme/shop", "acme/api"]
    assert eu.repositories[0].values == {"replicas": 1, "region": "eu", "size": "l"}
    assert us.repositories[1].values == {"replicas": 1, "region": "us", "size": "s"}
    assert config.fleet.paths == ("clusters/eu/previews", "clusters/us/previews")
    # Each target keeps its own identity: another target's environments are not its own.
    assert eu.repositories[0].identity != us.repositories[0].identity


def test_without_targets_there_is_one_unnamed_target_at_fleet_path() -> None:
    config = parse_config(
        f"fleet: {{url: /f, path: previews/dev}}\nrepositories: [{{name: a/b, {CHART}}}]"
    )
    (only,) = config.fleet_targets
    assert (only.name, only.path, only.repositories) == ("", "previews/dev", config.repositories)
    assert config.fleet.paths == ("previews/dev",)


# -- sync against one bare fleet ----------------------------------------------------------------


@pytest.fixture
def two(github: FakeGitHub, fleet_remote: Path, tmp_path: Path) -> Path:
    """acme/shop in both targets, acme/api in us only."""
    github.add_repo("acme/shop")
    github.add_repo("acme/api")
    return targets_config(
        tmp_path,
        github,
        fleet_remote,
        repository_entry("acme/shop")
        + repository_entry("acme/api").replace(
            "  - name: acme/api\n", "  - name: acme/api\n    targets: [us]\n"
        ),
    )


def test_two_targets_create_update_and_delete_in_one_commit_each_run(
    github: FakeGitHub, fleet_remote: Path, two: Path
) -> None:
    shop1 = github.open_pull("acme/shop", title="one", head_branch="one", labels=(LABEL,))
    shop2 = github.open_pull("acme/shop", title="two", head_branch="two", labels=(LABEL,))
    api1 = github.open_pull("acme/api", title="api", head_branch="api", labels=(LABEL,))
    before = commits(fleet_remote)

    document = sync_json(two)
    assert document["exitCode"] == 0
    assert commits(fleet_remote) == before + 1  # both targets, one commit
    eu, us = read_fleet(fleet_remote, EU), read_fleet(fleet_remote, US)
    assert eu.problems == [] and us.problems == []
    assert set(eu.environments) == {("acme/shop", shop1), ("acme/shop", shop2)}
    assert set(us.environments) == {("acme/shop", shop1), ("acme/shop", shop2), ("acme/api", api1)}
    assert index(fleet_remote, EU) == ["shop-pr-1", "shop-pr-2"]
    assert index(fleet_remote, US) == ["api-pr-1", "shop-pr-1", "shop-pr-2"]
    # Per-target values over the defaults, under the repository's own.
    eu_values = release(fleet_remote, EU, "shop-pr-1")["spec"]["values"]
    us_values = release(fleet_remote, US, "shop-pr-1")["spec"]["values"]
    assert eu_values["region"] == "eu" and us_values["region"] == "us"
    assert eu_values["ingress"]["host"] == "pr-1.eu.example.com"
    assert us_values["ingress"]["host"] == "pr-1.us.example.com"
    assert (
        eu_values["image"]["tag"]
        == us_values["image"]["tag"]
        == github.pull("acme/shop", 1).head_sha
    )
    # The output names each change's target and folder.
    created = {(c["target"], c["folder"]) for c in document["changes"] if c["action"] == "create"}
    assert ("eu", f"{EU}/shop-pr-1") in created and ("us", f"{US}/api-pr-1") in created
    assert ("eu", f"{EU}/api-pr-1") not in created
    assert document["fleet"]["targets"] == [{"name": "eu", "path": EU}, {"name": "us", "path": US}]
    # The rest of the fleet is untouched.
    assert git("show", "main:clusters/flux.yaml", cwd=fleet_remote) == "# hand-written\n"

    new_head = github.push("acme/shop", shop1)
    github.close_pull("acme/shop", shop2)
    result = sync(two)
    assert result.exit_code == 0, result.output
    assert commits(fleet_remote) == before + 2
    message = git("log", "-1", "--format=%B", "main", cwd=fleet_remote)
    assert "prgen: 0 created, 2 updated, 2 removed" in message
    assert f"updated acme/shop#{shop1} in shop-pr-1 [eu] at {new_head}" in message
    assert f"removed acme/shop#{shop2} from shop-pr-2 [us]" in message
    assert f"{EU}/shop-pr-1 [eu] " in result.output and f"{US}/shop-pr-2 [us] " in result.output
    eu, us = read_fleet(fleet_remote, EU), read_fleet(fleet_remote, US)
    assert eu.environments == {("acme/shop", shop1): new_head}
    assert us.environments == {
        ("acme/shop", shop1): new_head,
        ("acme/api", api1): us.environments[("acme/api", api1)],
    }
    assert index(fleet_remote, EU) == ["shop-pr-1"]

    assert sync(two).exit_code == 0
    assert commits(fleet_remote) == before + 2  # nothing new: no commit


def test_a_dry_run_diff_shows_each_targets_folder(
    github: FakeGitHub, fleet_remote: Path, two: Path
) -> None:
    github.open_pull("acme/shop", title="one", head_branch="one", labels=(LABEL,))
    result = sync(two, "--dry-run")
    assert result.exit_code == 0, result.output
    assert f"+++ b/{EU}/shop-pr-1/helmrelease.yaml" in result.output
    assert f"+++ b/{US}/shop-pr-1/helmrelease.yaml" in result.output
    assert f"+++ b/{US}/kustomization.yaml" in result.output
    assert read_fleet(fleet_remote, EU).environments == {}


def test_a_failed_listing_keeps_every_targets_environments(
    github: FakeGitHub, fleet_remote: Path, two: Path
) -> None:
    shop = github.open_pull("acme/shop", title="one", head_branch="one", labels=(LABEL,))
    api = github.open_pull("acme/api", title="api", head_branch="api", labels=(LABEL,))
    assert sync(two).exit_code == 0
    github.close_pull("acme/shop", shop)
    github.close_pull("acme/api", api)
    before = commits(fleet_remote)
    github.inject("GET", r"/repos/acme/shop/pulls", status=502, times=10)

    result = sync(two)
    assert result.exit_code == 1
    assert "acme/shop: NOT SYNCED" in result.output
    assert set(read_fleet(fleet_remote, EU).environments) == {("acme/shop", shop)}
    # acme/api's listing was complete: only its environment goes.
    assert set(read_fleet(fleet_remote, US).environments) == {("acme/shop", shop)}
    assert commits(fleet_remote) == before + 1


def test_each_target_has_its_own_mass_deletion_guard(
    github: FakeGitHub, fleet_remote: Path, tmp_path: Path
) -> None:
    for name in ("acme/eushop", "acme/usshop"):
        github.add_repo(name)
    eu_entry = repository_entry("acme/eushop").replace(
        "  - name: acme/eushop\n", "  - name: acme/eushop\n    targets: [eu]\n"
    )
    us_entry = repository_entry("acme/usshop").replace(
        "  - name: acme/usshop\n", "  - name: acme/usshop\n    targets: [us]\n"
    )
    config = targets_config(
        tmp_path, github, fleet_remote, eu_entry + us_entry, "safety: {maxDeletions: 2}\n"
    )
    eu = [
        github.open_pull("acme/eushop", title=f"{n}", head_branch=f"b{n}", labels=(LABEL,))
        for n in range(4)
    ]
    us = [
        github.open_pull("acme/usshop", title=f"{n}", head_branch=f"b{n}", labels=(LABEL,))
        for n in range(4)
    ]
    assert sync(config).exit_code == 0
    for number in eu[:3]:  # 3 of eu's 4: over its limit of 2
        github.close_pull("acme/eushop", number)
    for number in us[:2]:  # 2 of us's 4: within its own limit (4 in all would not be)
        github.close_pull("acme/usshop", number)

    result = sync(config)
    assert result.exit_code == 1
    assert "target eu: mass-deletion guard: this run would remove 3 of 4" in result.output
    assert len(read_fleet(fleet_remote, EU).environments) == 4
    assert set(read_fleet(fleet_remote, US).environments) == {
        ("acme/usshop", us[2]),
        ("acme/usshop", us[3]),
    }

    assert sync(config, "--allow-mass-delete").exit_code == 0
    assert set(read_fleet(fleet_remote, EU).environments) == {("acme/eushop", eu[3])}


def test_two_targets_and_three_shards_at_once_converge(
    github: FakeGitHub, fleet_remote: Path, tmp_path: Path
) -> None:
    names = [f"acme/app-{n:02d}" for n in range(9)]
    entries = ""
    for position, name in enumerate(names):
        github.add_repo(name)
        github.open_pull(name, title="change", head_branch="change", labels=(LABEL,))
        entry = repository_entry(name)
        if position % 3 == 1:  # a third in eu only, a third in us only, a third in both
            entry = entry.replace(f"  - name: {name}\n", f"  - name: {name}\n    targets: [eu]\n")
        elif position % 3 == 2:
            entry = entry.replace(f"  - name: {name}\n", f"  - name: {name}\n    targets: [us]\n")
        entries += entry
    config = targets_config(tmp_path, github, fleet_remote, entries)

    def sync_shards() -> None:
        processes = [
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "prgen", "sync", "--config", str(config)),
                    *("--shard", f"{index}/3", "--workdir", str(tmp_path / f"work-{index}")),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for index in (1, 2, 3)
        ]
        for process in processes:
            _, err = process.communicate(timeout=180)
            assert process.returncode == 0, err

    sync_shards()
    in_eu = {name for position, name in enumerate(names) if position % 3 != 2}
    in_us = {name for position, name in enumerate(names) if position % 3 != 1}
    eu, us = read_fleet(fleet_remote, EU), read_fleet(fleet_remote, US)
    assert eu.problems == [] and us.problems == []
    assert {repository for repository, _ in eu.environments} == in_eu
    assert {repository for repository, _ in us.environments} == in_us

    for name in names:  # every PR closes: each shard removes its own, in both targets
        github.close_pull(name, 1)
    sync_shards()
    eu, us = read_fleet(fleet_remote, EU), read_fleet(fleet_remote, US)
    assert eu.environments == {} and us.environments == {}
    assert eu.problems == [] and us.problems == []


# -- probe and status see every target -----------------------------------------------------------


def test_probe_and_status_see_both_targets_and_report_each_under_its_own_names(
    github: FakeGitHub, fleet_remote: Path, tmp_path: Path, envs: Environments
) -> None:
    github.add_repo("acme/shop")
    health = f"""\
    healthCheck: {{url: '{envs.url}/pr-<<PR_NUMBER>>/healthz', timeout: 1s}}
    environmentUrl: '{envs.url}/pr-<<PR_NUMBER>>/<<TARGET>>/'
"""
    config = targets_config(tmp_path, github, fleet_remote, repository_entry("acme/shop") + health)
    number = github.open_pull("acme/shop", title="one", head_branch="one", labels=(LABEL,))
    sha = github.pull("acme/shop", number).head_sha

    result = run("sync", "--probe", "-c", str(config))
    assert result.exit_code == 0, result.output
    states = {s.context: s.state for s in github.statuses("acme/shop", sha)}
    assert states == {"prgen/preview (eu)": "success", "prgen/preview (us)": "success"}
    deployments = {d.environment: d for d in github.deployments("acme/shop")}
    assert set(deployments) == {f"pr-{number}-eu", f"pr-{number}-us"}
    url_of = {
        name: github.deployment_statuses("acme/shop", d.id)[-1].environment_url
        for name, d in deployments.items()
    }
    assert url_of[f"pr-{number}-eu"] == f"{envs.url}/pr-{number}/eu/"
    assert url_of[f"pr-{number}-us"] == f"{envs.url}/pr-{number}/us/"
    comments = sorted(c.body.splitlines()[0] for c in github.comments("acme/shop", number))
    assert comments == ["<!-- prgen:preview:eu -->", "<!-- prgen:preview:us -->"]

    github.clear_requests()
    probed = run("probe", "-c", str(config), "--output", "json")
    assert probed.exit_code == 0, probed.output
    assert writes(github) == 0  # the two targets' reports stand side by side, never flap
    seen = {(e["target"], e["namespace"]) for e in json.loads(probed.stdout)["environments"]}
    assert seen == {("eu", "shop-pr-1"), ("us", "shop-pr-1")}

    shown = run("status", "-c", str(config), "--output", "json")
    assert shown.exit_code == 0, shown.output
    (repository,) = json.loads(shown.stdout)["repositories"]
    (pull,) = repository["pullRequests"]
    assert [(e["target"], e["name"], e["deployedHead"]) for e in pull["environments"]] == [
        ("eu", "shop-pr-1", sha),
        ("us", "shop-pr-1", sha),
    ]
    table = run("status", "-c", str(config))
    assert "eu/shop-pr-1" in table.output and "us/shop-pr-1" in table.output

    github.close_pull("acme/shop", number)
    closed = run("sync", "--probe", "-c", str(config))
    assert closed.exit_code == 0, closed.output
    for name, deployment in deployments.items():  # each target's removal, reported as its own
        assert github.deployment_statuses("acme/shop", deployment.id)[-1].state == "inactive", name
    bodies = sorted(c.body for c in github.comments("acme/shop", number))
    assert len(bodies) == 2 and all("removed" in body for body in bodies)
    assert bodies[0].startswith("<!-- prgen:preview:eu -->\n### Preview environment (eu)")


# -- the example -----------------------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[1] / "fleet-repo-example"


def example_section() -> str:
    text = (EXAMPLE / "README.md").read_text()
    start = text.index("\n## Several clusters (optional)\n")
    return text[start : text.index("\n## ", start + 1)]


def test_the_examples_two_clusters_are_a_valid_config_and_valid_flux_objects() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", example_section(), re.S)
    settings, kustomization = (yaml.safe_load(block) for block in blocks)
    # The example's prgen.yaml with the section's fleet and targets in place of fleet.path.
    document = yaml.safe_load((EXAMPLE / "infrastructure/prgen/prgen.yaml").read_text())
    document["fleet"] = settings["fleet"]
    document["targets"] = settings["targets"]
    (entry,) = document["repositories"]
    del entry["values"]["ingress"]
    entry["healthCheck"]["url"] = (
        "https://shop-pr-<<PR_NUMBER>>.<<TARGET>>.preview.example.com/healthz"
    )
    assert f"`healthCheck.url: '{entry['healthCheck']['url']}'`" in example_section()
    config = parse_config(yaml.safe_dump(document), base_dir=EXAMPLE / "infrastructure/prgen")
    eu, us = config.fleet_targets
    assert (eu.path, us.path) == ("previews/eu", "previews/us")
    assert kustomization["spec"]["path"] == f"./{eu.path}"
    assert f"`path: ./{us.path}`" in example_section()
    # As the one-cluster example's Kustomization, but for the folder.
    one = yaml.safe_load((EXAMPLE / "clusters/preview/previews.yaml").read_text())
    one["spec"]["path"] = kustomization["spec"]["path"]
    assert kustomization == one
    assert validate_documents(blocks[1]) == []


def test_render_renders_for_a_target(github: FakeGitHub, fleet_remote: Path, two: Path) -> None:
    eu = run("render", "-c", str(two), "--repo", "acme/shop", "--pr", "7", "--offline")
    assert eu.exit_code == 0, eu.output
    assert "pr-7.eu.example.com" in eu.stdout and "rendered for target eu" in eu.stderr
    us = run(
        "render", "-c", str(two), "--repo", "acme/shop", "--pr", "7", "--offline", "--target", "us"
    )
    assert us.exit_code == 0, us.output
    assert "pr-7.us.example.com" in us.stdout
    api = run(
        "render", "-c", str(two), "--repo", "acme/api", "--pr", "7", "--offline", "--target", "eu"
    )
    assert api.exit_code == 2 and "acme/api does not go to target eu" in api.output


def test_a_preview_delete_command_removes_the_pr_from_every_target(
    github: FakeGitHub, fleet_remote: Path, two: Path
) -> None:
    github.set_permission("acme/shop", "maria", "maintain")
    number = github.open_pull("acme/shop", title="one", head_branch="one", labels=(LABEL,))
    assert sync(two).exit_code == 0
    github.add_comment("acme/shop", number, "/preview delete", user="maria")

    document = sync_json(two)
    removed = {(c["target"], c["action"]) for c in document["changes"]}
    assert removed == {("eu", "delete"), ("us", "delete")}
    assert read_fleet(fleet_remote, EU).environments == {}
    assert read_fleet(fleet_remote, US).environments == {}
    for path in (EU, US):  # each target remembers it, so a run reading either keeps it so
        marker = yaml.safe_load(git("show", f"main:{path}/{DELETED_FILE}", cwd=fleet_remote))
        assert list(marker["data"]) == [f"acme.shop.{number}"]

    github.push("acme/shop", number)
    again = sync_json(two)
    assert again["commit"] is None and read_fleet(fleet_remote, US).environments == {}


def test_validate_renders_and_lists_every_target(two: Path) -> None:
    result = run("validate", "-c", str(two))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[1] == f"  target eu ({EU}):" and lines[2].startswith("    acme/shop: config ")
    assert f"  target us ({US}):" in lines and sum("acme/shop" in line for line in lines) == 2


def test_a_concurrent_push_re_plans_every_target(
    github: FakeGitHub, fleet_remote: Path, two: Path, tmp_path: Path
) -> None:
    stays = github.open_pull("acme/shop", title="one", head_branch="one", labels=(LABEL,))
    closes = github.open_pull("acme/shop", title="two", head_branch="two", labels=(LABEL,))
    assert sync(two).exit_code == 0
    github.close_pull("acme/shop", closes)
    other = tmp_path / "other-writer"
    git("clone", str(fleet_remote), str(other))
    pushed: list[bool] = []

    def someone_else_pushes(request: RecordedRequest) -> None:
        # The closed PR's own read, which confirms its removal: after the fleet was read.
        if request.path.endswith(f"/pulls/{closes}") and not pushed:
            pushed.append(True)
            (other / "apps.yaml").write_text("kind: ConfigMap\n")
            git("add", "apps.yaml", cwd=other)
            git("commit", "-m", "unrelated", cwd=other)
            git("push", "origin", "HEAD:main", cwd=other)

    github.on_request(someone_else_pushes)
    document = sync_json(two)
    assert pushed and document["attempts"] == 2
    assert git("show", "main:apps.yaml", cwd=fleet_remote) == "kind: ConfigMap\n"
    for path in (EU, US):
        assert set(read_fleet(fleet_remote, path).environments) == {("acme/shop", stays)}
    log = git("log", "--format=%s", "main", cwd=fleet_remote).splitlines()
    assert log[:2] == ["prgen: 0 created, 0 updated, 2 removed", "unrelated"]


def test_a_repository_taken_out_of_a_target_keeps_its_environments_there_with_a_warning(
    github: FakeGitHub, fleet_remote: Path, two: Path
) -> None:
    number = github.open_pull("acme/shop", title="one", head_branch="one", labels=(LABEL,))
    assert sync(two).exit_code == 0
    text = two.read_text().replace(
        "  - name: acme/shop\n", "  - name: acme/shop\n    targets: [us]\n", 1
    )
    two.write_text(text)

    result = sync(two)
    assert result.exit_code == 0, result.output
    assert "target eu no longer lists acme/shop" in result.output
    assert set(read_fleet(fleet_remote, EU).environments) == {("acme/shop", number)}
    github.close_pull("acme/shop", number)
    assert sync(two).exit_code == 0
    assert read_fleet(fleet_remote, US).environments == {}
    assert set(read_fleet(fleet_remote, EU).environments) == {("acme/shop", number)}


def test_the_fleet_history_is_read_in_each_targets_folder(
    github: FakeGitHub, fleet_remote: Path, two: Path, tmp_path: Path
) -> None:
    number = github.open_pull("acme/api", title="api", head_branch="api", labels=(LABEL,))
    sha = github.pull("acme/api", number).head_sha
    assert sync(two).exit_code == 0
    fleet = FleetRepo(load_config(two).fleet, tmp_path / "history")
    fleet.refresh_all()
    assert fleet.carried_since("api-pr-1", sha, US) is not None
    assert fleet.carried_since("api-pr-1", sha) is None  # fleet.path is the first target's: eu
    github.close_pull("acme/api", number)
    assert sync(two).exit_code == 0
    fleet.refresh_all()
    (gone,) = fleet.recently_removed(5, US)
    assert (gone.repository, gone.number, gone.folder) == ("acme/api", number, "api-pr-1")
    assert fleet.recently_removed(5, EU) == []
