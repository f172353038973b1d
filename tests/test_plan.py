from __future__ import annotations

from prgen.inventory import read_inventory
from prgen.plan import Action, make_plan
from prgen.render import render_environment

from factories import pull_request, repository

SHOP = repository()


def files_of(*envs):  # type: ignore[no-untyped-def]
    """The managed folder as it looks after those environments were written."""
    plan = make_plan(list(envs), read_inventory({}), complete={"acme/shop"})
    return {path: content for path, content in plan.writes.items() if content is not None}


def actions(plan) -> dict[int, Action]:  # type: ignore[no-untyped-def]
    return {change.number: change.action for change in plan.changes}


def test_new_prs_are_created_with_an_index() -> None:
    plan = make_plan([render_environment(SHOP, pull_request(1))], read_inventory({}), {"acme/shop"})
    assert actions(plan) == {1: Action.CREATE}
    assert set(plan.writes) == {
        "shop-pr-1/namespace.yaml",
        "shop-pr-1/helmrelease.yaml",
        "shop-pr-1/kustomization.yaml",
        "kustomization.yaml",
    }
    assert b"- shop-pr-1\n" in plan.writes["kustomization.yaml"]  # type: ignore[operator]


def test_unchanged_environments_are_kept_and_nothing_is_written() -> None:
    env = render_environment(SHOP, pull_request(1))
    plan = make_plan([env], read_inventory(files_of(env)), {"acme/shop"})
    assert actions(plan) == {1: Action.KEEP}
    assert not plan.has_changes


def test_a_new_head_commit_updates_only_the_helmrelease() -> None:
    before = render_environment(SHOP, pull_request(1))
    after = render_environment(SHOP, pull_request(1, head_sha="f" * 40))
    plan = make_plan([after], read_inventory(files_of(before)), {"acme/shop"})
    assert actions(plan) == {1: Action.UPDATE}
    assert set(plan.writes) == {"shop-pr-1/helmrelease.yaml"}
    assert "new head commit" in plan.changes[0].reason


def test_a_closed_pr_is_deleted_when_the_listing_was_complete() -> None:
    env = render_environment(SHOP, pull_request(1))
    plan = make_plan([], read_inventory(files_of(env)), {"acme/shop"})
    assert actions(plan) == {1: Action.DELETE}
    assert plan.writes["shop-pr-1/helmrelease.yaml"] is None
    assert b"resources: []" in plan.writes["kustomization.yaml"]  # type: ignore[operator]


def test_a_failed_listing_deletes_nothing() -> None:
    env = render_environment(SHOP, pull_request(1))
    plan = make_plan([], read_inventory(files_of(env)), complete=set())
    assert actions(plan) == {1: Action.KEEP}
    assert "failed" in plan.changes[0].reason
    assert not plan.has_changes


def test_hand_written_files_are_never_written_or_deleted_and_stay_listed() -> None:
    env = render_environment(SHOP, pull_request(1))
    current = {
        **files_of(env),
        "extra.yaml": b"kind: ConfigMap\n",
        "shop-pr-1/notes.txt": b"mine\n",
    }
    plan = make_plan([], read_inventory(current), {"acme/shop"})
    assert "extra.yaml" not in plan.writes and "shop-pr-1/notes.txt" not in plan.writes
    assert b"- extra.yaml" in plan.writes["kustomization.yaml"]  # type: ignore[operator]


def test_a_hand_written_index_is_left_alone() -> None:
    env = render_environment(SHOP, pull_request(1))
    plan = make_plan(
        [env], read_inventory({"kustomization.yaml": b"resources: []\n"}), {"acme/shop"}
    )
    assert "kustomization.yaml" not in plan.writes
    assert "shop-pr-1/helmrelease.yaml" in plan.writes


def test_two_prs_wanting_one_namespace_conflict_and_the_second_gets_nothing() -> None:
    fixed = repository("    namespace: preview\n")
    first, second = (render_environment(fixed, pull_request(n)) for n in (2, 1))
    plan = make_plan([first, second], read_inventory({}), {"acme/shop"})
    assert actions(plan) == {2: Action.CREATE}
    assert [c.number for c in plan.conflicts] == [1]


def test_a_hand_written_folder_blocks_an_environment() -> None:
    env = render_environment(SHOP, pull_request(1))
    plan = make_plan(
        [env], read_inventory({"shop-pr-1/helmrelease.yaml": b"mine\n"}), {"acme/shop"}
    )
    assert plan.changes == ()
    assert "hand-written" in plan.conflicts[0].reason


def test_a_namespace_template_change_moves_the_environment() -> None:
    old = render_environment(SHOP, pull_request(1))
    new = render_environment(repository("    namespace: 'shop-<<PR_NUMBER>>'\n"), pull_request(1))
    plan = make_plan([new], read_inventory(files_of(old)), {"acme/shop"})
    assert actions(plan) == {1: Action.UPDATE}
    assert plan.writes["shop-pr-1/helmrelease.yaml"] is None
    assert plan.writes["shop-1/helmrelease.yaml"] is not None


