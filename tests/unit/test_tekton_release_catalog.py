"""Units of the release path: the Tekton bundle writer (executor/oci/bundle.py), the catalog pinner
(scripts/release_catalog.py) and the release script's plan (scripts/release.py), plus the
Pipelines-as-Code PipelineRun in .tekton/ checked against the catalog. The release itself, against
a real registry, is tests/integration/test_release.py."""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from executor.oci.bundle import (ANNOTATION_API_VERSION, ANNOTATION_KIND, ANNOTATION_NAME, MAX_BUNDLE_LAYERS,
                                 BundleError, build_bundle, plan_bundles, push_bundle, resource_from_yaml)
from tests.tekton_schemas.checker import Catalog, check_paths, yaml_files

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
import release  # noqa: E402
import release_catalog as rc  # noqa: E402

EXECUTOR = "reg.example/p/executor:1.2.3@sha256:" + "a" * 64
TOOLS = "reg.example/p/catalog-tools:1.2.3@sha256:" + "b" * 64
IMAGES = {"executor": EXECUTOR, "catalog-tools": TOOLS}


def _task(name: str, kind: str = "Task", api: str = "tekton.dev/v1") -> bytes:
    return f"apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n  steps: []\n".encode()


# ------------------------------------------------------------------------------ bundle writer
def test_bundle_layers_hold_one_file_each_with_the_contract_annotations():
    res = [resource_from_yaml(_task("a"), "a.yaml"), resource_from_yaml(_task("p", "Pipeline"), "p.yaml")]
    b = build_bundle(res, {"org.opencontainers.image.version": "1.2.3"}, created=1700000000)
    manifest = json.loads(b.manifest)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert [la["annotations"] for la in manifest["layers"]] == [
        {ANNOTATION_API_VERSION: "tekton.dev/v1", ANNOTATION_KIND: "task", ANNOTATION_NAME: "a"},
        {ANNOTATION_API_VERSION: "tekton.dev/v1", ANNOTATION_KIND: "pipeline", ANNOTATION_NAME: "p"}]
    for layer, r in zip(b.layers, res):
        assert layer.descriptor()["mediaType"].endswith("tar+gzip")
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.blob))) as tar:
            [m] = tar.getmembers()
            assert (m.name, m.mode, m.uid, m.mtime) == (f"{r.name}.yaml", 0o644, 0, 1700000000)
            assert tar.extractfile(m).read() == r.document
    assert json.loads(b.config)["rootfs"]["diff_ids"] == [la.diff_id for la in b.layers]
    # deterministic: same input, same digest; another mtime, another digest
    assert build_bundle(res, {"org.opencontainers.image.version": "1.2.3"}, created=1700000000).digest == b.digest
    assert build_bundle(res, created=0).digest != b.digest


