"""The Tekton catalog under tekton/ validates offline: strict JSON schemas written by this project
(tests/tekton_schemas/schemas), declared references, catalog layout and step policy. The negative
tests prove each check can fail."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.tekton_schemas.checker import (CATALOG_ROOT, KINDS, Catalog, check_paths, load_yaml_docs,
                                          validator, yaml_files)

FILES = yaml_files(CATALOG_ROOT)
CATALOG = Catalog.from_paths(FILES)
TASK_FILE = CATALOG_ROOT / "tasks/kaniko-build/0.1/kaniko-build.yaml"
PIPELINE_FILE = CATALOG_ROOT / "pipelines/build-and-push/0.1/build-and-push.yaml"
TRIGGERS = CATALOG_ROOT / "triggers/build-and-push/0.1"


def test_catalog_has_the_expected_resources():
    assert {"kaniko-build", "git-clone"} <= set(CATALOG.tasks)
    assert "build-and-push" in CATALOG.pipelines
    assert {"github-push", "gitlab-push"} <= set(CATALOG.bindings)
    assert "build-and-push-run" in CATALOG.templates
    assert "kaniko-build" in CATALOG.stepactions
    for d in ("tasks/kaniko-build/0.1", "tasks/git-clone/0.1", "pipelines/build-and-push/0.1",
              "triggers/build-and-push/0.1", "stepactions/kaniko-build/0.1"):
        assert (CATALOG_ROOT / d / "README.md").is_file(), d
        assert any((CATALOG_ROOT / d / "samples").glob("*.yaml")), d
    for d in ("tasks/kaniko-build/0.1", "tasks/git-clone/0.1", "stepactions/kaniko-build/0.1"):
        assert (CATALOG_ROOT / d / "tests/run.yaml").is_file(), d


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(CATALOG_ROOT)) for p in FILES])
def test_every_yaml_under_tekton_validates(path):
    problems = check_paths([path], catalog=CATALOG)
    assert not problems, "\n".join(map(str, problems))


def test_every_document_has_a_schema():
    kinds = {(d["apiVersion"], d["kind"]) for p in FILES for d in load_yaml_docs(p)}
    assert kinds <= set(KINDS), kinds - set(KINDS)
    assert {("tekton.dev/v1", "Task"), ("tekton.dev/v1beta1", "StepAction"), ("tekton.dev/v1", "Pipeline"),
            ("tekton.dev/v1", "PipelineRun"),
            ("tekton.dev/v1", "TaskRun"), ("triggers.tekton.dev/v1beta1", "EventListener")} <= kinds


# ------------------------------------------------------------------ the Task's contract
TASK = CATALOG.tasks["kaniko-build"]


def test_kaniko_build_interface():
    spec = TASK["spec"]
    params = {p["name"]: p for p in spec["params"]}
    assert set(params) == {"IMAGE", "DOCKERFILE", "CONTEXT", "EXTRA_ARGS", "BUILD_ARGS", "SBOM", "PROVENANCE",
                           "BUILDER_IMAGE"}
    assert params["SBOM"]["default"] == params["PROVENANCE"]["default"] == "false"
    assert params["EXTRA_ARGS"]["type"] == params["BUILD_ARGS"]["type"] == "array"
    assert all(p["type"] in ("string", "array") and p["description"] for p in params.values())
    assert "default" not in params["IMAGE"]
    ws = {w["name"]: w for w in spec["workspaces"]}
    assert not ws["source"].get("optional") and ws["dockerconfig"]["optional"] and ws["cache"]["optional"]
    results = {r["name"]: r for r in spec["results"]}
    assert set(results) == {"IMAGE_DIGEST", "IMAGE_URL", "ARTIFACT_OUTPUTS"}
    assert results["ARTIFACT_OUTPUTS"]["type"] == "object"
    assert set(results["ARTIFACT_OUTPUTS"]["properties"]) == {"uri", "digest", "isBuildArtifact"}
    ann = TASK["metadata"]["annotations"]
    assert ann["tekton.dev/categories"] == "Image Build"
    assert re.fullmatch(r"(linux/[a-z0-9]+,?)+", ann["tekton.dev/platforms"])


def test_kaniko_build_step_policy():
    spec = TASK["spec"]
    sc = spec["stepTemplate"]["securityContext"]
    assert sc["runAsUser"] == 0 and sc.get("privileged") is False and "capabilities" not in sc
    for step in spec["steps"]:
        assert "capabilities" not in step.get("securityContext", {})
        assert step["computeResources"]["requests"] and step["computeResources"]["limits"]["memory"]
        assert "$(params." not in step["script"] and "$(workspaces." not in step["script"]
        assert not any(e["name"] == "DOCKER_CONFIG" for e in step.get("env", []))
        assert step["image"] == "$(params.BUILDER_IMAGE)"


def test_dockerconfig_is_used_only_when_bound():
    step = TASK["spec"]["steps"][0]
    env = {e["name"]: e["value"] for e in step["env"]}
    assert env["DOCKERCONFIG_BOUND"] == "$(workspaces.dockerconfig.bound)"
    assert env["DOCKERCONFIG_PATH"] == "$(workspaces.dockerconfig.path)"
    assert step["script"].rstrip().endswith('exec executor tekton-step "$@"')  # executor/tekton.py decides
    # no fixed mountPath that a baked-in DOCKER_CONFIG could rely on
    assert "mountPath" not in {k for w in TASK["spec"]["workspaces"] for k in w}


def test_every_param_is_typed_for_tkn_task_start():
    for res in list(CATALOG.tasks.values()) + list(CATALOG.pipelines.values()):
        for p in res["spec"].get("params", []):
            assert p.get("type") in ("string", "array", "object"), (res["metadata"]["name"], p["name"])


# ------------------------------------------------------------------ negative tests
def _check_mutated(tmp_path: Path, src: Path, mutate, rel: str | None = None, catalog=None):
    """Copy ``src`` to the same relative place under tmp_path, apply ``mutate`` to its docs, check it."""
    rel = rel or str(src.relative_to(CATALOG_ROOT))
    dst = tmp_path / "tekton" / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    docs = load_yaml_docs(src)
    mutate(docs)
    dst.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    cat = copy.deepcopy(catalog or CATALOG)
    for d in docs:
        cat.add(d)
    return [str(p) for p in check_paths([dst], catalog=cat, root=tmp_path)]


def test_unchanged_copy_is_clean(tmp_path):
    assert _check_mutated(tmp_path, TASK_FILE, lambda d: None) == []


def test_catches_undeclared_param(tmp_path):
    def m(docs):
        docs[0]["spec"]["steps"][0]["env"][0]["value"] = "$(params.IMAGEE)"
    probs = _check_mutated(tmp_path, TASK_FILE, m)
    assert any("undeclared param 'IMAGEE'" in p for p in probs), probs


def test_catches_unknown_field(tmp_path):
    def m(docs):
        docs[0]["spec"]["steps"][0]["resources"] = {}  # v1beta1 name; v1 is computeResources
    probs = _check_mutated(tmp_path, TASK_FILE, m)
    assert any("schema:" in p and "'resources'" in p for p in probs), probs


def test_catches_unknown_top_level_spec_field(tmp_path):
    def m(docs):
        docs[0]["spec"]["paramz"] = []
    assert any("paramz" in p for p in _check_mutated(tmp_path, TASK_FILE, m))


def test_catches_version_mismatch(tmp_path):
    def m(docs):
        docs[0]["metadata"]["labels"]["app.kubernetes.io/version"] = "0.2"
    probs = _check_mutated(tmp_path, TASK_FILE, m)
    assert any("does not match directory '0.1'" in p for p in probs), probs


def test_catches_param_interpolated_in_script(tmp_path):
    def m(docs):
        docs[0]["spec"]["steps"][0]["script"] += 'echo "$(params.IMAGE)"\n'
    probs = _check_mutated(tmp_path, TASK_FILE, m)
    assert any("interpolated into a script" in p for p in probs), probs


def test_catches_file_name_not_matching_metadata_name(tmp_path):
    def m(docs):
        docs[0]["metadata"]["name"] = "kaniko"
    probs = _check_mutated(tmp_path, TASK_FILE, m)
    assert any("does not match the file name" in p for p in probs), probs


def test_catches_undeclared_workspace_and_result(tmp_path):
    def m(docs):
        env = docs[0]["spec"]["steps"][0]["env"]
        env.append({"name": "X", "value": "$(workspaces.sauce.path)"})
        env.append({"name": "Y", "value": "$(results.IMAGE_DIGESTS.path)"})
    probs = _check_mutated(tmp_path, TASK_FILE, m)
    assert any("undeclared workspace 'sauce'" in p for p in probs), probs
    assert any("undeclared result 'IMAGE_DIGESTS'" in p for p in probs), probs


def test_catches_untyped_param_and_privileged_step(tmp_path):
    def m(docs):
        del docs[0]["spec"]["params"][1]["type"]
        docs[0]["spec"]["steps"][0]["securityContext"] = {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}
    probs = _check_mutated(tmp_path, TASK_FILE, m)
    assert any("has no type" in p for p in probs), probs
    assert any("privileged is not allowed" in p for p in probs), probs
    assert any("added capabilities" in p for p in probs), probs


def test_catches_array_param_used_as_string(tmp_path):
    def m(docs):
        docs[0]["spec"]["steps"][0]["env"][0]["value"] = "$(params.EXTRA_ARGS[*])"
    probs = _check_mutated(tmp_path, TASK_FILE, m)
    assert any("whole element of args" in p for p in probs), probs


def test_catches_unknown_task_result_in_pipeline(tmp_path):
    def m(docs):
        docs[0]["spec"]["results"][0]["value"] = "$(tasks.build.results.DIGEST)"
    probs = _check_mutated(tmp_path, PIPELINE_FILE, m)
    assert any("declares no result 'DIGEST'" in p for p in probs), probs


def test_catches_pipeline_passing_unknown_or_missing_task_params(tmp_path):
    def m(docs):
        build = docs[0]["spec"]["tasks"][1]
        build["params"] = [p for p in build["params"] if p["name"] != "IMAGE"]
        build["params"].append({"name": "IMAGES", "value": "x"})
        docs[0]["spec"]["tasks"][0]["workspaces"][0]["workspace"] = "src"
    probs = _check_mutated(tmp_path, PIPELINE_FILE, m)
    assert any("does not pass required param 'IMAGE'" in p for p in probs), probs
    assert any("passes param 'IMAGES'" in p for p in probs), probs
    assert any("workspace 'src' is not declared" in p for p in probs), probs


def test_catches_undeclared_pipeline_param(tmp_path):
    def m(docs):
        docs[0]["spec"]["tasks"][0]["params"][0]["value"] = "$(params.git-uri)"
    probs = _check_mutated(tmp_path, PIPELINE_FILE, m)
    assert any("undeclared pipeline param 'git-uri'" in p for p in probs), probs


def test_catches_trigger_template_and_listener_mistakes(tmp_path):
    def m_tt(docs):
        docs[0]["spec"]["resourcetemplates"][0]["spec"]["params"][0]["value"] = "$(tt.params.git-uri)"
        docs[0]["spec"]["resourcetemplates"][0]["spec"]["serviceAccount"] = "x"
    probs = _check_mutated(tmp_path, TRIGGERS / "build-and-push-run.yaml", m_tt)
    assert any("undeclared TriggerTemplate param 'git-uri'" in p for p in probs), probs
    assert any("serviceAccount" in p and "schema" in p for p in probs), probs

    def m_binding(docs):
        docs[0]["spec"]["triggers"][0]["bindings"].pop()  # the image-repo binding
    probs = _check_mutated(tmp_path, TRIGGERS / "build-and-push-listener.yaml", m_binding)
    assert any("'image-repo' has no default and no binding" in p for p in probs), probs

    def m_secret(docs):
        docs[0]["spec"]["triggers"][1]["interceptors"][0]["params"].pop(0)  # gitlab secretRef
    probs = _check_mutated(tmp_path, TRIGGERS / "build-and-push-listener.yaml", m_secret)
    assert any("interceptors[0].params: schema" in p for p in probs), probs


def test_catches_taskrun_missing_required_workspace(tmp_path):
    src = CATALOG_ROOT / "tasks/kaniko-build/0.1/samples/taskrun.yaml"

    def m(docs):
        docs[0]["spec"]["workspaces"] = []
    probs = _check_mutated(tmp_path, src, m)
    assert any("required workspace 'source'" in p for p in probs), probs


def test_core_objects_are_strict():
    v = validator("v1", "Secret")
    ok = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth",
          "stringData": {"username": "u", "password": "p"}}
    assert not list(v.iter_errors(ok))
    bad = dict(ok, stringdata={})
    assert list(v.iter_errors(bad))
    missing = dict(ok, stringData={"username": "u"})
    assert list(v.iter_errors(missing))
    crb = validator("rbac.authorization.k8s.io/v1", "ClusterRoleBinding")
    obj = yaml.safe_load_all((TRIGGERS / "rbac.yaml").read_text())
    crb_doc = [d for d in obj if d["kind"] == "ClusterRoleBinding"][0]
    del crb_doc["subjects"][0]["namespace"]
    assert list(crb.iter_errors(crb_doc)), "a ClusterRoleBinding ServiceAccount subject needs a namespace"


def test_basic_auth_sample_is_annotated_for_creds_init():
    docs = load_yaml_docs(CATALOG_ROOT / "pipelines/build-and-push/0.1/samples/serviceaccount.yaml")
    basic = [d for d in docs if d.get("type") == "kubernetes.io/basic-auth"]
    assert basic and basic[0]["metadata"]["annotations"]["tekton.dev/docker-0"].startswith("https://")
    sa = [d for d in docs if d["kind"] == "ServiceAccount"][0]
    assert {"name": basic[0]["metadata"]["name"]} in sa["secrets"]
    assert any(d.get("type") == "kubernetes.io/dockerconfigjson" for d in docs)


# ------------------------------------------------------------------ catalog tests vs their registries
#: Registries the catalog harness (tektoncd/catalog test/e2e-common.sh) provides over plain HTTP:
#: add_sidecar_registry appends a `registry` (registry:2, no TLS) sidecar listening on localhost:5000.
PLAIN_HTTP_HOOKS = {"add_sidecar_registry": "localhost:5000"}


def _kaniko_calls(doc: dict):
    """(params dict) of every kaniko-build use in a Pipeline, PipelineRun (inline spec) or TaskRun."""
    spec = doc.get("spec", {})
    if doc["kind"] == "TaskRun" and spec.get("taskRef", {}).get("name") == "kaniko-build":
        yield {p["name"]: p["value"] for p in spec.get("params", [])}
    tasks = spec.get("tasks", []) + spec.get("pipelineSpec", {}).get("tasks", [])
    for t in tasks:
        if t.get("taskRef", {}).get("name") == "kaniko-build":
            yield {p["name"]: p["value"] for p in t.get("params", [])}


def test_catalog_tests_name_their_plain_http_registry_insecure():
    """Each tests/ dir whose hook gives the Task a plain-HTTP registry passes --insecure-registry for
    it to every kaniko-build that pushes there (issue 15 item 2)."""
    checked = 0
    for hook in sorted(CATALOG_ROOT.glob("tasks/*/*/tests/pre-apply-task-hook.sh")):
        text = hook.read_text()
        plain = {host for fn, host in PLAIN_HTTP_HOOKS.items()
                 if re.search(rf"^\s*{fn}\b", text, re.M)}
        for run in sorted(hook.parent.glob("*.yaml")):
            for doc in load_yaml_docs(run):
                for params in _kaniko_calls(doc):
                    host = params["IMAGE"].split("/", 1)[0]
                    if host not in plain:
                        continue
                    extra = params.get("EXTRA_ARGS", [])
                    assert f"--insecure-registry={host}" in extra or "--insecure" in extra, \
                        f"{run.relative_to(CATALOG_ROOT)}: pushes to plain-HTTP {host} without --insecure-registry"
                    checked += 1
    assert checked >= 1, "the kaniko-build catalog test pushes to the harness's plain-HTTP registry"
