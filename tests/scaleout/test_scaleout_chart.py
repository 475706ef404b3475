"""deploy/helm/maskmaker linted and rendered by the real helm (scripts/setup.sh builds the pinned version into
.cache/bin; $MASKMAKER_HELM overrides), with the default values and with deploy/helm/values-production.example.yaml,
and the rendered objects checked: kinds, probes, ports, environment, the Secret reference, resources,
securityContext, PDB, HPA, topology spread; values.yaml documents every value the templates use, and
values.schema.json covers them all and rejects bad ones.
"""
from __future__ import annotations

import functools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

import scaleout_helpers as h

CHART = h.REPO / "deploy" / "helm" / "maskmaker"
PRODUCTION = h.REPO / "deploy" / "helm" / "values-production.example.yaml"
DB = {"database": {"url": "postgresql://maskmaker:pw-literal-7f3a@db.internal:5432/maskmaker"}}


def pinned_helm_version() -> str:
    return re.search(r"^HELM_VERSION=(v[0-9.]+)$", (h.REPO / "scripts" / "setup.sh").read_text(), re.M).group(1)


@functools.cache
def helm() -> str:
    path = Path(os.environ.get("MASKMAKER_HELM") or h.REPO / ".cache" / "bin" / "helm")
    if not path.is_file():
        pytest.fail(f"helm not found at {path}: scripts/setup.sh builds it (or set MASKMAKER_HELM)")
    return str(path)


# No user configuration, repositories, plugins or cluster: helm renders the chart from its files alone.
HELM_ENV = {**os.environ, "HELM_CACHE_HOME": "/nonexistent/cache", "HELM_CONFIG_HOME": "/nonexistent/config",
            "HELM_DATA_HOME": "/nonexistent/data", "KUBECONFIG": "/dev/null"}


