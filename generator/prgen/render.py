"""One environment -> its manifests: a pure function of config, templates and the PR.

Templates are parsed first; PR data only ever enters as string scalars through
`Substitution`, and prgen itself sets every field that identifies or owns the
environment, so a template or a PR can't take those away.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from prgen import __version__, emit
from prgen.config import RepositorySettings
from prgen.errors import PrgenError
from prgen.model import PullRequest
from prgen.naming import HELM_RELEASE_NAME_MAX, dns_label, pr_text_label
from prgen.placeholders import (
    PLACEHOLDER,
    PR_TEXT,
    LazyValues,
    Substitution,
    labels_text,
    placeholders_in,
    pull_request_values,
)
from prgen.pr_commands import Controls

MARKER = "# prgen:managed"
OWNER_LABEL = "app.kubernetes.io/managed-by"
ANNOTATION_REPOSITORY = "prgen.io/repository"
ANNOTATION_PULL_REQUEST = "prgen.io/pull-request"
ANNOTATION_HEAD_SHA = "prgen.io/head-sha"
ANNOTATION_CONFIG = "prgen.io/config"  # the identity of the config that wrote it
ANNOTATION_INPUTS = "prgen.io/inputs"  # what it was rendered from: see input_hash
FLUX_COMMIT = "event.toolkit.fluxcd.io/commit"
FLUX_CHANGE_REQUEST = "event.toolkit.fluxcd.io/change_request"
FLUX_SUBSTITUTE = "kustomize.toolkit.fluxcd.io/substitute"
# Set by commands from PR comments (see pr_commands.Controls).
ANNOTATION_LAST_COMMAND = "prgen.io/last-command"  # id of the last command comment applied
ANNOTATION_PAUSED_AT = "prgen.io/paused-at"  # the head /preview pause keeps it at
FLUX_REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"  # /preview redeploy: Flux reconciles
FLUX_FORCE_AT = "reconcile.fluxcd.io/forceAt"  # and helm-controller upgrades again
# Lifecycle (see lifecycle.py): when the last command was written, and whether it sleeps.
ANNOTATION_LAST_COMMAND_AT = "prgen.io/last-command-at"
ANNOTATION_SLEEPING = "prgen.io/sleeping"
ANNOTATION_SLEEP_HEAD = "prgen.io/sleep-requested-at"  # the head /preview sleep put to sleep
# Merged into a sleeping environment's values: a chart that honours it scales to zero.
SLEEPING_VALUES = {"prgen": {"sleeping": True}}
# PRs whose environment /preview delete removed: a ConfigMap manifest the index never lists.
DELETED_FILE = "prgen-deleted-on-request.yaml"

HELMRELEASE_FILE = "helmrelease.yaml"
NAMESPACE_FILE = "namespace.yaml"
KUSTOMIZATION_FILE = "kustomization.yaml"
HELM_RELEASE_TYPE = {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease"}
NAMESPACE_TYPE = {"apiVersion": "v1", "kind": "Namespace"}
ENVIRONMENT_FILES = frozenset({NAMESPACE_FILE, HELMRELEASE_FILE, KUSTOMIZATION_FILE})
# Chart sources whose charts change without a version bump.
_REVISION_SOURCES = frozenset({"GitRepository", "Bucket"})
# Bumped whenever the same inputs would render other bytes (part of every input hash),
# so an environment written by an earlier rendering is re-rendered once.
RENDERING = 2


@dataclass(frozen=True)
class RenderedEnvironment:
    repository: str
    number: int
    head_sha: str
    namespace: str  # also the environment's folder name under the managed path
    files: Mapping[str, bytes]
    inputs: str = ""  # input_hash of what it was rendered from (in its HelmRelease)
    config_identity: str = ""  # recorded in its HelmRelease too
    controls: str | None = None  # what commands recorded in it (Controls.encode)


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


# Parsed templates by their bytes: a template edited while prgen runs (a test, a
# long-lived process) is parsed again, never served stale.
_PARSED: dict[bytes, dict[str, Any]] = {}


def _parsed_template(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    document = _PARSED.get(data)
    if document is None:
        document = YAML(typ="safe", pure=True).load(data.decode("utf-8"))
        if len(_PARSED) > 64:  # a handful of templates per config: bounded all the same
            _PARSED.clear()
        _PARSED[data] = document
    return document


def _load_template(path: Path) -> dict[str, Any]:
    # Shared, never changed: every use copies what it changes (Substitution.apply copies
    # every mapping and list), so no deep copy per environment.
    return _parsed_template(path)


# A config digest ends in this when the repository renders `<<PR_LABELS>>` somewhere:
# then, and only then, a PR's labels are part of its environments' input hash.
_READS_LABELS = "+labels"


def reads_labels(repo: RepositorySettings) -> bool:
    """Does anything render reads for `repo` use `<<PR_LABELS>>`? Keys are never
    substituted, so only values count, as Substitution.apply treats them."""
    places = (
        repo.namespace,
        repo.values,
        repo.chart,
        repo.chart_ref,
        _parsed_template(repo.templates.helm_release),
        _parsed_template(repo.templates.namespace),
    )
    return any(name == "PR_LABELS" for place in places for _, name in placeholders_in(place, ""))


def config_digest(repo: RepositorySettings) -> str:
    """A hash of everything render reads besides the PR: the repository's config entry
    (as canonical JSON), its templates' bytes, prgen's version and its rendering.

    Computed once per repository and run; part of every environment's input hash. It ends
    in `+labels` when the repository renders `<<PR_LABELS>>` (see input_hash).
    """
    material = {
        "prgen": __version__,
        "rendering": RENDERING,
        "name": repo.name,
        "namespace": repo.namespace,
        "chart": repo.chart,
        "chartRef": repo.chart_ref,
        "values": repo.values,
        "identity": repo.identity,
        "templates": [
            hashlib.sha256(path.read_bytes()).hexdigest()
            for path in (repo.templates.helm_release, repo.templates.namespace)
        ],
    }
    return _sha256_json(material) + (_READS_LABELS if reads_labels(repo) else "")


def input_hash(config: str, pr: PullRequest, controls: Controls | None = None) -> str:
    """What an environment is rendered from: `config` (see config_digest) and the PR's
    fields the templates can read (`placeholders.pull_request_values`). Equal hashes, equal
    files.

    Labels count only where the templates read them (`<<PR_LABELS>>`, said by the digest's
    `+labels`). Elsewhere they decide whether a PR has an environment, not what it holds,
    so a label added or removed neither re-renders nor commits anything, and the hash is
    the one prgen computed before `<<PR_LABELS>>` existed."""
    fields: list[str | int] = [
        pr.repository,
        pr.number,
        pr.title,
        pr.head_sha,
        pr.head_branch,
        pr.base_branch,
        pr.author,
    ]
    if config.endswith(_READS_LABELS):
        fields.append(labels_text(pr.labels))
    encoded = controls.encode() if controls is not None else None
    if encoded is not None:  # none set: the hash prgen computed before commands existed
        fields.append(encoded)
    return _sha256_json([config, fields])[:20]


def _sha256_json(value: Any) -> str:
    # default=str: a template value YAML read as a date hashes as its text, the same every run.
    text = json.dumps(value, sort_keys=True, ensure_ascii=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


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
    text = Substitution(LazyValues(pr)).text(repo.namespace)
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


def _helm_release(
    repo: RepositorySettings,
    pr: PullRequest,
    namespace: str,
    inputs: str,
    values: Mapping[str, str],
    controls: Controls,
) -> dict[str, Any]:
    subst = Substitution(values)
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
    if controls.sleeping:  # after substitution: prgen's own switch, never PR text
        release["spec"]["values"] = _deep_merge(release["spec"]["values"], SLEEPING_VALUES)
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
    metadata["annotations"][ANNOTATION_INPUTS] = inputs
    if subst.introduced_flux_variable:
        # PR text formed a `${...}`: Flux must apply it verbatim, never expand it.
        metadata["annotations"][FLUX_SUBSTITUTE] = "disabled"
    metadata["annotations"].update(control_annotations(controls))
    release["metadata"] = metadata
    return release


def _namespace(
    repo: RepositorySettings, pr: PullRequest, namespace: str, values: Mapping[str, str]
) -> dict[str, Any]:
    subst = Substitution(values)
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


# The same in every environment's folder.
_ENVIRONMENT_KUSTOMIZATION = emit.document(kustomization([NAMESPACE_FILE, HELMRELEASE_FILE]))


def checked_namespace(repo: RepositorySettings, pr: PullRequest) -> str:
    """The PR's namespace; raises ReservedNamespace when it is a system or reserved one."""
    namespace = environment_namespace(repo, pr)
    if namespace in repo.reserved_namespaces:
        raise ReservedNamespace(
            f"{repo.name}#{pr.number} would get namespace {namespace}, which is reserved "
            "(a system namespace or one in safety.reservedNamespaces): prgen never writes it"
        )
    return namespace


