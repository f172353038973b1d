"""Offline validation of generated Kubernetes manifests, for tests.

Checks one object (``validate_object``) or every document in a multi-document YAML string
(``validate_documents``) the way the Kubernetes API server would, as far as that is practical
without a cluster. Each function returns a list of human-readable errors; an empty list means valid.

Flux kinds, and any other kind defined by a CustomResourceDefinition file in the CRD directory
(``<workspace>/shared/flux-crds``, overridable with ``PRGEN_FLUX_CRDS``):

* Schema defaults are applied first (the API server defaults before it validates), then the object
  is checked against the ``openAPIV3Schema`` of the requested, served version with a JSON Schema
  Draft 7 validator. All errors are reported, not only the first.
* Strict decoding is emulated: a property that the schema does not declare is an error wherever the
  schema declares ``properties`` (or is an object without any) and sets neither
  ``additionalProperties`` nor ``x-kubernetes-preserve-unknown-fields: true``. The API server
  would silently prune such a field; for a generator that is almost always a typo.
* ``x-kubernetes-validations`` (CEL) rules that JSON Schema cannot express are checked by hand.
  ``_CEL_CHECKS`` maps the text of each rule to a Python equivalent. It covers every rule in the
  shipped Flux CRDs:

  - HelmRelease ``spec``: exactly one of ``chart`` and ``chartRef``.
  - HelmRelease and Kustomization ``spec.kubeConfig``: exactly one of ``configMapRef`` and
    ``secretRef`` (two rules).
  - HelmRelease ``spec.install.strategy``: no ``retryInterval`` with ``RemediateOnFailure``.
  - HelmRelease ``spec.upgrade.strategy``: ``retryInterval`` only with ``RetryOnFailure``.
  - GitRepository ``spec``: ``serviceAccountName`` only with provider ``azure`` or ``aws``.

  A rule without a hand check is skipped; ``cel_rules_without_checks()`` lists such rules so a
  test can fail when updated CRDs bring new ones.
* ``metadata`` (the CRD schemas leave it open) is checked against the strict ``ObjectMeta``
  schema that kubernetes-validate ships.

Built-in kinds (core group, ``apps``, ``batch``, ``autoscaling``, ``policy`` and ``*.k8s.io``
groups) are checked with ``kubernetes_validate.validate`` in strict mode (unknown fields rejected)
against the schemas of Kubernetes ``KUBERNETES_VERSION``. That function reports only the first
schema error of an object.

For every kind, ``metadata.name`` is required and must be valid for the kind (DNS-1123 subdomain
by default; DNS-1123 label for Namespace; DNS-1035 label for Service; at most 52 characters for
CronJob; a path segment name for RBAC kinds), ``metadata.namespace`` must be a DNS-1123 label, label
keys and values and annotation keys must be valid, and annotations must total at most 256 KiB.

Unknown kinds are an error: no schema is known for them.

Not emulated: ``format`` keywords, nullable handling (a ``null`` value is reported as a type error
where the API server would drop it), admission webhooks and controller-side checks.

``kustomize_build`` runs ``kubectl kustomize``. A test that needs it calls ``require_kubectl()``
first: without kubectl the test is skipped, except in CI (``CI`` set), where it fails.
"""

from __future__ import annotations

import copy
import datetime
import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from referencing import Registry, Resource
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

__all__ = [
    "KUBECTL",
    "KUBERNETES_FLOOR",
    "KUBERNETES_VERSION",
    "SUPPORTED_KUBERNETES",
    "CrdDirectoryError",
    "KustomizeBuildError",
    "cel_rules_without_checks",
    "crd_directory",
    "kustomize_build",
    "require_kubectl",
    "validate_documents",
    "validate_object",
]

#: Kubernetes version whose built-in schemas (shipped by kubernetes-validate) are used by default:
#: the newest it ships.
KUBERNETES_VERSION = "1.37.0"
#: The oldest Kubernetes the fleet example supports (its README says so); the example must
#: validate there too, as a field added later (or required earlier) would break it on that cluster.
KUBERNETES_FLOOR = "1.30.0"
#: Every version the fleet example is validated at: the floor and the newest.
SUPPORTED_KUBERNETES = (KUBERNETES_FLOOR, KUBERNETES_VERSION)

