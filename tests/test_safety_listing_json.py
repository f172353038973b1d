"""Issue 10, item 2, with plain data: every field of a PR's JSON that prgen reads is checked.

A field that is missing, null where GitHub never sends null, or of another type makes the
answer malformed: it never reads as "no labels", "not a draft" or "from a fork".
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from prgen.github.pull_json import MalformedPull, parse_pull, slim

from conftest import Cases

SHA = "0123456789abcdef0123456789abcdef01234567"
GOOD: dict[str, Any] = {
    "url": "https://api.github.com/repos/acme/shop/pulls/3",
    "number": 3,
    "state": "open",
    "title": "Add a cart",
    "user": {"login": "alice", "id": 1},
    "labels": [{"id": 1, "name": "preview", "color": "ededed"}],
    "draft": False,
    "head": {
        "ref": "feature/cart",
        "sha": SHA,
        "repo": {"id": 1, "full_name": "acme/shop"},
    },
    "base": {"ref": "main", "sha": SHA, "repo": {"id": 1, "full_name": "acme/shop"}},
    "author_association": "MEMBER",
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-02T00:00:00Z",
    "html_url": "https://github.com/acme/shop/pull/3",
    "requested_reviewers": [{"login": "bob", "id": 2}],
    "requested_teams": [{"id": 9, "slug": "qa", "name": "QA"}],
}
MISSING = object()
WRONG: dict[str, tuple[Any, ...]] = {
    "number": (MISSING, None, "3", 3.0, True, 0),
    "state": (MISSING, None, 1, "merged"),
    "title": (MISSING, None, 1),
    "head": (MISSING, None, "feature/cart"),
    "head.sha": (MISSING, None, "main", 1),
    "head.ref": (MISSING, None, 7),
    "head.repo": (MISSING, "acme/shop", {}),
    "head.repo.full_name": (MISSING, None, 1),
    "base.ref": (MISSING, None, []),
    "base.repo": (MISSING, None, "acme/shop"),
    "base.repo.full_name": (MISSING, None, 1),
    "user": (MISSING, "alice", {}),
    "author_association": (MISSING, None),
    "labels": (MISSING, None, "preview", [1], [{}], [{"name": None}]),
    "draft": (MISSING, None, "false", 0),
    "created_at": (MISSING, None, "yesterday"),
    "updated_at": (MISSING, 1),
    "html_url": (MISSING, None),
    "requested_reviewers": (MISSING, None, "bob", ["bob"], [{}], [{"login": None}]),
    "requested_teams": (MISSING, None, {}, ["qa"], [{"name": "QA"}], [{"slug": 1}]),
}


def changed(path: str, value: Any) -> dict[str, Any]:
    body = copy.deepcopy(GOOD)
    *parents, last = path.split(".")
    target = body
    for key in parents:
        target = target[key]
    if value is MISSING:
        del target[last]
    else:
        target[last] = value
    return body


def test_a_well_formed_pr_reads_as_it_is() -> None:
    state, pr = parse_pull(GOOD, "acme/shop")
    assert state == "open"
    assert (pr.number, pr.labels, pr.draft, pr.head_sha) == (3, ("preview",), False, SHA)
    assert (pr.head_repository, pr.base_repository, pr.author) == ("acme/shop",) * 2 + ("alice",)
    assert pr.requested_reviewers == 2  # a user and a team


def test_no_reviewer_asked_is_zero() -> None:
    body = changed("requested_teams", [])
    body["requested_reviewers"] = []
    assert parse_pull(body, "acme/shop").pull.requested_reviewers == 0


@pytest.mark.reliability("10.2 A malformed listing is a failed listing")
def test_every_field_prgen_reads_is_checked(cases: Cases) -> None:
    for path, values in WRONG.items():
        for value in values:
            with pytest.raises(MalformedPull, match=path.split(".")[-1]):
                parse_pull(changed(path, value), "acme/shop")
            cases.add()
    for not_a_pull in (None, [], "<html></html>", 3):
        with pytest.raises(MalformedPull):
            parse_pull(not_a_pull, "acme/shop")
        cases.add()


def test_null_is_an_answer_only_where_github_gives_it() -> None:
    # A deleted fork, a deleted account, a PR never updated.
    assert parse_pull(changed("head.repo", None), "acme/shop").pull.head_repository is None
    assert parse_pull(changed("user", None), "acme/shop").pull.author == "ghost"
    assert parse_pull(changed("updated_at", None), "acme/shop").pull.updated_at.year == 2026


def _read(data: Any) -> Any:
    """What parse_pull makes of `data`: the answer, or the error it names."""
    try:
        return parse_pull(data, "acme/shop")
    except MalformedPull as exc:
        return f"MalformedPull: {exc}"


def _slimmed(data: Any) -> Any:
    body = slim(json.dumps(data).encode())
    assert body is not None
    return json.loads(body)


def test_the_cache_keeps_of_a_pr_everything_prgen_reads(cases: Cases) -> None:
    """The HTTP cache stores slim(answer): every answer, well-formed or not, reads the same."""
    variants: list[Any] = [GOOD, changed("head.repo", None), changed("user", None)]
    variants += [changed(path, value) for path, values in WRONG.items() for value in values]
    variants += [None, [], "<html></html>", 3, {"number": 3}]
    for data in variants:
        assert _read(_slimmed(data)) == _read(data)
        cases.add()
    page = [changed("number", n) for n in (5, 4, 3)] + [changed("labels", None)]
    assert [_read(item) for item in _slimmed(page)] == [_read(item) for item in page]
    assert len(json.dumps(_slimmed(GOOD))) < len(json.dumps(GOOD))
    assert "url" not in _slimmed(GOOD) and "id" not in _slimmed(GOOD)["user"]
    assert slim(b"<html>not json</html>") is None