def render_environment(
    repo: RepositorySettings,
    pr: PullRequest,
    config: str | None = None,
    namespace: str | None = None,
    controls: Controls | None = None,
) -> RenderedEnvironment:
    """Raises ReservedNamespace when the PR's namespace is a system or reserved one.

    `config`: config_digest(repo), and `namespace`: checked_namespace(repo, pr), when the
    caller has them already.
    """
    namespace = namespace or checked_namespace(repo, pr)
    controls = controls or Controls()
    inputs = input_hash(config if config is not None else config_digest(repo), pr, controls)
    header = f"preview environment of {repo.name} pull request {pr.number}; prgen overwrites edits"
    values = pull_request_values(pr, namespace, repo.target)
    files = {
        NAMESPACE_FILE: dump(_namespace(repo, pr, namespace, values), header),
        HELMRELEASE_FILE: dump(
            _helm_release(repo, pr, namespace, inputs, values, controls), header
        ),
        KUSTOMIZATION_FILE: f"{MARKER} - {header}\n{_ENVIRONMENT_KUSTOMIZATION}".encode(),
    }
    return RenderedEnvironment(
        repository=repo.name,
        number=pr.number,
        head_sha=pr.head_sha,
        namespace=namespace,
        files=files,
        inputs=inputs,
        config_identity=repo.identity,
        controls=controls.encode(),
    )


