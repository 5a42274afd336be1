"""The pure parts of the kind e2e suite (tests/e2e/lib.py): skip logic, manifests, run objects,
webhook signature, pod security check. The run objects are checked with the catalog checker."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from base64 import b64decode
from pathlib import Path

import pytest
import yaml

from tests.e2e import lib
from tests.tekton_schemas.checker import Catalog, check_docs, validator, yaml_files

CATALOG = Catalog.from_paths(yaml_files(lib.CATALOG))


def _check(objs):
    probs = check_docs(Path("run.yaml"), objs, CATALOG, "run.yaml")
    assert not probs, "\n".join(map(str, probs))


def test_all_present_means_no_skip():
    assert lib.missing_prerequisites(which=lambda t: f"/usr/bin/{t}", docker_ok=lambda: True,
                                     network_ok=lambda: True) == []


def test_one_reason_line_per_missing_part():
    lines = lib.missing_prerequisites(which=lambda t: None, docker_ok=lambda: True, network_ok=lambda: False)
    assert lines[0] == "no docker: kind e2e skipped"
    assert any(line.startswith("no kind:") for line in lines)
    assert any(line.startswith("no kubectl:") for line in lines)
    assert any(line.startswith("no network") for line in lines)
    assert len(lines) == 4


def test_docker_without_daemon_and_reused_cluster():
    lines = lib.missing_prerequisites(which=lambda t: None if t == "kind" else t, docker_ok=lambda: False,
                                      network_ok=lambda: True, reuse_cluster="mine")
    assert lines == ["docker daemon not reachable (docker info failed): kind e2e skipped"]


def test_github_signature_matches_hmac_sha256():
    body = lib.github_push_payload("git://g/app", "a" * 40)
    sig = lib.github_signature("s3cret", body)
    assert sig == "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert lib.github_signature("other", body) != sig
    h = lib.github_headers("s3cret", body)
    assert h["X-GitHub-Event"] == "push" and h["Content-Type"] == "application/json"


def test_push_payload_feeds_the_github_binding():
    payload = json.loads(lib.github_push_payload("git://g/app", "b" * 40))
    binding = CATALOG.bindings["github-push"]["spec"]["params"]
    values = {p["name"]: p["value"] for p in binding}
    assert values["git-revision"] == "$(body.after)" and payload["after"] == "b" * 40
    assert values["git-url"] == "$(body.repository.clone_url)" and payload["repository"]["clone_url"] == "git://g/app"


def test_delete_payload_is_what_the_github_filter_drops():
    """lib's deletion payload carries GitHub's deletion markers (the e2e case 4 sends it signed)."""
    gone = json.loads(lib.github_delete_payload("git://g/app", "c" * 40))
    assert gone["deleted"] is True and gone["after"] == "0" * 40 and gone["head_commit"] is None
    push = json.loads(lib.github_push_payload("git://g/app", "c" * 40))
    assert push["deleted"] is False and push["after"] == "c" * 40
    celpy = pytest.importorskip("celpy")
    el = yaml.safe_load((lib.CATALOG / "triggers/build-and-push/0.1/build-and-push-listener.yaml").read_text())
    gh = next(t for t in el["spec"]["triggers"] if t["name"] == "github-push")
    expr = next(i for i in gh["interceptors"] if i["ref"]["name"] == "cel")["params"][0]["value"]
    env = celpy.Environment()
    prog = env.program(env.compile(expr))
    assert not prog.evaluate({"body": celpy.json_to_cel(gone)})
    assert prog.evaluate({"body": celpy.json_to_cel(push)})


def test_hosts_toml_points_pulls_at_the_registry_container():
    hosts = lib.node_registry_hosts()
    assert set(hosts) == {"localhost:5001", "kind-registry:5000"}
    toml = hosts["localhost:5001"]
    assert 'server = "http://kind-registry:5000"' in toml and '[host."http://kind-registry:5000"]' in toml


def test_kind_config_uses_certs_d():
    cfg = yaml.safe_load(lib.KIND_CONFIG.read_text())
    assert cfg["kind"] == "Cluster" and cfg["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane"]
    assert any('config_path = "/etc/containerd/certs.d"' in p for p in cfg["containerdConfigPatches"])
    cm = yaml.safe_load((lib.MANIFESTS / "local-registry-hosting.yaml").read_text())
    assert not list(validator("v1", "ConfigMap").iter_errors(cm))
    assert cm["metadata"] == {"name": "local-registry-hosting", "namespace": "kube-public"}
    assert 'host: "localhost:5001"' in cm["data"]["localRegistryHosting.v1"]


def test_registry_service_has_matching_endpoints():
    svc, ep = lib.registry_service("ns", "kind-registry", "172.18.0.3")
    assert "selector" not in svc["spec"] and svc["metadata"]["name"] == ep["metadata"]["name"]
    assert ep["subsets"][0]["addresses"] == [{"ip": "172.18.0.3"}]
    assert svc["spec"]["ports"][0]["name"] == ep["subsets"][0]["ports"][0]["name"]


def test_docker_config_auth():
    cfg = lib.docker_config("r:5000", "u", "p")
    assert b64decode(cfg["auths"]["r:5000"]["auth"]) == b"u:p"


def test_taskrun_objects_match_the_task():
    tr = lib.kaniko_taskrun("ns", "hello", "kind-registry:5000/e2e/hello:1", "localhost:5001/executor:e2e",
                            greeting="hi", insecure_registries=["a:5000", "b:5000"],
                            source={"configMap": {"name": "source"}}, service_account="build-bot",
                            dockerconfig_secret="cfg")
    _check([tr])
    params = {p["name"]: p["value"] for p in tr["spec"]["params"]}
    assert params["EXTRA_ARGS"] == ["--insecure-registry=a:5000", "--insecure-registry=b:5000"]
    assert params["BUILD_ARGS"] == ["GREETING=hi"]
    cm = lib.source_configmap("ns", "kind-registry:5000/e2e/busybox:1.36.1")
    assert cm["data"]["Dockerfile"].startswith("FROM kind-registry:5000/e2e/busybox:1.36.1\n")


def test_pipelinerun_object_matches_the_pipeline():
    pr = lib.build_and_push_pipelinerun("ns", "from-git", lib.git_url("ns"), "c" * 40, "r/x:1",
                                        "e:1", "kind-registry:5000", "base:1")
    _check([pr])
    assert lib.git_url("ns") == "git://git-server.ns.svc.cluster.local/app"
    _assert_non_root_tasks_get_a_uid(pr["spec"])


def _assert_non_root_tasks_get_a_uid(spec: dict) -> None:
    """The clone and digest-check pods get uid 65534 from the run (the steps name none, and the
    source catalog's default images run as root); the build task keeps its own uid 0."""
    pipeline = CATALOG.pipelines["build-and-push"]
    tasks = {t["name"] for t in pipeline["spec"]["tasks"]}
    specs = {s["pipelineTaskName"]: s["podTemplate"]["securityContext"] for s in spec["taskRunSpecs"]}
    assert specs == {"fetch-source": {"runAsUser": 65534, "runAsGroup": 65534},
                     "verify-digest": {"runAsUser": 65534, "runAsGroup": 65534}}
    assert set(specs) < tasks and "build" in tasks


def test_trigger_objects_are_namespaced_and_valid():
    objs = lib.trigger_objects("e2e-trigger", "kind-registry:5000/e2e/triggered", "--insecure-registry=x:5000", "build-bot",
                               builder_image="kind-registry:5000/executor:e2e")
    crb = [o for o in objs if o["kind"] == "ClusterRoleBinding"][0]
    assert crb["metadata"]["name"].endswith("-e2e-trigger") and "namespace" not in crb["metadata"]
    assert crb["subjects"][0]["namespace"] == "e2e-trigger"
    el = [o for o in objs if o["kind"] == "EventListener"][0]
    assert {"name": "image-repo", "value": "kind-registry:5000/e2e/triggered"} in el["spec"]["triggers"][0]["bindings"]
    tt = [o for o in objs if o["kind"] == "TriggerTemplate"][0]
    defaults = {p["name"]: p.get("default") for p in tt["spec"]["params"]}
    assert defaults["build-extra-arg"] == "--insecure-registry=x:5000" and defaults["tls-verify"] == "false"
    assert defaults["builder-image"] == "kind-registry:5000/executor:e2e"
    _assert_non_root_tasks_get_a_uid(tt["spec"]["resourcetemplates"][0]["spec"])
    cat = Catalog.from_paths(yaml_files(lib.CATALOG))
    for o in objs:
        cat.add(o)
    for o in objs:
        probs = check_docs(Path(o["metadata"]["name"] + ".yaml"), [o], cat, "t.yaml")
        assert not probs, "\n".join(map(str, probs))
    # the catalog files themselves were not modified
    assert lib.load_catalog("triggers/build-and-push/0.1/rbac.yaml")[2]["subjects"][0]["namespace"] == "default"


def test_git_server_serves_one_repo():
    pod, svc = lib.git_server("ns", "base:1")
    script = pod["spec"]["containers"][0]["command"][2]
    assert "git daemon" in script and "uploadpack.allowAnySHA1InWant true" in script
    assert "ARG BASE=base:1" in script
    assert svc["spec"]["selector"] == pod["metadata"]["labels"]


@pytest.mark.parametrize("sc,expected", [
    ({}, []),
    ({"runAsUser": 0, "privileged": False}, []),
    ({"privileged": True}, ["step-build-and-push: privileged"]),
    ({"capabilities": {"add": ["SYS_ADMIN"]}}, ["step-build-and-push: adds capabilities ['SYS_ADMIN']"]),
    ({"capabilities": {"drop": ["ALL"]}}, []),
])
def test_pod_security_violations(sc, expected):
    pod = {"spec": {"initContainers": [{"name": "prepare"}],
                    "containers": [{"name": "step-build-and-push", "securityContext": sc}]}}
    assert lib.pod_security_violations(pod) == expected


def test_release_urls_are_pinned():
    urls = lib.release_urls()
    assert "/previous/v" in urls["pipelines"] and urls["pipelines"].endswith("/release.yaml")
    assert urls["interceptors"].endswith("/interceptors.yaml")


def test_catalog_files_to_apply():
    names = sorted(p.stem for p in lib.catalog_files())
    assert names == ["build-and-push", "build-multiarch", "git-clone", "kaniko-build"]


def test_step_security_levels_of_a_pod():
    pod = {"spec": {"securityContext": {"runAsNonRoot": True, "runAsUser": 65534},
                    "initContainers": [{"name": "prepare"}],
                    "containers": [
                        {"name": "step-clone", "securityContext": {
                            "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}},
                        {"name": "step-build", "securityContext": {"runAsUser": 0, "privileged": False}},
                        {"name": "sidecar-x", "securityContext": {"privileged": True}}]}}
    assert lib.step_security_levels(pod) == {"step-clone": "restricted", "step-build": "baseline"}


# ------------------------------------------------------------------ install order, versions, CI workflow
WORKFLOW = lib.REPO / ".github/workflows/e2e.yml"


def test_interceptors_are_applied_after_their_crd_and_the_triggers_webhook():
    plan = lib.tekton_install_plan()
    urls = lib.release_urls()
    i_triggers = plan.index(("apply", urls["triggers"]))
    i_crd = plan.index(("wait_crd", lib.INTERCEPTOR_CRD))
    i_interceptors = plan.index(("apply", urls["interceptors"]))
    assert i_triggers < i_crd < i_interceptors
    assert ("wait_deployments", lib.TEKTON_NAMESPACE) in plan[i_triggers + 1:i_interceptors]
    assert plan.index(("apply", urls["pipelines"])) < i_triggers
    assert lib.INTERCEPTOR_CRD == "clusterinterceptors.triggers.tekton.dev"


def test_pipelines_pinned_to_the_v1_15_lts_line_in_one_place():
    assert lib.PIPELINES_VERSION_PINNED.startswith("v1.15.")
    text = "\n".join(ln for ln in WORKFLOW.read_text().splitlines() if "uses:" not in ln)  # action tags aside
    assert "E2E_PIPELINES_VERSION" not in text and "E2E_TRIGGERS_VERSION" not in text
    assert lib.PIPELINES_VERSION_PINNED not in text and "v1.12" not in text
    assert "PIPELINES_VERSION_PINNED" in (lib.REPO / "tekton/README.md").read_text()


def test_workflow_reads_the_cluster_before_deleting_it():
    wf = yaml.safe_load(WORKFLOW.read_text())
    assert wf["env"]["E2E_CLUSTER"] == lib.CLUSTER_NAME
    steps = wf["jobs"]["kind"]["steps"]
    names = [s.get("name", s.get("uses")) for s in steps]
    e2e = next(i for i, s in enumerate(steps) if s.get("name") == "e2e")
    diag = next(i for i, s in enumerate(steps) if s.get("if") == "failure()")
    delete = next(i for i, s in enumerate(steps) if "kind delete cluster" in s.get("run", ""))
    assert e2e < diag < delete == len(steps) - 1, names
    assert steps[delete]["if"] == "always()"
    assert steps[e2e]["env"]["E2E_KEEP_CLUSTER"] == "1"      # the suite itself must not delete it
    assert "$E2E_CLUSTER" in steps[diag]["run"]


def test_workflow_actions_are_pinned_by_commit_sha_like_the_release_workflow():
    """Every action by a full 40-hex commit SHA with its release tag in a comment; the actions
    both workflows use are pinned to the same commits."""
    pins = {}
    for wf in (WORKFLOW, WORKFLOW.parent / "release.yml"):
        lines = [ln for ln in wf.read_text().splitlines() if ln.lstrip().startswith(("uses:", "- uses:"))]
        assert lines, wf
        for ln in lines:
            ref, _, comment = ln.split("uses:", 1)[1].partition("#")
            action, _, sha = ref.strip().partition("@")
            assert re.fullmatch(r"[0-9a-f]{40}", sha), ln
            assert re.fullmatch(r" v\d+\.\d+\.\d+", comment), ln
            assert pins.setdefault(action, sha) == sha, f"{action} pinned to two commits"