#: Full path of kubectl, or None when it is not installed.
KUBECTL: str | None = shutil.which("kubectl")

#: Set (to anything but "", "0" or "false") in CI: GitHub Actions and most CI services set CI=true.
CI_ENV = "CI"

CRDS_ENV = "PRGEN_FLUX_CRDS"
DEFAULT_CRD_DIRECTORY = Path(__file__).resolve().parents[2] / "shared" / "flux-crds"

JsonPath = Sequence[str | int]


class CrdDirectoryError(RuntimeError):
    """The directory with the Flux CRD files is missing or holds no CRD."""


class KustomizeBuildError(RuntimeError):
    """``kubectl kustomize`` failed; the message holds its stderr."""


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _format_path(path: JsonPath) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(root)"


def _split_api_version(api_version: str) -> tuple[str, str]:
    """``apps/v1`` -> ``("apps", "v1")``; ``v1`` -> ``("", "v1")``."""
    group, _, version = api_version.rpartition("/")
    return group, version


def _yaml() -> YAML:
    return YAML(typ="safe", pure=True)


def _jsonable(value: Any) -> Any:
    """Make loaded YAML look like what the API server decodes: JSON types and string keys."""
    if isinstance(value, Mapping):
        return {_json_key(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date):
        # sigs.k8s.io/yaml turns YAML timestamps into JSON strings.
        return value.isoformat()
    return value


def _json_key(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


# --------------------------------------------------------------------------------------------
# Kubernetes name rules (k8s.io/apimachinery/pkg/util/validation)
# --------------------------------------------------------------------------------------------

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_QUALIFIED_NAME_PART = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def dns1123_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.fullmatch(value):
        errors.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character"
        )
    return errors


def dns1123_subdomain_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        errors.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
            "'-' or '.', and must start and end with an alphanumeric character"
        )
    return errors


def dns1035_label_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _DNS1035_LABEL.fullmatch(value):
        errors.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
            "with an alphabetic character, and end with an alphanumeric character"
        )
    return errors


