"""The kaniko-build StepAction: it is the Task's step (same container once substituted), it runs
through ``executor tekton-step`` with StepAction semantics (paths as params, step results), its
Pod Security level, and the checker's StepAction rules can fail."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from executor import tekton
from tests.tekton_schemas.checker import CATALOG_ROOT, Catalog, check_paths, load_yaml_docs, yaml_files
from tests.tekton_schemas.pod_security import level
from tests.tekton_schemas.substitute import render_step, stepaction_as_task
from tests.unit.test_tekton_task_script import DIGEST, FakeExecutor

ACTION_FILE = CATALOG_ROOT / "stepactions/kaniko-build/0.1/kaniko-build.yaml"
ACTION = load_yaml_docs(ACTION_FILE)[0]
TASK = load_yaml_docs(CATALOG_ROOT / "tasks/kaniko-build/0.1/kaniko-build.yaml")[0]
CATALOG = Catalog.from_paths(yaml_files(CATALOG_ROOT))


def test_catalog_layout_and_interface():
    d = ACTION_FILE.parent
    assert (d / "README.md").is_file() and (d / "samples/taskrun.yaml").is_file() and (d / "tests/run.yaml").is_file()
    assert (d / "samples/kaniko-build-rootless.yaml").is_file()
    assert ACTION["apiVersion"] == "tekton.dev/v1beta1" and ACTION["metadata"]["name"] == "kaniko-build"
    params = {p["name"]: p for p in ACTION["spec"]["params"]}
    task_params = {p["name"]: p for p in TASK["spec"]["params"]}
    # the Task's params, plus the workspaces as paths
    assert set(params) == set(task_params) | {"SOURCE_PATH", "DOCKERCONFIG_PATH", "CACHE_PATH"}
    for name in task_params:
        assert params[name]["type"] == task_params[name]["type"]
        assert params[name].get("default") == task_params[name].get("default"), name
    assert {r["name"]: r.get("type", "string") for r in ACTION["spec"]["results"]} == {
        r["name"]: r.get("type", "string") for r in TASK["spec"]["results"]}


def test_stepaction_is_the_tasks_step():
    """Rendered with the same inputs, the StepAction's container equals the Task's step but for
    where results go and the *_BOUND flags (a StepAction only gets paths)."""
    params = {"IMAGE": "r:5000/a:b", "BUILD_ARGS": ["A=1"], "EXTRA_ARGS": ["--target=t"], "SBOM": "cyclonedx",
              "PROVENANCE": "true", "BUILDER_IMAGE": "r:5000/executor@sha256:" + "0" * 64}
    ws = {"source": "/workspace/source", "dockerconfig": "/workspace/dockerconfig", "cache": "/workspace/cache"}
    t = render_step(TASK, "build-and-push", params, ws)
    a = render_step(stepaction_as_task(ACTION, "build"), "build", {
        **params, "SOURCE_PATH": ws["source"], "DOCKERCONFIG_PATH": ws["dockerconfig"], "CACHE_PATH": ws["cache"]}, {})
    assert (a.image, a.script, a.command, a.args, a.working_dir) == (t.image, t.script, t.command, t.args,
                                                                      t.working_dir)
    results = {k for k in t.env if k.startswith("RESULT_")}
    assert {k: v for k, v in a.env.items() if k not in results} == {
        k: v for k, v in t.env.items() if k not in results and not k.endswith("_BOUND")}
    assert {a.env[k] for k in results} == {f"/tekton/steps/step-build/results/{n}"
                                           for n in ("IMAGE_DIGEST", "IMAGE_URL", "ARTIFACT_OUTPUTS")}
    # Tekton replaces a ref step's securityContext with the StepAction's (even an absent one), so
    # the StepAction sets none and the composing Task's stepTemplate decides.
    assert "securityContext" not in ACTION["spec"]


def test_rootless_sample_task_is_restricted():
    """samples/kaniko-build-rootless.yaml: the StepAction in a Task whose stepTemplate makes the build
    step non-root with no capabilities (Pod Security restricted), for Dockerfiles without RUN."""
    task = load_yaml_docs(ACTION_FILE.parent / "samples/kaniko-build-rootless.yaml")[0]
    step = next(s for s in task["spec"]["steps"] if s.get("ref", {}).get("name") == "kaniko-build")
    assert "securityContext" not in step      # it would be replaced by the StepAction's anyway
    sc = task["spec"]["stepTemplate"]["securityContext"]
    assert level(sc) == "restricted" and sc["runAsUser"] == 1000


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    for d in ("source", "step-results", "home"):
        (tmp_path / d).mkdir()
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def run_action(tmp: Path, monkeypatch, params: dict) -> tuple[int, FakeExecutor]:
    r = render_step(stepaction_as_task(ACTION, "build"), "build", {"SOURCE_PATH": str(tmp / "source"), **params}, {},
                    step_results_dir=str(tmp / "step-results"))
    for k, v in r.env.items():
        monkeypatch.setenv(k, v)
    fake = FakeExecutor()
    return tekton.run(r.args, runner=fake), fake


def test_stepaction_runs_with_paths_as_params(dirs, monkeypatch):
    cfg = dirs / "cfg"
    cfg.mkdir()
    (cfg / ".dockerconfigjson").write_text('{"auths": {}}')
    code, fake = run_action(dirs, monkeypatch, {"IMAGE": "r:5000/a:b", "DOCKERCONFIG_PATH": str(cfg),
                                                "CACHE_PATH": str(dirs / "cache"), "BUILD_ARGS": ["X=1"]})
    assert code == 0
    argv = fake.build["argv"]
    assert json.loads(fake.build["config"]) == {"auths": {}}
    assert argv[argv.index("--cache-repo") + 1] == f"oci:{dirs}/cache/layers" and len(fake.warms) == 1
    assert argv[argv.index("--dockerfile") + 1] == f"{dirs}/source/./Dockerfile"
    out = dirs / "step-results"
    assert (out / "IMAGE_DIGEST").read_text() == DIGEST and (out / "IMAGE_URL").read_text() == "r:5000/a:b"
    assert json.loads((out / "ARTIFACT_OUTPUTS").read_text())["digest"] == DIGEST


def test_stepaction_without_optional_paths(dirs, monkeypatch):
    code, fake = run_action(dirs, monkeypatch, {"IMAGE": "r:5000/a:b"})
    assert code == 0
    assert fake.build["DOCKER_CONFIG"] is None and fake.warms == [] and "--cache" not in fake.build["argv"]


# ------------------------------------------------------------------ the checker's StepAction rules
def _problems(tmp_path: Path, src: Path, mutate) -> list[str]:
    rel = src.relative_to(CATALOG_ROOT)
    dst = tmp_path / "tekton" / rel
    dst.parent.mkdir(parents=True, exist_ok=True)
    docs = load_yaml_docs(src)
    mutate(docs)
    dst.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    cat = copy.deepcopy(CATALOG)
    for d in docs:
        cat.add(d)
    return [str(p) for p in check_paths([dst], catalog=cat, root=tmp_path)]


def test_unchanged_stepaction_and_sample_are_clean(tmp_path):
    assert _problems(tmp_path, ACTION_FILE, lambda d: None) == []
    assert _problems(tmp_path, ACTION_FILE.parent / "samples/taskrun.yaml", lambda d: None) == []


@pytest.mark.parametrize("mutate,expected", [
    (lambda d: d[0]["spec"]["env"][0].update(value="$(params.NOPE)"), "undeclared StepAction param 'NOPE'"),
    (lambda d: d[0]["spec"]["env"][-1].update(value="$(results.IMAGE_DIGEST.path)"), "has no Task results"),
    (lambda d: d[0]["spec"]["env"][-1].update(value="$(step.results.NOPE.path)"), "undeclared StepAction result"),
    (lambda d: d[0]["spec"].update(script="echo $(params.IMAGE)"), "interpolated into a script"),
    (lambda d: d[0]["spec"].update(computeResources={}), "schema:"),
    (lambda d: d[0]["spec"].update(securityContext={"privileged": True}), "privileged is not allowed"),
    (lambda d: d[0]["metadata"]["annotations"].update({"artifacthub.io/category": "build"}), "artifacthub.io/category"),
    (lambda d: d[0]["metadata"]["annotations"].update({"artifacthub.io/changes": "added"}), "artifacthub.io/changes"),
    (lambda d: d[0]["metadata"]["annotations"].pop("artifacthub.io/links"), "missing annotation artifacthub.io/links"),
])
def test_checker_catches_stepaction_mistakes(tmp_path, mutate, expected):
    probs = _problems(tmp_path, ACTION_FILE, mutate)
    assert any(expected in p for p in probs), probs


def _step(d):
    return d[0]["spec"]["taskSpec"]["steps"][1]


@pytest.mark.parametrize("mutate,expected", [
    (lambda d: _step(d)["ref"].update(name="nope"), "is not a StepAction of this catalog"),
    (lambda d: _step(d)["params"].append({"name": "BOGUS", "value": "x"}), "does not declare"),
    (lambda d: _step(d).update(params=[p for p in _step(d)["params"] if p["name"] != "SOURCE_PATH"]),
     "required param 'SOURCE_PATH'"),
    (lambda d: _step(d).update(image="x"), "schema:"),
    (lambda d: _step(d).update(env=[{"name": "A", "value": "b"}]), "cannot set env"),
    (lambda d: _step(d).update(results=[{"name": "X"}]), "cannot set results"),
    (lambda d: d[0]["spec"]["taskSpec"]["results"][0].update(value="$(steps.build.results.NOPE)"),
     "declares no result 'NOPE'"),
    (lambda d: d[0]["spec"]["taskSpec"]["results"][0].update(value="$(steps.nope.results.IMAGE_URL)"),
     "unknown step 'nope'"),
    (lambda d: d[0]["spec"]["taskSpec"]["results"][2].update(type="string"), "is string but step result"),
])
def test_checker_catches_step_ref_mistakes(tmp_path, mutate, expected):
    probs = _problems(tmp_path, ACTION_FILE.parent / "samples/taskrun.yaml", mutate)
    assert any(expected in p for p in probs), probs
