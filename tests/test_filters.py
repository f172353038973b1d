from __future__ import annotations

import pytest

from prgen.config import parse_config
from prgen.filters import select

from factories import pull_request, repository


def numbers(extra: str, *prs):  # type: ignore[no-untyped-def]
    eligible, skipped = select(repository(extra), list(prs))
    return [pr.number for pr in eligible], {s.number: s.reason for s in skipped}


def test_every_open_pr_is_eligible_by_default_newest_first() -> None:
    assert numbers("", pull_request(1), pull_request(3), pull_request(2)) == ([3, 2, 1], {})


def test_required_labels_must_all_be_present() -> None:
    got, skipped = numbers(
        "    labels: [preview, qa]\n",
        pull_request(1, labels=("preview", "qa")),
        pull_request(2, labels=("preview",)),
    )
    assert got == [1]
    assert skipped == {2: "missing label qa"}


def test_an_excluded_label_wins() -> None:
    got, skipped = numbers(
        "    excludeLabels: [no-preview]\n",
        pull_request(1),
        pull_request(2, labels=("no-preview",)),
    )
    assert got == [1] and "no-preview" in skipped[2]


def test_drafts_are_left_out_unless_enabled() -> None:
    draft = pull_request(1, draft=True)
    assert numbers("", draft)[0] == []
    assert numbers("    drafts: true\n", draft)[0] == [1]


def test_forks_and_deleted_forks_are_left_out_unless_enabled() -> None:
    fork = pull_request(1, head_repository="mallory/shop")
    gone = pull_request(2, head_repository=None)
    same_repo_other_case = pull_request(3, head_repository="ACME/Shop")
    got, skipped = numbers("", fork, gone, same_repo_other_case)
    assert got == [3] and set(skipped) == {1, 2}
    assert numbers("    forks: true\n", fork, gone)[0] == [2, 1]


def test_head_and_base_branch_regexes() -> None:
    got, skipped = numbers(
        "    branches: '^feature/'\n    targetBranches: '^main$'\n",
        pull_request(1, head_branch="feature/a"),
        pull_request(2, head_branch="fix/b"),
        pull_request(3, head_branch="feature/c", base_branch="release"),
    )
    assert got == [1]
    assert "head branch" in skipped[2] and "base branch" in skipped[3]


def test_max_environments_keeps_the_newest_and_reports_the_rest() -> None:
    got, skipped = numbers("    maxEnvironments: 2\n", *(pull_request(n) for n in (5, 9, 7, 1)))
    assert got == [9, 7]
    assert set(skipped) == {5, 1} and "limit of 2" in skipped[5]


def test_the_limit_counts_only_eligible_prs() -> None:
    got, _ = numbers("    maxEnvironments: 1\n", pull_request(9, draft=True), pull_request(3))
    assert got == [3]


@pytest.mark.reliability("8. Untrusted code is opt-in: forks: trusted")
def test_trusted_forks_need_a_trusted_author_or_an_approving_label() -> None:
    extra = "    forks: trusted\n    trustedForkLabels: [ok-to-preview]\n"
    member = pull_request(1, head_repository="bob/shop", author_association="MEMBER")
    collaborator = pull_request(2, head_repository="eve/shop", author_association="COLLABORATOR")
    stranger = pull_request(3, head_repository="mallory/shop", author_association="CONTRIBUTOR")
    approved = pull_request(
        4,
        head_repository="carol/shop",
        author_association="FIRST_TIME_CONTRIBUTOR",
        labels=("ok-to-preview",),
    )
    got, skipped = numbers(extra, member, collaborator, stranger, approved)
    assert got == [4, 2, 1]
    assert "forks: trusted" in skipped[3]


@pytest.mark.reliability("8. Untrusted code is opt-in: forks default to none")
def test_without_trusted_forks_even_a_member_fork_gets_nothing() -> None:
    member = pull_request(1, head_repository="bob/shop", author_association="OWNER")
    assert numbers("", member)[0] == []


def test_a_pr_of_a_renamed_repository_is_not_a_fork() -> None:
    # prgen.yaml still says acme/shop; GitHub (redirecting) names the repository acme/store now.
    renamed = pull_request(1, head_repository="acme/store", base_repository="acme/store")
    fork = pull_request(2, head_repository="mallory/store", base_repository="acme/store")
    got, skipped = numbers("", renamed, fork)
    assert got == [1] and set(skipped) == {2}