def path_segment_name_errors(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be {value!r}"]
    return [f"may not contain {c!r}" for c in ("/", "%") if c in value]


def _cronjob_name_errors(value: str) -> list[str]:
    errors = dns1123_subdomain_errors(value)
    if len(value) > 52:
        # The CronJob controller appends an 11-character suffix to make Job names (max 63).
        errors.append("must be no more than 52 characters")
    return errors


def qualified_name_errors(value: str) -> list[str]:
    prefix, slash, name = value.rpartition("/")
    errors = []
    if slash and not prefix:
        errors.append("prefix part must be non-empty")
    elif prefix:
        errors += [f"prefix part {msg}" for msg in dns1123_subdomain_errors(prefix)]
    if not name:
        errors.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errors.append("name part must be no more than 63 characters")
        if not _QUALIFIED_NAME_PART.fullmatch(name):
            errors.append(
                "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
                "start and end with an alphanumeric character"
            )
    return errors


def label_value_errors(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not _LABEL_VALUE.fullmatch(value):
        errors.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', "
            "'_' or '.', and must start and end with an alphanumeric character"
        )
    return errors


_RBAC_GROUP = "rbac.authorization.k8s.io"

#: Name rule per (API group, kind); every other kind uses DNS-1123 subdomain names.
_NAME_RULES: dict[tuple[str, str], Callable[[str], list[str]]] = {
    ("", "Namespace"): dns1123_label_errors,
    ("", "Service"): dns1035_label_errors,
    ("batch", "CronJob"): _cronjob_name_errors,
    (_RBAC_GROUP, "Role"): path_segment_name_errors,
    (_RBAC_GROUP, "ClusterRole"): path_segment_name_errors,
    (_RBAC_GROUP, "RoleBinding"): path_segment_name_errors,
    (_RBAC_GROUP, "ClusterRoleBinding"): path_segment_name_errors,
}


def _metadata_errors(obj: Mapping[str, Any], group: str, kind: str) -> list[str]:
    metadata = obj.get("metadata")
    if metadata is None:
        return ["metadata: required"]
    if not isinstance(metadata, Mapping):
        return [f"metadata: must be a mapping, got {type(metadata).__name__}"]
    errors: list[str] = []

    name = metadata.get("name")
    if name is None or name == "":
        errors.append("metadata.name: required")
    elif isinstance(name, str):
        rule = _NAME_RULES.get((group, kind), dns1123_subdomain_errors)
        errors += [f"metadata.name: invalid value {name!r}: {msg}" for msg in rule(name)]
    else:
        errors.append(f"metadata.name: must be a string, got {name!r}")

    namespace = metadata.get("namespace")
    if isinstance(namespace, str) and namespace:
        errors += [
            f"metadata.namespace: invalid value {namespace!r}: {msg}"
            for msg in dns1123_label_errors(namespace)
        ]
    elif namespace is not None and namespace != "":
        errors.append(f"metadata.namespace: must be a string, got {namespace!r}")

    labels = metadata.get("labels")
    if isinstance(labels, Mapping):
        for key, value in labels.items():
            errors += [
                f"metadata.labels: invalid key {key!r}: {m}" for m in qualified_name_errors(key)
            ]
            if isinstance(value, str):
                errors += [
                    f"metadata.labels.{key}: invalid value {value!r}: {m}"
                    for m in label_value_errors(value)
                ]
            else:
                errors.append(f"metadata.labels.{key}: must be a string, got {value!r}")

    annotations = metadata.get("annotations")
    if isinstance(annotations, Mapping):
        total = 0
        for key, value in annotations.items():
            errors += [
                f"metadata.annotations: invalid key {key!r}: {m}"
                for m in qualified_name_errors(str(key).lower())
            ]
            if isinstance(value, str):
                total += len(str(key)) + len(value.encode())
            else:
                errors.append(f"metadata.annotations.{key}: must be a string, got {value!r}")
        if total > _TOTAL_ANNOTATION_SIZE_LIMIT:
            errors.append(
                f"metadata.annotations: total size {total} exceeds {_TOTAL_ANNOTATION_SIZE_LIMIT}"
            )
    return errors


# --------------------------------------------------------------------------------------------
# Built-in kinds: kubernetes-validate
# --------------------------------------------------------------------------------------------

_BUILTIN_GROUPS = frozenset({"", "apps", "batch", "autoscaling", "policy", "extensions"})
_NOT_API_GROUPS = frozenset({"kustomize.config.k8s.io"})


def _is_builtin_group(group: str) -> bool:
    if group in _NOT_API_GROUPS:
        return False
    return group in _BUILTIN_GROUPS or group.endswith(".k8s.io")


def _builtin_errors(obj: Mapping[str, Any], version: str) -> list[str] | None:
    """Schema errors from kubernetes-validate (strict); None when it has no schema for the kind."""
    try:
        kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return None
    except kubernetes_validate.ValidationError as exc:
        if list(exc.path) == ["apiVersion"] and exc.validator == "enum":
            # kubernetes-validate picks its schema file by group prefix and version only, so
            # "apps.example.com/v1" would find the apps/v1 schema, whose apiVersion enum fails.
            return None
        return [f"{_format_path(list(exc.path))}: {exc.message}"]
    return []


@functools.cache
def _object_meta_validator(version: str = KUBERNETES_VERSION) -> jsonschema.protocols.Validator:
    """Strict ObjectMeta schema from kubernetes-validate's data, for CRD-backed objects."""
    major_minor = ".".join(version.split(".")[:2])
    folder = f"v{major_minor}.0-local-strict"
    ref = resources.files("kubernetes_validate") / "kubernetes-json-schema" / folder
    definitions = json.loads((ref / "_definitions.json").read_text())
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    schema = {
        "$ref": definitions["$id"] + "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
    }
    return jsonschema.Draft202012Validator(schema, registry=registry)


# --------------------------------------------------------------------------------------------
# CRD-backed kinds
# --------------------------------------------------------------------------------------------


def crd_directory() -> Path:
    """The directory holding CRD YAML files: ``$PRGEN_FLUX_CRDS`` or ``../shared/flux-crds``."""
    override = os.environ.get(CRDS_ENV)
    return Path(override) if override else DEFAULT_CRD_DIRECTORY


@dataclass(frozen=True)
class _CrdVersion:
    kind: str
    group: str
    name: str
    served: bool
    schema: Mapping[str, Any]
    validator: jsonschema.protocols.Validator = field(compare=False)


@dataclass
class _Crd:
    group: str
    kind: str
    source: Path
    versions: dict[str, _CrdVersion] = field(default_factory=dict)


@functools.cache
def _load_crds(directory: Path) -> dict[tuple[str, str], _Crd]:
    if not directory.is_dir():
        raise CrdDirectoryError(
            f"Flux CRD directory {directory} does not exist. It should hold the "
            "CustomResourceDefinition YAML files of the Flux controllers (see "
            f"shared/flux-crds/SOURCES.md); set {CRDS_ENV} to use another directory."
        )
    crds: dict[tuple[str, str], _Crd] = {}
    files = sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])
    for path in files:
        try:
            documents = list(_yaml().load_all(path.read_text()))
        except YAMLError as exc:
            raise CrdDirectoryError(f"cannot parse CRD file {path}: {exc}") from exc
        for doc in documents:
            if not isinstance(doc, Mapping) or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            group, kind = spec["group"], spec["names"]["kind"]
            crd = crds.setdefault((group, kind), _Crd(group=group, kind=kind, source=path))
            for version in spec["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                crd.versions[version["name"]] = _CrdVersion(
                    kind=kind,
                    group=group,
                    name=version["name"],
                    served=bool(version.get("served", False)),
                    schema=schema,
                    validator=jsonschema.Draft7Validator(schema),
                )
    if not crds:
        raise CrdDirectoryError(
            f"no CustomResourceDefinition found in {directory} ({len(files)} YAML files); "
            f"set {CRDS_ENV} to the directory with the Flux CRD files"
        )
    return crds