@pytest.mark.parametrize("doc, msg", [
    (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n", "not tekton.dev"),
    (_task("x", "TaskRun"), "cannot be resolved from a bundle"),
    (_task("x", "EventListener", "triggers.tekton.dev/v1beta1"), "not tekton.dev"),
    (b"apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {}\n", "metadata.name is missing"),
    (_task("x") + b"---\n" + _task("y"), "exactly one resource"),
    (b"kind: [", "not valid YAML"),
])
def test_bad_resources_are_refused_naming_the_file(doc, msg):
    with pytest.raises(BundleError, match=msg) as e:
        resource_from_yaml(doc, "dir/x.yaml")
    assert str(e.value).startswith("dir/x.yaml")


def test_more_than_20_resources_are_split_and_duplicates_refused():
    res = [resource_from_yaml(_task(f"t{i:02d}"), f"t{i}.yaml") for i in range(25)]
    res.append(resource_from_yaml(_task("s", "StepAction", "tekton.dev/v1beta1"), "s.yaml"))
    groups = plan_bundles(res)
    assert [len(g) for g in groups] == [MAX_BUNDLE_LAYERS, 6]
    assert sum(groups, ())[0].name == "t00" and sum(groups, ())[-1].kind == "stepaction"
    with pytest.raises(BundleError, match="at most 20"):
        build_bundle(res[:21])
    with pytest.raises(BundleError, match="both task 't01'"):
        plan_bundles(res[:3] + [resource_from_yaml(_task("t01"), "other.yaml")])
    with pytest.raises(BundleError, match="no Tekton resource"):
        plan_bundles([])


def test_push_sends_blobs_before_the_manifest():
    calls = []

    class Client:
        def upload_blob(self, ref, data, digest, size):
            assert len(data) == size
            calls.append(("blob", digest))

        def put_manifest(self, ref, data, media_type):
            calls.append(("manifest", media_type))
            return "sha256:x"

    b = build_bundle([resource_from_yaml(_task("a"), "a.yaml"), resource_from_yaml(_task("b"), "b.yaml")])
    assert push_bundle(Client(), "ref", b) == "sha256:x"
    assert calls == [("blob", b.layers[0].digest), ("blob", b.layers[1].digest), ("blob", b.config_digest),
                     ("manifest", b.media_type)]


# ------------------------------------------------------------------------------ catalog pinner
@pytest.fixture
def catalog(tmp_path) -> Path:
    return rc.copy_catalog(REPO / "tekton", tmp_path / "tekton")


def test_copy_leaves_out_tests_and_samples(catalog):
    parts = {p for f in catalog.rglob("*") for p in f.relative_to(catalog).parts}
    assert "tests" not in parts and "samples" not in parts
    assert (catalog / "tasks/kaniko-build/0.1/kaniko-build.yaml").is_file()


def test_one_pass_pins_every_image_default_and_only_those_lines(catalog):
    before = {f: f.read_text() for f in rc.yaml_files(catalog)}
    assert rc.unpinned_images(catalog)  # the working tree's defaults are tags
    changes = rc.pin_catalog(catalog, IMAGES)
    assert rc.unpinned_images(catalog) == []
    assert {c.param for c in changes} >= {"BUILDER_IMAGE", "builder-image", "GIT_IMAGE", "skopeo-image"}
    assert {c.path.split("/")[0] for c in changes} >= {"tasks", "stepactions", "pipelines", "triggers"}
    for f, old in before.items():
        diff = [(a, b) for a, b in zip(old.splitlines(), f.read_text().splitlines()) if a != b]
        mine = [c for c in changes if catalog / c.path == f]
        assert len(diff) == len(mine)
        for (a, b), c in zip(diff, mine):
            assert a.strip() == f"default: {c.old}" and b.strip() == f"default: {c.new}"
            assert c.new == (EXECUTOR if rc.IMAGE_PARAMS[c.param] == "executor" else TOOLS)
    readme = (catalog / "tasks/kaniko-build/0.1/README.md").read_text()
    assert EXECUTOR in readme and "ghcr.io/executor-project/executor:0.1.0" not in readme
    assert rc.pin_catalog(catalog, IMAGES) == []  # idempotent


def test_an_unknown_image_param_or_a_bad_digest_stops_the_release(catalog):
    task = catalog / "tasks/git-clone/0.1/git-clone.yaml"
    task.write_text(task.read_text().replace("  params:\n", "  params:\n    - name: HELPER_IMAGE\n"
                                             "      type: string\n      default: quay.io/x/y:1\n", 1))
    before = {f: f.read_text() for f in rc.yaml_files(catalog)}
    with pytest.raises(rc.CatalogError, match="HELPER_IMAGE looks like an image"):
        rc.pin_catalog(catalog, IMAGES)
    assert {f: f.read_text() for f in rc.yaml_files(catalog)} == before  # nothing written
    with pytest.raises(rc.CatalogError, match="not IMAGE@sha256"):
        rc.pin_catalog(catalog, {**IMAGES, "executor": "reg.example/p/executor:1.2.3"})
    assert rc.unpinned_images(catalog)  # still the tags: nothing was pinned


def test_a_literal_step_image_is_reported(tmp_path):
    (tmp_path / "t.yaml").write_text(_task("t").decode().replace(
        "steps: []", "steps:\n    - name: s\n      image: busybox:1.36\n    - name: u\n"
        f"      image: {EXECUTOR}\n    - name: v\n      image: $(params.X)"))
    assert rc.unpinned_images(tmp_path) == ["t.yaml: image: busybox:1.36"]


def test_bundle_resources_are_the_tasks_stepactions_and_pipelines(catalog):
    got = {(r.kind, r.name) for r in rc.bundle_resources(catalog)}
    want = {(d.rstrip("s"), f.stem) for d in ("tasks", "stepactions", "pipelines")
            for f in (REPO / "tekton" / d).glob("*/*/*.yaml") if f.stem == f.parent.parent.name}
    assert got == want and ("task", "kaniko-build") in got and ("pipeline", "build-and-push") in got


# ----------------------------------------------------------------------------- release script
def test_release_builds_every_platform_with_the_executor(tmp_path):
    args = release.parse_args(["--repository", "ghcr.io/org/proj/", "--version", "1.2.3",
                               "--insecure-registry", "r:5000", "--build-flag=--push-retry=2",
                               "--catalog-out", str(tmp_path / "c")])
    assert args.platforms == "linux/amd64,linux/arm64"
    cmd = release.build_command(release.ImageSpec("executor", "Dockerfile.executor", "b/python:3"), args,
                                tmp_path / "d")
    assert cmd[1:3] == ["-m", "executor"]
    assert cmd[cmd.index("--custom-platform") + 1] == "linux/amd64,linux/arm64"
    assert cmd[cmd.index("--destination") + 1] == "ghcr.io/org/proj/executor:1.2.3"
    assert "BASE_IMAGE=b/python:3" in cmd and "--insecure-registry=r:5000" in cmd and cmd[-1] == "--push-retry=2"
    assert args.summary == tmp_path / "release.json"


@pytest.mark.parametrize("argv, msg", [
    (["--repository", "ghcr.io/o/p", "--version", "v1.2.3"], "is not X.Y.Z"),
    (["--repository", "ghcr.io/O P", "--version", "1.2.3"], "--repository"),
])
def test_release_refuses_bad_arguments(argv, msg, capsys):
    with pytest.raises(SystemExit) as e:
        release.parse_args(argv)
    assert e.value.code == 2 and msg in capsys.readouterr().err


# ------------------------------------------------------------------ Pipelines-as-Code example
def test_pac_pipelinerun_binds_the_catalog_pipeline():
    files = sorted((REPO / ".tekton").glob("*.yaml"))
    assert files
    catalog = Catalog.from_paths(yaml_files(REPO / "tekton"))
    assert [str(p) for p in check_paths(files, catalog=catalog)] == []
    for f in files:
        run = yaml.safe_load(f.read_text())
        ann = run["metadata"]["annotations"]
        assert set(yaml.safe_load(ann["pipelinesascode.tekton.dev/on-event"])) == {"push", "pull_request"}
        for path in yaml.safe_load(ann["pipelinesascode.tekton.dev/task"]) + [ann["pipelinesascode.tekton.dev/pipeline"]]:
            assert (REPO / path).is_file(), path
        params = {p["name"]: p["value"] for p in run["spec"]["params"]}
        assert params["git-url"] == "{{repo_url}}" and params["git-revision"] == "{{revision}}"
        # the non-root tasks name no uid and this tree's default images run as root: the run gives
        # their pods one on plain Kubernetes; the build task keeps its own uid 0
        tasks = {t["name"] for t in catalog.pipelines["build-and-push"]["spec"]["tasks"]}
        uids = {s["pipelineTaskName"]: s["podTemplate"]["securityContext"]["runAsUser"]
                for s in run["spec"].get("taskRunSpecs", [])}
        assert uids == {"fetch-source": 65534, "verify-digest": 65534} and set(uids) < tasks


# ------------------------------------------------------------------------- release workflow
def test_release_workflow_runs_the_script_on_version_tags_with_pinned_actions():
    text = (REPO / ".github/workflows/release.yml").read_text()
    wf = yaml.safe_load(text)
    on = wf[True] if True in wf else wf["on"]  # YAML 1.1 reads the key `on` as true
    assert on["push"]["tags"][0] == "v[0-9]+.[0-9]+.[0-9]+" and set(on) == {"push"}
    steps = wf["jobs"]["release"]["steps"]
    uses = [s["uses"] for s in steps if "uses" in s]
    assert uses and all(re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", u) for u in uses), uses
    for u in uses:  # each pin says which release it is
        assert re.search(re.escape(u) + r" # v\d+\.\d+\.\d+", text), u
    run = "\n".join(s.get("run", "") for s in steps)
    assert "scripts/release.py" in run and "--platforms \"$PLATFORMS\"" in run
    assert wf["jobs"]["release"]["env"]["PLATFORMS"] == "linux/amd64,linux/arm64"
    assert "qemu-user-static" in run
    assert wf["permissions"] == {"contents": "write", "packages": "write"}


def test_release_stops_before_building_when_it_could_not_finish(tmp_path, capsys, monkeypatch):
    built = []
    monkeypatch.setattr(release, "build_images", lambda *a: built.append(a))
    (tmp_path / "c").mkdir()
    argv = ["--repository", "127.0.0.1:1/p", "--version", "1.2.3", "--catalog-out"]
    assert release.main(argv + [str(tmp_path / "c")]) == 1
    assert "already exists" in capsys.readouterr().err
    # an image param the release cannot pin, found on the scratch copy before any build
    bad = tmp_path / "repo"
    shutil.copytree(REPO / "tekton", bad / "tekton")
    f = bad / "tekton/tasks/git-clone/0.1/git-clone.yaml"
    f.write_text(f.read_text().replace("  params:\n", "  params:\n    - name: HELPER_IMAGE\n"
                                       "      type: string\n      default: quay.io/x/y:1\n", 1))
    monkeypatch.setattr(release, "REPO", bad)
    assert release.main(argv + [str(tmp_path / "d")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("release: error: tasks/git-clone/0.1/git-clone.yaml:") and "HELPER_IMAGE" in err
    assert err.count("\n") == 1 and not built and not (tmp_path / "d").exists()
