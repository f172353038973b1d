"""The fake GitHub's repository comments, reactions and collaborator permissions, as GitHub
serves them (what the commands from PR comments read and write), over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from prgen.testing.fake_github import FakeGitHub

from conftest import TOKEN

REPO = "acme/shop"


@pytest.fixture
def shop(github: FakeGitHub) -> FakeGitHub:
    github.add_repo(REPO)
    github.open_pull(REPO, title="One", head_branch="one")
    github.open_pull(REPO, title="Two", head_branch="two")
    return github


def get(github: FakeGitHub, path: str, **headers: str) -> requests.Response:
    return requests.get(
        f"{github.base_url}{path}",
        headers={"Authorization": f"token {TOKEN}", **headers},
        timeout=5,
    )


def post(github: FakeGitHub, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{github.base_url}{path}",
        json=body,
        headers={"Authorization": f"token {TOKEN}"},
        timeout=5,
    )


def ids(response: requests.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()]


def test_repository_comments_sort_page_and_filter_as_github_does(shop: FakeGitHub) -> None:
    a = shop.add_comment(REPO, 1, "a", user="mia").id
    b = shop.add_comment(REPO, 2, "b", user="mia").id
    c = shop.add_comment(REPO, 1, "c", user="otto").id
    shop.edit_comment(REPO, a, "a, edited")
    path = f"/repos/{REPO}/issues/comments"
    assert ids(get(shop, path)) == [a, b, c]  # created, ascending by default
    assert ids(get(shop, f"{path}?direction=desc")) == [a, b, c]  # ignored without sort
    assert ids(get(shop, f"{path}?sort=created&direction=desc")) == [c, b, a]
    assert ids(get(shop, f"{path}?sort=updated&direction=desc")) == [a, c, b]
    since = shop.comments(REPO, 1)[0].updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert ids(get(shop, f"{path}?since={since}")) == [a]

    first = get(shop, f"{path}?sort=updated&direction=desc&per_page=2")
    assert ids(first) == [a, c] and 'rel="next"' in first.headers["Link"]
    assert ids(get(shop, f"{path}?sort=updated&direction=desc&per_page=2&page=2")) == [b]
    item = first.json()[0]
    assert item["issue_url"].endswith(f"/repos/{REPO}/issues/1")
    assert item["user"]["login"] == "mia" and item["reactions"]["total_count"] == 0
    assert get(shop, f"{path}?sort=popularity").status_code == 422


def test_the_comments_listing_answers_304_until_something_changes(shop: FakeGitHub) -> None:
    comment = shop.add_comment(REPO, 1, "/preview pause", user="mia").id
    path = f"/repos/{REPO}/issues/comments?sort=updated&direction=desc"
    etag = get(shop, path).headers["ETag"]
    assert get(shop, path, **{"If-None-Match": etag}).status_code == 304
    shop.react(REPO, comment, "eyes", user="prgen-bot")  # the counts in the listing change
    changed = get(shop, path, **{"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.json()[0]["reactions"]["eyes"] == 1


def test_a_reaction_is_made_once_per_user_and_content(shop: FakeGitHub) -> None:
    comment = shop.add_comment(REPO, 1, "/preview help", user="mia").id
    path = f"/repos/{REPO}/issues/comments/{comment}/reactions"
    made = post(shop, path, {"content": "+1"})
    assert made.status_code == 201
    assert made.json()["content"] == "+1" and made.json()["user"]["login"] == "prgen-bot"
    again = post(shop, path, {"content": "+1"})
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"]
    assert post(shop, path, {"content": "confused"}).status_code == 201
    assert post(shop, path, {"content": "thumbs"}).status_code == 422
    assert (
        post(shop, f"/repos/{REPO}/issues/comments/999999/reactions", {"content": "+1"}).status_code
        == 404
    )
    shop.react(REPO, comment, "+1", user="otto")
    assert [r["content"] for r in get(shop, path).json()] == ["+1", "confused", "+1"]
    assert [r["user"]["login"] for r in get(shop, f"{path}?content=%2B1").json()] == [
        "prgen-bot",
        "otto",
    ]


@pytest.mark.parametrize(
    ("role", "permission"),
    [
        ("admin", "admin"),
        ("maintain", "write"),
        ("write", "write"),
        ("triage", "read"),
        ("read", "read"),
        ("none", "none"),
    ],
)
def test_a_collaborators_permission(shop: FakeGitHub, role: str, permission: str) -> None:
    shop.set_permission(REPO, "Ruth", role)
    answer = get(shop, f"/repos/{REPO}/collaborators/ruth/permission")
    assert answer.status_code == 200
    assert (answer.json()["permission"], answer.json()["role_name"]) == (permission, role)


def test_an_unknown_user_reads_and_a_non_user_is_not_found(shop: FakeGitHub) -> None:
    answer = get(shop, f"/repos/{REPO}/collaborators/somebody/permission")
    assert answer.json()["permission"] == "read"
    shop.set_permission(REPO, "ghost", None)
    assert get(shop, f"/repos/{REPO}/collaborators/ghost/permission").status_code == 404
