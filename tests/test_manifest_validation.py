"""The manifest validator catches what it claims to catch (and accepts valid objects)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

import manifest_validation
from manifest_validation import (
    CrdDirectoryError,
    KustomizeBuildError,
    cel_rules_without_checks,
    kustomize_build,
    require_kubectl,
    validate_documents,
    validate_object,
)


def helm_release(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": "web", "namespace": "pr-42"},
        "spec": {
            "interval": "5m",
            "chart": {
                "spec": {
                    "chart": "web",
                    "version": "1.2.x",
                    "sourceRef": {"kind": "HelmRepository", "name": "charts", "namespace": "flux"},
                }
            },
            "values": {"image": {"tag": "pr-42"}, "free": ["form", {"x": 1}]},
        },
    }
    base["spec"].update(spec)
    return base


def kustomization() -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "previews", "namespace": "flux-system"},
        "spec": {
            "interval": "10m",
            "path": "./previews",
            "prune": True,
            "sourceRef": {"kind": "GitRepository", "name": "fleet"},
        },
    }


def git_repository(url: str) -> dict[str, Any]:
    return {
        "apiVersion": "source.toolkit.fluxcd.io/v1",
        "kind": "GitRepository",
        "metadata": {"name": "fleet", "namespace": "flux-system"},
        "spec": {"interval": "1m", "url": url, "ref": {"branch": "main"}},
    }


def namespace(name: str = "pr-42") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def cron_job() -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "prgen-sync", "namespace": "prgen"},
        "spec": {
            "schedule": "*/5 * * * *",
            "concurrencyPolicy": "Forbid",
            "jobTemplate": {
                "spec": {
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "containers": [
                                {
                                    "name": "prgen",
                                    "image": "ghcr.io/example/prgen:0.1.0",
                                    "args": ["sync"],
                                    "env": [{"name": "PRGEN_CONFIG", "value": "/etc/prgen.yaml"}],
                                }
                            ],
                        }
                    }
                }
            },
        },
    }


def only_error(errors: list[str], *fragments: str) -> None:
    assert len(errors) == 1, errors
    for fragment in fragments:
        assert fragment in errors[0], errors


# --- Flux kinds ------------------------------------------------------------------------------


def test_valid_helm_release_passes() -> None:
    assert validate_object(helm_release()) == []


def test_valid_helm_release_with_chart_ref_passes() -> None:
    obj = helm_release(chartRef={"kind": "OCIRepository", "name": "web"})
    del obj["spec"]["chart"]
    assert validate_object(obj) == []


def test_helm_release_with_both_chart_and_chart_ref_fails() -> None:
    obj = helm_release(chartRef={"kind": "OCIRepository", "name": "web"})
    only_error(validate_object(obj), "spec:", "either chart or chartRef must be set")


def test_helm_release_with_neither_chart_nor_chart_ref_fails() -> None:
    obj = helm_release()
    del obj["spec"]["chart"]
    only_error(validate_object(obj), "spec:", "either chart or chartRef must be set")


def test_helm_release_release_name_of_54_characters_fails() -> None:
    assert validate_object(helm_release(releaseName="a" * 53)) == []
    only_error(validate_object(helm_release(releaseName="a" * 54)), "spec.releaseName", "too long")


def test_helm_release_bad_interval_fails() -> None:
    only_error(validate_object(helm_release(interval="5 minutes")), "spec.interval", "5 minutes")


def test_helm_release_unknown_spec_field_fails() -> None:
    only_error(validate_object(helm_release(intervall="5m")), "spec.intervall", "unknown field")


def test_unknown_fields_are_reported_at_any_depth_but_not_in_values() -> None:
    obj = helm_release()
    obj["spec"]["chart"]["spec"]["sourceRef"]["nmae"] = "typo"
    obj["spec"]["values"]["whatever"] = {"deep": {"er": True}}
    obj["extra"] = 1
    errors = validate_object(obj)
    assert len(errors) == 2, errors
    assert any("spec.chart.spec.sourceRef.nmae: unknown field" in e for e in errors)
    assert any("extra: unknown field" in e for e in errors)


def test_unknown_metadata_field_on_flux_kind_fails() -> None:
    obj = helm_release()
    obj["metadata"]["lables"] = {"a": "b"}
    only_error(validate_object(obj), "metadata", "lables")


def test_schema_defaults_satisfy_required_fields() -> None:
    # chart.spec.verify.provider is required but defaults to "cosign" on the API server.
    obj = helm_release()
    obj["spec"]["chart"]["spec"]["verify"] = {"secretRef": {"name": "cosign-pub"}}
    assert validate_object(obj) == []


def test_helm_release_strategy_cel_rules() -> None:
    ok = helm_release(upgrade={"strategy": {"name": "RetryOnFailure", "retryInterval": "1m"}})
    assert validate_object(ok) == []
    bad = helm_release(install={"strategy": {"name": "RemediateOnFailure", "retryInterval": "1m"}})
    only_error(validate_object(bad), "spec.install.strategy", "retryInterval cannot be set")


def test_kube_config_needs_exactly_one_reference() -> None:
    both = helm_release(kubeConfig={"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}})
    only_error(validate_object(both), "spec.kubeConfig", "exactly one of")
    neither = kustomization()
    neither["spec"]["kubeConfig"] = {}
    only_error(validate_object(neither), "spec.kubeConfig", "exactly one of")


def test_valid_kustomization_passes() -> None:
    assert validate_object(kustomization()) == []


def test_kustomization_missing_prune_fails() -> None:
    obj = kustomization()
    del obj["spec"]["prune"]
    only_error(validate_object(obj), "spec:", "'prune' is a required property")


def test_git_repository_url_scheme() -> None:
    assert validate_object(git_repository("https://github.com/example/fleet")) == []
    only_error(validate_object(git_repository("ftp://x")), "spec.url", "ftp://x")


def test_git_repository_service_account_needs_cloud_provider() -> None:
    obj = git_repository("https://example.com/fleet")
    obj["spec"]["serviceAccountName"] = "reader"
    only_error(validate_object(obj), "spec:", "serviceAccountName can only be set")
    obj["spec"]["provider"] = "azure"
    assert validate_object(obj) == []


def test_version_not_served_fails() -> None:
    obj = helm_release()
    obj["apiVersion"] = "helm.toolkit.fluxcd.io/v2beta1"
    only_error(validate_object(obj), "not served", "helm.toolkit.fluxcd.io/v2")


def test_flux_object_name_must_be_a_dns_subdomain() -> None:
    obj = helm_release()
    obj["metadata"]["name"] = "Web_App"
    only_error(validate_object(obj), "metadata.name", "RFC 1123 subdomain")


def test_every_cel_rule_in_the_crds_has_a_hand_check() -> None:
    assert cel_rules_without_checks() == []


def test_missing_crd_directory_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PRGEN_FLUX_CRDS", str(tmp_path / "nowhere"))
    with pytest.raises(CrdDirectoryError, match="PRGEN_FLUX_CRDS"):
        validate_object(helm_release())


# --- Built-in kinds ----------------------------------------------------------------------------


def test_valid_namespace_passes() -> None:
    assert validate_object(namespace()) == []


def test_namespace_with_bad_name_fails() -> None:
    only_error(validate_object(namespace("Bad_Name")), "metadata.name", "RFC 1123 label")


def test_namespace_with_unknown_top_level_field_fails() -> None:
    obj = namespace()
    obj["sepc"] = {}
    only_error(validate_object(obj), "sepc")


def test_valid_cron_job_passes() -> None:
    assert validate_object(cron_job()) == []


def test_cron_job_name_longer_than_52_characters_fails() -> None:
    obj = cron_job()
    obj["metadata"]["name"] = "c" * 53
    only_error(validate_object(obj), "metadata.name", "52 characters")


def test_cron_job_schema_error_fails() -> None:
    obj = cron_job()
    obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = 3
    only_error(validate_object(obj), "imagePullPolicy")


def test_bad_namespace_and_labels_fail() -> None:
    obj = copy.deepcopy(cron_job())
    obj["metadata"]["namespace"] = "pr.42"
    obj["metadata"]["labels"] = {"app.kubernetes.io/name": "x" * 64}
    errors = validate_object(obj)
    assert len(errors) == 2, errors
    assert any("metadata.namespace" in e for e in errors)
    assert any("metadata.labels.app.kubernetes.io/name" in e for e in errors)


def test_missing_name_fails() -> None:
    obj = namespace()
    del obj["metadata"]["name"]
    only_error(validate_object(obj), "metadata.name: required")


# --- Unknown kinds and documents ---------------------------------------------------------------


def test_unknown_kind_fails() -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    only_error(validate_object(obj), "no schema is known", "Widget")


def test_built_in_kind_under_a_foreign_group_is_unknown() -> None:
    obj = {"apiVersion": "apps.k8s.io/v1", "kind": "Deployment", "metadata": {"name": "d"}}
    only_error(validate_object(obj), "no schema is known")


def test_validate_documents_skips_empty_and_kustomize_config_documents() -> None:
    text = """\