def test_a_folder_prgen_can_no_longer_read_stays_in_the_index() -> None:
    # Someone edited shop-pr-1's HelmRelease by hand, breaking its annotations: prgen leaves
    # the folder alone, and must keep listing it, or Flux (prune: true) would tear it down.
    kept, other = (render_environment(SHOP, pull_request(n)) for n in (1, 2))
    current = files_of(kept, other)
    current["shop-pr-1/helmrelease.yaml"] = b"# prgen:managed - edited\nkind: HelmRelease\n"
    plan = make_plan([kept, other], read_inventory(current), {"acme/shop"})
    index = plan.writes.get("kustomization.yaml", current["kustomization.yaml"])
    assert b"- shop-pr-1\n" in index  # type: ignore[operator]
    assert b"- shop-pr-2\n" in index  # type: ignore[operator]
    assert "shop-pr-1/helmrelease.yaml" not in plan.writes
    assert [c.number for c in plan.conflicts] == [1]


def test_an_environment_kept_through_a_conflict_stays_in_the_index() -> None:
    # PR 1 has shop-pr-1; a namespace change makes it want 'preview', which PR 2 already has.
    old_one = render_environment(SHOP, pull_request(1))
    fixed = repository("    namespace: preview\n")
    two = render_environment(fixed, pull_request(2))
    current = files_of(old_one, two)
    plan = make_plan(
        [render_environment(fixed, pull_request(1)), two], read_inventory(current), {"acme/shop"}
    )
    assert [c.number for c in plan.conflicts] == [1]
    assert not any(path.startswith("shop-pr-1/") for path in plan.writes)
    index = plan.writes.get("kustomization.yaml", current["kustomization.yaml"])
    assert b"- shop-pr-1\n" in index and b"- preview\n" in index  # type: ignore[operator]


def test_an_unrecognised_folder_that_flux_never_applied_is_not_listed() -> None:
    env = render_environment(SHOP, pull_request(1))
    current = {**files_of(env), "stray/namespace.yaml": b"# prgen:managed - half\nkind: X\n"}
    plan = make_plan([env], read_inventory(current), {"acme/shop"})
    assert "kustomization.yaml" not in plan.writes  # index unchanged: stray never listed


def test_an_environment_of_a_repository_no_longer_configured_is_kept_and_says_so() -> None:
    env = render_environment(repository(name="acme/blog"), pull_request(1, "acme/blog"))
    plan = make_plan([], read_inventory(files_of(env)), {"acme/shop"}, configured={"acme/shop"})
    (kept,) = plan.changes
    assert kept.action is Action.KEEP and "not in the config any more" in kept.reason
    assert not plan.has_changes


def _stored(files: dict[str, bytes]) -> dict[str, bytes]:
    """`files` as the fleet reads them: each environment's files as blob ids, unreadable."""
    from prgen.inventory import StoredFiles, blob_id

    def never(sha: str) -> bytes:
        raise AssertionError(f"read blob {sha}: a plan compares by blob id")

    inventory = read_inventory(files)
    return {
        env.folder: StoredFiles(  # type: ignore[misc]
            {name: blob_id(content) for name, content in env.files.items()}, never, "sha1"
        )
        for env in inventory.environments
    }


def test_the_plan_compares_stored_files_by_blob_id_without_reading_them() -> None:
    from dataclasses import replace

    before = render_environment(SHOP, pull_request(1))
    after = render_environment(SHOP, pull_request(1, head_sha="b" * 40))
    files = files_of(before)
    inventory = read_inventory(files)
    stored = _stored(files)
    inventory = replace(
        inventory,
        environments=tuple(replace(e, files=stored[e.folder]) for e in inventory.environments),
    )
    same = make_plan([before], inventory, {"acme/shop"})
    assert actions(same) == {1: Action.KEEP} and not same.has_changes
    changed = make_plan([after], inventory, {"acme/shop"})
    assert actions(changed) == {1: Action.UPDATE}
    assert set(changed.writes) == {"shop-pr-1/helmrelease.yaml"}


def test_an_unedited_environment_with_the_same_input_hash_is_kept_without_comparing() -> None:
    from dataclasses import replace

    from prgen.inventory import StoredFiles, blob_id

    env = render_environment(SHOP, pull_request(1))
    inventory = read_inventory(files_of(env))
    assert inventory.environments[0].inputs == env.inputs != ""

    def stored(rendered: bool) -> object:
        def never(sha: str) -> bytes:
            raise AssertionError("read")

        ids = {name: blob_id(content) for name, content in env.files.items()}
        files = StoredFiles(ids, never, "sha1", rendered=rendered)
        return replace(inventory, environments=(replace(inventory.environments[0], files=files),))

    # Bytes that differ (they cannot: rendering is byte-stable) show what is compared.
    odd = replace(env, files={name: b"# prgen:managed - other\n" for name in env.files})
    # A folder as prgen rendered it, same inputs: kept, not compared.
    assert actions(make_plan([odd], stored(True), {"acme/shop"})) == {1: Action.KEEP}  # type: ignore[arg-type]
    # Edited since (not a tree prgen rendered): compared, and written.
    assert actions(make_plan([odd], stored(False), {"acme/shop"})) == {1: Action.UPDATE}  # type: ignore[arg-type]
    # Other inputs: compared, and written.
    other = replace(odd, inputs="0" * 20)
    assert actions(make_plan([other], stored(True), {"acme/shop"})) == {1: Action.UPDATE}  # type: ignore[arg-type]
    # Plain contents (a pure reading) are always compared.
    assert actions(make_plan([odd], inventory, {"acme/shop"})) == {1: Action.UPDATE}