def _crds() -> dict[tuple[str, str], _Crd]:
    return _load_crds(crd_directory().resolve())


def _apply_defaults(value: Any, schema: Mapping[str, Any]) -> None:
    """Fill in schema defaults in place, as the API server does before validation."""
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        for key, sub in properties.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            if key in properties:
                _apply_defaults(item, properties[key])
            elif isinstance(schema.get("additionalProperties"), Mapping):
                _apply_defaults(item, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _apply_defaults(item, schema["items"])


def _has(value: Mapping[str, Any], key: str) -> bool:
    """CEL ``has(self.key)``; null values are pruned before validation, so they do not count."""
    return value.get(key) is not None


def _normalize_rule(rule: str) -> str:
    return " ".join(rule.split())


#: Hand-written equivalents of the CEL rules in the Flux CRDs, keyed by rule text.
_CEL_CHECKS: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    _normalize_rule(rule): check
    for rule, check in [
        (
            "(has(self.chart) && !has(self.chartRef)) || (!has(self.chart) && has(self.chartRef))",
            lambda s: _has(s, "chart") != _has(s, "chartRef"),
        ),
        (
            "has(self.configMapRef) || has(self.secretRef)",
            lambda s: _has(s, "configMapRef") or _has(s, "secretRef"),
        ),
        (
            "!has(self.configMapRef) || !has(self.secretRef)",
            lambda s: not (_has(s, "configMapRef") and _has(s, "secretRef")),
        ),
        (
            "!has(self.retryInterval) || self.name != 'RemediateOnFailure'",
            lambda s: not _has(s, "retryInterval") or s.get("name") != "RemediateOnFailure",
        ),
        (
            "!has(self.retryInterval) || self.name == 'RetryOnFailure'",
            lambda s: not _has(s, "retryInterval") or s.get("name") == "RetryOnFailure",
        ),
        (
            "!has(self.serviceAccountName) || (has(self.provider) && (self.provider == 'azure' "
            "|| self.provider == 'aws'))",
            lambda s: not _has(s, "serviceAccountName") or s.get("provider") in ("azure", "aws"),
        ),
    ]
}


