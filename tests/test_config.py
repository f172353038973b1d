from __future__ import annotations

from pathlib import Path

import pytest

from prgen.config import DEFAULT_NAMESPACE, DeployWhen, parse_config
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


def one_repository(fields: str, extra: str = "") -> str:
    return f"fleet: {{url: x, path: p}}\n{extra}repositories: [{{name: a/b, {fields}, {CHART}}}]"


@pytest.mark.parametrize(
    ("fields", "path", "reason"),
    [
        ("titles: '('", "repositories[0].titles", "not a valid regular expression"),
        (
            "excludeTitles: '[WIP'",
            "repositories[0].excludeTitles",
            "not a valid regular expression",
        ),
        ("authors: [alice, '/(/']", "repositories[0].authors[1]", "not a valid regular expression"),
        (
            "excludeAuthors: ['/renovate']",
            "repositories[0].excludeAuthors[0]",
            "neither a login (logins have no '/') nor a regex (written /…/)",
        ),
        ("excludeAuthors: ['']", "repositories[0].excludeAuthors[0]", "should be non-empty"),
        ("authors: [bob, bob]", "repositories[0].authors", "has non-unique elements"),
        ("titles: 3", "repositories[0].titles", "is not of type 'string'"),
        (
            "deployWhen: {checks: [build, '/lint-(/']}",
            "repositories[0].deployWhen.checks[1]",
            "not a valid regular expression",
        ),
        (
            "deployWhen: {approvals: -1}",
            "repositories[0].deployWhen.approvals",
            "less than the minimum of 0",
        ),
        ("deployWhen: {checks: some}", "repositories[0].deployWhen.checks", "'all' was expected"),
        ("deployWhen: {check: all}", "repositories[0].deployWhen.check", "did you mean 'checks'"),
        ("report: {checkRun: {name: ''}}", "repositories[0].report.checkRun.name", "non-empty"),
    ],
)
def test_a_bad_filter_or_gate_names_the_field_and_the_reason(
    fields: str, path: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(one_repository(fields), base_dir=Path("/nonexistent"))
    assert caught.value.path == path
    assert reason in str(caught.value)


def test_a_bad_regex_in_defaults_is_reported_at_each_repository_that_gets_it() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "fleet: {url: x, path: p}\ndefaults: {excludeTitles: '(?<'}\n"
            "repositories: [{name: a/b, " + CHART + "}]"
        )
    assert caught.value.path == "repositories[0].excludeTitles"


def test_titles_and_authors_compile_once_and_a_plain_login_is_literal() -> None:
    repo = parse_config(
        one_repository(
            "titles: '^feat', excludeTitles: '^WIP', authors: [Alice, '/team-.*/'], "
            "excludeAuthors: ['dependabot[bot]']"
        )
    ).repositories[0]
    assert repo.titles is not None and repo.titles.pattern == "^feat"
    assert repo.exclude_titles is not None and repo.exclude_titles.pattern == "^WIP"
    assert [name.written for name in repo.authors] == ["Alice", "/team-.*/"]
    (bot,) = repo.exclude_authors
    assert bot.matches("dependabot[bot]") and bot.matches("DEPENDABOT[BOT]")
    assert not bot.matches("dependabotb") and not bot.matches("x-dependabot[bot]")


def test_a_config_without_the_new_filters_keeps_its_identity() -> None:
    # Environments record the identity of the config that wrote them: one that changed
    # for an unchanged config would make prgen leave its own environments alone.
    plain = parse_config(BASE).repositories[0]
    assert plain.identity == "687bfeb9f077"  # as prgen before these filters made it
    with_lists_empty = parse_config(one_repository("authors: [], excludeAuthors: []"))
    assert (
        with_lists_empty.repositories[0].identity
        == parse_config(one_repository("drafts: false")).repositories[0].identity
    )


@pytest.mark.parametrize(
    "fields",
    ["titles: '^feat'", "excludeTitles: '^WIP'", "authors: [alice]", "excludeAuthors: [bob]"],
)
def test_each_new_filter_is_part_of_the_identity_when_set(fields: str) -> None:
    plain = parse_config(one_repository("drafts: false")).repositories[0]
    filtered = parse_config(one_repository(fields)).repositories[0]
    assert filtered.identity != plain.identity


def test_deploy_when_is_none_unless_it_requires_something() -> None:
    assert parse_config(BASE).repositories[0].deploy_when is None
    empty = parse_config(one_repository("deployWhen: {checks: [], approvals: 0}"))
    assert empty.repositories[0].deploy_when is None
    approvals = parse_config(one_repository("deployWhen: {approvals: 2}")).repositories[0]
    assert approvals.deploy_when == DeployWhen(checks=None, approvals=2)
    every = parse_config(one_repository("deployWhen: {checks: all}")).repositories[0]
    assert every.deploy_when == DeployWhen(checks="all", approvals=0)


def test_deploy_when_checks_are_names_matched_whole_or_slashed_regexes() -> None:
    repo = parse_config(
        one_repository("deployWhen: {checks: [ci/build, '/lint \\(.*\\)/'], approvals: 1}")
    ).repositories[0]
    assert repo.deploy_when is not None and repo.deploy_when.approvals == 1
    checks = repo.deploy_when.checks
    assert isinstance(checks, tuple)
    build, lint = checks

    assert build.fullmatch("ci/build") and not build.fullmatch("ci/build-arm")
    assert not build.fullmatch("CI/build")  # check names are compared exactly
    assert lint.fullmatch("lint (3.12)") and not lint.fullmatch("lint")
    # Messages name each check as written, not as its escaped pattern.
    assert repo.deploy_when.check_entries == ("ci/build", "/lint \\(.*\\)/")