def run_helm(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([helm(), *args], input=stdin, capture_output=True, text=True, timeout=120, env=HELM_ENV)


@functools.cache
def _render(values_json: str, files: tuple[str, ...]) -> str:
    args = ["template", "test", str(CHART)]
    for f in files:
        args += ["-f", f]
    if values_json != "null":
        args += ["-f", "/dev/stdin"]  # JSON is YAML
    r = run_helm(*args, stdin=values_json if values_json != "null" else None)
    assert r.returncode == 0, f"helm {' '.join(args)}: {r.stderr}"
    return r.stdout


def rendered(values: dict | None = None, *files: Path) -> str:
    return _render(json.dumps(values), tuple(str(f) for f in files))


def objects(values: dict | None = None, *files: Path) -> dict[str, dict]:
    by_kind = {}
    for o in yaml.safe_load_all(rendered(values, *files)):
        if not o:
            continue
        assert o["kind"] not in by_kind, f"two {o['kind']} objects"
        by_kind[o["kind"]] = o
    return by_kind


def container(objs) -> dict:
    (c,) = objs["Deployment"]["spec"]["template"]["spec"]["containers"]
    return c


def env(objs) -> dict:
    return {e["name"]: e for e in container(objs)["env"]}


def test_helm_is_the_pinned_release():
    r = run_helm("version", "--template", "{{.Version}}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == pinned_helm_version()


@pytest.mark.parametrize("values", [[], [PRODUCTION]], ids=["default", "production"])
def test_helm_lint_strict(values):
    args = ["lint", "--strict", str(CHART), "--set", f"database.url={DB['database']['url']}"]
    for f in values:
        args += ["-f", str(f)]
    r = run_helm(*args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in r.stdout


def test_helm_lint_rejects_a_broken_template(tmp_path):
    # The lint above can fail: the same chart with one template cut short does.
    broken = tmp_path / "maskmaker"
    subprocess.run(["cp", "-r", str(CHART), str(broken)], check=True)
    svc = broken / "templates" / "service.yaml"
    svc.write_text(svc.read_text() + "{{- if .Values.service.port }}\n")
    r = run_helm("lint", "--strict", str(broken))
    assert r.returncode != 0 and "unexpected EOF" in r.stdout + r.stderr


def test_chart_renders_every_object():
    objs = objects(DB)
    assert set(objs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Secret"}
    assert objs["Deployment"]["apiVersion"] == "apps/v1"
    assert objs["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"
    assert objs["PodDisruptionBudget"]["apiVersion"] == "policy/v1"
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "maskmaker"
    for o in objs.values():
        assert o["metadata"]["name"] == "test-maskmaker" + ("-db" if o["kind"] == "Secret" else "")
        assert o["metadata"]["labels"]["app.kubernetes.io/instance"] == "test"
        assert o["metadata"]["labels"]["helm.sh/chart"] == f"maskmaker-{chart['version']}"
    # Open access (no database): no Secret, no key database variable.
    objs = objects()
    assert set(objs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    assert "MASKMAKER_KEYS_DB" not in env(objs)


def test_deployment_probes_ports_and_drain():
    objs = objects(DB)
    dep = objs["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    c = container(objs)
    assert "replicas" not in dep["spec"]  # the HPA owns it
    assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    assert dep["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert c["args"] == ["serve"]
    assert c["image"] == "registry.example.com/maskmaker:0.1.0"
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["readinessProbe"] == {"httpGet": {"path": "/readyz", "port": "http"},
                                   "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 2}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["livenessProbe"]["failureThreshold"] * c["livenessProbe"]["periodSeconds"] >= 60
    # The pod leaves the endpoints (preStop) before SIGTERM; the grace period covers the sleep and a drain.
    sleep = c["lifecycle"]["preStop"]["exec"]["command"]
    assert sleep == ["/bin/sleep", "10"]
    assert pod["terminationGracePeriodSeconds"] >= int(sleep[1]) + 60
    assert c["resources"] == {"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann == {"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}


def check_security(objs):
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    c = container(objs)
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == psc["runAsGroup"] == 10001
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert csc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                   "capabilities": {"drop": ["ALL"]}}
    assert pod["automountServiceAccountToken"] is False
    # A read-only root: the server's one writable path, $TMPDIR (= /tmp), is an emptyDir with a bound.
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}} in pod["volumes"]
    assert "TMPDIR" not in env(objs)


def test_security_context():
    check_security(objects(DB))
    # Without a size limit (null removes a default) the emptyDir is still a volume source: {}, not null.
    pod = objects({"tmpVolume": {"sizeLimit": None}})["Deployment"]["spec"]["template"]["spec"]
    assert {"name": "tmp", "emptyDir": {}} in pod["volumes"]


def test_environment_matches_serve_flags():
    objs = objects(DB)
    e = env(objs)
    assert e["MASKMAKER_HOST"]["value"] == "0.0.0.0"
    assert e["MASKMAKER_PORT"]["value"] == str(container(objs)["ports"][0]["containerPort"])
    assert e["MASKMAKER_MODELS"]["value"] == "/models/default"
    for name, item in e.items():
        assert name.startswith("MASKMAKER_")
        if "value" in item:
            assert isinstance(item["value"], str), f"{name}: env values must be strings, got {item['value']!r}"
    # Threads per inference = the CPU the pod asks for (docs/deploy.md).
    assert e["MASKMAKER_THREADS"]["value"] == str(container(objs)["resources"]["requests"]["cpu"])
    assert e["MASKMAKER_MAX_CONCURRENT"]["value"] == "1"
    assert e["MASKMAKER_MAX_BODY_BYTES"]["value"] == "33554432"
    if h.BIN.is_file():
        help_text = subprocess.run([str(h.BIN), "serve", "--help"], capture_output=True, text=True, timeout=30).stdout
        for name in e:
            assert f"(Env:{name})" in help_text, f"{name} is not an environment mirror of a maskmaker serve flag"


def test_database_url_comes_from_a_secret():
    objs = objects(DB)
    ref = env(objs)["MASKMAKER_KEYS_DB"]["valueFrom"]["secretKeyRef"]
    secret = objs["Secret"]
    assert ref == {"name": secret["metadata"]["name"], "key": "database-url"}
    assert secret["stringData"][ref["key"]] == DB["database"]["url"]
    assert "pw-literal-7f3a" not in yaml.safe_dump(objs["Deployment"])
    # A Secret managed elsewhere: referenced, not rendered, even when a URL is given too.
    objs = objects({"database": {"existingSecret": "prod-db", "secretKey": "url", "url": DB["database"]["url"]}})
    assert "Secret" not in objs
    assert env(objs)["MASKMAKER_KEYS_DB"]["valueFrom"]["secretKeyRef"] == {"name": "prod-db", "key": "url"}
    assert "pw-literal-7f3a" not in rendered({"database": {"existingSecret": "prod-db", "url": DB["database"]["url"]}})


def test_service_reaches_the_pods():
    objs = objects(DB)
    svc = objs["Service"]["spec"]
    labels = objs["Deployment"]["spec"]["template"]["metadata"]["labels"]
    assert svc["type"] == "ClusterIP"
    assert svc["selector"] and svc["selector"].items() <= labels.items()
    assert svc["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]


def test_autoscaler_and_disruption_budget():
    objs = objects(DB)
    hpa = objs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": objs["Deployment"]["metadata"]["name"]}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert hpa["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    pdb = objs["PodDisruptionBudget"]["spec"]
    assert pdb["selector"]["matchLabels"] == objs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert pdb == {"minAvailable": 1, "selector": pdb["selector"]}

    queued = objects({**DB, "autoscaling": {"queueDepth": {"enabled": True}}})["HorizontalPodAutoscaler"]["spec"]
    assert queued["metrics"][1] == {"type": "Pods", "pods": {"metric": {"name": "maskmaker_inference_queued"},
                                                             "target": {"type": "AverageValue", "averageValue": "1"}}}

    fixed = objects({**DB, "autoscaling": {"enabled": False}, "replicaCount": 3,
                     "podDisruptionBudget": {"maxUnavailable": 1}})
    assert "HorizontalPodAutoscaler" not in fixed
    assert fixed["Deployment"]["spec"]["replicas"] == 3
    pdb = fixed["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1 and "minAvailable" not in pdb
    assert "PodDisruptionBudget" not in objects({"podDisruptionBudget": {"enabled": False}})


def test_topology_spread():
    objs = objects(DB)
    pod = objs["Deployment"]["spec"]["template"]["spec"]
    selector = {"matchLabels": objs["Deployment"]["spec"]["selector"]["matchLabels"]}
    assert pod["topologySpreadConstraints"] == [
        {"topologyKey": "topology.kubernetes.io/zone", "maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": selector},
        {"topologyKey": "kubernetes.io/hostname", "maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": selector},
    ]
    pod = objects({"topologySpreadConstraints": []})["Deployment"]["spec"]["template"]["spec"]
    assert "topologySpreadConstraints" not in pod


def test_production_values():
    objs = objects(None, PRODUCTION)
    assert set(objs) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
    dep = objs["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    c = container(objs)
    e = env(objs)
    # The database URL from the existing Secret; no password anywhere in what the chart renders.
    assert e["MASKMAKER_KEYS_DB"] == {"name": "MASKMAKER_KEYS_DB", "valueFrom": {
        "secretKeyRef": {"name": "maskmaker-db", "key": "database-url"}}}
    assert "postgresql://" not in rendered(None, PRODUCTION)
    # Three replicas at least, owned by the HPA, which also scales on the queue; two kept through drains.
    hpa = objs["HorizontalPodAutoscaler"]["spec"]
    assert "replicas" not in dep["spec"] and (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)
    assert [m["type"] for m in hpa["metrics"]] == ["Resource", "Pods"]
    assert objs["PodDisruptionBudget"]["spec"]["minAvailable"] == 2
    fixed = objects({"autoscaling": {"enabled": False}}, PRODUCTION)
    assert fixed["Deployment"]["spec"]["replicas"] == 3 and "HorizontalPodAutoscaler" not in fixed
    # GPU nodes: the node selector, the taint's toleration, one GPU per pod, CUDA.
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert c["resources"] == {"requests": {"cpu": "4", "memory": "4Gi"},
                              "limits": {"cpu": "4", "memory": "6Gi", "nvidia.com/gpu": 1}}
    assert e["MASKMAKER_DEVICE"]["value"] == "cuda"
    assert e["MASKMAKER_THREADS"]["value"] == c["resources"]["requests"]["cpu"]
    assert e["MASKMAKER_MAX_CONCURRENT"]["value"] == "2"
    # Probes and hardening as by default; the zone spread made a hard rule, the node spread left soft.
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    check_security(objs)
    assert [(t["topologyKey"], t["whenUnsatisfiable"]) for t in pod["topologySpreadConstraints"]] == \
        [("topology.kubernetes.io/zone", "DoNotSchedule"), ("kubernetes.io/hostname", "ScheduleAnyway")]
    # The pack from a read-only volume at /models, where MASKMAKER_MODELS points.
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in c["volumeMounts"]
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "maskmaker-packs", "readOnly": True}} \
        in pod["volumes"]
    assert e["MASKMAKER_MODELS"]["value"].startswith("/models/")
    assert c["image"] == "registry.example.com/maskmaker:0.1.0"


def test_extra_env_annotations_and_pull_secrets():
    objs = objects({"extraEnv": [{"name": "MASKMAKER_ALLOW_PRIVATE_URLS", "value": "true"}],
                    "podAnnotations": {"example.com/team": "imaging"},
                    "imagePullSecrets": [{"name": "regcred"}]})
    tmpl = objs["Deployment"]["spec"]["template"]
    assert env(objs)["MASKMAKER_ALLOW_PRIVATE_URLS"] == {"name": "MASKMAKER_ALLOW_PRIVATE_URLS", "value": "true"}
    assert tmpl["metadata"]["annotations"]["example.com/team"] == "imaging"
    assert tmpl["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert tmpl["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


@pytest.mark.parametrize("values,error", [
    ({"autoscalling": {"enabled": False}}, "additional properties 'autoscalling' not allowed"),
    ({"config": {"device": "gpu"}}, "at '/config/device': value must be one of 'cpu', 'cuda'"),
    ({"config": {"threads": "two"}}, "at '/config/threads'"),
    ({"database": {"url": "mysql://u:p@db/x"}}, "at '/database/url'"),
    ({"podDisruptionBudget": {"minAvailable": "half"}}, "at '/podDisruptionBudget/minAvailable'"),
    ({"topologySpreadConstraints": [{"maxSkew": 1}]}, "missing property 'topologyKey'"),
], ids=["typo", "device", "threads", "url", "pdb", "spread"])
def test_schema_rejects_bad_values(values, error):
    r = run_helm("template", "test", str(CHART), "-f", "/dev/stdin", stdin=json.dumps(values))
    assert r.returncode != 0 and "values don't meet the specifications of the schema" in r.stderr, r.stderr
    assert error in r.stderr, r.stderr


def test_schema_covers_every_value():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    top = {k for k, _ in value_keys() if "." not in k}
    assert set(schema["properties"]) == top | {"global"}


# Values whose children are Kubernetes fields passed through (toYaml) or named after one: documented as a whole.
VERBATIM = {"resources", "podSecurityContext", "securityContext", "tmpVolume", "topologySpreadConstraints",
            "nodeSelector", "tolerations", "affinity", "podAnnotations", "imagePullSecrets", "extraEnv",
            "models.volume", "readinessProbe", "livenessProbe"}


def value_keys() -> list[tuple[str, bool]]:
    """(dotted key, documented) for every key in values.yaml: a comment on its line, or a comment line above its
    block of siblings (no blank line between), or it lies under a VERBATIM value."""
    out = []
    stack: list[tuple[int, str]] = []
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^( *)([A-Za-z][\w.-]*):", line)
        if not m:
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = ".".join([k for _, k in stack] + [m.group(2)])
        stack.append((indent, m.group(2)))
        documented = "#" in line.split(":", 1)[1] or any(key.startswith(v + ".") for v in VERBATIM)
        j = i - 1
        while not documented and j >= 0 and lines[j].strip():
            prev = lines[j]
            prev_indent = len(prev) - len(prev.lstrip())
            if prev_indent < indent:
                break  # reached the parent
            if prev_indent == indent and prev.lstrip().startswith("#"):
                documented = True
            j -= 1
        out.append((key, documented))
    return out


def test_values_are_documented_and_used():
    keys = value_keys()
    assert len(keys) > 40
    undocumented = [k for k, doc in keys if not doc]
    assert not undocumented, f"values.yaml: no comment for {undocumented}"
    # Every value the templates read is in values.yaml, and every top-level value is read by a template.
    templates = "".join(p.read_text() for p in (CHART / "templates").iterdir())
    used = set(re.findall(r"\.Values\.([\w.]+)", templates))
    known = {k for k, _ in keys}
    assert used and not used - known, f"templates read values missing from values.yaml: {used - known}"
    top = {k for k in known if "." not in k}
    assert not top - {u.split(".")[0] for u in used}, f"values.yaml has unused values: {top - {u.split('.')[0] for u in used}}"