def test_titles_must_match_and_excluded_titles_are_skipped_naming_the_field() -> None:
    got, skipped = numbers(
        "    titles: '^(feat|fix)'\n    excludeTitles: '(?i)\\[skip preview\\]'\n",
        pull_request(1, title="feat: login"),
        pull_request(2, title="chore: bump"),
        pull_request(3, title="fix: typo [Skip Preview]"),
    )
    assert got == [1]
    assert skipped == {
        2: "title does not match titles '^(feat|fix)'",
        3: "title matches excludeTitles '(?i)\\\\[skip preview\\\\]'",
    }


def test_titles_are_searched_like_branches_not_matched_whole() -> None:
    got, skipped = numbers(
        "    excludeTitles: 'WIP'\n",
        pull_request(1, title="Add login (WIP)"),
        pull_request(2, title="Add login"),
    )
    assert got == [2] and skipped == {1: "title matches excludeTitles 'WIP'"}


def test_a_skip_reason_never_carries_the_title() -> None:
    title = "WIP\n\x1b[31mred ${SECRET}"
    _, skipped = numbers("    excludeTitles: '^WIP'\n", pull_request(1, title=title))
    assert skipped == {1: "title matches excludeTitles '^WIP'"}


def test_a_bot_login_with_brackets_is_a_login_not_a_character_class() -> None:
    got, skipped = numbers(
        "    excludeAuthors: ['dependabot[bot]']\n",
        pull_request(1, author="dependabot[bot]"),
        pull_request(2, author="dependabotb"),  # what the character class would have matched
        pull_request(3, author="Dependabot[bot]"),
    )
    assert got == [2]
    assert skipped == {
        1: "author 'dependabot[bot]' matches excludeAuthors 'dependabot[bot]'",
        3: "author 'Dependabot[bot]' matches excludeAuthors 'dependabot[bot]'",
    }


def test_authors_are_logins_ignoring_case_or_regexes_matched_whole() -> None:
    got, skipped = numbers(
        "    authors: [Alice, '/team-.*/']\n",
        pull_request(1, author="alice"),
        pull_request(2, author="team-web"),
        pull_request(3, author="bob"),
        pull_request(4, author="the-team-web"),  # the regex must match the whole login
        pull_request(5, author="TEAM-Ops"),
    )
    assert got == [5, 2, 1]
    assert skipped == {
        3: "author 'bob' is not in authors",
        4: "author 'the-team-web' is not in authors",
    }


def test_an_excluded_author_regex_names_the_entry_that_matched() -> None:
    got, skipped = numbers(
        "    excludeAuthors: [mallory, '/.*\\[bot\\]/']\n",
        pull_request(1, author="renovate[bot]"),
        pull_request(2, author="Mallory"),
        pull_request(3, author="alice"),
    )
    assert got == [3]
    assert skipped == {
        1: "author 'renovate[bot]' matches excludeAuthors '/.*\\\\[bot\\\\]/'",
        2: "author 'Mallory' matches excludeAuthors 'mallory'",
    }


def test_title_and_author_filters_come_from_defaults_and_an_empty_list_lifts_them() -> None:
    config = parse_config(
        """\
fleet: {url: /tmp/f, path: p}
defaults:
  excludeTitles: '^WIP'
  excludeAuthors: ['dependabot[bot]']
  chart: {chart: app, sourceRef: {kind: HelmRepository, name: charts}}
repositories:
  - name: acme/shop
  - name: acme/api
    namespace: 'api-<<PR_NUMBER>>'
    excludeAuthors: []
"""
    )
    shop, api = config.repositories
    bot = pull_request(1, author="dependabot[bot]")
    wip = pull_request(2, title="WIP: later")
    assert [pr.number for pr in select(shop, [bot, wip])[0]] == []
    assert [pr.number for pr in select(api, [bot, wip])[0]] == [1]


def test_excluded_titles_and_authors_do_not_count_toward_the_limit() -> None:
    got, _ = numbers(
        "    maxEnvironments: 1\n    excludeTitles: '^WIP'\n",
        pull_request(9, title="WIP: x"),
        pull_request(3),
    )
    assert got == [3]
