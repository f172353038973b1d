"""One environment -> its manifests: a pure function of config, templates and the PR.

Templates are parsed first; PR data only ever enters as string scalars through
`Substitution`, and prgen itself sets every field that identifies or owns the
environment, so a template or a PR can't take those away.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from prgen import emit
from prgen.config import RepositorySettings
from prgen.errors import PrgenError
from prgen.model import PullRequest
from prgen.naming import HELM_RELEASE_NAME_MAX, dns_label, pr_text_label
from prgen.placeholders import PLACEHOLDER, PR_TEXT, Substitution, pull_request_values

MARKER = "# prgen:managed"
OWNER_LABEL = "app.kubernetes.io/managed-by"
ANNOTATION_REPOSITORY = "prgen.io/repository"
ANNOTATION_PULL_REQUEST = "prgen.io/pull-request"
ANNOTATION_HEAD_SHA = "prgen.io/head-sha"
ANNOTATION_CONFIG = "prgen.io/config"  # the identity of the config that wrote it
FLUX_COMMIT = "event.toolkit.fluxcd.io/commit"
FLUX_CHANGE_REQUEST = "event.toolkit.fluxcd.io/change_request"
FLUX_SUBSTITUTE = "kustomize.toolkit.fluxcd.io/substitute"

HELMRELEASE_FILE = "helmrelease.yaml"
NAMESPACE_FILE = "namespace.yaml"
KUSTOMIZATION_FILE = "kustomization.yaml"
HELM_RELEASE_TYPE = {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease"}
NAMESPACE_TYPE = {"apiVersion": "v1", "kind": "Namespace"}
# Chart sources whose charts change without a version bump.
_REVISION_SOURCES = frozenset({"GitRepository", "Bucket"})


@dataclass(frozen=True)
class RenderedEnvironment:
    repository: str
    number: int
    head_sha: str
    namespace: str  # also the environment's folder name under the managed path
    files: Mapping[str, bytes]


def _yaml() -> YAML:
    yaml = YAML(typ="rt", pure=True)
    yaml.width = 4096  # never fold long strings: byte-stable and diff-friendly
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


# Line breaks YAML 1.1 readers (Go's, for one) fold in plain or single-quoted
# scalars: such a string is written double-quoted, where they are escapes.
_UNSAFE_RAW = frozenset("\x85\u2028\u2029")


def _quote_unsafe(value: Any) -> Any:
    if isinstance(value, str):
        return DoubleQuotedScalarString(value) if _UNSAFE_RAW & set(value) else value
    if isinstance(value, dict):
        return {key: _quote_unsafe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_quote_unsafe(item) for item in value]
    return value


def dump(obj: Any, header: str) -> bytes:
    try:
        body = emit.document(obj)
    except emit.Unsupported:
        # A template value the fast emitter does not write (an unquoted date, say):
        # the general one, as byte-stable, for this document only.
        stream = io.StringIO()
        _yaml().dump(_quote_unsafe(obj), stream)
        body = stream.getvalue()
    return f"{MARKER} - {header}\n{body}".encode()


@cache
def _parsed_template(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    return document


def _load_template(path: Path) -> dict[str, Any]:
    return copy.deepcopy(_parsed_template(path))


def _deep_merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _deep_merge(base.get(key), value)
        return merged
    return copy.deepcopy(override)


class ReservedNamespace(PrgenError):
    """A PR's namespace is one no environment may have: nothing of it is rendered."""


def environment_namespace(repo: RepositorySettings, pr: PullRequest) -> str:
    text = Substitution(pull_request_values(pr)).text(repo.namespace)
    if any(match.group(1) in PR_TEXT for match in PLACEHOLDER.finditer(repo.namespace)):
        # PR text must not slug onto another PR's name: `feature/login`, `feature_login`.
        return pr_text_label(text)
    return dns_label(text)


def release_name(repo: RepositorySettings, pr: PullRequest) -> str:
    # Unique within its namespace, which is all Helm needs: each environment has a
    # namespace of its own, and a namespace is never handed from one PR to another
    # in one commit (see plan.py), so two PRs never share a release.
    return dns_label(f"{repo.short_name}-pr-{pr.number}", HELM_RELEASE_NAME_MAX)


def _ownership(metadata: dict[str, Any], repo: RepositorySettings, pr: PullRequest) -> None:
    metadata["labels"] = {
        **(metadata.get("labels") or {}),
        OWNER_LABEL: "prgen",
        "prgen.io/repository": dns_label(repo.name),
        "prgen.io/pull-request": str(pr.number),
    }
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        ANNOTATION_REPOSITORY: repo.name,
        ANNOTATION_PULL_REQUEST: str(pr.number),
    }