---
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources: [namespace.yaml]
---
---
apiVersion: v1
kind: Namespace
metadata:
  name: pr-42
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: pr-42
data:
  replicas: 2
"""
    only_error(validate_documents(text), "document 4 (ConfigMap pr-42/settings)", "data.replicas")


def test_validate_documents_reports_yaml_errors() -> None:
    only_error(validate_documents("a: [\n"), "YAML parse error")


# --- kustomize ---------------------------------------------------------------------------------


def test_kustomize_build(tmp_path: Path) -> None:
    require_kubectl()
    (tmp_path / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        "commonLabels:\n  app.kubernetes.io/managed-by: prgen\n"
        "resources:\n- namespace.yaml\n"
    )
    (tmp_path / "namespace.yaml").write_text(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: pr-7\n"
    )
    output = kustomize_build(tmp_path)
    assert "name: pr-7" in output
    assert "app.kubernetes.io/managed-by: prgen" in output
    assert validate_documents(output) == []

    (tmp_path / "kustomization.yaml").write_text("resources:\n- missing.yaml\n")
    with pytest.raises(KustomizeBuildError, match=r"missing\.yaml"):
        kustomize_build(tmp_path)


@pytest.mark.parametrize("ci", ["true", "1", "yes"])
def test_a_missing_kubectl_fails_in_ci(monkeypatch: pytest.MonkeyPatch, ci: str) -> None:
    monkeypatch.setattr(manifest_validation, "KUBECTL", None)
    monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.fail.Exception, match=r"kubectl is not installed .* CI is set"):
        require_kubectl()


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_a_missing_kubectl_skips_outside_ci(
    monkeypatch: pytest.MonkeyPatch, ci: str | None
) -> None:
    monkeypatch.setattr(manifest_validation, "KUBECTL", None)
    if ci is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", ci)
    with pytest.raises(pytest.skip.Exception, match="kubectl is not installed"):
        require_kubectl()


def test_kubectl_when_installed_is_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manifest_validation, "KUBECTL", "/opt/bin/kubectl")
    monkeypatch.setenv("CI", "true")
    assert require_kubectl() == "/opt/bin/kubectl"
