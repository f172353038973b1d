"""fleet-repo-example/infrastructure/prgen-server: prgen as a server (`prgen serve`) in place of
the CronJob, as a user switches to it by pointing the Flux Kustomization prgen at this folder.

Its parts agree with each other and with prgen: the port prgen listens on is the one the probes,
the Service, the NetworkPolicy and the scrape annotation name; the Ingress lets in /webhook and
nothing else; the pod is locked down exactly like the CronJob's; the CronJob is gone, so the two
never write the fleet side by side. (Every object also validates and the folder builds: the
parametrised tests of test_fleet_repo_example.py cover every file and kustomization.)
"""

from __future__ import annotations

from typing import Any

from test_fleet_repo_example import (
    EXAMPLE,
    PRGEN,
    README,
    assert_locked_down,
    assert_only_home_tmp_and_the_cache_claim_are_writable,
    load_all,
    load_one,
    prgen_container,
    prgen_kustomization,
    server_container,
)

from manifest_validation import kustomize_build, require_kubectl

SERVER = EXAMPLE / "infrastructure" / "prgen-server"
#: The port `prgen serve` listens on when prgen.yaml's server.port is not set.
SERVER_PORT = 8080


def deployment() -> dict[str, Any]:
    found: dict[str, Any] = load_one(SERVER / "deployment.yaml")
    return found


def pod() -> dict[str, Any]:
    spec: dict[str, Any] = deployment()["spec"]["template"]["spec"]
    return spec


def http_port() -> int:
    (port,) = server_container()["ports"]
    assert port["name"] == "http"
    return int(port["containerPort"])


def kinds_and_names(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objects}


def test_the_server_replaces_the_cronjob_and_keeps_everything_else() -> None:
    require_kubectl()
    base = load_all(kustomize_build(PRGEN))
    built = load_all(kustomize_build(SERVER))
    assert kinds_and_names(built) == (kinds_and_names(base) - {("CronJob", "prgen")}) | {
        ("Deployment", "prgen-server"),
        ("Service", "prgen-server"),
        ("Ingress", "prgen-webhook"),
        ("NetworkPolicy", "prgen-server-ingress"),
        ("Secret", "prgen-webhook"),  # the server's own, SOPS-encrypted like the base's
        ("Secret", "prgen-api"),
    }
    for obj in built:
        if obj["kind"] != "Namespace":
            assert obj["metadata"]["namespace"] == "prgen", obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "prgen", obj["kind"]
    (config_map,) = [o for o in built if o["kind"] == "ConfigMap"]
    (server,) = [o for o in built if o["kind"] == "Deployment"]
    spec = server["spec"]["template"]["spec"]
    volumes = [v["configMap"]["name"] for v in spec["volumes"] if "configMap" in v]
    assert volumes == [config_map["metadata"]["name"]]  # the hashed name, rewritten
    (cronjob,) = [o for o in base if o["kind"] == "CronJob"]
    base_image = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert spec["containers"][0]["image"] == base_image["image"]


def test_the_server_runs_the_image_the_cronjob_runs() -> None:
    # Kustomize's images apply to the resources of the kustomization that lists them only.
    assert load_one(SERVER / "kustomization.yaml")["images"] == prgen_kustomization()["images"]


def test_the_server_runs_serve_alone_and_locked_down_like_the_cronjob() -> None:
    spec = deployment()["spec"]
    container = server_container()
    assert container["args"] == ["serve"]
    # One writer; the old pod finishes its commit (SIGTERM) before the new one starts.
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert pod()["terminationGracePeriodSeconds"] >= 60
    assert_locked_down(pod(), container)
    assert_only_home_tmp_and_the_cache_claim_are_writable(pod(), container)
    assert pod()["serviceAccountName"] == "prgen"
    # The same config, caches and GitHub credentials as the CronJob, plus the server's secrets.
    cronjob_env = {e["name"]: e for e in prgen_container()["env"]}
    server_env = {e["name"]: e for e in container["env"]}
    assert {k: v for k, v in server_env.items() if k in cronjob_env} == cronjob_env
    extra = {name: server_env[name] for name in set(server_env) - set(cronjob_env)}
    assert set(extra) == {"PRGEN_WEBHOOK_SECRET", "PRGEN_API_TOKEN"}
    for name, entry in extra.items():
        assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], name


def test_every_part_names_the_port_prgen_listens_on() -> None:
    assert http_port() == SERVER_PORT
    container = server_container()
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["port"] == "http"
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(http_port())
    assert annotations["prometheus.io/path"] == "/metrics"
    service = load_one(SERVER / "service.yaml")
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == "http"
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment()["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


def test_the_ingress_lets_in_webhooks_and_nothing_else() -> None:
    ingress = load_one(SERVER / "ingress.yaml")
    service = load_one(SERVER / "service.yaml")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/webhook", "Exact")
    backend = path["backend"]["service"]
    assert backend["name"] == service["metadata"]["name"]
    assert backend["port"]["name"] == service["spec"]["ports"][0]["name"]
    (tls,) = ingress["spec"]["tls"]
    assert tls["hosts"] == [rule["host"]]  # GitHub delivers over HTTPS only to this host


def test_only_the_ingress_controller_and_prometheus_reach_the_server() -> None:
    policy = load_one(SERVER / "networkpolicy.yaml")
    spec = policy["spec"]
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert spec["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert "component" in str(spec["podSelector"]["matchLabels"])  # not every prgen pod
    (rule,) = spec["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]
    allowed = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for peer in rule["from"]
    }
    assert allowed == {"ingress-nginx", "monitoring"}


def test_the_readme_says_how_to_switch_to_the_server() -> None:
    text = README.read_text()
    assert "./infrastructure/prgen-server" in text
    assert "/webhook" in text and "Pull requests" in text
