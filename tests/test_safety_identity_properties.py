"""Issue 10, items 5, 7 and 8 as properties, over many generated fleets and configs.

- The plan: whatever the fleet holds and whatever PRs want, every folder prgen empties is a
  DELETE change (so every output and the guard count it), a folder held by one PR is never
  written for another in the same commit, and no PR ends up with two folders.
- The config: two repository entries that load together never make the same namespace.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from prgen.config import RepositorySettings, parse_config
from prgen.errors import ConfigError
from prgen.inventory import identity_of, read_inventory
from prgen.plan import Action, make_plan
from prgen.render import (
    HELMRELEASE_FILE,
    RenderedEnvironment,
    environment_namespace,
    render_environment,
)
from stress import scale

from factories import pull_request

SETTINGS: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "derandomize": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
CHART = "    chart: {chart: a, sourceRef: {kind: HelmRepository, name: c, namespace: f}}\n"
BRANCHES = ["a", "b", "A", "a/b", "a-b", "a_b", "main"]


def by_branch() -> RepositorySettings:
    text = (
        "fleet: {url: /tmp/fleet.git, path: previews/dev}\nrepositories:\n"
        "  - name: acme/shop\n    namespace: 'x-<<PR_BRANCH_SLUG>>'\n" + CHART
    )
    return parse_config(text).repositories[0]


REPO = by_branch()


@cache
def rendered(number: int, branch: str) -> RenderedEnvironment:
    return render_environment(REPO, pull_request(number, head_branch=branch))


def apply(files: Mapping[str, bytes], writes: Mapping[str, bytes | None]) -> dict[str, bytes]:
    result = dict(files)
    for path, content in writes.items():
        if content is None:
            result.pop(path, None)
        else:
            result[path] = content
    return result


prs = st.dictionaries(st.integers(1, 6), st.sampled_from(BRANCHES), max_size=5)


@pytest.mark.reliability("10.5/10.7 The plan: every emptied folder is a removal, no handover")
@settings(max_examples=scale(200, 3000), **SETTINGS)
@given(before=prs, after=prs, held=st.booleans(), duplicate=st.booleans())
def test_every_removal_is_counted_and_no_folder_changes_hands_in_one_commit(
    cases: Any, before: dict[int, str], after: dict[int, str], held: bool, duplicate: bool
) -> None:
    first = [rendered(n, b) for n, b in before.items()]
    files = apply({}, make_plan(first, read_inventory({}), {"acme/shop"}).writes)
    if duplicate and first:  # a copied folder, marker and all
        source = first[0].namespace
        files.update(
            {
                path.replace(f"{source}/", "copy/", 1): content
                for path, content in list(files.items())
                if path.startswith(f"{source}/")
            }
        )
    inventory = read_inventory(files)
    holders = {env.folder: env.key for env in inventory.environments}
    desired = [rendered(n, b) for n, b in after.items()]

    plan = make_plan(desired, inventory, {"acme/shop"}, hold_deletions="held" if held else None)

    emptied = {
        path.split("/")[0]
        for path, content in plan.writes.items()
        if content is None and path.endswith("/" + HELMRELEASE_FILE)
    }
    assert emptied == {change.folder for change in plan.of(Action.DELETE)}
    if held:
        assert not emptied
    for path, content in plan.writes.items():
        folder, _, name = path.partition("/")
        if name == HELMRELEASE_FILE and content is not None:
            identity = identity_of(content)
            assert identity is not None
            written_for = (identity.repository.lower(), identity.number)
            assert holders.get(folder, written_for) == written_for, (folder, holders)
    result = read_inventory(apply(files, plan.writes))
    keys = [env.key for env in result.environments]
    had_two = {key for key in holders.values() if list(holders.values()).count(key) > 1}
    assert all(keys.count(key) == 1 for key in set(keys) - had_two), keys
    cases.add()


# -- the config: two entries that load together never share a namespace -------------------------

NAMES = ["acme/api", "other/api", "acme/API", "acme/a-b", "acme-a/b", "acme/api-v2", "acme/a"]
PIECES = [
    "",
    "-",
    "pr",
    "x_",
    "api",
    "--",
    "A",
    "<<REPO_NAME>>",
    "<<REPO_OWNER>>",
    "<<PR_NUMBER>>",
    "<<PR_BRANCH_SLUG>>",
    "<<PR_TITLE>>",
    "<<PR_HEAD_SHORT_SHA>>",
]
templates = st.lists(st.sampled_from(PIECES), min_size=1, max_size=4).map("".join)
pr_text = st.sampled_from(["", "a", "A", "a--b", "pr-1", "x", "-", "api-pr-1", "a/b", "1"])


def entry(name: str, namespace: str) -> str:
    return (
        f"  - name: {name}\n    namespace: '{namespace}'\n"
        f"    namespaceFromPullRequestText: true\n{CHART}"
    )


@pytest.mark.reliability("10.7 Namespace templates that load together never meet")
@settings(max_examples=scale(300, 5000), **SETTINGS)
@given(
    names=st.lists(st.sampled_from(NAMES), min_size=2, max_size=2, unique_by=str.lower),
    shapes=st.lists(templates, min_size=2, max_size=2),
    numbers=st.lists(st.integers(1, 12), min_size=2, max_size=2),
    texts=st.lists(pr_text, min_size=4, max_size=4),
)
def test_two_entries_that_load_together_never_make_one_namespace(
    cases: Any, names: list[str], shapes: list[str], numbers: list[int], texts: list[str]
) -> None:
    if any(shape.strip("-_") == "" for shape in shapes):
        return  # no name at all: the schema or the namespace check refuses that
    text = "fleet: {url: /tmp/fleet.git, path: previews/dev}\nrepositories:\n" + "".join(
        entry(name, shape) for name, shape in zip(names, shapes, strict=True)
    )
    try:
        repositories = parse_config(text).repositories
    except ConfigError:
        event("refused")
        cases.add()
        return
    event("loaded together")
    first, second = (
        environment_namespace(
            repo,
            pull_request(number, repo.name, head_branch=texts[2 * i], title=texts[2 * i + 1]),
        )
        for i, (repo, number) in enumerate(zip(repositories, numbers, strict=True))
    )
    assert first != second, (shapes, names, first)
    cases.add()