def _chart_fields(repo: RepositorySettings, subst: Substitution) -> dict[str, Any]:
    if repo.chart_ref is not None:
        return {"chartRef": subst.apply(dict(repo.chart_ref))}
    assert repo.chart is not None  # config guarantees exactly one
    chart_spec = subst.apply(dict(repo.chart))
    if chart_spec["sourceRef"]["kind"] in _REVISION_SOURCES:
        chart_spec.setdefault("reconcileStrategy", "Revision")
    return {"chart": {"spec": chart_spec}}


def _helm_release(repo: RepositorySettings, pr: PullRequest, namespace: str) -> dict[str, Any]:
    subst = Substitution(pull_request_values(pr, namespace))
    template = _load_template(repo.templates.helm_release)
    spec = dict(template.get("spec") or {})
    spec.pop("chart", None)
    spec.pop("chartRef", None)
    spec["values"] = _deep_merge(spec.get("values") or {}, repo.values)
    spec.pop("releaseName", None)  # prgen's: a DNS-1123 name of at most 53 characters
    # The type goes first where the template lacks it, and wins where the template has it.
    release: dict[str, Any] = subst.apply(
        {**HELM_RELEASE_TYPE, **template, **HELM_RELEASE_TYPE, "spec": spec}
    )
    chart = _chart_fields(repo, subst)
    release["spec"] = {**chart, "releaseName": release_name(repo, pr), **release["spec"]}
    metadata = release.get("metadata") or {}
    metadata["name"] = dns_label(repo.short_name)
    metadata["namespace"] = namespace
    _ownership(metadata, repo, pr)
    metadata["annotations"].update(
        {
            ANNOTATION_HEAD_SHA: pr.head_sha,
            FLUX_COMMIT: pr.head_sha,
            FLUX_CHANGE_REQUEST: str(pr.number),
        }
    )
    if repo.identity:
        metadata["annotations"][ANNOTATION_CONFIG] = repo.identity
    if subst.introduced_flux_variable:
        # PR text formed a `${...}`: Flux must apply it verbatim, never expand it.
        metadata["annotations"][FLUX_SUBSTITUTE] = "disabled"
    release["metadata"] = metadata
    return release


def _namespace(repo: RepositorySettings, pr: PullRequest, namespace: str) -> dict[str, Any]:
    subst = Substitution(pull_request_values(pr, namespace))
    template = _load_template(repo.templates.namespace)
    document: dict[str, Any] = subst.apply({**NAMESPACE_TYPE, **template, **NAMESPACE_TYPE})
    metadata = document.get("metadata") or {}
    metadata["name"] = namespace
    metadata.pop("namespace", None)
    _ownership(metadata, repo, pr)
    if subst.introduced_flux_variable:
        metadata["annotations"][FLUX_SUBSTITUTE] = "disabled"
    document["metadata"] = metadata
    return document


def kustomization(resources: Iterable[str]) -> dict[str, Any]:
    return {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(resources),
    }


def render_environment(repo: RepositorySettings, pr: PullRequest) -> RenderedEnvironment:
    """Raises ReservedNamespace when the PR's namespace is a system or reserved one."""
    namespace = environment_namespace(repo, pr)
    if namespace in repo.reserved_namespaces:
        raise ReservedNamespace(
            f"{repo.name}#{pr.number} would get namespace {namespace}, which is reserved "
            "(a system namespace or one in safety.reservedNamespaces): prgen never writes it"
        )
    header = f"preview environment of {repo.name} pull request {pr.number}; prgen overwrites edits"
    files = {
        NAMESPACE_FILE: dump(_namespace(repo, pr, namespace), header),
        HELMRELEASE_FILE: dump(_helm_release(repo, pr, namespace), header),
        KUSTOMIZATION_FILE: dump(kustomization([NAMESPACE_FILE, HELMRELEASE_FILE]), header),
    }
    return RenderedEnvironment(
        repository=repo.name,
        number=pr.number,
        head_sha=pr.head_sha,
        namespace=namespace,
        files=files,
    )


def render_index(entries: Iterable[str]) -> bytes:
    """The managed folder's kustomization.yaml: every environment, plus hand-written entries."""
    return dump(kustomization(sorted(set(entries))), "lists the preview environments")
