"""Pure parts of the kind e2e suite: prerequisite/skip logic, manifests, run objects, webhook
signatures and the pod security check. No cluster needed; unit-tested in tests/unit/test_e2e_lib.py."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import threading
from base64 import b64encode
from pathlib import Path
from typing import Callable

import yaml

REPO = Path(__file__).resolve().parents[2]
CATALOG = REPO / "tekton"
KIND_CONFIG = REPO / "kind-config.yaml"
MANIFESTS = Path(__file__).with_name("manifests")

# Pinned versions, the one place they are set (the CI workflow does not repeat them; override with
# the environment variables of the same purpose). Pipelines: the v1.15 LTS line.
PIPELINES_VERSION_PINNED = "v1.15.0"
TRIGGERS_VERSION_PINNED = "v0.37.0"
PIPELINES_VERSION = os.environ.get("E2E_PIPELINES_VERSION", PIPELINES_VERSION_PINNED)
TRIGGERS_VERSION = os.environ.get("E2E_TRIGGERS_VERSION", TRIGGERS_VERSION_PINNED)
RELEASES = "https://infra.tekton.dev/tekton-releases"
GIT_IMAGE = "docker.io/alpine/git:v2.49.1"
REGISTRY_IMAGE = "docker.io/library/registry:2"
HTPASSWD_IMAGE = "docker.io/library/httpd:2.4-alpine"

CLUSTER_NAME = "executor-e2e"
REGISTRY_NAME = "kind-registry"          # container name on the kind network, port 5000
REGISTRY_HOST_PORT = 5001                # published on 127.0.0.1 for the host and node pulls
AUTH_REGISTRY_NAME = "kind-registry-auth"
AUTH_REGISTRY_HOST_PORT = 5002
AUTH_USER, AUTH_PASSWORD = "e2e", "e2e-password"
WEBHOOK_SECRET = "e2e-webhook-secret"


def release_urls() -> dict[str, str]:
    return {
        "pipelines": f"{RELEASES}/pipeline/previous/{PIPELINES_VERSION}/release.yaml",
        "triggers": f"{RELEASES}/triggers/previous/{TRIGGERS_VERSION}/release.yaml",
        "interceptors": f"{RELEASES}/triggers/previous/{TRIGGERS_VERSION}/interceptors.yaml",
    }


#: The CRD that interceptors.yaml's ClusterInterceptor objects need (from the Triggers release.yaml).
INTERCEPTOR_CRD = "clusterinterceptors.triggers.tekton.dev"
TEKTON_NAMESPACE = "tekton-pipelines"      # Pipelines and Triggers controllers and webhooks


def tekton_install_plan() -> list[tuple[str, str]]:
    """How the session installs Tekton, in order: ``("apply", url)``, ``("wait_deployments", ns)``,
    ``("wait_crd", name)``. interceptors.yaml is applied only once the ClusterInterceptor CRD is
    Established and the Triggers webhook (which admits ClusterInterceptors) is available: applied
    right after release.yaml it fails with 'no matches for kind "ClusterInterceptor"'."""
    urls = release_urls()
    return [
        ("apply", urls["pipelines"]),
        ("wait_deployments", TEKTON_NAMESPACE),
        ("wait_deployments", "tekton-pipelines-resolvers"),
        ("apply", urls["triggers"]),
        ("wait_crd", INTERCEPTOR_CRD),
        ("wait_deployments", TEKTON_NAMESPACE),
        ("apply", urls["interceptors"]),
        ("wait_deployments", TEKTON_NAMESPACE),
    ]


# ------------------------------------------------------------------ prerequisites / skip logic
def _docker_daemon_ok() -> bool:
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _resolves(host: str, timeout: float = 5.0) -> bool:
    """DNS only (no connection is made): a cheap "is there a network" probe."""
    out: list[bool] = []

    def probe():
        try:
            socket.getaddrinfo(host, 443)
            out.append(True)
        except OSError:
            out.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(out and out[0])


def missing_prerequisites(which: Callable[[str], str | None] = shutil.which,
                          docker_ok: Callable[[], bool] = _docker_daemon_ok,
                          network_ok: Callable[[], bool] = lambda: _resolves("infra.tekton.dev"),
                          reuse_cluster: str | None = None) -> list[str]:
    """One line per missing part, e.g. "no docker: kind e2e skipped". Empty means runnable."""
    lines = []
    if which("docker") is None:
        lines.append("no docker: kind e2e skipped")
    elif not docker_ok():
        lines.append("docker daemon not reachable (docker info failed): kind e2e skipped")
    if which("kind") is None and not reuse_cluster:
        lines.append("no kind: kind e2e skipped (or set E2E_KIND_CLUSTER to reuse a cluster)")
    if which("kubectl") is None:
        lines.append("no kubectl: kind e2e skipped")
    if not network_ok():
        lines.append("no network (cannot resolve infra.tekton.dev for the Tekton releases): kind e2e skipped")
    return lines


def skip_reason(lines: list[str]) -> str:
    return "; ".join(lines)


# ------------------------------------------------------------------ cluster plumbing
def hosts_toml(server: str) -> str:
    """containerd certs.d/<host>/hosts.toml sending pulls for a host to ``server`` (plain HTTP)."""
    return f'server = "{server}"\n\n[host."{server}"]\n  capabilities = ["pull", "resolve"]\n'


def node_registry_hosts() -> dict[str, str]:
    """certs.d directory name -> hosts.toml content, for each registry host the node pulls from."""
    inner = f"http://{REGISTRY_NAME}:5000"
    return {f"localhost:{REGISTRY_HOST_PORT}": hosts_toml(inner), f"{REGISTRY_NAME}:5000": hosts_toml(inner)}


def registry_service(namespace: str, name: str, ip: str, port: int = 5000) -> list[dict]:
    """A selector-less Service plus Endpoints so pods reach a registry container on the kind
    network as ``name:port`` (pod DNS does not see docker's container names)."""
    return [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"ports": [{"name": "registry", "port": port, "targetPort": port, "protocol": "TCP"}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": namespace},
         "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "registry", "port": port, "protocol": "TCP"}]}]},
    ]


def docker_config(registry: str, user: str, password: str) -> dict:
    auth = b64encode(f"{user}:{password}".encode()).decode()
    return {"auths": {registry: {"auth": auth}}}


def to_yaml(objs: list[dict]) -> str:
    return yaml.safe_dump_all(objs, sort_keys=False)


def load_catalog(rel: str) -> list[dict]:
    with open(CATALOG / rel) as fh:
        return [d for d in yaml.safe_load_all(fh) if d]


def catalog_files() -> list[Path]:
    """The catalog resources to apply (Tasks and Pipelines; not samples or tests)."""
    return sorted(p for p in CATALOG.glob("*/*/*/*.yaml") if p.parent.name[:1].isdigit()
                  and p.parent.parent.parent.name in ("tasks", "pipelines"))


# ------------------------------------------------------------------ case objects
DOCKERFILE = """FROM {base}
ARG GREETING=unset
RUN echo "$GREETING" > /greeting && chmod 0644 /greeting
CMD ["cat", "/greeting"]
"""


def source_configmap(namespace: str, base: str, name: str = "source") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace},
            "data": {"Dockerfile": DOCKERFILE.format(base=base)}}