def render_index(entries: Iterable[str]) -> bytes:
    """The managed folder's kustomization.yaml: every environment, plus hand-written entries."""
    return dump(kustomization(sorted(set(entries))), "lists the preview environments")


def control_annotations(controls: Controls) -> dict[str, str]:
    """The HelmRelease annotations that record `controls` (none when it is empty)."""
    annotations: dict[str, str] = {}
    if controls.last_command:
        annotations[ANNOTATION_LAST_COMMAND] = str(controls.last_command)
    if controls.paused_at:
        annotations[ANNOTATION_PAUSED_AT] = controls.paused_at
    if controls.redeploy_at:
        # The same value in both: Flux reconciles (requestedAt) and helm-controller upgrades
        # the release even though nothing in it changed (forceAt must equal requestedAt).
        annotations[FLUX_REQUESTED_AT] = controls.redeploy_at
        annotations[FLUX_FORCE_AT] = controls.redeploy_at
    if controls.last_command_at:
        annotations[ANNOTATION_LAST_COMMAND_AT] = controls.last_command_at
    if controls.sleeping:
        annotations[ANNOTATION_SLEEPING] = "true"
    if controls.sleep_head:
        annotations[ANNOTATION_SLEEP_HEAD] = controls.sleep_head
    return annotations


_CONTROL_ANNOTATIONS = (
    ANNOTATION_LAST_COMMAND,
    ANNOTATION_PAUSED_AT,
    FLUX_REQUESTED_AT,
    FLUX_FORCE_AT,
    ANNOTATION_LAST_COMMAND_AT,
    ANNOTATION_SLEEPING,
    ANNOTATION_SLEEP_HEAD,
)


