"""Commands from PR comments, the pure parts: parsing a comment, what each command does to a
PR's recorded state, and how that state is written into (and read back from) the fleet."""

from __future__ import annotations

import pytest
import yaml

from prgen.inventory import identity_of
from prgen.pr_commands import (
    PAUSED_REASON,
    Ack,
    Command,
    Controls,
    PullState,
    Verb,
    apply,
    help_text,
    parse,
)
from prgen.render import (
    HELMRELEASE_FILE,
    config_digest,
    controls_of,
    input_hash,
    read_deleted,
    render_deleted,
    render_environment,
    with_controls,
)

from factories import pull_request, repository
from manifest_validation import validate_documents

HEAD = "a" * 40
WHEN = "2026-01-01T00:00:05Z"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("/preview redeploy", Command(Verb.REDEPLOY)),
        ("  /PREVIEW   Pause  \nbecause reasons", Command(Verb.PAUSE)),
        ("\n\n/preview resume\r\n", Command(Verb.RESUME)),
        ("/preview delete", Command(Verb.DELETE)),
        ("/preview create", Command(Verb.CREATE)),
        ("/preview help", Command(Verb.HELP)),
        ("/preview", Command(Verb.UNKNOWN, "")),
        ("/preview deploy now", Command(Verb.UNKNOWN, "deploy now")),
        ("/preview `@org/all`", Command(Verb.UNKNOWN, "??org?all?")),
        ("/preview " + "x" * 100, Command(Verb.UNKNOWN, "x" * 40)),
    ],
)
def test_a_command_is_the_first_line(body: str, expected: Command) -> None:
    assert parse(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        None,
        "",
        "   ",
        "please /preview pause",
        "/previews pause",
        "/preview-pause",
        "> /preview delete",
        "lgtm\n/preview delete",
    ],
)
def test_anything_else_is_no_command(body: str | None) -> None:
    assert parse(body) is None


def test_help_lists_every_command() -> None:
    text = help_text()
    for verb in Verb:
        if verb is not Verb.UNKNOWN:
            assert f"`/preview {verb}`" in text


def state(**changes: object) -> PullState:
    return PullState(
        **{"controls": Controls(), "deleted": None, "environment_head": HEAD, **changes}
    )  # type: ignore[arg-type]


def test_pause_keeps_the_environments_head_and_resume_lets_go() -> None:
    paused, outcome = apply(state(), Command(Verb.PAUSE), 10, WHEN)
    assert outcome.ack is Ack.DONE and outcome.changed == PAUSED_REASON
    assert paused.controls == Controls(10, HEAD, None, WHEN)
    again, _ = apply(paused, Command(Verb.PAUSE), 11, WHEN)  # a second pause keeps the first head
    assert again.controls == Controls(11, HEAD, None, WHEN)
    resumed, outcome = apply(again, Command(Verb.RESUME), 12, WHEN)
    assert resumed.controls == Controls(12, None, None, WHEN) and outcome.ack is Ack.DONE


def test_redeploy_records_the_comments_time() -> None:
    after, outcome = apply(state(), Command(Verb.REDEPLOY), 10, WHEN)
    assert after.controls == Controls(10, None, WHEN, WHEN) and outcome.ack is Ack.DONE


def test_delete_and_create() -> None:
    gone, outcome = apply(state(controls=Controls(5, HEAD, WHEN)), Command(Verb.DELETE), 10, WHEN)
    assert gone == PullState(Controls(), 10, None) and gone.last_command == 10
    _, outcome = apply(gone, Command(Verb.PAUSE), 11, WHEN)
    assert outcome.ack is Ack.REFUSED and "/preview create" in (outcome.reply or "")
    back, outcome = apply(gone, Command(Verb.CREATE), 12, WHEN)
    assert back.deleted is None and back.controls.last_command == 12


@pytest.mark.parametrize("verb", [Verb.PAUSE, Verb.REDEPLOY])
def test_a_command_that_needs_an_environment_is_refused_without_one(verb: Verb) -> None:
    after, outcome = apply(state(environment_head=None), Command(verb), 10, WHEN)
    assert outcome.ack is Ack.REFUSED and after == state(environment_head=None)


def test_help_and_unknown_change_nothing() -> None:
    for command, ack in ((Command(Verb.HELP), Ack.DONE), (Command(Verb.UNKNOWN, "x"), Ack.REFUSED)):
        after, outcome = apply(state(), command, 10, WHEN)
        assert after == state() and outcome.ack is ack and outcome.reply


def test_controls_round_trip_and_empty_controls_keep_the_input_hash() -> None:
    controls = Controls(10, HEAD, WHEN)
    assert Controls.decode(controls.encode()) == controls
    assert Controls().encode() is None
    repo, pr = repository(), pull_request()
    digest = config_digest(repo)
    assert input_hash(digest, pr) == input_hash(digest, pr, Controls())
    assert input_hash(digest, pr) != input_hash(digest, pr, Controls(1))


def test_a_release_records_its_controls_and_still_validates() -> None:
    repo, pr = repository(), pull_request()
    controls = Controls(10, HEAD, WHEN)
    env = render_environment(repo, pr, controls=controls)
    text = env.files[HELMRELEASE_FILE].decode()
    assert validate_documents(text) == []
    annotations = yaml.safe_load(text.partition("\n")[2])["metadata"]["annotations"]
    assert annotations["reconcile.fluxcd.io/requestedAt"] == WHEN
    assert annotations["reconcile.fluxcd.io/forceAt"] == WHEN
    assert annotations["prgen.io/paused-at"] == HEAD
    assert controls_of(annotations) == controls
    identity = identity_of(env.files[HELMRELEASE_FILE])
    assert identity is not None and identity.controls == controls.encode() == env.controls
    assert render_environment(repo, pr, controls=controls).files == env.files  # byte-stable


def test_controls_set_on_a_kept_environment_change_only_its_annotations() -> None:
    repo, pr = repository(), pull_request()
    env = render_environment(repo, pr)
    controls = Controls(10, pr.head_sha, None)
    patched, inputs = with_controls(env.files, controls, env.inputs)
    assert inputs != env.inputs
    assert validate_documents(patched[HELMRELEASE_FILE].decode()) == []
    assert patched[HELMRELEASE_FILE].splitlines()[0] == env.files[HELMRELEASE_FILE].splitlines()[0]
    before = yaml.safe_load(env.files[HELMRELEASE_FILE])
    after = yaml.safe_load(patched[HELMRELEASE_FILE])
    assert after["spec"] == before["spec"]
    added = set(after["metadata"]["annotations"]) - set(before["metadata"]["annotations"])
    assert added == {"prgen.io/last-command", "prgen.io/paused-at"}
    assert with_controls(env.files, controls, env.inputs) == (patched, inputs)  # byte-stable
    identity = identity_of(patched[HELMRELEASE_FILE])
    assert identity is not None and identity.controls == controls.encode()


def test_the_deleted_marker_is_a_valid_manifest_that_reads_back() -> None:
    deleted = {("acme/shop", 12): 345, ("acme/my.app_x", 3): 7}
    content = render_deleted(deleted)
    assert content is not None and content.startswith(b"# prgen:managed")
    assert validate_documents(content.decode()) == []
    assert read_deleted(content) == deleted
    assert render_deleted(dict(reversed(list(deleted.items())))) == content
    assert render_deleted({}) is None
    assert read_deleted(b"not: [yaml") == {} and read_deleted(None) == {}