def _preserves_unknown(schema: Mapping[str, Any]) -> bool:
    return schema.get("x-kubernetes-preserve-unknown-fields") is True


def _walk_extras(value: Any, schema: Mapping[str, Any], path: list[str | int]) -> Iterator[str]:
    """Unknown fields (strict decoding) and hand-checked CEL rules, depth first."""
    if isinstance(value, Mapping):
        properties: Mapping[str, Any] = schema.get("properties", {})
        additional = schema.get("additionalProperties")
        is_object_schema = "properties" in schema or schema.get("type") == "object"
        for key, item in value.items():
            if key in properties:
                yield from _walk_extras(item, properties[key], [*path, key])
            elif isinstance(additional, Mapping):
                yield from _walk_extras(item, additional, [*path, key])
            elif (
                is_object_schema and additional in (None, False) and not _preserves_unknown(schema)
            ):
                yield f"{_format_path([*path, key])}: unknown field {key!r}"
        for rule in schema.get("x-kubernetes-validations", []):
            check = _CEL_CHECKS.get(_normalize_rule(rule["rule"]))
            if check is not None and not check(value):
                message = rule.get("message") or f"failed rule: {rule['rule']}"
                yield f"{_format_path(path)}: {message} (x-kubernetes-validations: {rule['rule']})"
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for index, item in enumerate(value):
            yield from _walk_extras(item, schema["items"], [*path, index])


def _crd_errors(
    obj: Mapping[str, Any], crd: _Crd, api_version: str, kubernetes_version: str
) -> list[str]:
    _, version_name = _split_api_version(api_version)
    version = crd.versions.get(version_name)
    if version is None or not version.served:
        served = sorted(v.name for v in crd.versions.values() if v.served)
        return [
            f"apiVersion: {api_version!r} is not served for kind {crd.kind}; served versions: "
            + ", ".join(f"{crd.group}/{name}" for name in served)
        ]
    defaulted = _jsonable(obj)  # a fresh copy; defaults are deep-copied in
    _apply_defaults(defaulted, version.schema)

    errors: list[str] = []
    for error in version.validator.iter_errors(defaulted):
        errors.append(f"{_format_path(list(error.absolute_path))}: {error.message}")

    top_schema = {k: v for k, v in version.schema.items() if k != "properties"}
    top_schema["properties"] = {
        k: v for k, v in version.schema.get("properties", {}).items() if k != "metadata"
    }
    unknown_or_cel = _walk_extras(
        {k: v for k, v in defaulted.items() if k != "metadata"}, top_schema, []
    )
    errors.extend(unknown_or_cel)

    metadata = defaulted.get("metadata")
    if isinstance(metadata, Mapping):
        for error in _object_meta_validator(kubernetes_version).iter_errors(metadata):
            errors.append(f"{_format_path(['metadata', *error.absolute_path])}: {error.message}")
    return errors


def cel_rules_without_checks() -> list[str]:
    """CEL rules in the loaded CRDs that ``validate_object`` does not check (ideally none)."""
    missing: list[str] = []

    def walk(schema: Any, where: str) -> None:
        if not isinstance(schema, Mapping):
            return
        for rule in schema.get("x-kubernetes-validations", []):
            if _normalize_rule(rule["rule"]) not in _CEL_CHECKS:
                missing.append(f"{where}: {rule['rule']}")
        for key, sub in schema.get("properties", {}).items():
            walk(sub, f"{where}.{key}")
        walk(schema.get("additionalProperties"), f"{where}.*")
        walk(schema.get("items"), f"{where}[]")

    for crd in _crds().values():
        for version in crd.versions.values():
            if version.served:
                walk(version.schema, f"{crd.kind} {crd.group}/{version.name}")
    return missing


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _no_schema(api_version: str, kind: str, version: str) -> str:
    return (
        f"no schema is known for kind {kind!r} in apiVersion {api_version!r} (neither a built-in "
        f"Kubernetes {version} kind nor defined by a CRD in {crd_directory()})"
    )


