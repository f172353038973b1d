"""Commands from PR comments, end to end: `prgen sync` through the real CLI, real HTTP to the
fake GitHub (comments, reactions, permissions as GitHub serves them), real git to a bare fleet.

The state a command sets lives in the fleet (HelmRelease annotations, and a marker file for
PRs deleted on request), so a second run, or a second runner with a fresh cache, never
applies a command twice; prgen's own reactions settle the commands the fleet does not record.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from click.testing import CliRunner, Result

from prgen.cli import main
from prgen.github.commands import REPLY_MARKER
from prgen.render import DELETED_FILE
from prgen.report import COMMENT_MARKER
from prgen.testing.environments import Environments
from prgen.testing.fake_github import FakeGitHub

from conftest import HEALTH, SHOP, TOKEN, git
from manifest_validation import validate_documents

Config = Callable[..., Path]
REPO = "acme/shop"
FOLDER = "shop-pr-1"
PRGEN = "prgen-bot"  # who the test token writes as
MAINTAINER, OUTSIDER = "mia", "otto"


def sync(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["sync", "--config", str(config), "--output", "json", *args])


def run(config: Path, *args: str, code: int = 0) -> dict[str, Any]:
    result = sync(config, *args)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def release(remote: Path, folder: str = FOLDER) -> dict[str, Any] | None:
    try:
        text = git("show", f"main:previews/dev/{folder}/helmrelease.yaml", cwd=remote)
    except Exception:
        return None
    return yaml.safe_load(text)  # type: ignore[no-any-return]


def annotations(remote: Path, folder: str = FOLDER) -> dict[str, str]:
    found = release(remote, folder)
    assert found is not None, f"{folder} has no environment"
    return found["metadata"]["annotations"]  # type: ignore[no-any-return]


def head_of(remote: Path, folder: str = FOLDER) -> str | None:
    found = release(remote, folder)
    return None if found is None else found["metadata"]["annotations"]["prgen.io/head-sha"]


def has_marker(remote: Path) -> bool:
    listed = git("ls-tree", "--name-only", "main", "previews/dev/", cwd=remote)
    return f"previews/dev/{DELETED_FILE}" in listed.splitlines()


def commits(remote: Path) -> int:
    return int(git("rev-list", "--count", "main", cwd=remote).strip())


def reactions(github: FakeGitHub, comment: int) -> list[tuple[str, str]]:
    return [(r.user, r.content) for r in github.reactions(REPO, comment)]


def replies(github: FakeGitHub, number: int = 1) -> list[str]:
    return [c.body for c in github.comments(REPO, number) if c.body.startswith(REPLY_MARKER)]


def command(document: dict[str, Any], comment: int) -> dict[str, Any]:
    (found,) = [c for c in document["commands"] if c["comment"] == comment]
    return found  # type: ignore[no-any-return]


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo(REPO)
    github.set_permission(REPO, MAINTAINER, "maintain")
    return github


@pytest.fixture
def deployed(shop: FakeGitHub, write_config: Config, fleet_remote: Path) -> Path:
    """PR 1 with its environment in the fleet; the config's path."""
    shop.open_pull(REPO, title="Cart", head_branch="cart")
    config = write_config()
    run(config)
    assert head_of(fleet_remote) == shop.pull(REPO, 1).head_sha
    return config


def say(github: FakeGitHub, body: str, user: str = MAINTAINER, number: int = 1) -> int:
    return github.add_comment(REPO, number, body, user=user).id


