"""fleet-repo-example is a fleet repository a user can copy as it is.

Every object in it is valid for the real Flux and Kubernetes APIs, its parts agree with each
other (paths, names, secrets, the chart and the values prgen renders for it), prgen runs locked
down, and no secret value is anywhere in it.

`previews/dev/` is prgen's output for the example pull requests; tests/test_fleet.py proves it
byte for byte. After changing the example config or prgen's renderer, regenerate it with
`python tests/test_fleet_repo_example.py`.
"""

from __future__ import annotations

import copy
import io
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

import prgen.cli  # noqa: F401 - first: importing prgen.commands.validate alone is circular
from prgen.commands.validate import example_pull_request
from prgen.config import Config, load_config, parse_config
from prgen.github.client import make_client
from prgen.github.pulls import GitHubSource
from prgen.render import render_environment, render_index
from prgen.sync import Syncer
from prgen.testing.fake_github import FakeGitHub

from conftest import git
from manifest_validation import (
    KUBERNETES_FLOOR,
    SUPPORTED_KUBERNETES,
    kustomize_build,
    require_kubectl,
    validate_object,
)
from sops_example import ENCRYPTED_VALUE, SOPS_CONFIG, flux_decrypted, is_sops_encrypted

CHECKOUT = Path(__file__).resolve().parents[1]
EXAMPLE = CHECKOUT / "fleet-repo-example"
PRGEN = EXAMPLE / "infrastructure" / "prgen"
CONFIG = PRGEN / "prgen.yaml"
CHART = EXAMPLE / "charts" / "preview-app"
WORKFLOW = EXAMPLE / "app-repo" / ".github" / "workflows" / "preview.yaml"
README = EXAMPLE / "README.md"
#: The pull requests whose environments previews/dev holds. The demo's sandbox has open PRs #1
#: and #2 too, so `prgen demo` (which starts from this layout) updates or removes them.
EXAMPLE_PULL_REQUESTS = (1, 2)


# --------------------------------------------------------------------------------------------
# The example environments, as prgen renders them
# --------------------------------------------------------------------------------------------


@cache
def example_config() -> Config:
    return load_config(CONFIG)


def example_managed_folder() -> dict[str, bytes]:
    """Every file prgen writes under fleet.path for the example PRs, by path relative to it."""
    files: dict[str, bytes] = {}
    folders = []
    for repo in example_config().repositories:
        for number in EXAMPLE_PULL_REQUESTS:
            env = render_environment(repo, example_pull_request(repo.name, number))
            folders.append(env.namespace)
            files.update({f"{env.namespace}/{name}": data for name, data in env.files.items()})
    files["kustomization.yaml"] = render_index(folders)
    return files


def write_example_managed_folder() -> None:
    folder = EXAMPLE / example_config().fleet.path
    shutil.rmtree(folder, ignore_errors=True)
    for path, data in example_managed_folder().items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_bytes(data)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def load_all(text: str) -> list[Any]:
    return [doc for doc in YAML(typ="safe", pure=True).load_all(text) if doc is not None]


def load_one(path: Path) -> Any:
    (document,) = load_all(path.read_text())
    return document


def relative(path: Path) -> str:
    return path.relative_to(EXAMPLE).as_posix()


def is_chart_file(path: Path) -> bool:
    return path.is_relative_to(EXAMPLE / "charts")


def manifest_files() -> list[Path]:
    """YAML files that hold Kubernetes objects: all but the chart, the workflow, prgen.yaml and
    .sops.yaml."""
    files = sorted([*EXAMPLE.rglob("*.yaml"), *EXAMPLE.rglob("*.yml")])
    return [
        f
        for f in files
        if not is_chart_file(f)
        and not f.is_relative_to(EXAMPLE / "app-repo")
        and f not in (CONFIG, SOPS_CONFIG)
    ]


def kustomization_dirs() -> list[Path]:
    return sorted(p.parent for p in EXAMPLE.rglob("kustomization.yaml"))


def flux_kustomizations() -> dict[str, dict[str, Any]]:
    found = {}
    for path in manifest_files():
        for doc in load_all(path.read_text()):
            if doc.get("apiVersion", "").startswith("kustomize.toolkit.fluxcd.io/"):
                found[doc["metadata"]["name"]] = doc
    return found


# prgen's deployment is read from its files, as written: these tests need no kubectl. What
# kustomize adds (namespace, labels, the image, the ConfigMap from prgen.yaml and its hashed name)
# is checked once, by test_the_built_prgen_deployment_is_its_files_plus_what_kustomize_adds.

#: Every key infrastructure/prgen/kustomization.yaml may have. Any other (components, patches,
#: more generators) could add objects the file-based tests below would not see.
PRGEN_KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "namespace",
    "labels",
    "resources",
    "configMapGenerator",
    "images",
}


@cache
def prgen_kustomization() -> dict[str, Any]:
    kustomization: dict[str, Any] = load_one(PRGEN / "kustomization.yaml")
    return kustomization


@cache
def prgen_deployment() -> tuple[dict[str, Any], ...]:
    """The objects of the files infrastructure/prgen/kustomization.yaml lists, as written."""
    return tuple(
        doc
        for name in prgen_kustomization()["resources"]
        for doc in load_all((PRGEN / name).read_text())
    )


def resource(kind: str) -> dict[str, Any]:
    (obj,) = [o for o in prgen_deployment() if o["kind"] == kind]
    return obj


def config_map_generator() -> dict[str, Any]:
    (generator,) = prgen_kustomization()["configMapGenerator"]
    return dict(generator)


def pod_spec(cronjob: Mapping[str, Any] | None = None) -> dict[str, Any]:
    cronjob = cronjob or resource("CronJob")
    spec: dict[str, Any] = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return spec


def prgen_container() -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod_spec()["containers"]
    (container,) = containers
    return container


# --------------------------------------------------------------------------------------------
# Notification kinds: their CRDs are not among ../shared/flux-crds
# --------------------------------------------------------------------------------------------

