"""deploy/helm/maskmaker rendered and checked: probes, ports, environment, Secret, HPA, PDB.

`helm` is not installed on these machines, so the chart is rendered by minihelm.py (the Go-template subset the chart
uses; anything else in a template is an error). Where `helm` is on PATH the test also compares its output.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

import minihelm
import scaleout_helpers as h

CHART = h.REPO / "deploy" / "helm" / "maskmaker"
DB = {"database": {"url": "postgresql://maskmaker:pw@db.internal:5432/maskmaker"}}


def objects(values=None) -> dict[str, dict]:
    objs = minihelm.render_objects(CHART, values)
    by_kind = {}
    for o in objs:
        assert o["kind"] not in by_kind, f"two {o['kind']} objects"
        by_kind[o["kind"]] = o
    return by_kind


def container(objs) -> dict:
    (c,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


def env(objs) -> dict:
    return {e["name"]: e for e in container(objs)["env"]}


def test_chart_renders_every_object():
    objs = objects(DB)
    assert set(objs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret"}
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "maskmaker"
    for o in objs.values():
        assert o["metadata"]["name"].startswith("test-maskmaker")
        assert o["metadata"]["labels"]["app.kubernetes.io/instance"] == "test"


def test_deployment_probes_ports_and_drain():
    objs = objects(DB)
    dep = objs["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    c = container(objs)
    assert "replicas" not in dep["spec"]  # the HPA owns it
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    # The pod leaves the endpoints (preStop) before SIGTERM; the grace period covers the sleep and a drain.
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep[0] == "/bin/sleep"
    assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + 60
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == "8080" and ann["prometheus.io/path"] == "/metrics"


def test_environment_matches_serve_flags():
    objs = objects(DB)
    e = env(objs)
    assert e["MASKMAKER_HOST"]["value"] == "0.0.0.0"
    assert e["MASKMAKER_PORT"]["value"] == str(container(objs)["ports"][0]["containerPort"])
    for name, item in e.items():
        assert name.startswith("MASKMAKER_")
        if "value" in item:
            assert isinstance(item["value"], str), f"{name}: env values must be strings, got {item['value']!r}"
    # Threads per inference = the CPU the pod asks for (docs/deploy.md).
    assert e["MASKMAKER_THREADS"]["value"] == str(container(objs)["resources"]["requests"]["cpu"])
    assert e["MASKMAKER_MAX_CONCURRENT"]["value"] == "1"
    if h.BIN.is_file():
        help_text = subprocess.run([str(h.BIN), "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
        for name in e:
            assert f"(Env:{name})" in help_text, f"{name} is not an environment mirror of a maskmaker serve flag"


def test_database_url_comes_from_a_secret():
    objs = objects(DB)
    ref = env(objs)["MASKMAKER_KEYS_DB"]["valueFrom"]["secretKeyRef"]
    secret = objs["Secret"]
    assert ref["name"] == secret["metadata"]["name"]
    assert secret["stringData"][ref["key"]] == DB["database"]["url"]
    assert "pw@" not in yaml.safe_dump(objs["Deployment"])
    # A Secret managed elsewhere: referenced, not rendered.
    objs = objects({"database": {"existingSecret": "prod-db", "secretKey": "url"}})
    assert "Secret" not in objs
    assert env(objs)["MASKMAKER_KEYS_DB"]["valueFrom"]["secretKeyRef"] == {"name": "prod-db", "key": "url"}
    # Neither: open access, no key database variable.
    objs = objects()
    assert "Secret" not in objs and "MASKMAKER_KEYS_DB" not in env(objs)


def test_service_reaches_the_pods():
    objs = objects(DB)
    svc = objs["Service"]["spec"]
    labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert svc["selector"].items() <= labels.items()
    assert svc["ports"][0]["targetPort"] == "http"


def test_autoscaler_and_disruption_budget():
    objs = objects(DB)
    hpa = objs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": objs["Deployment"]["metadata"]["name"]}
    assert hpa["minReplicas"] >= 2 and hpa["maxReplicas"] >= hpa["minReplicas"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu"]
    pdb = objs["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"] == objs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert pdb["minAvailable"] == 1

    queued = objects({**DB, "autoscaling": {"queueDepth": {"enabled": True}}})["HorizontalPodAutoscaler"]["spec"]
    pods = [m for m in queued["metrics"] if m["type"] == "Pods"]
    assert pods and pods[0]["pods"]["metric"]["name"] == "maskmaker_inference_queued"
    assert pods[0]["pods"]["target"] == {"type": "AverageValue", "averageValue": "1"}

    fixed = objects({**DB, "autoscaling": {"enabled": False}, "replicaCount": 3})
    assert "HorizontalPodAutoscaler" not in fixed
    assert fixed["Deployment"]["spec"]["replicas"] == 3


def test_models_volume_gpu_nodes_and_extra_env():
    objs = objects({**DB,
                    "models": {"volume": {"persistentVolumeClaim": {"claimName": "packs", "readOnly": True}}},
                    "config": {"device": "cuda"},
                    "resources": {"limits": {"nvidia.com/gpu": 1}},
                    "nodeSelector": {"nvidia.com/gpu.present": "true"},
                    "extraEnv": [{"name": "MASKMAKER_ALLOW_PRIVATE_URLS", "value": "true"}]})
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    c = container(objs)
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "packs", "readOnly": True}} in pod["volumes"]
    assert env(objs)["MASKMAKER_DEVICE"]["value"] == "cuda"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert env(objs)["MASKMAKER_ALLOW_PRIVATE_URLS"]["value"] == "true"


def test_minihelm_follows_go_templates():
    assert [minihelm.go_number(x) for x in (8080, 100000, 1000000, 33554432, 1.5)] == \
        ["8080", "100000", "1e+06", "3.3554432e+07", "1.5"]
    nodes, defines = minihelm.parse('a:\n  {{- if .x }}\n  b: {{ .y | quote }}\n  {{- end }}\n')
    assert minihelm.Renderer(defines).render(nodes, {"x": True, "y": 2}) == 'a:\n  b: "2"\n'
    with pytest.raises(minihelm.TemplateError):
        minihelm.parse("{{ range .x }}{{ end }}")


@pytest.mark.skipif(shutil.which("helm") is None, reason="helm is not installed (minihelm renders the chart)")
def test_helm_renders_the_same():
    args = ["helm", "template", "test", str(CHART), "--set", f"database.url={DB['database']['url']}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True).stdout
    helm_objs = sorted((d for d in yaml.safe_load_all(out) if d), key=lambda d: d["kind"])
    for d in helm_objs:
        d.setdefault("metadata", {}).setdefault("annotations", {})
    mine = sorted(minihelm.render_objects(CHART, DB), key=lambda d: d["kind"])
    assert helm_objs == mine
