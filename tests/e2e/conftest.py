"""Session fixture for the kind e2e suite: cluster, registries, Tekton, executor image.

Environment:
  E2E_KIND_CLUSTER   reuse this existing kind cluster (not created, not deleted)
  E2E_KEEP_CLUSTER=1 keep the cluster this run created (CI does, for its failure diagnostics, and
                     deletes it in a last step); E2E_KEEP_NAMESPACES=1 keep case namespaces
  E2E_PIPELINES_VERSION / E2E_TRIGGERS_VERSION   Tekton releases (pinned defaults in lib.py)
  E2E_EXECUTOR_IMAGE use this already-pushed executor image instead of building one
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e import lib
from tests.e2e.kube import Kube, sh

BASE_SOURCE = "docker.io/library/busybox:1.36.1"
MANIFEST_TYPES = ", ".join([
    "application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.docker.distribution.manifest.list.v2+json"])


@dataclass
class E2E:
    kube: Kube
    executor_image: str        # as nodes pull it
    base_image: str            # as pods pull it (kind-registry:5000/...)
    registry_ip: str
    auth_registry_ip: str
    keep_namespaces: bool

    def registry_digest(self, repo: str, tag: str, auth: bool = False) -> str:
        port = lib.AUTH_REGISTRY_HOST_PORT if auth else lib.REGISTRY_HOST_PORT
        r = httpx.head(f"http://127.0.0.1:{port}/v2/{repo}/manifests/{tag}",
                       headers={"Accept": MANIFEST_TYPES},
                       auth=(lib.AUTH_USER, lib.AUTH_PASSWORD) if auth else None, timeout=30)
        r.raise_for_status()
        return r.headers["Docker-Content-Digest"]

    def prepare_namespace(self, ns: str) -> None:
        """Catalog Tasks/Pipelines and the registry Services, in one case namespace."""
        for f in lib.catalog_files():
            self.kube.apply(str(f), namespace=ns)
        self.kube.apply(lib.registry_service(ns, lib.REGISTRY_NAME, self.registry_ip)
                        + lib.registry_service(ns, lib.AUTH_REGISTRY_NAME, self.auth_registry_ip))


def _container_running(name: str) -> bool:
    p = sh(["docker", "inspect", "-f", "{{.State.Running}}", name], check=False)
    return p.returncode == 0 and p.stdout.strip() == "true"


def _start_registries(tmp: Path) -> None:
    if not _container_running(lib.REGISTRY_NAME):
        sh(["docker", "rm", "-f", lib.REGISTRY_NAME], check=False)
        sh(["docker", "run", "-d", "--restart=always", "-p", f"127.0.0.1:{lib.REGISTRY_HOST_PORT}:5000",
            "--network", "bridge", "--name", lib.REGISTRY_NAME, lib.REGISTRY_IMAGE])
    if not _container_running(lib.AUTH_REGISTRY_NAME):
        htpasswd = sh(["docker", "run", "--rm", "--entrypoint", "htpasswd", lib.HTPASSWD_IMAGE, "-Bbn",
                       lib.AUTH_USER, lib.AUTH_PASSWORD]).stdout.strip()
        auth_dir = tmp / "auth"
        auth_dir.mkdir(exist_ok=True)
        (auth_dir / "htpasswd").write_text(htpasswd + "\n")
        sh(["docker", "rm", "-f", lib.AUTH_REGISTRY_NAME], check=False)
        sh(["docker", "run", "-d", "--restart=always", "-p", f"127.0.0.1:{lib.AUTH_REGISTRY_HOST_PORT}:5000",
            "--network", "bridge", "-v", f"{auth_dir}:/auth:ro", "-e", "REGISTRY_AUTH=htpasswd",
            "-e", "REGISTRY_AUTH_HTPASSWD_REALM=e2e", "-e", "REGISTRY_AUTH_HTPASSWD_PATH=/auth/htpasswd",
            "--name", lib.AUTH_REGISTRY_NAME, lib.REGISTRY_IMAGE])
    for name in (lib.REGISTRY_NAME, lib.AUTH_REGISTRY_NAME):
        sh(["docker", "network", "connect", "kind", name], check=False)  # already connected is fine


def _registry_ip(name: str) -> str:
    return sh(["docker", "inspect", "-f", '{{(index .NetworkSettings.Networks "kind").IPAddress}}', name]).stdout.strip()


def _configure_nodes(cluster: str) -> None:
    nodes = sh(["kind", "get", "nodes", "--name", cluster]).stdout.split()
    for node in nodes:
        for host, toml in lib.node_registry_hosts().items():
            d = f"/etc/containerd/certs.d/{host}"
            sh(["docker", "exec", "-i", node, "sh", "-c", f"mkdir -p '{d}' && cat > '{d}/hosts.toml'"], input=toml)


def _build_executor_image(tag_host: str) -> str:
    """Build Dockerfile.executor with the executor itself; fall back to docker build."""
    dockerfile = lib.REPO / "Dockerfile.executor"
    if not dockerfile.exists():
        pytest.skip("no Dockerfile.executor in the repository yet: cannot build the executor image")
    exe = shutil.which("executor", path=str(lib.REPO / ".venv/bin")) or shutil.which("executor")
    if exe:
        p = subprocess.run(lib.executor_build_command([exe], tag_host), capture_output=True, text=True, timeout=1800)
        if p.returncode == 0:
            print(f"e2e: executor image built by the executor itself: {tag_host}", file=sys.stderr)
            return tag_host
        print(f"e2e: executor self-build failed ({p.returncode}); falling back to docker build\n{p.stderr[-2000:]}",
              file=sys.stderr)
    sh(["docker", "build", "-f", str(dockerfile), "-t", tag_host, str(lib.REPO)], timeout=1800)
    sh(["docker", "push", tag_host])
    print(f"e2e: executor image built by docker build (fallback): {tag_host}", file=sys.stderr)
    return tag_host


@pytest.fixture(scope="session")
def e2e(tmp_path_factory) -> E2E:
    reuse = os.environ.get("E2E_KIND_CLUSTER")
    missing = lib.missing_prerequisites(reuse_cluster=reuse)
    if missing:
        pytest.skip(lib.skip_reason(missing))
    cluster = reuse or lib.CLUSTER_NAME
    created = False
    if not reuse:
        existing = sh(["kind", "get", "clusters"]).stdout.split()
        if cluster not in existing:
            sh(["kind", "create", "cluster", "--config", str(lib.KIND_CONFIG), "--name", cluster, "--wait", "120s"],
               timeout=900)
            created = True
    kube = Kube(f"kind-{cluster}")
    try:
        _start_registries(tmp_path_factory.mktemp("registry"))
        _configure_nodes(cluster)
        kube.apply(str(lib.MANIFESTS / "local-registry-hosting.yaml"))
        for action, arg in lib.tekton_install_plan():
            if action == "apply":
                kube.apply(arg)
            elif action == "wait_crd":
                kube.wait_crd(arg)
            else:
                kube.wait_deployments(arg)
        # base image for the test Dockerfiles, served by the local registry
        base_host = f"localhost:{lib.REGISTRY_HOST_PORT}/e2e/busybox:1.36.1"
        sh(["docker", "pull", BASE_SOURCE])
        sh(["docker", "tag", BASE_SOURCE, base_host])
        sh(["docker", "push", base_host])
        image = os.environ.get("E2E_EXECUTOR_IMAGE") or _build_executor_image(
            f"localhost:{lib.REGISTRY_HOST_PORT}/executor:e2e")
        yield E2E(kube=kube, executor_image=image,
                  base_image=f"{lib.REGISTRY_NAME}:5000/e2e/busybox:1.36.1",
                  registry_ip=_registry_ip(lib.REGISTRY_NAME), auth_registry_ip=_registry_ip(lib.AUTH_REGISTRY_NAME),
                  keep_namespaces=os.environ.get("E2E_KEEP_NAMESPACES") == "1")
    finally:
        if created and os.environ.get("E2E_KEEP_CLUSTER") != "1":
            sh(["kind", "delete", "cluster", "--name", cluster], check=False)
