"""The fake GitHub, driven by real PyGithub over HTTP: what prgen's tests and `prgen demo` rely on."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
from github import (
    Auth,
    BadCredentialsException,
    Github,
    GithubException,
    GithubIntegration,
    RateLimitExceededException,
    UnknownObjectException,
)

from prgen.testing.fake_github import FakeGitHub, RecordedRequest, app_key

REPO = "acme/shop"
PULLS = r"/repos/acme/shop/pulls"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_repo(REPO)
        yield server


def client(fake: FakeGitHub, auth: Auth.Auth | None = None, **options: Any) -> Github:
    return Github(
        base_url=fake.base_url,
        auth=auth or Auth.Token("t"),
        retry=None,
        seconds_between_requests=0,
        seconds_between_writes=0,
        **{"per_page": 100, "lazy": True, **options},
    )


def open_prs(fake: FakeGitHub, count: int) -> list[int]:
    return [fake.open_pull(REPO, title=f"PR {n}", head_branch=f"b{n}") for n in range(count)]


def link(fake: FakeGitHub, page: int, rel: str) -> str:
    return f'<{fake.base_url}{PULLS}?state=open&per_page=100&page={page}>; rel="{rel}"'


# -- listing ------------------------------------------------------------------


def test_250_open_prs_come_in_three_pages_with_github_link_headers(fake: FakeGitHub) -> None:
    numbers = open_prs(fake, 250)
    repo = client(fake).get_repo(REPO)
    listed = [pr.number for pr in repo.get_pulls(state="open")]
    assert listed == numbers[::-1]  # newest first
    assert fake.count_requests("GET", PULLS) == 3
    assert [r.page for r in fake.requests] == [1, 2, 3]

    def links(page: int) -> str:
        url = f"{fake.base_url}{PULLS}?state=open&per_page=100&page={page}"
        return requests.get(url, timeout=5).headers["Link"]

    assert links(1) == f"{link(fake, 2, 'next')}, {link(fake, 3, 'last')}"
    assert links(2) == ", ".join(
        [
            link(fake, 1, "prev"),
            link(fake, 3, "next"),
            link(fake, 3, "last"),
            link(fake, 1, "first"),
        ]
    )
    assert links(3) == f"{link(fake, 2, 'prev')}, {link(fake, 1, 'first')}"


def test_listing_filters_by_state_and_sorts(fake: FakeGitHub) -> None:
    one, two, three = open_prs(fake, 3)
    fake.close_pull(REPO, two)
    fake.push(REPO, one)  # most recently updated now
    repo = client(fake).get_repo(REPO)

    def numbers(**query: str) -> list[int]:
        return [pr.number for pr in repo.get_pulls(**query)]

    assert numbers() == [three, one]
    assert numbers(state="closed") == [two]
    assert numbers(state="all") == [three, two, one]
    assert numbers(state="all", direction="asc") == [one, two, three]
    assert numbers(sort="updated") == [one, three]
    closed = repo.get_pull(two)
    assert closed.state == "closed" and closed.closed_at == fake.pull(REPO, two).closed_at
    assert closed.merged is False


def test_pull_request_fields_are_read_without_extra_requests(fake: FakeGitHub) -> None:
    number = fake.open_pull(
        REPO,
        title="Labelled draft",
        head_branch="feature/x",
        labels=["preview", "size/S"],
        draft=True,
        author="bob",
        author_association="CONTRIBUTOR",
        body="Hello",
    )
    pr = next(iter(client(fake).get_repo(REPO).get_pulls()))
    state = fake.pull(REPO, number)
    assert [label.name for label in pr.labels] == ["preview", "size/S"]
    assert pr.labels[0].color and pr.labels[0].url.startswith(fake.base_url)
    assert (pr.number, pr.title, pr.body, pr.draft) == (number, "Labelled draft", "Hello", True)
    assert (pr.user.login, pr.user.type, pr.author_association) == ("bob", "User", "CONTRIBUTOR")
    assert (pr.state, pr.locked, pr.merged_at, pr.closed_at) == ("open", False, None, None)
    assert (pr.created_at, pr.updated_at) == (state.created_at, state.updated_at)
    assert (pr.head.ref, pr.head.sha, pr.head.label) == (
        "feature/x",
        state.head_sha,
        "acme:feature/x",
    )
    assert pr.head.repo.full_name == REPO and pr.head.repo.fork is False
    assert (pr.base.ref, pr.base.repo.full_name, pr.base.repo.owner.login) == ("main", REPO, "acme")
    assert pr.html_url == f"{fake.base_url.removesuffix('/api/v3')}/acme/shop/pull/{number}"
    assert pr.url == f"{fake.base_url}/repos/acme/shop/pulls/{number}"
    assert pr.issue_url.startswith(fake.base_url) and pr.statuses_url.endswith(state.head_sha)
    assert (pr.id, pr.node_id) == (state.id, f"PR_{state.id}")
    assert len(fake.requests) == 1  # nothing was lazily completed


def test_fork_and_deleted_fork_pull_requests(fake: FakeGitHub) -> None:
    fork = fake.open_pull(
        REPO, title="Fork", head_branch="patch-1", head_repo="stranger/shop", author="stranger"
    )
    gone = fake.open_pull(
        REPO, title="Gone", head_branch="patch-2", head_repo=None, author="leaver"
    )
    by_number = {pr.number: pr for pr in client(fake).get_repo(REPO).get_pulls()}
    head = by_number[fork].head
    assert (head.repo.full_name, head.repo.fork, head.repo.owner.login) == (
        "stranger/shop",
        True,
        "stranger",
    )
    assert head.label == "stranger:patch-1" and head.ref == "patch-1"
    assert by_number[gone].head.repo is None
    assert by_number[gone].head.ref == "patch-2"
    assert by_number[gone].base.repo.full_name == REPO
    assert len(fake.requests) == 1


def test_push_changes_the_head_sha_and_bumps_updated_at(fake: FakeGitHub) -> None:
    number = fake.open_pull(REPO, title="One", head_branch="one")
    before = fake.pull(REPO, number)
    new_sha = fake.push(REPO, number)
    assert new_sha != before.head_sha and len(new_sha) == 40
    pr = client(fake).get_repo(REPO).get_pull(number)
    assert pr.head.sha == new_sha
    assert pr.created_at == before.created_at
    assert pr.updated_at == fake.pull(REPO, number).updated_at > before.updated_at
    assert fake.push(REPO, number, "ab" * 20) == "ab" * 20
    with pytest.raises(ValueError, match="40 lower-case hex"):
        fake.push(REPO, number, "not-a-sha")


def test_the_same_steps_give_the_same_data() -> None:
    def run() -> list[Any]:
        with FakeGitHub() as server:
            server.add_repo(REPO)
            number = server.open_pull(REPO, title="One", head_branch="one")
            server.push(REPO, number)
            server.set_labels(REPO, number, ["x"])
            server.set_draft(REPO, number, True)
            pr = client(server).get_repo(REPO).get_pull(number)
            return [pr.head.sha, pr.id, pr.created_at, pr.updated_at, pr.draft, server.now()]

    first = run()
    assert first == run()
    assert first[2].isoformat() == "2026-01-01T00:00:02+00:00"
    assert first[3].isoformat() == "2026-01-01T00:00:05+00:00"


def test_close_reopen_labels_and_draft_are_seen_through_the_api(fake: FakeGitHub) -> None:
    number = fake.open_pull(REPO, title="One", head_branch="one", labels=["a"])
    fake.set_labels(REPO, number, ["b", "c"])
    fake.set_draft(REPO, number, True)
    fake.close_pull(REPO, number)
    with pytest.raises(ValueError, match="closed already"):
        fake.close_pull(REPO, number)
    fake.reopen_pull(REPO, number)
    pr = client(fake).get_repo(REPO).get_pull(number)
    assert ([label.name for label in pr.labels], pr.draft, pr.state) == (["b", "c"], True, "open")
    assert pr.closed_at is None
    fake.close_pull(REPO, number, merged=True)
    merged = client(fake).get_repo(REPO).get_pull(number)
    assert merged.merged and merged.merged_at == fake.pull(REPO, number).merged_at


def test_pull_numbers_increase_and_can_be_chosen(fake: FakeGitHub) -> None:
    assert fake.open_pull(REPO, title="A", head_branch="a") == 1
    assert fake.open_pull(REPO, title="B", head_branch="b", number=40) == 40
    assert fake.open_pull(REPO, title="C", head_branch="c") == 41
    with pytest.raises(ValueError, match="taken"):
        fake.open_pull(REPO, title="D", head_branch="d", number=40)
    with pytest.raises(KeyError, match="add_repo"):
        fake.open_pull("acme/nope", title="E", head_branch="e")


def test_stop_ends_kept_alive_connections(fake: FakeGitHub) -> None:
    session = requests.Session()
    url = f"{fake.base_url}/repos/{REPO}"
    assert session.get(url, timeout=5).ok
    fake.stop()
    with pytest.raises(requests.exceptions.ConnectionError):
        session.get(url, timeout=5)


# -- errors, headers and credentials --------------------------------------------


def test_unknown_repository_and_pull_are_404(fake: FakeGitHub) -> None:
    github = client(fake)
    with pytest.raises(UnknownObjectException) as error:
        list(github.get_repo("acme/missing").get_pulls())
    assert error.value.status == 404
    assert error.value.data == {
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest",
    }
    with pytest.raises(UnknownObjectException):
        github.get_repo(REPO).get_pull(99).title  # noqa: B018 (lazy: the read fetches)
    eager = client(fake, lazy=False)
    assert eager.get_repo("ACME/Shop").full_name == REPO  # names are case-insensitive


def test_every_answer_has_rate_limit_headers_and_json(fake: FakeGitHub) -> None:
    first = requests.get(f"{fake.base_url}/repos/{REPO}", timeout=5)
    second = requests.get(f"{fake.base_url}/repos/acme/missing", timeout=5)
    assert first.status_code == 200 and second.status_code == 404
    for response in (first, second):
        assert response.headers["Content-Type"].startswith("application/json")
        assert response.headers["X-RateLimit-Limit"] == "5000"
        assert response.headers["X-RateLimit-Resource"] == "core"
        assert int(response.headers["X-RateLimit-Reset"]) > 0
    assert first.headers["X-RateLimit-Used"] == "1" and second.headers["X-RateLimit-Used"] == "2"
    assert second.headers["X-RateLimit-Remaining"] == "4998"


def test_once_a_token_is_registered_every_request_needs_one(fake: FakeGitHub) -> None:
    fake.add_token("good")
    fake.open_pull(REPO, title="One", head_branch="one")
    with pytest.raises(BadCredentialsException) as error:
        list(client(fake, Auth.Token("bad")).get_repo(REPO).get_pulls())
    assert error.value.status == 401
    assert len(list(client(fake, Auth.Token("good")).get_repo(REPO).get_pulls())) == 1
    url = f"{fake.base_url}/repos/{REPO}"
    assert requests.get(url, headers={"Authorization": "Bearer good"}, timeout=5).ok
    anonymous = requests.get(url, timeout=5)
    assert anonymous.status_code == 401 and anonymous.json()["message"] == "Bad credentials"


def test_github_app_installation_tokens(fake: FakeGitHub) -> None:
    private, public = app_key().private_pem, app_key().public_pem
    fake.add_app(42, public, installation_id=7)
    fake.open_pull(REPO, title="One", head_branch="one")
    auth = Auth.AppAuth(42, private).get_installation_auth(7)
    pulls = list(client(fake, auth).get_repo(REPO).get_pulls())
    assert len(pulls) == 1
    minted = [r for r in fake.requests if r.method == "POST"]
    assert [r.path for r in minted] == ["/app/installations/7/access_tokens"]
    listing = fake.requests[-1]
    assert listing.headers["authorization"].startswith("token ghs_")

    # A JWT signed by another key, or for another installation, gets no token.
    other_private = app_key("another app").private_pem
    for key, installation, status in [(other_private, 7, 401), (private, 8, 404)]:
        github = client(fake, Auth.AppAuth(42, key).get_installation_auth(installation))
        with pytest.raises(GithubException) as error:
            github.get_repo(REPO).get_pull(1).title  # noqa: B018
        assert error.value.status == status
    # Plain tokens are required now that the app made some exist.
    with pytest.raises(BadCredentialsException):
        client(fake, Auth.Token("nope")).get_repo(REPO).get_pull(1).title  # noqa: B018


# -- fault injection and hooks ----------------------------------------------------


def test_a_502_on_page_2_makes_iteration_raise(fake: FakeGitHub) -> None:
    open_prs(fake, 150)
    fake.inject("GET", PULLS, status=502, page=2)
    pulls = iter(client(fake).get_repo(REPO).get_pulls())
    assert len([next(pulls) for _ in range(100)]) == 100
    with pytest.raises(GithubException) as error:
        next(pulls)
    assert error.value.status == 502 and error.value.data["message"] == "Bad Gateway"
    assert len(list(client(fake).get_repo(REPO).get_pulls())) == 150  # used up


def test_inject_skips_after_and_counts_times(fake: FakeGitHub) -> None:
    fake.inject("GET", r"/repos/[^/]+/shop", status=503, after=1, times=2)
    github = client(fake, lazy=False)
    assert github.get_repo(REPO).full_name == REPO
    for _ in range(2):
        with pytest.raises(GithubException) as error:
            github.get_repo(REPO)
        assert error.value.status == 503
    assert github.get_repo(REPO).full_name == REPO
    fake.inject("*", r".*", status=500, times=5)
    fake.clear_faults()
    assert github.get_repo(REPO).full_name == REPO


def test_an_injected_rate_limit_raises_rate_limit_exceeded(fake: FakeGitHub) -> None:
    fake.inject(
        "GET",
        PULLS,
        status=403,
        body={"message": "API rate limit exceeded for installation ID 7."},
        headers={"X-RateLimit-Remaining": "0"},
    )
    with pytest.raises(RateLimitExceededException) as error:
        list(client(fake).get_repo(REPO).get_pulls())
    assert error.value.headers is not None
    assert error.value.headers["x-ratelimit-remaining"] == "0"


def test_a_dropped_connection_raises_a_connection_error(fake: FakeGitHub) -> None:
    fake.inject("GET", PULLS, drop=True)
    with pytest.raises(requests.exceptions.ConnectionError):
        list(client(fake).get_repo(REPO).get_pulls())


def test_a_delay_beyond_the_timeout_raises_a_timeout(fake: FakeGitHub) -> None:
    fake.inject("GET", PULLS, status=0, delay=1.5)
    with pytest.raises(requests.exceptions.Timeout):
        list(client(fake, timeout=1).get_repo(REPO).get_pulls())


def test_a_delay_with_status_0_gives_the_real_answer(fake: FakeGitHub) -> None:
    open_prs(fake, 2)
    fake.inject("GET", PULLS, status=0, delay=0.05)
    assert len(list(client(fake).get_repo(REPO).get_pulls())) == 2


def test_a_pr_closed_during_pagination_shifts_the_next_page(fake: FakeGitHub) -> None:
    numbers = open_prs(fake, 150)  # page 1: #150..#51, page 2: #50..#1, newest first
    seen: list[RecordedRequest] = []

    def close_newest_on_page_2(request: RecordedRequest) -> None:
        seen.append(request)
        if request.page == 2 and fake.pull(REPO, 150).state == "open":
            fake.close_pull(REPO, 150)

    fake.on_request(close_newest_on_page_2)
    listed = [pr.number for pr in client(fake).get_repo(REPO).get_pulls()]
    assert [r.page for r in seen] == [1, 2]
    # With #150 gone, #50 moved up onto page 1, which was read already: skipped,
    # as on GitHub. (prgen confirms missing PRs one by one for this reason.)
    assert 50 not in listed and 150 in listed and len(listed) == 149
    assert set(listed) == set(numbers) - {50}


# -- reporting: commit statuses, deployments, comments ------------------------------


@pytest.fixture
def pr(fake: FakeGitHub) -> int:
    fake.add_token("t", login="prgen-bot")
    return fake.open_pull(REPO, title="One", head_branch="feature/one")


def test_commit_statuses_are_recorded_and_served_newest_first(fake: FakeGitHub, pr: int) -> None:
    sha = fake.pull(REPO, pr).head_sha
    commit = client(fake).get_repo(REPO).get_commit(sha)
    pending = commit.create_status(
        "pending", target_url="http://ci/1", description="deploying", context="preview"
    )
    assert (pending.state, pending.context, pending.creator.login) == (
        "pending",
        "preview",
        "prgen-bot",
    )
    assert pending.url == f"{fake.base_url}/repos/{REPO}/statuses/{sha}"
    commit.create_status("success", target_url="http://ci/1", description="up", context="preview")
    commit.create_status("failure", context="tests")
    listed = [(s.state, s.context) for s in commit.get_statuses()]
    assert listed == [("failure", "tests"), ("success", "preview"), ("pending", "preview")]
    by_branch = client(fake).get_repo(REPO).get_commit("feature/one").get_statuses()
    assert [s.state for s in by_branch] == ["failure", "success", "pending"]
    recorded = fake.statuses(REPO, sha)  # oldest first
    assert [(s.state, s.description, s.target_url) for s in recorded][:2] == [
        ("pending", "deploying", "http://ci/1"),
        ("success", "up", "http://ci/1"),
    ]
    assert not any(r.path.endswith(f"/commits/{sha}") for r in fake.requests)  # no completion


def test_combined_status_is_the_latest_state_per_context(fake: FakeGitHub, pr: int) -> None:
    sha = fake.pull(REPO, pr).head_sha
    commit = client(fake).get_repo(REPO).get_commit(sha)
    assert commit.get_combined_status().state == "pending"  # no statuses yet
    commit.create_status("pending", context="preview")
    commit.create_status("success", context="preview")
    commit.create_status("success", context="tests")
    combined = commit.get_combined_status()
    assert (combined.state, combined.total_count, combined.sha) == ("success", 2, sha)
    assert sorted(s.context for s in combined.statuses) == ["preview", "tests"]
    commit.create_status("error", context="tests")
    assert commit.get_combined_status().state == "failure"


def test_bad_statuses_are_refused_like_github(fake: FakeGitHub, pr: int) -> None:
    repo = client(fake).get_repo(REPO)
    commit = repo.get_commit(fake.pull(REPO, pr).head_sha)
    for state, description in [("bogus", "x"), ("success", "x" * 141)]:
        with pytest.raises(GithubException) as error:
            commit.create_status(state, description=description)
        assert error.value.status == 422 and error.value.data["message"] == "Validation Failed"
    with pytest.raises(GithubException) as error:
        repo.get_commit("0" * 40).create_status("success")
    assert error.value.status == 422
    assert error.value.data["message"] == f"No commit found for SHA: {'0' * 40}"


def test_deployments_and_their_statuses(fake: FakeGitHub, pr: int) -> None:
    repo = client(fake).get_repo(REPO)
    sha = fake.pull(REPO, pr).head_sha
    deployment = repo.create_deployment(
        "feature/one",
        environment="pr-1",
        description="preview",
        payload={"namespace": "shop-pr-1"},
        auto_merge=False,
        required_contexts=[],
        transient_environment=True,
        production_environment=False,
    )
    assert (deployment.sha, deployment.ref, deployment.environment) == (sha, "feature/one", "pr-1")
    assert deployment.payload == {"namespace": "shop-pr-1"} and deployment.task == "deploy"
    assert deployment.transient_environment and not deployment.production_environment
    other = repo.create_deployment(sha, environment="pr-2", required_contexts=[])
    assert [d.id for d in repo.get_deployments()] == [other.id, deployment.id]  # newest first
    assert [d.id for d in repo.get_deployments(environment="pr-1")] == [deployment.id]
    assert [d.id for d in repo.get_deployments(sha=sha, ref="feature/one")] == [deployment.id]
    assert repo.get_deployment(deployment.id).description == "preview"

    deployment.create_status("in_progress", description="rolling out")
    done = deployment.create_status(
        "success", target_url="http://ci/log", environment_url="http://pr-1.example.com"
    )
    assert (done.state, done.log_url, done.target_url) == (
        "success",
        "http://ci/log",
        "http://ci/log",
    )
    assert done.environment_url == "http://pr-1.example.com" and done.creator.login == "prgen-bot"
    assert [s.state for s in deployment.get_statuses()] == ["success", "in_progress"]
    assert deployment.get_status(done.id).environment == "pr-1"
    assert [d.id for d in fake.deployments(REPO)] == [deployment.id, other.id]
    recorded = fake.deployment_statuses(REPO, deployment.id)
    assert [(s.state, s.description) for s in recorded] == [
        ("in_progress", "rolling out"),
        ("success", ""),
    ]


def test_a_successful_deployment_makes_the_previous_one_inactive(fake: FakeGitHub, pr: int) -> None:
    repo = client(fake).get_repo(REPO)
    first = repo.create_deployment("feature/one", environment="pr-1", required_contexts=[])
    first.create_status("success")
    second = repo.create_deployment("feature/one", environment="pr-1", required_contexts=[])
    second.create_status("success", auto_inactive=True)
    assert [s.state for s in first.get_statuses()] == ["inactive", "success"]
    assert [s.state for s in second.get_statuses()] == ["success"]
    third = repo.create_deployment("feature/one", environment="pr-1", required_contexts=[])
    third.create_status("success", auto_inactive=False)
    assert [s.state for s in second.get_statuses()] == ["success"]


def test_a_deployment_checks_commit_statuses_unless_told_not_to(fake: FakeGitHub, pr: int) -> None:
    repo = client(fake).get_repo(REPO)
    repo.get_commit(fake.pull(REPO, pr).head_sha).create_status("failure", context="tests")
    with pytest.raises(GithubException) as error:
        repo.create_deployment("feature/one", environment="pr-1")
    assert error.value.status == 409
    assert error.value.data["message"] == "Conflict: Commit status checks failed for feature/one."
    assert repo.create_deployment("feature/one", environment="pr-1", required_contexts=[]).id
    with pytest.raises(GithubException) as error:
        repo.create_deployment("no-such-branch", required_contexts=[])
    assert error.value.status == 422


def test_issue_comments_are_written_by_the_token_owner(fake: FakeGitHub, pr: int) -> None:
    fake.add_token("other", login="someone-else")
    repo = client(fake).get_repo(REPO)
    before = fake.pull(REPO, pr).updated_at
    comment = repo.get_pull(pr).create_issue_comment("Preview: http://pr-1.example.com")
    assert (comment.user.login, comment.body) == ("prgen-bot", "Preview: http://pr-1.example.com")
    assert comment.html_url.endswith(f"/acme/shop/pull/{pr}#issuecomment-{comment.id}")
    assert fake.pull(REPO, pr).updated_at > before  # as on GitHub, a comment bumps the PR
    comment.edit("Preview: gone")
    assert comment.body == "Preview: gone" and comment.updated_at > comment.created_at
    repo2 = client(fake, Auth.Token("other")).get_repo(REPO)
    repo2.get_issue(pr).create_comment("me too")
    listed = [(c.user.login, c.body) for c in repo.get_pull(pr).get_issue_comments()]
    assert listed == [("prgen-bot", "Preview: gone"), ("someone-else", "me too")]
    assert [c.body for c in fake.comments(REPO, pr)] == ["Preview: gone", "me too"]
    assert repo.get_pull(pr).get_issue_comment(comment.id).body == "Preview: gone"
    with pytest.raises(UnknownObjectException):
        repo.get_pull(pr + 1).create_issue_comment("nowhere")


def test_an_app_comments_as_its_bot(fake: FakeGitHub) -> None:
    private, public = app_key().private_pem, app_key().public_pem
    fake.add_app(42, public, installation_id=7, slug="prgen")
    number = fake.open_pull(REPO, title="One", head_branch="one")
    github = client(fake, Auth.AppAuth(42, private).get_installation_auth(7))
    comment = github.get_repo(REPO).get_pull(number).create_issue_comment("hi")
    assert (comment.user.login, comment.user.type) == ("prgen[bot]", "Bot")


def test_an_app_learns_its_own_slug_from_get_app_with_its_jwt(fake: FakeGitHub) -> None:
    private, public = app_key().private_pem, app_key().public_pem
    fake.add_app(42, public, installation_id=7, slug="prgen")
    app = GithubIntegration(auth=Auth.AppAuth(42, private), base_url=fake.base_url).get_app()
    assert (app.id, app.slug) == (42, "prgen")
    assert [r.path for r in fake.requests] == ["/app"]
    # Only the app's own JWT will do: not another key's, not an installation token.
    other_private = app_key("another app").private_pem
    with pytest.raises(GithubException) as error:
        GithubIntegration(auth=Auth.AppAuth(42, other_private), base_url=fake.base_url).get_app()
    assert error.value.status == 401
    assert requests.get(f"{fake.base_url}/app", timeout=5).status_code == 401


def test_a_comment_by_someone_else_can_be_planted(fake: FakeGitHub) -> None:
    number = fake.open_pull(REPO, title="One", head_branch="one")
    planted = fake.add_comment(REPO, number, "<!-- prgen:preview --> gotcha", user="mallory")
    [listed] = client(fake).get_repo(REPO).get_issue(number).get_comments()
    assert (listed.id, listed.user.login, listed.body) == (planted.id, "mallory", planted.body)


def test_the_api_is_served_under_api_v3_only_as_on_github_enterprise(fake: FakeGitHub) -> None:
    # A client that dropped the base URL's path would still pass every test otherwise.
    root = fake.base_url.removesuffix("/api/v3")
    answer = requests.get(f"{root}/repos/{REPO}/pulls", timeout=5)
    assert answer.status_code == 404
    with pytest.raises(UnknownObjectException):
        Github(base_url=root, auth=Auth.Token("t"), retry=None, lazy=False).get_repo(REPO)
    assert client(fake).get_repo(REPO).full_name == REPO


# -- ETags, 304 Not Modified and rate-limit points ----------------------------


def test_a_get_answered_200_carries_a_weak_etag_and_githubs_cache_headers(fake: FakeGitHub) -> None:
    open_prs(fake, 2)
    answer = requests.get(f"{fake.base_url}{PULLS}", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["ETag"].startswith('W/"') and answer.headers["ETag"].endswith('"')
    assert answer.headers["Cache-Control"] == "private, max-age=60, s-maxage=60"
    assert answer.headers["Vary"] == "Accept, Authorization, Cookie, X-GitHub-OTP"
    # The same body, the same tag; another body, another tag.
    assert (
        requests.get(f"{fake.base_url}{PULLS}", timeout=5).headers["ETag"] == answer.headers["ETag"]
    )
    fake.push(REPO, 1)
    assert (
        requests.get(f"{fake.base_url}{PULLS}", timeout=5).headers["ETag"] != answer.headers["ETag"]
    )


def test_a_matching_if_none_match_gets_a_free_304_without_a_body(fake: FakeGitHub) -> None:
    open_prs(fake, 1)
    url = f"{fake.base_url}{PULLS}"
    first = requests.get(url, timeout=5)
    second = requests.get(url, headers={"If-None-Match": first.headers["ETag"]}, timeout=5)
    assert second.status_code == 304 and second.content == b""
    assert second.headers["ETag"] == first.headers["ETag"]
    assert second.headers["X-RateLimit-Remaining"] == first.headers["X-RateLimit-Remaining"]
    assert second.headers["X-RateLimit-Used"] == first.headers["X-RateLimit-Used"]
    # A list of tags, one of them current (weak comparison: W/ aside), matches too.
    bare = first.headers["ETag"].removeprefix("W/")
    third = requests.get(url, headers={"If-None-Match": f'"other", {bare}'}, timeout=5)
    assert third.status_code == 304
    assert [(a.status, a.charged) for a in fake.answers] == [
        (200, True),
        (304, False),
        (304, False),
    ]
    assert fake.points_used() == 1 and fake.not_modified() == 2


def test_a_stale_etag_gets_the_full_answer_and_costs_a_point(fake: FakeGitHub) -> None:
    number = open_prs(fake, 1)[0]
    url = f"{fake.base_url}{PULLS}"
    etag = requests.get(url, timeout=5).headers["ETag"]
    fake.push(REPO, number)
    changed = requests.get(url, headers={"If-None-Match": etag}, timeout=5)
    assert changed.status_code == 200 and changed.json()[0]["number"] == number
    assert fake.points_used() == 2 and fake.not_modified() == 0


def test_errors_and_writes_cost_a_point_and_carry_no_etag(fake: FakeGitHub) -> None:
    missing = requests.get(f"{fake.base_url}/repos/acme/missing", timeout=5)
    assert missing.status_code == 404 and "ETag" not in missing.headers
    fake.inject("GET", PULLS, status=500)
    failed = requests.get(f"{fake.base_url}{PULLS}", headers={"If-None-Match": "*"}, timeout=5)
    assert failed.status_code == 500
    assert [(a.status, a.charged) for a in fake.answers] == [(404, True), (500, True)]
    assert fake.points_used() == 2


def test_the_remaining_budget_can_be_set_for_tests(fake: FakeGitHub) -> None:
    fake.set_rate_limit_remaining(37)
    answer = requests.get(f"{fake.base_url}{PULLS}", timeout=5)
    assert answer.headers["X-RateLimit-Remaining"] == "36"


def test_latency_delays_every_answer_and_requests_in_flight_are_counted() -> None:
    import threading
    import time

    with FakeGitHub(latency=0.2) as slow:
        slow.add_repo(REPO)
        url = f"{slow.base_url}{PULLS}"
        started = time.monotonic()
        threads = [
            threading.Thread(target=requests.get, args=(url,), kwargs={"timeout": 5})
            for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert time.monotonic() - started >= 0.2
        assert slow.in_flight_peak == 3
        slow.reset_in_flight_peak()
        requests.get(url, timeout=5)
        assert slow.in_flight_peak == 1


def test_an_answer_rendered_once_changes_with_every_change_of_state(fake: FakeGitHub) -> None:
    """The fake renders a GET answer once per state version: never an answer from before."""
    number = open_prs(fake, 1)[0]
    url = f"{fake.base_url}{PULLS}"
    assert requests.get(url, timeout=5).json()[0]["labels"] == []
    fake.set_labels(REPO, number, ["preview"])  # through the Python API
    assert [x["name"] for x in requests.get(url, timeout=5).json()[0]["labels"]] == ["preview"]
    comments = f"{fake.base_url}/repos/{REPO}/issues/{number}/comments"
    assert requests.get(comments, timeout=5).json() == []
    posted = requests.post(comments, json={"body": "hi"}, timeout=5)  # through the API
    assert posted.status_code == 201
    assert [c["body"] for c in requests.get(comments, timeout=5).json()] == ["hi"]
    # Another order of the same parameters is another answer (its Link header keeps the order).
    assert requests.get(f"{url}?per_page=1&state=open", timeout=5).status_code == 200


def test_a_change_within_one_repository_shows_there_and_leaves_the_others_as_they_were(
    fake: FakeGitHub,
) -> None:
    """A push shows in its repository at once; another repository still answers the same."""
    fake.add_repo("acme/other")
    number = open_prs(fake, 1)[0]
    other = fake.open_pull("acme/other", title="Other", head_branch="o")
    mine, theirs = f"{fake.base_url}{PULLS}", f"{fake.base_url}/repos/acme/other/pulls"
    tag_mine, tag_theirs = (requests.get(url, timeout=5).headers["ETag"] for url in (mine, theirs))
    sha = fake.push(REPO, number)
    assert requests.get(mine, timeout=5).json()[0]["head"]["sha"] == sha
    assert requests.get(mine, timeout=5).headers["ETag"] != tag_mine
    assert requests.get(theirs, timeout=5).headers["ETag"] == tag_theirs
    fake.close_pull("acme/other", other)
    assert requests.get(theirs, timeout=5).json() == []
    fake.set_draft(REPO, number, True)  # a change not scoped to a repository: all re-render
    assert requests.get(mine, timeout=5).json()[0]["draft"] is True
