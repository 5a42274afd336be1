"""The build-multiarch Pipeline's contract, beyond the generic catalog checks that already cover
it (test_tekton_catalog.py validates every YAML under tekton/; test_tekton_lint.py lints them):
matrix over PLATFORMS into the kaniko-build Task, results from the index task, the index step's
script calling `executor index` with REPO@DIGEST sources, and the samples placing builds by
architecture."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.tekton_schemas.checker import CATALOG_ROOT, Catalog, check_paths, load_yaml_docs, yaml_files

DIR = CATALOG_ROOT / "pipelines/build-multiarch/0.1"
FILE = DIR / "build-multiarch.yaml"
PIPELINE = load_yaml_docs(FILE)[0]
TASKS = {t["name"]: t for t in PIPELINE["spec"]["tasks"]}
CATALOG = Catalog.from_paths(yaml_files(CATALOG_ROOT))


def test_layout_readme_samples_and_checks():
    assert (DIR / "README.md").is_file() and len(list((DIR / "samples").glob("*.yaml"))) >= 2
    assert "build-multiarch" in CATALOG.pipelines
    problems = check_paths([FILE, *sorted((DIR / "samples").glob("*.yaml"))], catalog=CATALOG)
    assert not problems, "\n".join(map(str, problems))


def test_interface():
    spec = PIPELINE["spec"]
    params = {p["name"]: p for p in spec["params"]}
    assert params["PLATFORMS"]["type"] == "array" and params["PLATFORMS"]["default"] == ["amd64", "arm64"]
    assert "default" not in params["IMAGE"]
    results = {r["name"]: r["value"] for r in spec["results"]}
    assert results["IMAGE_URL"] == "$(tasks.index.results.IMAGE_URL)"
    assert results["IMAGE_DIGEST"] == "$(tasks.index.results.IMAGE_DIGEST)"
    assert results["ARTIFACT_OUTPUTS"] == "$(tasks.index.results.ARTIFACT_OUTPUTS[*])"
    assert results["CHAINS-GIT_URL"] == "$(tasks.fetch-source.results.CHAINS-GIT_URL)"
    ann = PIPELINE["metadata"]["annotations"]
    assert ann["tekton.dev/categories"] == "Image Build"
    assert tuple(int(x) for x in ann["tekton.dev/pipelines.minVersion"].split(".")) >= (1, 3, 0)


def test_matrix_fans_kaniko_build_out_over_platforms():
    build = TASKS["build"]
    assert build["taskRef"]["name"] == "kaniko-build"
    assert build["matrix"]["params"] == [{"name": "ARCH", "value": "$(params.PLATFORMS[*])"}]
    assert set(build["matrix"]) == {"params"}
    # ARCH must not collide with a kaniko-build param (it is only for taskRunSpecs placement)
    task_params = {p["name"] for p in CATALOG.tasks["kaniko-build"]["spec"]["params"]}
    assert "ARCH" not in task_params
    assert {p["name"] for p in build["params"]} <= task_params
    image = {p["name"]: p["value"] for p in build["params"]}["IMAGE"]
    assert image == "$(params.IMAGE)$(params.BUILD_TAG_SUFFIX)"
    # no cache workspace: a ReadWriteOnce cache cannot follow builds onto several nodes
    assert {w["name"] for w in build["workspaces"]} == {"source", "dockerconfig"}


def test_index_task_consumes_every_build_digest():
    index = TASKS["index"]
    params = {p["name"]: p["value"] for p in index["params"]}
    assert params["DIGESTS"] == "$(tasks.build.results.IMAGE_DIGEST[*])"
    step = index["taskSpec"]["steps"][0]
    assert step["image"] == "$(params.BUILDER_IMAGE)"
    assert "executor index --destination" in step["script"]
    assert step["args"][-1] == "$(params.DIGESTS[*])"


def test_native_sample_places_builds_by_arch():
    run = load_yaml_docs(DIR / "samples/pipelinerun.yaml")[0]["spec"]
    specs = {s["pipelineTaskName"]: s for s in run["taskRunSpecs"]}
    assert specs["build"]["podTemplate"]["nodeSelector"] == {"kubernetes.io/arch": "$(params.ARCH)"}
    source = {w["name"]: w for w in run["workspaces"]}["source"]
    assert source["volumeClaimTemplate"]["spec"]["accessModes"] == ["ReadWriteMany"]


def test_emulation_sample_builds_every_platform_in_one_run():
    run = load_yaml_docs(DIR / "samples/pipelinerun-emulation.yaml")[0]["spec"]
    assert run["pipelineRef"]["name"] == "build-and-push"
    extra = {p["name"]: p["value"] for p in run["params"]}["extra-args"]
    assert "--custom-platform=linux/amd64,linux/arm64" in extra


@pytest.fixture
def step_script(tmp_path) -> Path:
    script = tmp_path / "step.sh"
    script.write_text(TASKS["index"]["taskSpec"]["steps"][0]["script"])
    fake = tmp_path / "bin/executor"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$CALLS"\n'
                    'while [ $# -gt 0 ]; do [ "$1" = --digest-file ] && printf "sha256:1d\\n" > "$2"; shift; done\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return script


def _run_step(script: Path, built: str, *args: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    tmp = script.parent
    env = dict(os.environ, PATH=f"{tmp / 'bin'}:{os.environ['PATH']}", CALLS=str(tmp / "calls"),
               PARAM_IMAGE="reg:5000/team/app:1.2", PARAM_BUILT_IMAGE=built, DOCKERCONFIG_BOUND="false",
               DOCKERCONFIG_PATH="", RESULT_IMAGE_DIGEST=str(tmp / "digest"), RESULT_IMAGE_URL=str(tmp / "url"),
               RESULT_ARTIFACT_OUTPUTS=str(tmp / "artifact"))
    p = subprocess.run(["sh", str(script), *args], capture_output=True, text=True, env=env)
    calls = (tmp / "calls").read_text().splitlines() if (tmp / "calls").exists() else []
    return p, calls


def test_index_step_passes_flags_and_repo_at_digest_sources(step_script):
    p, calls = _run_step(step_script, "reg:5000/team/app:1.2-build", "--insecure-registry=reg:5000", "",
                         "--build-multiarch-digests--", "sha256:aa", "sha256:bb")
    assert p.returncode == 0, p.stderr
    assert calls == ["index", "--destination", "reg:5000/team/app:1.2", "--digest-file",
                     str(step_script.parent / "digest"), "--insecure-registry=reg:5000",
                     "reg:5000/team/app@sha256:aa", "reg:5000/team/app@sha256:bb"]
    assert (step_script.parent / "digest").read_text() == "sha256:1d"  # no newline (Chains)
    assert (step_script.parent / "url").read_text() == "reg:5000/team/app:1.2"
    assert json.loads((step_script.parent / "artifact").read_text()) == {
        "uri": "reg:5000/team/app", "digest": "sha256:1d", "isBuildArtifact": "true"}


def test_index_step_refuses_a_missing_digest(step_script):
    p, calls = _run_step(step_script, "reg:5000/app:1-build", "--build-multiarch-digests--", "sha256:aa", "oops")
    assert p.returncode == 1 and "no sha256 digest: 'oops'" in p.stderr and calls == []
    p, calls = _run_step(step_script, "reg:5000/app:1-build", "--build-multiarch-digests--")
    assert p.returncode == 1 and "no platform image" in p.stderr