# A hand-written subset of the notification.toolkit.fluxcd.io/v1beta3 Provider and Alert CRDs:
# the fields the example uses, with the CRDs' required fields and limits, and only the enum values
# that make sense here (plus an https address). Any other field or value is an error.
_NAME_REF = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1}},
}
_NOTIFICATION_SPECS: dict[str, dict[str, Any]] = {
    "Provider": {
        "type": "object",
        "additionalProperties": False,
        "required": ["type"],
        "properties": {
            "type": {"enum": ["github", "githubdispatch", "githubpullrequestcomment", "generic"]},
            "address": {"type": "string", "maxLength": 2048, "pattern": "^https://"},
            "secretRef": _NAME_REF,
            "interval": {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"},
        },
    },
    "Alert": {
        "type": "object",
        "additionalProperties": False,
        "required": ["eventSources", "providerRef"],
        "properties": {
            "providerRef": _NAME_REF,
            "eventSeverity": {"enum": ["info", "error"]},
            "eventSources": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["kind", "name"],
                    "properties": {
                        "kind": {"enum": ["Kustomization", "HelmRelease", "GitRepository"]},
                        "name": {"type": "string", "minLength": 1, "maxLength": 253},
                        "namespace": {"type": "string", "minLength": 1, "maxLength": 253},
                    },
                },
            },
        },
    },
}


def notification_errors(obj: Mapping[str, Any]) -> list[str]:
    if obj.get("apiVersion") != "notification.toolkit.fluxcd.io/v1beta3":
        return [f"apiVersion {obj.get('apiVersion')!r}: use notification.toolkit.fluxcd.io/v1beta3"]
    schema = _NOTIFICATION_SPECS.get(obj["kind"])
    if schema is None:
        return [f"kind {obj['kind']!r} has no schema here"]
    errors = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(obj.get("spec"))]
    # metadata follows the same rules as for every other kind: borrow a ConfigMap's check.
    as_config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj["metadata"]}
    return errors + validate_object(as_config_map)


def errors_of(text: str, kubernetes_version: str | None = None) -> list[str]:
    """Errors of every object in a YAML stream; notification kinds get the check above.

    Built-in kinds are checked at every supported Kubernetes version, or at the one given. A
    SOPS-encrypted object is checked as Flux's kustomize-controller applies it: decrypted
    (sops_example.flux_decrypted; tests/test_fleet_secrets.py checks that only a Kustomization
    with decryption applies one).
    """
    versions = (kubernetes_version,) if kubernetes_version else SUPPORTED_KUBERNETES
    errors = []
    for doc in map(flux_decrypted, load_all(text)):
        where = f"{doc.get('kind')} {doc.get('metadata', {}).get('name')}"
        if str(doc.get("apiVersion", "")).startswith("kustomize.config.k8s.io/"):
            continue  # kustomize's own config, not an API object
        if str(doc.get("apiVersion", "")).startswith("notification.toolkit.fluxcd.io/"):
            errors += [f"{where}: {e}" for e in notification_errors(doc)]
        else:
            for version in versions:
                errors += [
                    f"{where} (Kubernetes {version}): {e}" for e in validate_object(doc, version)
                ]
    return errors


# --------------------------------------------------------------------------------------------
# Every object validates; every kustomization builds
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", manifest_files(), ids=relative)
def test_every_object_in_the_example_validates(path: Path) -> None:
    text = path.read_text()
    assert load_all(text), f"{relative(path)} holds no YAML document"
    assert errors_of(text) == []


@pytest.mark.reliability("10.20 The example validates at every supported Kubernetes version")
@pytest.mark.parametrize("version", SUPPORTED_KUBERNETES)
def test_the_example_validates_strictly_at_the_floor_and_the_newest_kubernetes(
    version: str, cases: Any
) -> None:
    # A field that one version requires and another lacks (podFailurePolicy's
    # onPodConditions[].status is required at 1.30) breaks the CronJob on that cluster.
    for path in manifest_files():
        cases.add()
        assert errors_of(path.read_text(), version) == [], relative(path)


def test_the_readme_states_the_kubernetes_floor_the_tests_validate_at() -> None:
    floor = ".".join(KUBERNETES_FLOOR.split(".")[:2])
    assert f"Kubernetes ≥ {floor}" in (EXAMPLE / "README.md").read_text()


@pytest.mark.parametrize("directory", kustomization_dirs(), ids=relative)
def test_every_kustomization_builds_and_what_it_builds_validates(directory: Path) -> None:
    require_kubectl()
    output = kustomize_build(directory)
    assert load_all(output), f"{relative(directory)} builds to nothing"
    assert errors_of(output) == []


CLUSTER = EXAMPLE / "clusters" / "preview"
GOTK_SYNC = CLUSTER / "flux-system" / "gotk-sync.yaml"


def flux_system_applies() -> list[dict[str, Any]]:
    """What the Kustomization flux-system applies from clusters/preview/.

    With no kustomization.yaml there, kustomize-controller generates one from every manifest
    below the path (a sub-folder with its own kustomization.yaml would count as a whole: after
    bootstrap, flux-system/ is one, and lists bootstrap's gotk-sync.yaml and gotk-components.yaml).
    """
    kustomizations = sorted(CLUSTER.rglob("kustomization.yaml"))
    assert kustomizations == [], "flux bootstrap writes flux-system/kustomization.yaml itself"
    return [doc for path in sorted(CLUSTER.rglob("*.yaml")) for doc in load_all(path.read_text())]


def github_repository(url: str) -> str:
    """owner/name of a GitHub URL: https://github.com/o/n(.git) or ssh://git@github.com/o/n(.git)."""
    match = re.fullmatch(r"(?:https://|ssh://git@)github\.com/([^/]+/[^/]+?)(?:\.git)?", url)
    assert match, url
    return match.group(1)


