"""The github settings for organisation scale: concurrency, the rate-limit reserve, the cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from prgen.config import parse_config
from prgen.errors import ConfigError

BASE = """\
github: {{{github}}}
fleet: {{url: /tmp/fleet.git, path: previews/dev}}
repositories:
  - name: acme/shop
    chart: {{chart: shop, sourceRef: {{kind: HelmRepository, name: charts}}}}
"""


def test_the_defaults_list_concurrently_and_keep_a_reserve() -> None:
    settings = parse_config(BASE.format(github="")).github
    assert (settings.concurrency, settings.rate_limit_reserve, settings.cache_max_mb) == (
        16,
        100,
        256,
    )
    assert settings.request_interval == 0 and settings.workers == 16
    assert settings.write_interval == 1


def test_a_request_interval_means_strictly_serial_calls() -> None:
    settings = parse_config(BASE.format(github="requestInterval: 0.5, concurrency: 20")).github
    assert settings.workers == 1


def test_the_new_fields_are_read() -> None:
    settings = parse_config(
        BASE.format(github="concurrency: 100, rateLimitReserve: 0, cacheMaxMegabytes: 1")
    ).github
    assert (settings.concurrency, settings.rate_limit_reserve, settings.cache_max_mb) == (
        100,
        0,
        1,
    )


@pytest.mark.parametrize(
    ("github", "path"),
    [
        ("concurrency: 0", "github.concurrency"),
        ("concurrency: 101", "github.concurrency"),  # GitHub's secondary limit
        ("concurrency: 2.5", "github.concurrency"),
        ("rateLimitReserve: -1", "github.rateLimitReserve"),
        ("rateLimitReserve: many", "github.rateLimitReserve"),
        ("cacheMaxMegabytes: 0", "github.cacheMaxMegabytes"),
    ],
)
def test_a_bad_github_field_is_named(github: str, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(BASE.format(github=github), base_dir=Path("/nonexistent"))
    assert caught.value.path == path