def test_redeploy_annotates_the_release_once_and_stays_byte_stable(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    comment = shop.add_comment(REPO, 1, "/preview redeploy", user=MAINTAINER)
    document = run(deployed)
    assert command(document, comment.id)["outcome"] == "done"
    marks = annotations(fleet_remote)
    created = comment.created_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert marks["reconcile.fluxcd.io/requestedAt"] == created
    assert marks["reconcile.fluxcd.io/forceAt"] == created
    assert marks["prgen.io/last-command"] == str(comment.id)
    assert [c["reason"] for c in document["changes"]] == ["redeploy by /preview redeploy"]
    assert reactions(shop, comment.id) == [(PRGEN, "eyes"), (PRGEN, "+1")]
    assert replies(shop) == []

    before = commits(fleet_remote)
    for _ in range(2):  # idle runs: nothing replays, nothing is written
        again = run(deployed)
        assert again["commands"] == [] and again["commit"] is None
    assert commits(fleet_remote) == before
    assert annotations(fleet_remote) == marks


def test_an_outsider_is_refused_politely_once(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    before = release(fleet_remote)
    comment = say(shop, "/preview delete", user=OUTSIDER)
    document = run(deployed)
    assert command(document, comment)["outcome"] == "refused"
    assert release(fleet_remote) == before
    assert reactions(shop, comment) == [(PRGEN, "eyes"), (PRGEN, "confused")]
    (reply,) = replies(shop)
    assert f"@{OUTSIDER}" in reply and "write, maintain or admin" in reply

    run(deployed)
    run(deployed, "--cache-dir", "off")  # a second runner, nothing cached
    assert len(replies(shop)) == 1
    assert release(fleet_remote) == before


@pytest.mark.parametrize(("role", "allowed"), [("admin", True), ("write", True), ("triage", False)])
def test_who_may_give_commands(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path, role: str, allowed: bool
) -> None:
    shop.set_permission(REPO, "ruth", role)
    comment = say(shop, "  /PREVIEW Pause  \nplease", user="ruth")
    document = run(deployed)
    assert command(document, comment)["outcome"] == ("done" if allowed else "refused")
    assert ("prgen.io/paused-at" in annotations(fleet_remote)) is allowed


def test_a_user_github_does_not_know_is_refused(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    shop.set_permission(REPO, "ghosty", None)  # the permission read answers 404
    comment = say(shop, "/preview pause", user="ghosty")
    assert command(run(deployed), comment)["outcome"] == "refused"


def test_help_and_an_unknown_command_are_answered_with_the_list(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    helped = say(shop, "/preview help")
    unknown = say(shop, "/preview deploy-everything `@all`")
    not_a_command = say(shop, "we could /preview pause later")
    document = run(deployed)
    assert command(document, helped)["outcome"] == "done"
    assert command(document, unknown)["outcome"] == "refused"
    assert not [c for c in document["commands"] if c["comment"] == not_a_command]
    assert reactions(shop, not_a_command) == []
    help_reply, unknown_reply = replies(shop)
    for verb in ("redeploy", "pause", "resume", "delete", "create", "help"):
        assert f"/preview {verb}" in help_reply and f"/preview {verb}" in unknown_reply
    assert "not a command I know" in unknown_reply and "`@all`" not in unknown_reply
    run(deployed)
    assert len(replies(shop)) == 2


def test_pause_holds_the_head_until_resume(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    old = shop.pull(REPO, 1).head_sha
    say(shop, "/preview pause")
    paused = run(deployed)
    assert [(c["action"], c["reason"]) for c in paused["changes"]] == [
        ("hold", "paused by /preview pause")
    ]
    assert annotations(fleet_remote)["prgen.io/paused-at"] == old

    new = shop.push(REPO, 1)
    held = run(deployed, "--dry-run")
    assert [(c["action"], c["reason"]) for c in held["changes"]] == [
        ("hold", f"paused by /preview pause (head {new[:7]} waits)")
    ]
    assert run(deployed)["commit"] is None
    assert head_of(fleet_remote) == old

    shop.set_draft(REPO, 1, True)  # no longer eligible: still held while its PR is open
    drafted = run(deployed)
    assert [c["action"] for c in drafted["changes"]] == ["hold"] and drafted["commit"] is None
    assert head_of(fleet_remote) == old
    shop.set_draft(REPO, 1, False)
    say(shop, "/preview resume")
    resumed = run(deployed)
    assert [(c["action"], c["reason"]) for c in resumed["changes"]] == [
        ("update", "resumed by /preview resume")
    ]
    assert head_of(fleet_remote) == new
    assert "prgen.io/paused-at" not in annotations(fleet_remote)


def test_delete_stays_deleted_until_create(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    deleting = say(shop, "/preview delete")
    document = run(deployed)
    assert [(c["action"], c["pullRequest"]) for c in document["changes"]] == [("delete", 1)]
    assert release(fleet_remote) is None
    marker = git("show", f"main:previews/dev/{DELETED_FILE}", cwd=fleet_remote)
    assert marker.startswith("# prgen:managed")
    assert yaml.safe_load(marker)["data"] == {"acme.shop.1": str(deleting)}
    index = yaml.safe_load(git("show", "main:previews/dev/kustomization.yaml", cwd=fleet_remote))
    assert DELETED_FILE not in index["resources"]

    shop.push(REPO, 1)
    again = run(deployed, "--cache-dir", "off")  # a fresh runner: still deleted
    assert release(fleet_remote) is None and again["commit"] is None
    assert again["skipped"][0]["reason"].startswith("deleted by /preview delete")

    creating = say(shop, "/preview create")
    created = run(deployed)
    assert [c["action"] for c in created["changes"]] == ["create"]
    assert annotations(fleet_remote)["prgen.io/last-command"] == str(creating)
    assert head_of(fleet_remote) == shop.pull(REPO, 1).head_sha
    assert not has_marker(fleet_remote)
    assert reactions(shop, deleting)[-1] == (PRGEN, "+1")


def test_the_marker_forgets_a_closed_pr(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    say(shop, "/preview delete")
    run(deployed)
    shop.close_pull(REPO, 1)
    run(deployed)
    assert not has_marker(fleet_remote)
    message = git("log", "-1", "--format=%B", "main", cwd=fleet_remote)
    assert "acme/shop#1: closed, no longer remembered as deleted on request" in message


def test_a_command_is_not_replayed_by_a_second_runner(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    say(shop, "/preview pause")
    run(deployed)
    say(shop, "/preview resume")
    run(deployed)
    new = shop.push(REPO, 1)
    # A second runner, nothing cached: neither the pause nor the resume applies again.
    document = run(deployed, "--cache-dir", "off")
    assert document["commands"] == []
    assert head_of(fleet_remote) == new


def test_a_command_the_fleet_recorded_is_not_replayed_without_prgens_reaction(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    """The 👍 failed after the commit: the fleet's last command id still says it is done."""
    pause = say(shop, "/preview pause")
    shop.inject("POST", rf"/repos/{REPO}/issues/comments/{pause}/reactions", status=502, after=1)
    document = run(deployed)
    assert any("could not answer" in w for w in document["warnings"])
    resume = say(shop, "/preview resume")
    again = run(deployed)
    assert [c["comment"] for c in again["commands"]] == [resume]
    assert "prgen.io/paused-at" not in annotations(fleet_remote)


def test_an_idle_run_with_comments_costs_no_points(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    say(shop, "/preview redeploy")
    say(shop, "just a comment", user=OUTSIDER)
    say(shop, "/preview pause", user=OUTSIDER)
    run(deployed)
    run(deployed)  # what the reactions changed in the listing, read once more
    shop.clear_requests()
    assert run(deployed)["commit"] is None
    assert shop.points_used() == 0
    assert shop.count_requests("GET", rf"/repos/{REPO}/issues/comments") == 1


def test_dry_run_reacts_to_nothing(shop: FakeGitHub, deployed: Path, fleet_remote: Path) -> None:
    comment = say(shop, "/preview delete")
    document = run(deployed, "--dry-run")
    assert [c["action"] for c in document["changes"]] == ["delete"]
    assert DELETED_FILE in document["diff"]
    assert reactions(shop, comment) == []
    assert release(fleet_remote) is not None


@pytest.mark.parametrize("status", [500, 403])
def test_failing_to_read_comments_deletes_nothing(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path, status: int
) -> None:
    before = release(fleet_remote)
    say(shop, "/preview delete")
    shop.inject("GET", rf"/repos/{REPO}/issues/comments", status=status, times=5)
    document = run(deployed, code=1)
    assert release(fleet_remote) == before
    assert document["commands"] == []
    assert any("commands from PR comments of acme/shop" in w for w in document["warnings"])
    shop.clear_faults()
    run(deployed)
    assert release(fleet_remote) is None


def test_comments_by_bots_and_prgen_are_never_commands(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    shop.set_permission(REPO, "helper[bot]", "admin")
    shop.set_permission(REPO, PRGEN, "admin")
    bot = say(shop, "/preview delete", user="helper[bot]")
    own = say(shop, "/preview delete", user=PRGEN)
    document = run(deployed)
    assert document["commands"] == []
    assert reactions(shop, bot) == reactions(shop, own) == []
    assert release(fleet_remote) is not None


def test_several_commands_apply_in_order_and_permission_is_asked_once(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    redeploy = say(shop, "/preview redeploy")
    pause = say(shop, "/preview pause")
    shop.clear_requests()
    document = run(deployed)
    assert [c["comment"] for c in document["commands"]] == [redeploy, pause]
    marks = annotations(fleet_remote)
    assert marks["prgen.io/last-command"] == str(pause)
    assert "prgen.io/paused-at" in marks and "reconcile.fluxcd.io/forceAt" in marks
    assert shop.count_requests("GET", rf"/repos/{REPO}/collaborators/{MAINTAINER}/permission") == 1
    message = git("log", "-1", "--format=%B", "main", cwd=fleet_remote)
    assert f"acme/shop#1: paused by /preview pause (comment {pause} by {MAINTAINER})" in message


def test_a_command_on_a_pr_prgen_does_not_handle_is_ignored(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    shop.open_pull(REPO, title="Docs", head_branch="docs", draft=True)  # drafts get none
    comment = say(shop, "/preview create", number=2)
    assert run(deployed)["commands"] == []
    assert reactions(shop, comment) == []


def test_a_paused_environment_still_goes_when_its_pr_closes(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    say(shop, "/preview pause")
    run(deployed)
    shop.close_pull(REPO, 1)
    document = run(deployed)
    assert [c["action"] for c in document["changes"]] == ["delete"]
    assert release(fleet_remote) is None


def test_redeploy_of_an_environment_its_gate_holds(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart")
    shop.add_check_run(REPO, shop.pull(REPO, 1).head_sha, "build")
    config = write_config(SHOP + "    deployWhen: {checks: [build]}\n")
    run(config)
    old = head_of(fleet_remote)
    shop.push(REPO, 1)  # its new head has no passing build: held at the old one
    say(shop, "/preview redeploy")
    document = run(config)
    assert [c["action"] for c in document["changes"]] == ["hold"]
    assert head_of(fleet_remote) == old
    assert "reconcile.fluxcd.io/requestedAt" in annotations(fleet_remote)
    text = git("show", f"main:previews/dev/{FOLDER}/helmrelease.yaml", cwd=fleet_remote)
    assert validate_documents(text) == []
    assert run(config)["commit"] is None  # and stays so


def test_the_text_output_says_each_command(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    say(shop, "/preview pause")
    say(shop, "/preview nope", user=OUTSIDER)
    result = CliRunner().invoke(main, ["sync", "--config", str(deployed)])
    assert result.exit_code == 0, result.output
    assert f"> command  acme/shop#1 /preview pause by {MAINTAINER}: done" in result.output
    assert f"> command  acme/shop#1 /preview nope by {OUTSIDER}: refused" in result.output


def test_status_and_the_pr_comment_say_it_is_paused(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path, envs: Environments
) -> None:
    shop.open_pull(REPO, title="Cart", head_branch="cart")
    config = write_config(SHOP + HEALTH.format(url=envs.url))
    run(config)
    say(shop, "/preview pause")
    assert CliRunner().invoke(main, ["sync", "--probe", "--config", str(config)]).exit_code == 0
    (report,) = [c.body for c in shop.comments(REPO, 1) if c.body.startswith(COMMENT_MARKER)]
    assert "| Paused | kept at this commit by `/preview pause`" in report

    shop.push(REPO, 1)
    status = CliRunner().invoke(main, ["status", "--config", str(config), "--output", "json"])
    assert status.exit_code == 0, status.output
    (pull,) = json.loads(status.stdout)["repositories"][0]["pullRequests"]
    assert pull["environment"]["pausedAt"] == head_of(fleet_remote)
    table = CliRunner().invoke(main, ["status", "--config", str(config)])
    assert "(older head) (paused)" in table.output


def test_the_rate_limit_reserve_holds_for_commands_too(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    before = release(fleet_remote)
    comment = say(shop, "/preview delete")
    reserved = deployed.read_text().replace("github:\n", "github:\n  rateLimitReserve: 100\n", 1)
    deployed.write_text(reserved)
    shop.set_rate_limit_remaining(101)  # the listing (its first answer) leaves 100: the reserve
    shop.clear_requests()
    document = run(deployed, "--cache-dir", "off", code=1)
    assert document["repositories"][0]["synced"] is True
    (warning,) = [w for w in document["warnings"] if "commands from PR comments" in w]
    assert "reserve 100 (github.rateLimitReserve)" in warning
    assert shop.count_requests("GET", rf"/repos/{REPO}/issues/comments") == 0
    assert release(fleet_remote) == before and reactions(shop, comment) == []


def test_a_next_page_named_by_repository_id_is_followed_and_another_host_is_not(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    repo_id = requests.get(
        f"{shop.base_url}/repos/{REPO}", headers={"Authorization": f"token {TOKEN}"}, timeout=5
    ).json()["id"]
    pause = say(shop, "/preview pause")
    for n in range(100):  # the pause is on page 2 (newest first)
        say(shop, f"comment {n}", user=OUTSIDER)
    page2 = f"{shop.base_url}/repositories/{repo_id}/issues/comments?sort=updated&direction=desc&per_page=100&page=2"
    shop.inject(
        "GET",
        rf"/repos/{REPO}/issues/comments",
        status=0,
        headers={"Link": f'<{page2}>; rel="next"'},
    )
    document = run(deployed)
    assert [c["comment"] for c in document["commands"]] == [pause]

    resume = say(shop, "/preview resume")
    elsewhere = "https://evil.example.com/repos/acme/shop/issues/comments?page=2"
    shop.inject(
        "GET",
        rf"/repos/{REPO}/issues/comments",
        status=0,
        headers={"Link": f'<{elsewhere}>; rel="next"'},
    )
    for n in range(100):
        say(shop, f"more {n}", user=OUTSIDER)
    refused = run(deployed, code=1)
    assert refused["commands"] == [] and reactions(shop, resume) == []
    assert any("links to another place" in w for w in refused["warnings"])
    assert "prgen.io/paused-at" in annotations(fleet_remote)


def test_a_command_seen_by_a_run_that_died_before_its_commit_is_applied_once(
    shop: FakeGitHub, deployed: Path, fleet_remote: Path
) -> None:
    """👀 is all a killed run left: the command is new until the fleet or a 👍 says done."""
    comment = say(shop, "/preview redeploy")
    shop.react(REPO, comment, "eyes", user=PRGEN)
    document = run(deployed)
    assert command(document, comment)["outcome"] == "done"
    assert reactions(shop, comment) == [(PRGEN, "eyes"), (PRGEN, "+1")]
    assert run(deployed, "--cache-dir", "off")["commands"] == []


def test_a_pr_deleted_on_request_leaves_its_place_under_max_environments(
    shop: FakeGitHub, write_config: Config, fleet_remote: Path
) -> None:
    """maxEnvironments counts environments: a PR deleted on request holds none, so the next
    eligible PR gets its place."""
    older = shop.open_pull(REPO, title="Older", head_branch="older")
    newer = shop.open_pull(REPO, title="Newer", head_branch="newer")
    config = write_config(SHOP + "    maxEnvironments: 1\n")
    run(config)
    assert head_of(fleet_remote, f"shop-pr-{newer}") is not None
    assert head_of(fleet_remote, f"shop-pr-{older}") is None  # over the limit
    say(shop, "/preview delete", number=newer)
    document = run(config)
    assert sorted((c["action"], c["pullRequest"]) for c in document["changes"]) == [
        ("create", older),
        ("delete", newer),
    ]
    skipped = {s["pullRequest"]: s["reason"] for s in document["skipped"]}
    assert skipped[newer].startswith("deleted by /preview delete")
