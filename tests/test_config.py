from __future__ import annotations

from pathlib import Path

import pytest

from prgen.config import DEFAULT_NAMESPACE, parse_config
from prgen.errors import ConfigError

BASE = """\
fleet: {url: /tmp/fleet.git, path: previews/dev}
repositories:
  - name: acme/shop
    chart: {chart: shop, sourceRef: {kind: HelmRepository, name: charts}}
"""


def test_a_minimal_config_gets_the_documented_defaults() -> None:
    config = parse_config(BASE)
    assert config.github.api_url == "https://api.github.com"
    assert config.github.token_env == "GITHUB_TOKEN"
    assert config.fleet.branch == "main"
    repo = config.repositories[0]
    assert (repo.drafts, repo.forks, repo.max_environments) == (False, False, None)
    assert repo.namespace == DEFAULT_NAMESPACE
    assert repo.templates.helm_release.name == "helmrelease.yaml"


def test_defaults_are_deep_merged_into_every_repository() -> None:
    config = parse_config(
        """\
fleet: {url: /tmp/f, path: p}
defaults:
  maxEnvironments: 20
  labels: [preview]
  chart: {chart: app, sourceRef: {kind: HelmRepository, name: charts}}
  values: {ingress: {class: nginx}, replicas: 1}
repositories:
  - name: acme/shop
    values: {ingress: {host: shop}}
  - name: acme/api
    maxEnvironments: 3
    labels: []
"""
    )
    shop, api = config.repositories
    assert shop.max_environments == 20 and api.max_environments == 3
    assert shop.values == {"ingress": {"class": "nginx", "host": "shop"}, "replicas": 1}
    assert shop.labels == {"preview"} and api.labels == set()
    assert api.chart == {"chart": "app", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}


CHART = "chart: {chart: shop, sourceRef: {kind: HelmRepository, name: charts}}"


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        ("[]", "", "mapping"),
        ("fleet: {url: x, path: p}\n", "(top level)", "'repositories' is a required property"),
        ("fleet: {url: x, path: p}\nrepositories: []\n", "repositories", "should be non-empty"),
        (
            "fleet: {url: x, path: p}\nbogus: 1\nrepositories: [{name: a/b, " + CHART + "}]",
            "bogus",
            "unknown field 'bogus'",
        ),
        (
            "fleet: {url: x, path: ../up}\nrepositories: [{name: a/b, " + CHART + "}]",
            "fleet.path",
            "does not match",
        ),
        (
            "fleet: {url: x, path: /abs}\nrepositories: [{name: a/b, " + CHART + "}]",
            "fleet.path",
            "does not match",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: nope, " + CHART + "}]",
            "repositories[0].name",
            "does not match",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: a/b, drafts: 'yes', " + CHART + "}]",
            "repositories[0].drafts",
            "is not of type 'boolean'",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: a/b, maxEnvironments: -1, "
            + CHART
            + "}]",
            "repositories[0].maxEnvironments",
            "minimum",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: a/b, branches: '(', " + CHART + "}]",
            "repositories[0].branches",
            "regular expression",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: a/b}]",
            "repositories[0]",
            "neither 'chart' nor 'chartRef'",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: a/b, "
            + CHART
            + ", chartRef: {kind: OCIRepository, name: c}}]",
            "repositories[0]",
            "both 'chart' and 'chartRef'",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: a/b, chart: {chart: x, sourceRef: "
            "{kind: OCIRepository, name: c}}}]",
            "repositories[0].chart.sourceRef.kind",
            "is not one of",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: a/b, chart: {chart: x}}]",
            "repositories[0].chart",
            "'sourceRef' is a required property",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: a/b, values: {tag: '<<PR_SHA>>'}, "
            + CHART
            + "}]",
            "repositories[0].values.tag",
            "unknown placeholder <<PR_SHA>>",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: a/b, "
            + CHART
            + "}, {name: A/B, "
            + CHART
            + "}]",
            "repositories[1].name",
            "listed twice",
        ),
        (
            "fleet: {url: x, path: p}\ngithub: {apiUrl: 'not a url'}\nrepositories: [{name: a/b, "
            + CHART
            + "}]",
            "github.apiUrl",
            "does not match",
        ),
        (
            "fleet: {url: x, path: p}\ngithub: {app: {id: 1, installationId: 2}}\nrepositories: "
            "[{name: a/b, " + CHART + "}]",
            "github.app",
            "'privateKeyFile' is a required property",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: a/b, templates: {helmRelease: "
            "missing.yaml}, " + CHART + "}]",
            "repositories[0].templates.helmRelease",
            "cannot read template",
        ),
        (
            "fleet: {url: x, path: p}\nrepositories: [{name: a/b, namespace: 'x-<<NAMESPACE>>', "
            + CHART
            + "}]",
            "repositories[0].namespace",
            "<<NAMESPACE>>",
        ),
        (
            "fleet: {url: x, path: p, path: q}\nrepositories: [{name: a/b, " + CHART + "}]",
            "",
            "duplicate key",
        ),
    ],
)
def test_a_bad_config_names_the_field_and_the_reason(text: str, path: str, reason: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, base_dir=Path("/nonexistent"))
    assert caught.value.path == path
    assert reason in str(caught.value)


def test_every_schema_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "fleet: {url: 1, path: p}\nrepositories: [{name: a/b, drafts: 3, " + CHART + "}]"
        )
    paths = [path for path, _ in caught.value.problems]
    assert paths == ["fleet.url", "repositories[0].drafts"]


@pytest.mark.parametrize("field", ["healthCheck.url", "environmentUrl"])
def test_credentials_in_a_probe_or_environment_url_are_a_config_error(field: str) -> None:
    url = "https://user:s3cret@shop.example.com/healthz"
    entry = (
        f"healthCheck: {{url: '{url}'}}"
        if field == "healthCheck.url"
        else f"environmentUrl: '{url}'"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(f"fleet: {{url: x, path: p}}\nrepositories: [{{name: a/b, {entry}, {CHART}}}]")
    assert caught.value.path == f"repositories[0].{field}"
    assert "credentials in the URL" in str(caught.value) and "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://<<PR_BRANCH_SLUG>>/healthz",  # a branch named 'localhost' would probe it
        "https://<<PR_BRANCH_SLUG>>.com/healthz",
        "https://shop.<<NAMESPACE>>/healthz",
    ],
)
def test_a_host_a_placeholder_could_choose_is_a_config_error(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            f"fleet: {{url: x, path: p}}\nrepositories: [{{name: a/b, healthCheck: {{url: '{url}'}}, "
            f"{CHART}}}]"
        )
    assert caught.value.path == "repositories[0].healthCheck.url"
    assert "in front of a fixed domain" in str(caught.value)


@pytest.mark.parametrize(
    "url",
    [
        "https://shop-pr-<<PR_NUMBER>>.preview.example.com/healthz",
        "https://<<PR_BRANCH_SLUG>>.preview.example.com:8443/healthz",
        "http://127.0.0.1:8080/pr-<<PR_NUMBER>>/healthz",
    ],
)
def test_a_host_inside_a_fixed_domain_is_fine(url: str) -> None:
    config = parse_config(
        f"fleet: {{url: x, path: p}}\nrepositories: [{{name: a/b, healthCheck: {{url: '{url}'}}, "
        f"{CHART}}}]"
    )
    assert config.repositories[0].health_check is not None
