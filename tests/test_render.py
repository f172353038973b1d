from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from prgen.config import RepositorySettings
from prgen.naming import short_hash
from prgen.render import (
    FLUX_SUBSTITUTE,
    MARKER,
    config_digest,
    input_hash,
    reads_labels,
    render_environment,
)

from factories import pull_request, repository
from manifest_validation import validate_documents

VALUES = """\
    values:
      image: {tag: '<<PR_HEAD_SHA>>'}
      title: '<<PR_TITLE>>'
      branch: '<<PR_BRANCH>>'
      ingress: {host: '<<PR_BRANCH_SLUG>>.preview.example.com'}
      cluster: '${CLUSTER_NAME}'
"""


def load(content: bytes) -> Any:
    return YAML(typ="safe", pure=True).load(content)


def test_an_environment_is_a_namespace_a_helmrelease_and_a_kustomization() -> None:
    env = render_environment(repository(VALUES), pull_request(12))
    assert env.namespace == "shop-pr-12"
    assert sorted(env.files) == ["helmrelease.yaml", "kustomization.yaml", "namespace.yaml"]
    assert all(content.startswith(MARKER.encode()) for content in env.files.values())
    release = load(env.files["helmrelease.yaml"])
    assert release["apiVersion"] == "helm.toolkit.fluxcd.io/v2"
    assert release["metadata"]["namespace"] == "shop-pr-12"
    assert release["metadata"]["annotations"]["event.toolkit.fluxcd.io/commit"] == f"{12:040x}"
    assert release["metadata"]["annotations"]["event.toolkit.fluxcd.io/change_request"] == "12"
    assert release["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "prgen"
    assert release["spec"]["releaseName"] == "shop-pr-12"
    assert release["spec"]["values"]["image"]["tag"] == f"{12:040x}"
    # `feature/12` is no DNS label: its slug carries a hash of it (issue 10, item 8).
    slug = f"feature-12-{short_hash('feature/12')}"
    assert release["spec"]["values"]["ingress"]["host"] == f"{slug}.preview.example.com"
    assert load(env.files["kustomization.yaml"])["resources"] == [
        "namespace.yaml",
        "helmrelease.yaml",
    ]


@pytest.mark.parametrize(
    "chart",
    [
        "    chart: {chart: shop, version: '1.x', sourceRef: {kind: HelmRepository, name: c, namespace: flux-system}}\n",
        "    chart: {chart: ./charts/shop, sourceRef: {kind: GitRepository, name: shop, namespace: flux-system}}\n",
        "    chartRef: {kind: OCIRepository, name: shop-chart, namespace: flux-system}\n",
    ],
)
def test_every_emitted_object_validates_against_the_flux_crds_and_kubernetes(chart: str) -> None:
    text = f"""\
fleet: {{url: /tmp/f, path: previews}}
repositories:
  - name: acme/shop
{chart}{VALUES}"""
    from prgen.config import parse_config

    repo = parse_config(text).repositories[0]
    env = render_environment(repo, pull_request(7))
    for name in ("namespace.yaml", "helmrelease.yaml"):
        assert validate_documents(env.files[name].decode()) == [], name


def test_git_chart_sources_reconcile_on_every_revision() -> None:
    from prgen.config import parse_config

    repo = parse_config(
        "fleet: {url: x, path: p}\nrepositories: [{name: acme/shop, chart: {chart: ./c, "
        "sourceRef: {kind: GitRepository, name: shop}}}]"
    ).repositories[0]
    release = load(render_environment(repo, pull_request(1)).files["helmrelease.yaml"])
    assert release["spec"]["chart"]["spec"]["reconcileStrategy"] == "Revision"


def test_rendering_is_byte_stable() -> None:
    repo = repository(VALUES)
    assert (
        render_environment(repo, pull_request(3)).files
        == render_environment(repo, pull_request(3)).files
    )


HOSTILE_TITLES = [
    "fix: everything # really",
    "key: value\nkind: Secret\n---\nevil: true",
    "&anchor *alias !!python/object:os.system |block >fold",
    "- leading dash",
    "<<: *merge",
    "'single' \"double\" `back`",
    "null",
    "123",
    "\t\x00\x1b[31mansi\u2028\u2029",
    "${HOME} and $(rm -rf /)",
]


@pytest.mark.parametrize("title", HOSTILE_TITLES)
def test_hostile_pr_text_parses_back_to_exactly_itself(title: str) -> None:
    env = render_environment(
        repository(VALUES), pull_request(5, title=title, head_branch=title, author=title)
    )
    release = load(env.files["helmrelease.yaml"])
    assert release["spec"]["values"]["title"] == title
    assert release["spec"]["values"]["branch"] == title
    assert release["kind"] == "HelmRelease" and set(release) == {
        "apiVersion",
        "kind",
        "metadata",
        "spec",
    }
    assert validate_documents(env.files["helmrelease.yaml"].decode()) == []


def test_a_flux_variable_from_pr_text_disables_substitution_for_that_object() -> None:
    env = render_environment(repository(VALUES), pull_request(5, title="${GITHUB_TOKEN}"))
    release = load(env.files["helmrelease.yaml"])
    assert release["metadata"]["annotations"][FLUX_SUBSTITUTE] == "disabled"
    assert release["spec"]["values"]["title"] == "${GITHUB_TOKEN}"


def test_a_variable_split_across_template_and_pr_text_is_caught_too() -> None:
    repo = repository("    values: {x: '$<<PR_TITLE>>'}\n")
    release = load(
        render_environment(repo, pull_request(5, title="{SECRET}")).files["helmrelease.yaml"]
    )
    assert release["metadata"]["annotations"][FLUX_SUBSTITUTE] == "disabled"


def test_the_configs_own_flux_variables_stay_active() -> None:
    release = load(
        render_environment(repository(VALUES), pull_request(5)).files["helmrelease.yaml"]
    )
    assert FLUX_SUBSTITUTE not in release["metadata"]["annotations"]
    assert release["spec"]["values"]["cluster"] == "${CLUSTER_NAME}"


def test_a_long_repository_name_still_gives_valid_names() -> None:
    repo = repository(name="acme/" + "very-long-repository-name-" * 3)
    env = render_environment(repo, pull_request(123456))
    release = load(env.files["helmrelease.yaml"])
    assert len(env.namespace) <= 63 and len(release["spec"]["releaseName"]) <= 53
    assert validate_documents(env.files["helmrelease.yaml"].decode()) == []


def test_a_users_template_is_kept_but_cannot_drop_ownership(tmp_path: Path) -> None:
    (tmp_path / "hr.yaml").write_text(
        """\
apiVersion: helm.toolkit.fluxcd.io/v2
kind: HelmRelease
metadata:
  name: whatever
  labels: {team: web, app.kubernetes.io/managed-by: someone-else}
spec:
  interval: 5m
  driftDetection: {mode: enabled}
  chart: {spec: {chart: ignored, sourceRef: {kind: HelmRepository, name: x}}}
  values: {replicas: 1, pr: '<<PR_NUMBER>>'}
"""
    )
    from prgen.config import parse_config

    repo = parse_config(
        "fleet: {url: x, path: p}\nrepositories: [{name: acme/shop, templates: {helmRelease: hr.yaml}, "
        "chartRef: {kind: OCIRepository, name: shop}, values: {replicas: 2}}]",
        base_dir=tmp_path,
    ).repositories[0]
    release = load(render_environment(repo, pull_request(4)).files["helmrelease.yaml"])
    assert release["spec"]["driftDetection"] == {"mode": "enabled"}
    assert release["spec"]["interval"] == "5m"
    assert "chart" not in release["spec"] and release["spec"]["chartRef"]["name"] == "shop"
    assert release["spec"]["values"] == {"replicas": 2, "pr": "4"}
    assert release["metadata"]["labels"]["team"] == "web"
    assert release["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "prgen"


def test_a_users_template_cannot_set_the_release_name(tmp_path: Path) -> None:
    # releaseName is prgen's: a DNS-1123 name of at most 53 characters, never PR text.
    (tmp_path / "hr.yaml").write_text(
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\n"
        "spec: {releaseName: '<<PR_TITLE>>', interval: 5m}\n"
    )
    from prgen.config import parse_config

    repo = parse_config(
        "fleet: {url: x, path: p}\nrepositories: [{name: acme/shop, templates: {helmRelease: hr.yaml}, "
        "chartRef: {kind: OCIRepository, name: shop}}]",
        base_dir=tmp_path,
    ).repositories[0]
    title = "A title ${HOME} that is really quite long, with spaces: and more and more"
    env = render_environment(repo, pull_request(4, title=title))
    release = load(env.files["helmrelease.yaml"])
    assert release["spec"]["releaseName"] == "shop-pr-4"
    assert release["spec"]["interval"] == "5m"
    assert validate_documents(env.files["helmrelease.yaml"].decode()) == []


@pytest.mark.parametrize(
    ("field", "template", "reason"),
    [
        (
            "helmRelease",
            "apiVersion: helm.toolkit.fluxcd.io/v2beta1\nkind: HelmRelease\n",
            "must be a helm.toolkit.fluxcd.io/v2 HelmRelease, not helm.toolkit.fluxcd.io/v2beta1 HelmRelease",
        ),
        (
            "namespace",
            "apiVersion: v1\nkind: ConfigMap\n",
            "must be a v1 Namespace, not v1 ConfigMap",
        ),
        (
            "helmRelease",
            "apiVersion: v1\nkind: Namespace\n",
            "must be a helm.toolkit.fluxcd.io/v2 HelmRelease",
        ),
    ],
)
def test_a_template_of_the_wrong_kind_is_a_config_error(
    tmp_path: Path, field: str, template: str, reason: str
) -> None:
    # Without its Namespace object, closing the PR would leak the namespace (DESIGN.md, 6).
    from prgen.config import parse_config
    from prgen.errors import ConfigError

    (tmp_path / "t.yaml").write_text(template)
    with pytest.raises(ConfigError) as caught:
        parse_config(
            f"fleet: {{url: x, path: p}}\nrepositories: [{{name: acme/shop, templates: {{{field}: "
            "t.yaml}, chartRef: {kind: OCIRepository, name: shop}}]",
            base_dir=tmp_path,
        )
    assert caught.value.path == f"repositories[0].templates.{field}"
    assert reason in str(caught.value)


def test_a_template_without_apiversion_gets_the_right_one(tmp_path: Path) -> None:
    from prgen.config import parse_config

    (tmp_path / "ns.yaml").write_text("kind: Namespace\nmetadata: {labels: {team: web}}\n")
    repo = parse_config(
        "fleet: {url: x, path: p}\nrepositories: [{name: acme/shop, templates: {namespace: ns.yaml}, "
        "chartRef: {kind: OCIRepository, name: shop}}]",
        base_dir=tmp_path,
    ).repositories[0]
    env = render_environment(repo, pull_request(4))
    text = env.files["namespace.yaml"].decode()
    assert text.splitlines()[1:3] == ["apiVersion: v1", "kind: Namespace"]
    assert validate_documents(text) == []


LABELS = "    values: {labels: '<<PR_LABELS>>', summary: '<<PR_NUMBER>> [<<PR_LABELS>>]'}\n"


def test_pr_labels_are_sorted_and_joined_by_commas() -> None:
    pr = pull_request(7, labels=("qa", "Preview", "area/api"))
    values = load(render_environment(repository(LABELS), pr).files["helmrelease.yaml"])["spec"][
        "values"
    ]
    assert values == {"labels": "Preview,area/api,qa", "summary": "7 [Preview,area/api,qa]"}
    unlabelled = render_environment(repository(LABELS), pull_request(7, labels=()))
    assert load(unlabelled.files["helmrelease.yaml"])["spec"]["values"]["labels"] == ""


def test_the_order_github_lists_labels_in_changes_no_byte() -> None:
    repo = repository(LABELS)
    one = render_environment(repo, pull_request(7, labels=("b", "a", "c")))
    other = render_environment(repo, pull_request(7, labels=("c", "b", "a")))
    assert one.files == other.files and one.inputs == other.inputs


@pytest.mark.parametrize("label", HOSTILE_TITLES)
def test_a_hostile_label_parses_back_to_exactly_itself(label: str) -> None:
    env = render_environment(repository(LABELS), pull_request(5, labels=(label,)))
    release = load(env.files["helmrelease.yaml"])
    assert release["spec"]["values"]["labels"] == label
    assert set(release) == {"apiVersion", "kind", "metadata", "spec"}
    assert validate_documents(env.files["helmrelease.yaml"].decode()) == []


def test_a_flux_variable_from_a_label_disables_substitution() -> None:
    env = render_environment(repository(LABELS), pull_request(5, labels=("${GITHUB_TOKEN}",)))
    release = load(env.files["helmrelease.yaml"])
    assert release["metadata"]["annotations"][FLUX_SUBSTITUTE] == "disabled"
    assert release["spec"]["values"]["labels"] == "${GITHUB_TOKEN}"
    # Split across the template and a label, the `${` PR text made is caught as well.
    split = render_environment(
        repository("    values: {x: '$<<PR_LABELS>>'}\n"), pull_request(5, labels=("{SECRET}",))
    )
    annotations = load(split.files["helmrelease.yaml"])["metadata"]["annotations"]
    assert annotations[FLUX_SUBSTITUTE] == "disabled"
    plain = render_environment(repository(LABELS), pull_request(5, labels=("preview",)))
    assert FLUX_SUBSTITUTE not in load(plain.files["helmrelease.yaml"])["metadata"]["annotations"]


def test_labels_in_a_namespace_become_a_dns_label_with_a_hash() -> None:
    repo = repository("    namespace: 'shop-<<PR_NUMBER>>-<<PR_LABELS>>'\n")
    one = render_environment(repo, pull_request(3, labels=("QA", "Preview/EU")))
    other = render_environment(repo, pull_request(3, labels=("qa", "preview-eu")))
    assert one.namespace.startswith("shop-3-") and len(one.namespace) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", one.namespace)
    assert one.namespace != other.namespace  # two label sets never slug onto one name
    assert validate_documents(one.files["namespace.yaml"].decode()) == []


def test_labels_are_part_of_the_input_hash_only_where_values_render_them() -> None:
    before, after = pull_request(2, labels=()), pull_request(2, labels=("preview",))
    reading = repository(LABELS)
    assert render_environment(reading, before).inputs != render_environment(reading, after).inputs
    assert config_digest(reading).endswith("+labels")
    ignoring = repository(VALUES)
    assert not config_digest(ignoring).endswith("+labels")
    assert render_environment(ignoring, before).inputs == render_environment(ignoring, after).inputs
    assert input_hash(config_digest(ignoring), before) == input_hash(config_digest(ignoring), after)


def test_labels_are_part_of_the_input_hash_where_a_template_renders_them(tmp_path: Path) -> None:
    (tmp_path / "ns.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata: {annotations: {labels: '<<PR_LABELS>>'}}\n"
    )
    # Only a value counts: keys are never substituted, so one in a key reads nothing.
    (tmp_path / "hr.yaml").write_text(
        "apiVersion: helm.toolkit.fluxcd.io/v2\nkind: HelmRelease\n"
        "spec: {values: {'<<PR_LABELS>>': x}}\n"
    )
    from prgen.config import parse_config

    def repo(namespace_template: str) -> RepositorySettings:
        return parse_config(
            "fleet: {url: x, path: p}\nrepositories: [{name: acme/shop, chartRef: {kind: "
            f"OCIRepository, name: shop}}, templates: {{helmRelease: hr.yaml{namespace_template}}}}}]",
            base_dir=tmp_path,
        ).repositories[0]

    before, after = pull_request(2, labels=("a",)), pull_request(2, labels=("a", "b"))
    reading = repo(", namespace: ns.yaml")
    assert reads_labels(reading)
    env = render_environment(reading, after)
    assert load(env.files["namespace.yaml"])["metadata"]["annotations"]["labels"] == "a,b"
    assert render_environment(reading, before).inputs != env.inputs
    ignoring = repo("")
    assert not reads_labels(ignoring)
    assert render_environment(ignoring, before).inputs == render_environment(ignoring, after).inputs


LABELS_EVERYWHERE = repository(LABELS + "    namespace: 'shop-<<PR_NUMBER>>-<<PR_LABELS>>'\n")


@given(st.lists(st.text(min_size=1, max_size=50), max_size=6, unique=True))
def test_any_labels_stay_one_string_and_one_dns_label_and_never_reach_flux(
    labels: list[str],
) -> None:
    env = render_environment(LABELS_EVERYWHERE, pull_request(4, labels=tuple(labels)))
    release = load(env.files["helmrelease.yaml"])
    joined = ",".join(sorted(labels))
    assert release["spec"]["values"] == {"labels": joined, "summary": f"4 [{joined}]"}
    assert set(release) == {"apiVersion", "kind", "metadata", "spec"}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", env.namespace)
    assert len(env.namespace) <= 63 and env.namespace.startswith("shop-4-")
    disabled = release["metadata"]["annotations"].get(FLUX_SUBSTITUTE) == "disabled"
    if "${" in joined or "$$" in joined:
        assert disabled
    if "$" not in joined:
        assert not disabled