def test_flux_reconciles_prgen_and_its_folder_and_nothing_else() -> None:
    applied = flux_system_applies()
    assert sorted((o["kind"], o["metadata"]["name"]) for o in applied) == [
        ("GitRepository", "flux-system"),
        ("Kustomization", "flux-system"),
        ("Kustomization", "previews"),
        ("Kustomization", "prgen"),
    ]
    # notifications/ is opt-in: its Flux Kustomization waits outside clusters/ until copied there.
    paths = {
        o["metadata"]["name"]: o["spec"]["path"] for o in applied if o["kind"] == "Kustomization"
    }
    assert paths == {
        "flux-system": "./clusters/preview",
        "prgen": "./infrastructure/prgen",
        "previews": f"./{example_config().fleet.path}",
    }
    sources = {
        (o["metadata"]["namespace"], o["metadata"]["name"])
        for o in applied
        if o["kind"] == "GitRepository"
    }
    for name, kustomization in flux_kustomizations().items():
        spec = kustomization["spec"]
        assert spec["prune"] is True, name
        assert spec["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}, name
        assert (kustomization["metadata"]["namespace"], "flux-system") in sources, name
        assert "interval" in spec, name
        if name != "flux-system":  # ./clusters/preview builds without a kustomization.yaml
            assert (EXAMPLE / spec["path"] / "kustomization.yaml").is_file(), name


#: The intended `wait` of every Flux Kustomization (None: unset, the default false). previews
#: must not wait: one PR's failing HelmRelease would hold up every sync behind the timeout (the
#: README, "Good to know", says why). The others are ready as soon as they exist.
INTENDED_WAIT: dict[str, bool | None] = {
    "flux-system": None,  # bootstrap's own, as it writes it
    "prgen": True,
    "previews": False,
    "notifications": True,
}


def test_each_kustomization_waits_as_intended() -> None:
    kustomizations = flux_kustomizations()
    assert {name: k["spec"].get("wait") for name, k in kustomizations.items()} == INTENDED_WAIT
    for name, kustomization in kustomizations.items():
        spec = kustomization["spec"]
        # No object-by-object health checks anywhere: wait covers prgen's, none suit previews.
        assert not {"healthChecks", "healthCheckExprs"} & set(spec), name
        if name != "flux-system":
            assert "timeout" in spec and "retryInterval" in spec, name
    explained = readme_section("## Good to know")
    assert "`wait: false`" in explained and "Kustomization `prgen` does wait" in explained


def test_the_flux_system_sync_is_what_bootstrap_writes_for_this_repository() -> None:
    text = GOTK_SYNC.read_text()
    assert GOTK_SYNC in manifest_files()  # so it is validated against the CRDs like the rest
    assert errors_of(text) == []
    source, sync = load_all(text)
    assert (source["apiVersion"], source["kind"]) == (
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
    )
    assert (sync["apiVersion"], sync["kind"]) == ("kustomize.toolkit.fluxcd.io/v1", "Kustomization")
    for obj in (source, sync):
        assert obj["metadata"] == {"name": "flux-system", "namespace": "flux-system"}
    # The repository prgen pushes to and the branch it pushes, with bootstrap's deploy key.
    fleet = example_config().fleet
    assert github_repository(source["spec"]["url"]) == github_repository(fleet.url)
    assert source["spec"]["ref"] == {"branch": fleet.branch}
    assert source["spec"]["secretRef"] == {"name": "flux-system"}
    assert sync["spec"]["sourceRef"] == {"kind": "GitRepository", "name": "flux-system"}
    assert sync["spec"]["prune"] is True
    # ... and what the README's bootstrap command would write.
    (command,) = re.findall(r"^flux bootstrap github .*$", README.read_text(), re.M)
    flags = dict(word.removeprefix("--").split("=", 1) for word in shlex.split(command)[3:])
    assert f"{flags['owner']}/{flags['repository']}" == github_repository(fleet.url)
    assert flags["branch"] == fleet.branch
    assert sync["spec"]["path"] == f"./{flags['path']}"
    assert GOTK_SYNC.parent == EXAMPLE / flags["path"] / "flux-system"
    # It says it is bootstrap's, to be regenerated rather than edited.
    assert "flux bootstrap" in text and "overwriting this copy" in text
    # The previews' chart comes from this very source.
    (repo,) = example_config().repositories
    assert repo.chart is not None
    assert repo.chart["sourceRef"] == {"kind": "GitRepository", **source["metadata"]}


def readme_section(heading: str) -> str:
    """The README's text from `heading` up to the next heading of the same level."""
    text = README.read_text()
    level = heading.split(" ")[0]
    start = text.index(f"\n{heading}\n")
    end = text.find(f"\n{level} ", start + len(heading) + 2)
    return text[start : end if end != -1 else len(text)]


def test_the_readme_states_the_flux_version_the_example_needs() -> None:
    # helm-controller knows the install/upgrade strategy RetryOnFailure since Flux 2.7; the
    # notification-controller posts commit statuses for HelmRelease events (from the
    # event.toolkit.fluxcd.io/commit annotation) since Flux 2.8. The CRDs the objects validate
    # against are newer still (helm-controller v1.6.3: ../shared/flux-crds/SOURCES.md).
    releases = [
        doc
        for path in manifest_files()
        for doc in load_all(path.read_text())
        if doc.get("kind") == "HelmRelease"
    ]
    assert releases
    for release in releases:
        for action in ("install", "upgrade"):
            assert release["spec"][action]["strategy"]["name"] == "RetryOnFailure"
    before_you_start = readme_section("## Before you start")
    assert "Flux ≥ 2.7" in before_you_start and "RetryOnFailure" in before_you_start
    assert "Flux ≥ 2.8" in readme_section("## Notifications (optional)")
    assert not re.search(r"(Flux|flux. CLI) ≥ 2\.[0-6]\b", README.read_text())


def sync_a_fleet_made_from_the_example(tmp_path: Path, github: FakeGitHub) -> tuple[Path, Path]:
    """(the bare fleet repository, a checkout of it) after one sync of the example PRs."""
    # A fleet repository made from fleet-repo-example, as a user would start one.
    seed = tmp_path / "seed"
    shutil.copytree(EXAMPLE, seed)
    git("init", "--quiet", "--initial-branch=main", cwd=seed)
    git("add", "--all", cwd=seed)
    git("commit", "--quiet", "-m", "fleet-repo-example", cwd=seed)
    bare = tmp_path / "fleet.git"
    git("clone", "--quiet", "--bare", str(seed), str(bare))
    # The example PRs: #1 is open with a newer commit, #2 was closed, #3 is new.
    github.add_repo("acme/shop")
    for number in (1, 2, 3):
        github.open_pull("acme/shop", title=f"PR {number}", head_branch=f"feature/{number}")
    github.close_pull("acme/shop", 2)
    # The example config, pointed at the fake GitHub and the bare fleet.
    document = load_one(CONFIG)
    document["github"] = {"apiUrl": github.base_url, "requestInterval": 0, "writeInterval": 0}
    document["fleet"]["url"] = str(bare)
    del document["fleet"]["tokenEnv"]
    text = io.StringIO()
    YAML(typ="safe", pure=True).dump(document, text)
    config = parse_config(text.getvalue(), base_dir=CONFIG.parent)

    result = Syncer(config, GitHubSource(make_client(config.github)), tmp_path / "work").run()
    assert result.exit_code == 0 and result.commit
    # prgen checks nothing out (it builds its commit from git's objects): a checkout of its own.
    checkout = tmp_path / "checkout"
    git("clone", "--quiet", str(bare), str(checkout))
    return bare, checkout


def test_a_sync_against_this_layout_changes_only_prgens_folder(
    tmp_path: Path, github: FakeGitHub
) -> None:
    bare, workdir = sync_a_fleet_made_from_the_example(tmp_path, github)

    changed = git("diff", "--name-only", "HEAD~1", "HEAD", cwd=bare).split()
    assert changed and all(path.startswith("previews/dev/") for path in changed)
    tree = git("ls-tree", "-d", "--name-only", "HEAD:previews/dev", cwd=bare).split()
    assert tree == ["shop-pr-1", "shop-pr-3"]
    for path in (workdir / "previews" / "dev").rglob("*.yaml"):
        assert errors_of(path.read_text()) == [], path


def test_the_folder_a_sync_writes_builds(tmp_path: Path, github: FakeGitHub) -> None:
    require_kubectl()
    _, workdir = sync_a_fleet_made_from_the_example(tmp_path, github)
    output = kustomize_build(workdir / "previews" / "dev")
    built = [
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in load_all(output)
    ]
    assert sorted(built) == [
        ("HelmRelease", "shop-pr-1", "shop"),
        ("HelmRelease", "shop-pr-3", "shop"),
        ("Namespace", None, "shop-pr-1"),
        ("Namespace", None, "shop-pr-3"),
    ]
    assert errors_of(output) == []


# --------------------------------------------------------------------------------------------
# prgen in the cluster
# --------------------------------------------------------------------------------------------


def test_the_configmap_holds_the_example_config_and_it_is_valid() -> None:
    # kustomize turns prgen.yaml into the ConfigMap's one key, prgen.yaml, byte for byte.
    assert config_map_generator() == {"name": "prgen-config", "files": [CONFIG.name]}
    config = parse_config(CONFIG.read_text(), source="ConfigMap prgen-config")
    assert config.fleet.token_env and config.github.app and config.github.app.private_key_env


def test_the_built_prgen_deployment_is_its_files_plus_what_kustomize_adds() -> None:
    require_kubectl()
    built = load_all(kustomize_build(PRGEN))
    kinds = sorted(o["kind"] for o in built)
    assert kinds == sorted([*(o["kind"] for o in prgen_deployment()), "ConfigMap"])
    namespace = prgen_kustomization()["namespace"]
    for obj in built:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == namespace, obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "prgen", obj["kind"]
    (config_map,) = [o for o in built if o["kind"] == "ConfigMap"]
    assert config_map["data"] == {"prgen.yaml": CONFIG.read_text()}
    assert config_map["metadata"]["name"].startswith(f"{config_map_generator()['name']}-")
    (cronjob,) = [o for o in built if o["kind"] == "CronJob"]
    pod = pod_spec(cronjob)
    volumes = [v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v]
    assert volumes == [config_map["metadata"]["name"]]  # the hashed name, rewritten
    (image,) = prgen_kustomization()["images"]
    assert pod["containers"][0]["image"] == f"{image['newName']}:{image['newTag']}"


def test_the_cronjob_runs_sync_and_probe_locked_down() -> None:
    cronjob = resource("CronJob")["spec"]
    job = cronjob["jobTemplate"]["spec"]
    pod = pod_spec()
    container = prgen_container()

    assert container["args"] == ["sync", "--probe"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    assert 0 < cronjob["startingDeadlineSeconds"] <= 300
    assert 0 <= job["backoffLimit"] <= 3
    assert 0 < job["activeDeadlineSeconds"] < 300  # the schedule is every five minutes
    assert cronjob["schedule"] == "*/5 * * * *"

    assert_locked_down(pod, container)


def assert_locked_down(pod: Mapping[str, Any], container: Mapping[str, Any]) -> None:
    """Bounded resources, no API token, non-root, read-only root, no capabilities."""
    resources = container["resources"]
    for key in ("cpu", "memory"):
        assert key in resources["requests"] and key in resources["limits"]

    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}


def test_prgen_has_no_kubernetes_api_access() -> None:
    # Nothing but the listed files and the ConfigMap can come out of the kustomization.
    assert set(prgen_kustomization()) <= PRGEN_KUSTOMIZATION_KEYS
    for name in prgen_kustomization()["resources"]:
        assert (PRGEN / name).is_file(), f"{name}: a resource must be a file of this folder"
    kinds = {obj["kind"] for obj in prgen_deployment()}
    assert kinds == {
        "Namespace",
        "ServiceAccount",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "CronJob",
        "Secret",  # its own credentials, SOPS-encrypted: tests/test_fleet_secrets.py
    }
    account = resource("ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod_spec()["serviceAccountName"] == account["metadata"]["name"]


def test_only_home_tmp_and_the_cache_claim_are_writable() -> None:
    assert_only_home_tmp_and_the_cache_claim_are_writable(pod_spec(), prgen_container())


def assert_only_home_tmp_and_the_cache_claim_are_writable(
    pod: Mapping[str, Any], container: Mapping[str, Any]
) -> None:
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    writable = {path for path, m in mounts.items() if not m.get("readOnly")}
    assert writable == {"/home/prgen", "/tmp", "/var/cache/prgen"}
    for path in ("/home/prgen", "/tmp"):
        volume = volumes[mounts[path]["name"]]
        assert set(volume) == {"name", "emptyDir"} and volume["emptyDir"].get("sizeLimit"), path
    # The caches outlive a run on their own claim, and only the caches live there.
    cache = volumes[mounts["/var/cache/prgen"]["name"]]
    assert (
        cache["persistentVolumeClaim"]["claimName"]
        == resource("PersistentVolumeClaim")["metadata"]["name"]
    )
    env = {e["name"]: e for e in container["env"]}
    assert env["HOME"]["value"] == "/home/prgen"
    assert env["PRGEN_WORKDIR"]["value"].startswith("/var/cache/prgen/")
    assert env["PRGEN_CACHE_DIR"]["value"].startswith("/var/cache/prgen/")
    assert env["PRGEN_WORKDIR"]["value"] != env["PRGEN_CACHE_DIR"]["value"]
    assert env["PRGEN_LOG_FORMAT"]["value"] == "json"
    # The config comes from the ConfigMap's volume.
    config_mount = mounts[str(Path(env["PRGEN_CONFIG"]["value"]).parent)]
    assert config_mount["readOnly"] is True
    config_map = volumes[config_mount["name"]]["configMap"]["name"]
    assert config_map == config_map_generator()["name"]  # kustomize appends the content's hash


def test_every_variable_the_config_names_comes_from_a_secret() -> None:
    config = example_config()
    assert config.github.app is not None
    env = {e["name"]: e for e in prgen_container()["env"]}
    for name in (config.fleet.token_env, config.github.app.private_key_env):
        assert name in env, name
        assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"], name


def readme_secrets() -> dict[tuple[str, str], set[str]]:
    """(namespace, name) -> keys, for every `kubectl create secret generic` in the README."""
    text = README.read_text().replace("\\\n", " ")  # join continuation lines
    secrets: dict[tuple[str, str], set[str]] = {}
    for line in re.findall(r"^.*\bkubectl\b.*\bcreate secret generic\b.*$", text, re.M):
        words = shlex.split(line[line.index("kubectl") :])
        namespace = words[words.index("--namespace") + 1]
        name = words[words.index("generic") + 1]
        keys = {w.split("=")[1] for w in words if w.startswith(("--from-file=", "--from-literal="))}
        secrets[(namespace, name)] = keys
    return secrets


def server_container() -> dict[str, Any]:
    """The container of infrastructure/prgen-server/deployment.yaml (`prgen serve`)."""
    deployment = load_one(EXAMPLE / "infrastructure" / "prgen-server" / "deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_the_readme_creates_exactly_the_secrets_prgen_and_flux_read() -> None:
    wanted: dict[tuple[str, str], set[str]] = {}
    namespace = prgen_kustomization()["namespace"]  # kustomize puts the CronJob there
    for entry in prgen_container()["env"] + server_container()["env"]:
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            wanted.setdefault((namespace, ref["name"]), set()).add(ref["key"])
    provider = load_one(EXAMPLE / "notifications" / "provider.yaml")
    wanted[("flux-system", provider["spec"]["secretRef"]["name"])] = {"token"}
    # The age key kustomize-controller decrypts prgen's Secrets with: it reads the keys of the
    # Kustomization's decryption Secret whose names end in .agekey.
    for kustomization in flux_kustomizations().values():
        decryption = kustomization["spec"].get("decryption")
        if decryption:
            where = (kustomization["metadata"]["namespace"], decryption["secretRef"]["name"])
            wanted[where] = {"age.agekey"}
    assert readme_secrets() == wanted
    # The same Secrets of prgen, encrypted in git (the README's step 4 writes them: checked
    # in tests/test_fleet_secrets.py), and the keys of each.
    encrypted = {
        (doc["metadata"]["namespace"], doc["metadata"]["name"]): set(doc["stringData"])
        for path in manifest_files()
        for doc in load_all(path.read_text())
        if doc.get("kind") == "Secret"
    }
    assert encrypted == {where: keys for where, keys in wanted.items() if where[0] == namespace}


# --------------------------------------------------------------------------------------------
# The chart and the values prgen renders for it
# --------------------------------------------------------------------------------------------


def chart_schema() -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
    return schema


def chart_defaults() -> dict[str, Any]:
    values: dict[str, Any] = load_one(CHART / "values.yaml")
    return values


def merged(base: Any, override: Any) -> Any:
    """Helm's coalescing of a release's values over the chart's values.yaml."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = copy.deepcopy(base)
        for key, value in override.items():
            out[key] = merged(out.get(key), value)
        return out
    return copy.deepcopy(override)


def rendered_values(number: int = 42, head_sha: str | None = None) -> dict[str, Any]:
    (repo,) = example_config().repositories
    pr = example_pull_request(repo.name, number)
    if head_sha is not None:
        pr = type(pr)(**{**pr.__dict__, "head_sha": head_sha})
    release = load_one_bytes(render_environment(repo, pr).files["helmrelease.yaml"])
    values: dict[str, Any] = release["spec"]["values"]
    return values


def load_one_bytes(data: bytes) -> Any:
    (document,) = load_all(data.decode())
    return document


def schema_errors(values: Any) -> list[str]:
    schema = chart_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)
    ]


def test_the_chart_is_what_the_example_config_deploys() -> None:
    (repo,) = example_config().repositories
    assert repo.chart is not None
    assert repo.chart["sourceRef"] == {
        "kind": "GitRepository",
        "name": "flux-system",  # made by `flux bootstrap` for this very repository
        "namespace": "flux-system",
    }
    assert (EXAMPLE / repo.chart["chart"]).resolve() == CHART
    chart = load_one(CHART / "Chart.yaml")
    assert chart["apiVersion"] == "v2" and chart["name"] == CHART.name
    assert chart_schema()["$schema"] == "http://json-schema.org/draft-07/schema#"


FINGERPRINT = EXAMPLE / "charts" / "fingerprint.py"
BUMP = "bump charts/preview-app/Chart.yaml version and update the fingerprint"


def check_fingerprints(charts: Path) -> subprocess.CompletedProcess[str]:
    """`python3 charts/fingerprint.py` in a (copy of the) charts folder, as a fleet's CI runs it."""
    return subprocess.run(
        [sys.executable, str(charts / "fingerprint.py")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_chart_did_not_change_without_a_new_version() -> None:
    # The previews use reconcileStrategy ChartVersion (prgen.yaml says why): a chart change that
    # keeps its version reaches new previews only. charts/fingerprints.txt records a sha256 of the
    # chart's files for each version; a fresh clone needs nothing else to check it.
    (repo,) = example_config().repositories
    assert repo.chart is not None and repo.chart["reconcileStrategy"] == "ChartVersion"
    result = check_fingerprints(EXAMPLE / "charts")
    assert result.returncode == 0, result.stderr
    printed = subprocess.run(
        [sys.executable, str(FINGERPRINT), "--print"], capture_output=True, text=True, check=True
    ).stdout.split()
    version = load_one(CHART / "Chart.yaml")["version"]
    assert printed[:2] == [CHART.name, version]
    assert " ".join(printed) in (EXAMPLE / "charts" / "fingerprints.txt").read_text()


def test_a_chart_change_without_a_version_bump_fails_the_fingerprint_check(
    tmp_path: Path,
) -> None:
    charts = tmp_path / "charts"
    shutil.copytree(EXAMPLE / "charts", charts)
    chart = charts / CHART.name
    # Files Helm leaves out of the package (.helmignore), and comments in Chart.yaml, don't count.
    (chart / "templates" / "service.yaml.swp").write_text("editor junk")
    chart_yaml = chart / "Chart.yaml"
    chart_yaml.write_text("# a comment\n" + chart_yaml.read_text())
    assert check_fingerprints(charts).returncode == 0

    service = chart / "templates" / "service.yaml"
    service.write_text(service.read_text().replace("port:", "port: ", 1))
    result = check_fingerprints(charts)
    assert result.returncode == 1 and BUMP in result.stderr

    # Bumped but not recorded: says which line to append; appended: passes.
    major, minor, patch = load_one(chart_yaml)["version"].split(".")
    bumped = f"{major}.{minor}.{int(patch) + 1}"
    chart_yaml.write_text(
        re.sub(r"^version: .*$", f"version: {bumped}", chart_yaml.read_text(), flags=re.M)
    )
    result = check_fingerprints(charts)
    assert (
        result.returncode == 1
        and f"{bumped} has no fingerprint: append `preview-app {bumped} sha256:" in result.stderr
    )
    line = re.search(rf"`(preview-app {re.escape(bumped)} sha256:[0-9a-f]{{64}})`", result.stderr)
    assert line
    with (charts / "fingerprints.txt").open("a") as record:
        record.write(line.group(1) + "\n")
    assert check_fingerprints(charts).returncode == 0

    # A recorded version's content is fixed: changing Chart.yaml's content needs a bump too.
    chart_yaml.write_text(chart_yaml.read_text().replace("kubeVersion:", "kubeVersion: ", 1))
    result = check_fingerprints(charts)
    assert result.returncode == 1 and BUMP in result.stderr


def test_the_values_prgen_renders_validate_against_the_charts_schema() -> None:
    values = rendered_values(42)
    assert values["image"]["tag"] == example_pull_request("acme/shop", 42).head_sha
    assert values["ingress"]["host"] == "shop-pr-42.preview.example.com"
    assert schema_errors(merged(chart_defaults(), values)) == []


def test_the_health_check_prgen_probes_is_the_path_the_chart_probes() -> None:
    (repo,) = example_config().repositories
    assert repo.health_check is not None
    host = rendered_values(42)["ingress"]["host"]
    url = repo.health_check.url.replace("<<PR_NUMBER>>", "42")
    assert url == f"https://{host}{chart_defaults()['health']['path']}"


@pytest.mark.parametrize(
    "sha",
    ["1234567890123456789012345678901234567890", "1e34567890123456789012345678901234567890"],
    ids=["all-digits", "float-like"],
)
def test_a_head_sha_that_looks_like_a_number_stays_a_string_tag(sha: str) -> None:
    (repo,) = example_config().repositories
    pr = example_pull_request(repo.name, 7)
    pr = type(pr)(**{**pr.__dict__, "head_sha": sha})
    text = render_environment(repo, pr).files["helmrelease.yaml"].decode()
    # Read as YAML 1.2 and as YAML 1.1 (closer to the Go decoders Flux and Helm use) alike.
    for version in ("1.2", "1.1"):
        (release,) = load_all(f"%YAML {version}\n---\n{text}")
        assert release["spec"]["values"]["image"]["tag"] == sha, version


def _without(values: dict[str, Any], *path: str) -> dict[str, Any]:
    out = copy.deepcopy(values)
    target = out
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return out


def _with(values: dict[str, Any], value: Any, *path: str) -> dict[str, Any]:
    out = copy.deepcopy(values)
    target = out
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda v: _without(v, "ingress", "host"), "'host' is a required property"),
        (lambda v: _without(v, "image", "tag"), "'tag' is a required property"),
        (lambda v: _with(v, 1234567, "image", "tag"), "is not of type 'string'"),
        (lambda v: _with(v, "a tag:with spaces", "image", "tag"), "does not match"),
        (lambda v: _with(v, "Shop_PR_1.example.com", "ingress", "host"), "does not match"),
        (lambda v: _with(v, "yes", "postgresql", "enabled"), "is not of type 'boolean'"),
        (lambda v: _with(v, 1, "ingress", "hostname"), "Additional properties"),
        (lambda v: _with(v, "healthz", "health", "path"), "does not match"),
    ],
    ids=[
        "missing-host",
        "missing-tag",
        "numeric-tag",
        "bad-tag",
        "bad-host",
        "string-bool",
        "unknown-key",
        "relative-health-path",
    ],
)
def test_the_charts_schema_rejects_wrong_values(change: Any, complaint: str) -> None:
    values = change(merged(chart_defaults(), rendered_values(42)))
    errors = schema_errors(values)
    assert errors and any(complaint in e for e in errors), errors


def test_values_yaml_alone_lacks_only_what_prgen_sets() -> None:
    errors = schema_errors(chart_defaults())
    assert sorted(errors) == [
        "image: 'tag' is a required property",
        "ingress: 'host' is a required property",
    ]


_VALUES_PATH = re.compile(r"\$?\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
_COMMENT = re.compile(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", re.DOTALL)


def template_text(template: Path) -> str:
    """A template without its {{/* comments */}}."""
    return _COMMENT.sub("", template.read_text())


def template_value_paths() -> set[str]:
    paths = set()
    for template in (CHART / "templates").iterdir():
        for match in _VALUES_PATH.finditer(template_text(template)):
            paths.add(match.group(1).lstrip("."))
    return paths


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = schema
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def schema_paths(schema: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(every declared path, the leaves: paths whose schema declares no properties)."""
    declared: set[str] = set()
    leaves: set[str] = set()

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, sub in _resolve(schema, node).get("properties", {}).items():
            path = f"{prefix}{key}"
            declared.add(path)
            if "properties" in _resolve(schema, sub):
                walk(sub, f"{path}.")
            else:
                leaves.add(path)

    walk(schema, "")
    return declared, leaves


def test_every_value_a_template_reads_is_declared_and_every_declared_value_is_read() -> None:
    used = template_value_paths()
    declared, leaves = schema_paths(chart_schema())
    assert used, "no .Values found: the scanner is broken"
    assert sorted(used - declared) == [], "read by a template, not declared in the schema"
    # A leaf counts as read when a template reads it or a whole object above it (toYaml).
    unread = [
        leaf for leaf in leaves if not any(leaf == u or leaf.startswith(f"{u}.") for u in used)
    ]
    assert unread == [], "declared in the schema, read by no template"
    # values.yaml sets nothing the schema doesn't declare (additionalProperties: false says so
    # too, but this names the key).
    assert schema_errors(merged(chart_defaults(), rendered_values())) == []


_ACTION = re.compile(r"\{\{.*?\}\}", re.DOTALL)


@pytest.mark.parametrize(
    "template",
    sorted((CHART / "templates").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_every_template_is_well_formed_yaml_once_its_actions_are_blanked(template: Path) -> None:
    """Broken indentation and syntax, caught without helm (test_example_chart.py renders with it)."""
    lines = []
    for line in template_text(template).splitlines():
        if _ACTION.fullmatch(line.strip()):
            continue  # a line that is only an action ({{- if }}, {{- include ... | nindent }})
        lines.append(_ACTION.sub("x", line))
    loader = YAML(typ="safe", pure=True)
    loader.allow_duplicate_keys = True  # both branches of an {{ if }} ... {{ else }} remain
    documents = [d for d in loader.load_all("\n".join(lines)) if d is not None]
    assert documents and all(isinstance(d, dict) and "kind" in d for d in documents)


# --------------------------------------------------------------------------------------------
# The GitHub Actions example
# --------------------------------------------------------------------------------------------


def test_the_workflow_validates_against_the_github_workflow_schema() -> None:
    result = validates_against_builtin_schema("vendor.github-workflows", WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_workflow_syncs_on_every_pull_request_change_one_at_a_time() -> None:
    workflow = load_one(WORKFLOW)
    # pull_request_target: the workflow file comes from the default branch, never from the PR's
    # branch, so a pushed branch cannot rewrite the job that holds the fleet token.
    assert list(workflow["on"]) == ["pull_request_target"]
    events = workflow["on"]["pull_request_target"]["types"]
    assert set(events) == {"opened", "synchronize", "reopened", "closed", "labeled", "unlabeled"}
    assert workflow["concurrency"] == {"group": "prgen-sync", "cancel-in-progress": False}
    assert workflow["permissions"] == {}
    (job,) = workflow["jobs"].values()
    assert "permissions" not in job  # the workflow's `permissions: {}` holds for the job
    checkout, sync = job["steps"]
    # prgen's action, on the prgen.yaml the checkout read from the fleet repository.
    assert sync["uses"] == PRGEN_ACTION
    path = f"{checkout['with']['path']}/{checkout['with']['sparse-checkout']}"
    assert sync["with"]["config"] == path == "fleet/infrastructure/prgen/prgen.yaml"
    # The secrets reach prgen under the names prgen.yaml gives them.
    config = example_config()
    assert config.github.app is not None
    action_env = action_step_env()
    for name in (config.fleet.token_env, config.github.app.private_key_env):
        (given,) = [k for k, v in action_env.items() if k == name]
        input_name = action_env[given].removeprefix("${{ inputs.").removesuffix(" }}")
        assert sync["with"][input_name].startswith("${{ secrets."), input_name


#: How the example workflow names prgen's action (action.yml at the root of prgen's repository).
PRGEN_ACTION = "acme/prgen@v1"


def action_step_env() -> dict[str, str]:
    """The environment action.yml's sync step gives prgen, from the action's inputs."""
    action = load_one(CHECKOUT / "action.yml")
    (step,) = [s for s in action["runs"]["steps"] if s.get("id") == "sync"]
    return dict(step["env"])


def strings_in(value: Any) -> Iterator[str]:
    """Every string in a parsed YAML document: keys and values, at any depth."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from strings_in(key)
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


#: What would bring the PR's code or text into the job: its head or merge commit, its branch,
#: and any pull request field pasted into an expression (titles and branch names inject commands).
_PR_CONTENT = re.compile(
    r"github\.event\.pull_request\.|github\.head_ref|refs/pull/|merge_commit_sha"
    r"|github\.event\.(?:issue|comment|review|head_commit)\b"
)


def test_no_step_checks_out_or_reads_the_pull_requests_code() -> None:
    workflow = load_one(WORKFLOW)
    (job,) = workflow["jobs"].values()
    fleet = re.fullmatch(r"https://github\.com/(.+?)(\.git)?", example_config().fleet.url)
    assert fleet, example_config().fleet.url
    checkouts = [s for s in job["steps"] if str(s.get("uses", "")).startswith("actions/checkout@")]
    assert checkouts, "the job reads prgen.yaml with actions/checkout"
    for step in checkouts:
        with_ = step.get("with", {})
        # Only the fleet repository, at its own branch: never this repository (whose checkout
        # under pull_request_target could be pointed at the PR), never a PR ref.
        assert with_.get("repository") == fleet.group(1), step["name"]
        assert with_.get("ref") == example_config().fleet.branch, step["name"]
        assert with_.get("persist-credentials") is False, step["name"]
    for step in job["steps"]:
        uses = str(step.get("uses", ""))
        assert not uses.startswith("./"), f"{step['name']}: a local action is the PR's code"
        # The fleet's checkout and prgen's own action, nothing else.
        assert uses == PRGEN_ACTION or uses.startswith("actions/checkout@"), (
            f"{step['name']}: {uses}"
        )
    # Nowhere (if:, with:, env:, run:) does the workflow refer to the PR's commits or text.
    found = [s for s in strings_in(workflow) if _PR_CONTENT.search(s)]
    assert found == []


def test_pr_content_detection_catches_a_checkout_of_the_head() -> None:
    """The pattern above is not vacuous: the usual ways to check out a PR's head all match."""
    for value in (
        "${{ github.event.pull_request.head.sha }}",
        "${{ github.event.pull_request.head.ref }}",
        "${{ github.head_ref }}",
        "refs/pull/42/merge",
        "${{ github.event.pull_request.merge_commit_sha }}",
        "${{ github.event.pull_request.head.repo.full_name }}",
    ):
        assert _PR_CONTENT.search(value), value
    assert not _PR_CONTENT.search("${{ secrets.PRGEN_FLEET_TOKEN }}")


# --------------------------------------------------------------------------------------------
# No secrets; the image
# --------------------------------------------------------------------------------------------

_SECRET_LOOKING = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "GitHub token": re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,})"),
    "AWS key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "literal secret value": re.compile(r"--from-literal=[\w.-]+=(?![\"']?\$)"),
    "credentials in a URL": re.compile(r"\b[a-z+]+://[^/\s:@]+:[^/\s@]+@"),
    "Secret data": re.compile(
        r"^\s*(stringData|data):\s*\n\s+[\w.-]+:\s*[A-Za-z0-9+/=]{8,}\s*$", re.M
    ),
}


def shipped_files() -> Iterator[Path]:
    yield from (p for p in EXAMPLE.rglob("*") if p.is_file())
    yield CHECKOUT / "Dockerfile"
    yield CHECKOUT / ".dockerignore"


@pytest.mark.parametrize("path", list(shipped_files()), ids=lambda p: str(p.relative_to(CHECKOUT)))
def test_no_file_holds_anything_that_looks_like_a_secret(path: Path) -> None:
    text = path.read_text()
    found = [what for what, pattern in _SECRET_LOOKING.items() if pattern.search(text)]
    assert found == []
    for doc in load_all(text) if path.suffix == ".yaml" and not is_chart_file(path) else []:
        if doc.get("kind") == "Secret":  # committed only encrypted, every value
            assert is_sops_encrypted(doc), "a Secret is committed SOPS-encrypted or not at all"
            values = [*doc.get("data", {}).values(), *doc.get("stringData", {}).values()]
            assert values and all(ENCRYPTED_VALUE.fullmatch(v) for v in values)


def dockerignored(path: str, rules: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or a folder above it decides."""
    parents = [path] + ["/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1)]
    ignored = False
    for rule in rules:
        negated = rule.startswith("!")
        pattern = rule.removeprefix("!").strip("/")
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in parents):
            ignored = not negated
    return ignored


def docker_context(into: Path) -> Path:
    """A copy of the files of this checkout that .dockerignore lets into the build context."""
    rules = [
        line.strip()
        for line in (CHECKOUT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for path in tracked:
        if (CHECKOUT / path).is_file() and not dockerignored(path, rules):
            (into / path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(CHECKOUT / path, into / path)
    return into


def validates_against_builtin_schema(schema: str, path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema with one of the schemas it ships (`vendor.github-workflows`, ...)."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_docker_build_context_holds_everything_pip_install_needs(tmp_path: Path) -> None:
    context = docker_context(tmp_path / "context")
    assert not (context / "tests").exists() and not (context / ".git").exists()
    # What the image's `pip install /src` does, minus the download of the build backend.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path / "wheel"),
            str(context),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = (tmp_path / "wheel").glob("prgen-*.whl")
    names = subprocess.run(
        [sys.executable, "-m", "zipfile", "-l", str(wheel)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for shipped in (
        "prgen/cli.py",
        "prgen/_data/templates/helmrelease.yaml",
        "prgen/_data/schemas/prgen.schema.json",
        "prgen/_data/fleet-repo-example/clusters/preview/previews.yaml",
        "prgen-0.1.0.dist-info/licenses/LICENSE",  # Apache-2.0, as pyproject says
    ):
        assert shipped in names, shipped


def test_the_image_runs_prgen_as_the_user_the_cronjob_expects() -> None:
    dockerfile = (CHECKOUT / "Dockerfile").read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim\b", dockerfile, re.M)
    assert re.search(r"apt-get install .*\bgit\b", dockerfile)
    assert re.search(r"pip wheel .*/src", dockerfile)  # tests/test_image.py builds it
    assert 'ENTRYPOINT ["prgen"]' in dockerfile
    (user,) = re.findall(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    cronjob = load_one(EXAMPLE / "infrastructure/prgen/cronjob.yaml")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["securityContext"]
    assert (int(user[0]), int(user[1])) == (pod["runAsUser"], pod["runAsGroup"])
    assert "--uid 10001" in dockerfile and "--gid 10001" in dockerfile


if __name__ == "__main__":
    write_example_managed_folder()
    print(f"wrote {EXAMPLE / example_config().fleet.path}")