def test_a_plain_check_name_full_of_regex_characters_is_that_name() -> None:
    repo = parse_config(one_repository("deployWhen: {checks: ['test (3.12, linux)']}"))
    gate = repo.repositories[0].deploy_when
    assert gate is not None and isinstance(gate.checks, tuple)
    (pattern,) = gate.checks
    assert pattern.fullmatch("test (3.12, linux)") and not pattern.fullmatch("test 3x12, linux")
    assert gate.check_entries == ("test (3.12, linux)",)


def test_a_repository_can_turn_off_the_gate_its_defaults_set() -> None:
    config = parse_config(
        """\
fleet: {url: /tmp/f, path: p}
defaults:
  deployWhen: {checks: all, approvals: 1}
  chart: {chart: app, sourceRef: {kind: HelmRepository, name: charts}}
repositories:
  - name: acme/shop
  - name: acme/api
    namespace: 'api-<<PR_NUMBER>>'
    deployWhen: {checks: [], approvals: 0}
  - name: acme/web
    namespace: 'web-<<PR_NUMBER>>'
    deployWhen: {approvals: 2}
"""
    )
    shop, api, web = config.repositories
    assert shop.deploy_when == DeployWhen("all", 1)
    assert api.deploy_when is None
    assert web.deploy_when == DeployWhen("all", 2)


APP = "github: {app: {id: 1, installationId: 2, privateKeyEnv: KEY}}\n"


def test_a_check_run_needs_a_github_app() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(one_repository("report: {checkRun: {name: prgen/preview}}"))
    assert caught.value.path == "repositories[0].report.checkRun"
    assert "GitHub App" in str(caught.value) and "token" in str(caught.value)


def test_a_check_run_from_defaults_needs_an_app_too() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "fleet: {url: x, path: p}\ndefaults: {report: {checkRun: {}}}\n"
            "repositories: [{name: a/b, " + CHART + "}]"
        )
    assert caught.value.path == "repositories[0].report.checkRun"


def test_a_check_run_with_an_app_gets_its_name() -> None:
    assert parse_config(BASE).repositories[0].report.check_run is None
    named = parse_config(one_repository("report: {checkRun: {name: previews}}", APP))
    assert named.repositories[0].report.check_run == "previews"
    default = parse_config(one_repository("report: {checkRun: {}}", APP))
    assert default.repositories[0].report.check_run == "prgen/preview"
    off = parse_config(one_repository("report: {checkRun: false}"))
    assert off.repositories[0].report.check_run is None


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        (
            "healthCheck: {url: 'https://pr-<<PR_NUMBER>>.example.com/<<PR_LABELS>>'}",
            "repositories[0].healthCheck.url",
        ),
        (
            "environmentUrl: 'https://x.example.com/?l=<<PR_LABELS>>'",
            "repositories[0].environmentUrl",
        ),
        (
            "report: {deployment: {environment: 'pr-<<PR_LABELS>>'}}",
            "repositories[0].report.deployment.environment",
        ),
        ("namespace: '<<PR_LABELS>>'", "repositories[0].namespace"),
    ],
)
def test_pr_labels_are_pr_text_wherever_pr_text_is_refused(fields: str, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(one_repository(fields))
    assert caught.value.path == path
    assert "<<PR_LABELS>>" in str(caught.value) or "PR text" in str(caught.value)


def test_pr_labels_is_a_known_placeholder_in_values_and_the_namespace() -> None:
    repo = parse_config(
        one_repository("namespace: 'b-<<PR_NUMBER>>-<<PR_LABELS>>', values: {l: '<<PR_LABELS>>'}")
    ).repositories[0]
    assert repo.values == {"l": "<<PR_LABELS>>"}


@pytest.mark.parametrize(
    ("fields", "extra", "index"),
    [
        ("deployWhen: {checks: [build, prgen/preview]}", "", 1),
        ("report: {commitStatus: {context: previews}}, deployWhen: {checks: [previews]}", "", 0),
        ("report: {checkRun: {name: preview}}, deployWhen: {checks: [lint, preview]}", APP, 1),
    ],
)
def test_a_gate_that_requires_prgens_own_report_is_a_config_error(
    fields: str, extra: str, index: int
) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(one_repository(fields, extra))
    assert caught.value.path == f"repositories[0].deployWhen.checks[{index}]"
    assert "never counts toward its own gate" in str(caught.value)


def test_a_gate_may_require_a_check_named_like_a_report_prgen_does_not_make() -> None:
    repo = parse_config(
        one_repository("report: {commitStatus: false}, deployWhen: {checks: [prgen/preview]}")
    ).repositories[0]
    assert repo.deploy_when is not None


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            BASE.replace("name: charts}}", "name: charts}"),
            "prgen.yaml:5:1: expected ',' or '}', but got '<stream end>'"
            " (while parsing a flow mapping at 4:12)",
        ),
        (
            BASE.replace("path: previews/dev}", "path: [previews/dev}"),
            "prgen.yaml:1:49: expected ',' or ']', but got '}'"
            " (while parsing a flow sequence at 1:36)",
        ),
        (BASE + "  - a: b: c\n", "prgen.yaml:5:9: mapping values are not allowed here"),
        (
            BASE.replace("repositories:", "fleet: {}\nrepositories:"),
            'prgen.yaml:2:1: found duplicate key "fleet"',
        ),
    ],
)
def test_a_yaml_syntax_error_says_file_line_and_column(text: str, said: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(text, source="prgen.yaml")
    assert str(error.value).startswith(said)
    assert "\n" not in str(error.value)