def kaniko_taskrun(namespace: str, name: str, image: str, builder_image: str, *, greeting: str,
                   insecure_registries: list[str], source: dict, service_account: str | None = None,
                   dockerconfig_secret: str | None = None) -> dict:
    """A TaskRun of the catalog's kaniko-build Task."""
    workspaces = [dict(source, name="source")]
    if dockerconfig_secret:
        workspaces.append({"name": "dockerconfig", "secret": {"secretName": dockerconfig_secret}})
    spec: dict = {
        "taskRef": {"name": "kaniko-build"},
        "params": [
            {"name": "IMAGE", "value": image},
            {"name": "BUILDER_IMAGE", "value": builder_image},
            {"name": "BUILD_ARGS", "value": [f"GREETING={greeting}"]},
            {"name": "EXTRA_ARGS", "value": [f"--insecure-registry={r}" for r in insecure_registries]},
        ],
        "workspaces": workspaces,
        "timeout": "15m",
    }
    if service_account:
        spec["serviceAccountName"] = service_account
    return {"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


# The Pipeline's non-root steps (git-clone's clone, the digest check) name no uid, so OpenShift's
# restricted-v2 can pick one; their unreleased defaults (alpine/git, quay.io/skopeo/stable) run as
# root, so on plain Kubernetes the run gives their pods one (tekton/README.md "Pod Security").
NON_ROOT_PIPELINE_TASKS = ("fetch-source", "verify-digest")
PLAIN_KUBERNETES_STEP_USER = {"runAsUser": 65534, "runAsGroup": 65534}


def non_root_task_run_specs() -> list[dict]:
    return [{"pipelineTaskName": t, "podTemplate": {"securityContext": dict(PLAIN_KUBERNETES_STEP_USER)}}
            for t in NON_ROOT_PIPELINE_TASKS]


def build_and_push_pipelinerun(namespace: str, name: str, git_url: str, revision: str, image: str,
                               builder_image: str, insecure_registry: str, base: str) -> dict:
    return {
        "apiVersion": "tekton.dev/v1", "kind": "PipelineRun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "pipelineRef": {"name": "build-and-push"},
            "params": [
                {"name": "git-url", "value": git_url},
                {"name": "git-revision", "value": revision},
                {"name": "image", "value": image},
                {"name": "builder-image", "value": builder_image},
                {"name": "build-args", "value": [f"GREETING=built from {revision}", f"BASE={base}"]},
                {"name": "extra-args", "value": [f"--insecure-registry={insecure_registry}"]},
                {"name": "tls-verify", "value": "false"},
            ],
            "timeouts": {"pipeline": "20m"},
            "taskRunSpecs": non_root_task_run_specs(),
            "workspaces": [{"name": "source", "volumeClaimTemplate": {"spec": {
                "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "100Mi"}}}}}],
        },
    }


def git_server(namespace: str, base: str, name: str = "git-server") -> list[dict]:
    """A git daemon Pod + Service serving git://NAME.NS.svc/app with one commit on main."""
    script = f"""set -eu
mkdir -p /srv/app && cd /srv/app
git init -q -b main .
git config user.email e2e@example.invalid && git config user.name e2e
git config uploadpack.allowAnySHA1InWant true
cat > Dockerfile <<'DOCKERFILE'
ARG BASE={base}
FROM $BASE
ARG GREETING=unset
RUN echo "$GREETING" > /greeting
CMD ["cat", "/greeting"]
DOCKERFILE
git add Dockerfile && git commit -q -m "tiny repo for the e2e suite"
touch /srv/ready
exec git daemon --reuseaddr --export-all --base-path=/srv --listen=0.0.0.0 --port=9418 /srv
"""
    labels = {"app": name}
    return [
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace, "labels": labels},
         "spec": {"containers": [{"name": "git", "image": GIT_IMAGE, "command": ["sh", "-c", script],
                                  "ports": [{"containerPort": 9418}],
                                  "readinessProbe": {"exec": {"command": ["test", "-f", "/srv/ready"]},
                                                     "periodSeconds": 2}}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"name": "git", "port": 9418, "targetPort": 9418}]}},
    ]


def git_url(namespace: str, name: str = "git-server") -> str:
    return f"git://{name}.{namespace}.svc.cluster.local/app"


def trigger_objects(namespace: str, image_repo: str, builder_extra_arg: str, service_account: str,
                    builder_image: str | None = None) -> list[dict]:
    """The catalog's triggers, made ready for one namespace: RBAC subjects, the image repository
    binding, and TriggerTemplate defaults for the e2e registry and (``builder_image``) the
    executor image under test."""
    rel = "triggers/build-and-push/0.1"
    objs = []
    for f in ("rbac.yaml", "github-push.yaml", "gitlab-push.yaml", "build-and-push-run.yaml",
              "build-and-push-listener.yaml"):
        objs += load_catalog(f"{rel}/{f}")
    out = []
    for o in copy.deepcopy(objs):
        o["metadata"]["namespace"] = namespace
        if o["kind"] == "ClusterRoleBinding":
            o["metadata"]["name"] = f"{o['metadata']['name']}-{namespace}"
            del o["metadata"]["namespace"]
            for s in o["subjects"]:
                s["namespace"] = namespace
        if o["kind"] == "EventListener":
            for t in o["spec"]["triggers"]:
                for b in t["bindings"]:
                    if b.get("name") == "image-repo":
                        b["value"] = image_repo
        if o["kind"] == "TriggerTemplate":
            for p in o["spec"]["params"]:
                if p["name"] == "build-extra-arg":
                    p["default"] = builder_extra_arg
                elif p["name"] == "tls-verify":
                    p["default"] = "false"
                elif p["name"] == "service-account":
                    p["default"] = service_account
                elif p["name"] == "builder-image" and builder_image:
                    p["default"] = builder_image
            for rt in o["spec"]["resourcetemplates"]:
                rt["spec"]["taskRunSpecs"] = non_root_task_run_specs()
        out.append(o)
    out.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "build-and-push-webhook", "namespace": namespace},
                "type": "Opaque", "stringData": {"secret": WEBHOOK_SECRET}})
    return out


