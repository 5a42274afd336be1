"""The Tekton catalog on a real kind cluster with real Tekton (issue 6, cases 1-6).
Skips with one line per missing prerequisite (docker, kind, kubectl, network)."""

from __future__ import annotations

import json
import socket
import subprocess
import time

import httpx
import pytest

from tests.e2e import lib

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(3600)]

INSECURE = [f"{lib.REGISTRY_NAME}:5000", f"{lib.AUTH_REGISTRY_NAME}:5000"]


def _results(run: dict) -> dict[str, str]:
    return {r["name"]: r["value"] for r in run["status"].get("results", [])}


def _taskrun_pod(e2e, ns: str, taskrun: str) -> dict:
    return e2e.kube.items("pods", ns, f"tekton.dev/taskRun={taskrun}")[0]


def _build_from_configmap(e2e, ns: str, name: str, greeting: str, **kw) -> tuple[dict, str]:
    e2e.kube.apply([lib.source_configmap(ns, e2e.base_image)])
    image = kw.pop("image", f"{lib.REGISTRY_NAME}:5000/e2e/{name}:1")
    tr = lib.kaniko_taskrun(ns, name, image, e2e.executor_image, greeting=greeting, insecure_registries=INSECURE,
                            source={"configMap": {"name": "source"}}, **kw)
    e2e.kube.create([tr])
    return e2e.kube.wait_succeeded("taskrun", name, ns, timeout=900), image


def test_1_taskrun_from_a_workspace_without_git_then_5_run_it_and_6_pod_is_unprivileged(e2e):
    with e2e.kube.namespace("e2e-taskrun", keep=e2e.keep_namespaces) as ns:
        e2e.prepare_namespace(ns)
        run, image = _build_from_configmap(e2e, ns, "hello", "hello from the catalog")
        res = _results(run)
        assert res["IMAGE_URL"] == image
        assert res["IMAGE_DIGEST"] == e2e.registry_digest("e2e/hello", "1")

        # (6) the step pod: nothing privileged, no added capabilities, the step runs as root
        pod = _taskrun_pod(e2e, ns, "hello")
        assert lib.pod_security_violations(pod) == []
        assert set(lib.step_run_as_users(pod).values()) == {0}

        # (5) the built image runs as a Pod (the node pulls it by digest through localhost:5001)
        e2e.kube.create([lib.run_pod(ns, "run-hello",
                                     f"localhost:{lib.REGISTRY_HOST_PORT}/e2e/hello@{res['IMAGE_DIGEST']}")])
        e2e.kube.wait_pod_phase("run-hello", ns)
        logs = e2e.kube.kubectl("logs", "run-hello", "-n", ns).stdout
        assert logs.strip() == "hello from the catalog"


def test_2_pipeline_clones_from_an_in_cluster_git_server(e2e):
    with e2e.kube.namespace("e2e-pipeline", keep=e2e.keep_namespaces) as ns:
        e2e.prepare_namespace(ns)
        e2e.kube.apply(lib.git_server(ns, e2e.base_image))
        e2e.kube.kubectl("wait", "--for=condition=Ready", "pod/git-server", "-n", ns, "--timeout=180s", timeout=200)
        sha = e2e.kube.kubectl("exec", "git-server", "-n", ns, "--", "git", "-C", "/srv/app", "rev-parse", "HEAD").stdout.strip()
        image = f"{lib.REGISTRY_NAME}:5000/e2e/from-git:{sha[:12]}"
        e2e.kube.create([lib.build_and_push_pipelinerun(ns, "from-git", lib.git_url(ns), sha, image,
                                                        e2e.executor_image, INSECURE[0], e2e.base_image)])
        run = e2e.kube.wait_succeeded("pipelinerun", "from-git", ns, timeout=1200)
        res = _results(run)
        assert res["COMMIT"] == sha
        # issue 15 item 5: the clone and the digest check ran non-root under "restricted" rules,
        # the build as root under "baseline" (tekton/README.md "Pod Security")
        levels = {}
        for task in ("fetch-source", "build", "verify-digest"):
            pod = e2e.kube.items("pods", ns, f"tekton.dev/pipelineRun=from-git,tekton.dev/pipelineTask={task}")[0]
            levels[task] = set(lib.step_security_levels(pod).values())
        assert levels == {"fetch-source": {"restricted"}, "build": {"baseline"}, "verify-digest": {"restricted"}}
        assert res["IMAGE_URL"] == image
        assert res["IMAGE_DIGEST"] == e2e.registry_digest("e2e/from-git", sha[:12])