def controls_of(annotations: Mapping[str, Any]) -> Controls:
    """What commands set, as a HelmRelease's annotations record it (empty when unreadable)."""
    try:
        last = int(str(annotations.get(ANNOTATION_LAST_COMMAND) or 0))
    except ValueError:
        last = 0
    paused = annotations.get(ANNOTATION_PAUSED_AT)
    redeploy = annotations.get(FLUX_REQUESTED_AT)
    command_at = annotations.get(ANNOTATION_LAST_COMMAND_AT)
    sleep_head = annotations.get(ANNOTATION_SLEEP_HEAD)
    return Controls(
        max(last, 0),
        None if paused is None else str(paused),
        None if redeploy is None else str(redeploy),
        None if command_at is None else str(command_at),
        str(annotations.get(ANNOTATION_SLEEPING)) == "true",
        None if sleep_head is None else str(sleep_head),
    )


def with_controls(
    files: Mapping[str, bytes], controls: Controls, inputs: str
) -> tuple[dict[str, bytes], str]:
    """An environment's files as they are, but for its HelmRelease's control annotations:
    for one kept at its head (paused), whose recorded commands changed. Its input hash
    becomes one of what it holds now, so the plan compares and writes it.
    """
    content = files[HELMRELEASE_FILE]
    header, _, body = content.decode("utf-8").partition("\n")
    document: dict[str, Any] = YAML(typ="safe", pure=True).load(body)
    annotations = document["metadata"]["annotations"]
    for name in _CONTROL_ANNOTATIONS:
        annotations.pop(name, None)
    annotations.update(control_annotations(controls))
    new_inputs = _sha256_json([inputs, controls.encode()])[:20]
    annotations[ANNOTATION_INPUTS] = new_inputs
    patched = dict(files)
    patched[HELMRELEASE_FILE] = dump(document, header.removeprefix(f"{MARKER} - "))
    return patched, new_inputs


def _deleted_key(repository: str, number: int) -> str:
    # A ConfigMap key ([-._a-zA-Z0-9]+): a GitHub owner has no dot, so this reads back.
    owner, _, name = repository.lower().partition("/")
    return f"{owner}.{name}.{number}"


def render_deleted(deleted: Mapping[tuple[str, int], int]) -> bytes | None:
    """The marker file of the PRs deleted on request (by lower-case repository and number, to
    the id of the comment that asked); None when there are none (the file goes).

    A ConfigMap so that it is a well-formed manifest, but never applied: the index does not
    list it, so it records a fact that must outlive the environment, and nothing else.
    """
    if not deleted:
        return None
    document = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "prgen-deleted-on-request"},
        "data": {
            _deleted_key(repository, number): str(comment)
            for (repository, number), comment in sorted(deleted.items())
        },
    }
    return dump(document, "pull requests whose environment /preview delete removed; not applied")


def read_deleted(content: bytes | None) -> dict[tuple[str, int], int]:
    """The marker file's entries (empty when it is missing or unreadable)."""
    if not content:
        return {}
    try:
        document = YAML(typ="safe", pure=True).load(content.decode("utf-8"))
        entries: dict[tuple[str, int], int] = {}
        for key, value in (document.get("data") or {}).items():
            owner, _, rest = str(key).partition(".")
            name, _, number = rest.rpartition(".")
            entries[(f"{owner}/{name}", int(number))] = int(str(value))
        return entries
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError, YAMLError):
        return {}
