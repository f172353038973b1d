from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from prgen.naming import HELM_RELEASE_NAME_MAX, dns_label, is_dns_label


def test_a_valid_name_stays_as_it_is() -> None:
    assert dns_label("shop-pr-12") == "shop-pr-12"


def test_invalid_characters_become_dashes_and_case_folds() -> None:
    assert dns_label("Feature/Login_Page!") == "feature-login-page"


def test_a_long_name_is_cut_with_a_hash_of_the_whole_input() -> None:
    long_a = "feature-" + "a" * 100
    long_b = "feature-" + "a" * 99 + "b"
    name_a, name_b = dns_label(long_a), dns_label(long_b)
    assert len(name_a) <= 63 and len(name_b) <= 63
    assert name_a != name_b
    assert name_a.startswith("feature-aaa")


def test_release_names_respect_helms_limit() -> None:
    assert len(dns_label("x" * 80, HELM_RELEASE_NAME_MAX)) <= 53


def test_text_without_any_usable_character_still_gives_a_name() -> None:
    name = dns_label("🚀🚀")
    assert is_dns_label(name)
    assert name != dns_label("💥")


@given(st.text(max_size=300), st.sampled_from([53, 63]))
def test_any_text_becomes_a_valid_label(text: str, limit: int) -> None:
    assert is_dns_label(dns_label(text, limit), limit)