def validate_object(obj: Mapping[str, Any], version: str = KUBERNETES_VERSION) -> list[str]:
    """Errors for one Kubernetes object as found in a manifest; ``[]`` when it is valid.

    Built-in kinds are checked against the schemas of Kubernetes ``version``.
    """
    if not isinstance(obj, Mapping):
        return [f"(root): expected a mapping, got {type(obj).__name__}"]
    obj = _jsonable(obj)
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if not isinstance(api_version, str) or not api_version:
        return ["apiVersion: required (a non-empty string)"]
    if not isinstance(kind, str) or not kind:
        return ["kind: required (a non-empty string)"]
    group, _ = _split_api_version(api_version)

    schema_errors: list[str] | None
    if _is_builtin_group(group):
        schema_errors = _builtin_errors(obj, version)
    else:
        crd = _crds().get((group, kind))
        schema_errors = None if crd is None else _crd_errors(obj, crd, api_version, version)
    if schema_errors is None:
        return [_no_schema(api_version, kind, version)]
    return [*schema_errors, *_metadata_errors(obj, group, kind)]


def _describe(obj: Any) -> str:
    if not isinstance(obj, Mapping):
        return type(obj).__name__
    metadata = obj.get("metadata")
    name = namespace = None
    if isinstance(metadata, Mapping):
        name, namespace = metadata.get("name"), metadata.get("namespace")
    where = f"{namespace}/{name}" if namespace else f"{name}"
    return f"{obj.get('kind')} {where}"


def _is_kustomize_config(obj: Any) -> bool:
    if not isinstance(obj, Mapping):
        return False
    api_version = obj.get("apiVersion")
    return isinstance(api_version, str) and api_version.startswith("kustomize.config.k8s.io/")


def validate_documents(text: str) -> list[str]:
    """Errors for every API object in a multi-document YAML string.

    Empty documents and kustomize configuration files (``kustomize.config.k8s.io`` Kustomization
    or Component) are skipped. Each error starts with the document number (1-based) and the
    object's kind and name.
    """
    try:
        documents = list(_yaml().load_all(text))
    except YAMLError as exc:
        return [f"YAML parse error: {exc}"]
    errors: list[str] = []
    for number, doc in enumerate(documents, start=1):
        if doc is None or _is_kustomize_config(doc):
            continue
        prefix = f"document {number} ({_describe(doc)})"
        errors += [f"{prefix}: {error}" for error in validate_object(doc)]
    return errors


def in_ci() -> bool:
    """Whether the tests run in CI, as the ``CI`` environment variable says."""
    return os.environ.get(CI_ENV, "").strip().lower() not in ("", "0", "false")


def require_kubectl() -> str:
    """kubectl's path, for a test that runs ``kubectl kustomize``.

    Without kubectl such a test is skipped on a developer's machine, but fails in CI: there a skip
    would quietly leave every kustomize build unchecked while the run stays green.
    """
    if KUBECTL is not None:
        return KUBECTL
    if in_ci():
        pytest.fail(
            f"kubectl is not installed (not found on PATH) and {CI_ENV} is set: install kubectl "
            "in CI, the kustomize build tests need it (they are skipped only outside CI)",
            pytrace=False,
        )
    pytest.skip("kubectl is not installed (not found on PATH); in CI this fails instead")


def kustomize_build(directory: Path) -> str:
    """Output of ``kubectl kustomize <directory>``; raises KustomizeBuildError with its stderr."""
    if KUBECTL is None:
        raise KustomizeBuildError("kubectl is not installed (not found on PATH)")
    try:
        result = subprocess.run(
            [KUBECTL, "kustomize", str(directory)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise KustomizeBuildError(f"kubectl kustomize {directory} timed out") from exc
    if result.returncode != 0:
        raise KustomizeBuildError(
            f"kubectl kustomize {directory} failed with exit code {result.returncode}:\n"
            f"{result.stderr.strip()}"
        )
    return result.stdout