def github_push_payload(clone_url: str, sha: str, ref: str = "refs/heads/main") -> bytes:
    body = {"ref": ref, "before": "0" * 40, "after": sha, "created": True, "deleted": False,
            "repository": {"name": "app", "full_name": "e2e/app", "clone_url": clone_url},
            "head_commit": {"id": sha, "message": "e2e"}, "pusher": {"name": "e2e"}}
    return json.dumps(body, separators=(",", ":")).encode()


def github_delete_payload(clone_url: str, before: str, ref: str = "refs/heads/gone") -> bytes:
    """The push event GitHub sends when a branch is deleted: ``deleted`` true, all-zero ``after``,
    no head commit. The listener's cel filter must drop it."""
    body = {"ref": ref, "before": before, "after": "0" * 40, "created": False, "deleted": True,
            "repository": {"name": "app", "full_name": "e2e/app", "clone_url": clone_url},
            "head_commit": None, "pusher": {"name": "e2e"}}
    return json.dumps(body, separators=(",", ":")).encode()


def github_signature(secret: str, body: bytes) -> str:
    """The X-Hub-Signature-256 header value GitHub sends: sha256=HMAC-SHA256(secret, body)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github_headers(secret: str, body: bytes) -> dict[str, str]:
    return {"Content-Type": "application/json", "X-GitHub-Event": "push",
            "X-GitHub-Delivery": hashlib.sha1(body).hexdigest(),
            "X-Hub-Signature-256": github_signature(secret, body)}


def run_pod(namespace: str, name: str, image: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": image}]}}


def pod_security_violations(pod: dict) -> list[str]:
    """Containers of a pod (init and regular) that are privileged or add capabilities."""
    out = []
    spec = pod.get("spec", {})
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
        added = (sc.get("capabilities") or {}).get("add") or []
        if added:
            out.append(f"{c['name']}: adds capabilities {added}")
        if sc.get("allowPrivilegeEscalation") is True and c["name"].startswith("step-"):
            out.append(f"{c['name']}: allowPrivilegeEscalation true")
    return out


def step_security_levels(pod: dict) -> dict[str, str]:
    """Pod Security level (restricted/baseline/privileged) each step container of a TaskRun pod meets,
    as Tekton created it (tests/tekton_schemas/pod_security.py)."""
    from tests.tekton_schemas.pod_security import level
    pod_sc = pod.get("spec", {}).get("securityContext") or {}
    return {c["name"]: level(c.get("securityContext") or {}, pod_sc)
            for c in pod.get("spec", {}).get("containers", []) if c["name"].startswith("step-")}


def step_run_as_users(pod: dict) -> dict[str, int | None]:
    return {c["name"]: (c.get("securityContext") or {}).get("runAsUser")
            for c in pod.get("spec", {}).get("containers", []) if c["name"].startswith("step-")}


def executor_build_command(executor: list[str], tag: str) -> list[str]:
    """How the e2e fixture builds the executor image with the executor itself."""
    return executor + ["--context", str(REPO), "--dockerfile", str(REPO / "Dockerfile.executor"),
                       "--destination", tag, "--insecure-registry", tag.split("/")[0]]