def test_3a_credentials_from_a_serviceaccount_secret(e2e):
    with e2e.kube.namespace("e2e-creds-sa", keep=e2e.keep_namespaces) as ns:
        e2e.prepare_namespace(ns)
        e2e.kube.apply([
            {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/basic-auth",
             "metadata": {"name": "registry-basic-auth", "namespace": ns,
                          "annotations": {"tekton.dev/docker-0": f"http://{lib.AUTH_REGISTRY_NAME}:5000"}},
             "stringData": {"username": lib.AUTH_USER, "password": lib.AUTH_PASSWORD}},
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "build-bot", "namespace": ns},
             "secrets": [{"name": "registry-basic-auth"}]},
        ])
        image = f"{lib.AUTH_REGISTRY_NAME}:5000/e2e/sa-creds:1"
        run, _ = _build_from_configmap(e2e, ns, "sa-creds", "pushed with SA creds", image=image,
                                       service_account="build-bot")
        res = _results(run)
        assert res["IMAGE_URL"] == image
        assert res["IMAGE_DIGEST"] == e2e.registry_digest("e2e/sa-creds", "1", auth=True)


def test_3b_credentials_from_the_dockerconfig_workspace(e2e):
    with e2e.kube.namespace("e2e-creds-ws", keep=e2e.keep_namespaces) as ns:
        e2e.prepare_namespace(ns)
        cfg = lib.docker_config(f"{lib.AUTH_REGISTRY_NAME}:5000", lib.AUTH_USER, lib.AUTH_PASSWORD)
        e2e.kube.apply([{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
                         "metadata": {"name": "registry-dockerconfig", "namespace": ns},
                         "stringData": {".dockerconfigjson": json.dumps(cfg)}}])
        image = f"{lib.AUTH_REGISTRY_NAME}:5000/e2e/ws-creds:1"
        run, _ = _build_from_configmap(e2e, ns, "ws-creds", "pushed with workspace creds", image=image,
                                       dockerconfig_secret="registry-dockerconfig")
        res = _results(run)
        assert res["IMAGE_DIGEST"] == e2e.registry_digest("e2e/ws-creds", "1", auth=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_4_eventlistener_builds_on_a_signed_push(e2e):
    with e2e.kube.namespace("e2e-trigger", keep=e2e.keep_namespaces) as ns:
        e2e.prepare_namespace(ns)
        e2e.kube.apply(lib.git_server(ns, e2e.base_image))
        e2e.kube.apply([{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "build-bot", "namespace": ns}}])
        repo = f"{lib.REGISTRY_NAME}:5000/e2e/triggered"
        e2e.kube.apply(lib.trigger_objects(ns, repo, f"--insecure-registry={INSECURE[0]}", "build-bot",
                                           builder_image=e2e.executor_image))
        e2e.kube.kubectl("wait", "--for=condition=Ready", "pod/git-server", "-n", ns, "--timeout=180s", timeout=200)
        deadline = time.monotonic() + 300
        while not e2e.kube.items("deployments", ns, "eventlistener=build-and-push-listener"):
            assert time.monotonic() < deadline, "EventListener deployment never appeared"
            time.sleep(3)
        e2e.kube.wait_deployments(ns)
        sha = e2e.kube.kubectl("exec", "git-server", "-n", ns, "--", "git", "-C", "/srv/app", "rev-parse", "HEAD").stdout.strip()
        body = lib.github_push_payload(lib.git_url(ns), sha)
        port = _free_port()
        pf = subprocess.Popen(["kubectl", "--context", e2e.kube.context, "-n", ns, "port-forward",
                               "service/el-build-and-push-listener", f"{port}:8080"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(30):
                try:
                    # a wrong signature is refused: no PipelineRun may appear for it
                    bad = httpx.post(f"http://127.0.0.1:{port}", content=body,
                                     headers=lib.github_headers("wrong-secret", body), timeout=10)
                    break
                except httpx.TransportError:
                    time.sleep(2)
            # a correctly signed branch deletion is filtered out by the cel interceptor
            gone = lib.github_delete_payload(lib.git_url(ns), sha)
            deleted = httpx.post(f"http://127.0.0.1:{port}", content=gone,
                                 headers=lib.github_headers(lib.WEBHOOK_SECRET, gone), timeout=30)
            r = httpx.post(f"http://127.0.0.1:{port}", content=body,
                           headers=lib.github_headers(lib.WEBHOOK_SECRET, body), timeout=30)
        finally:
            pf.terminate()
            pf.wait(10)
        assert r.status_code == 202, r.text
        deadline = time.monotonic() + 120
        while not (runs := e2e.kube.items("pipelineruns", ns)):
            assert time.monotonic() < deadline, "no PipelineRun created by the EventListener"
            time.sleep(3)
        time.sleep(10)  # give a wrongly accepted delivery time to show up as a second run
        runs = e2e.kube.items("pipelineruns", ns)
        assert len(runs) == 1, (f"the badly signed delivery ({bad.status_code}) and the branch deletion "
                                f"({deleted.status_code}) must not create a run")
        revision = {p["name"]: p["value"] for p in runs[0]["spec"]["params"]}["git-revision"]
        assert revision == sha
        run = e2e.kube.wait_succeeded("pipelinerun", runs[0]["metadata"]["name"], ns, timeout=1200)
        res = _results(run)
        assert res["IMAGE_URL"] == f"{repo}:{sha}"
        assert res["IMAGE_DIGEST"] == e2e.registry_digest("e2e/triggered", sha)
