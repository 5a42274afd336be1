"""scripts/pin-builder-image.sh rewrites the executor image default to IMAGE@sha256:... (the release
step in tekton/README.md) in every copy of it -- the kaniko-build Task's BUILDER_IMAGE, the
Pipelines' and the TriggerTemplate's builder-image -- on temp copies of the real catalog."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tekton_schemas.substitute import render_step

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts/pin-builder-image.sh"
TASK = REPO / "tekton/tasks/kaniko-build/0.1/kaniko-build.yaml"
DIGEST = "sha256:" + "0123456789abcdef" * 4
PINNED = f"ghcr.io/executor-project/executor:0.1.0@{DIGEST}"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("awk") is None,
                                reason="bash and awk are needed to run the script")


def pin(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=30)


def builder_default(path: Path) -> str:
    doc = yaml.safe_load(path.read_text())
    return next(p for p in doc["spec"]["params"] if p["name"] == "BUILDER_IMAGE")["default"]


@pytest.fixture
def copy(tmp_path) -> Path:
    dst = tmp_path / "kaniko-build.yaml"
    shutil.copy(TASK, dst)
    return dst


def test_the_checked_in_default_is_the_unpinned_placeholder():
    """Releases pin it; the tree keeps the tag so nobody mistakes a made-up digest for a real one."""
    assert "@sha256:" not in builder_default(TASK)
    assert "scripts/pin-builder-image.sh" in (REPO / "tekton/README.md").read_text()


def test_pins_only_the_builder_image_default(copy):
    before = copy.read_text()
    p = pin(PINNED, str(copy))
    assert p.returncode == 0, p.stderr
    assert builder_default(copy) == PINNED
    after = copy.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [("      default: ghcr.io/executor-project/executor:0.1.0", f"      default: {PINNED}")]
    # the rest of the document is untouched, and the step now runs the pinned image
    old, new = yaml.safe_load(before), yaml.safe_load(after)
    for doc in (old, new):
        next(p for p in doc["spec"]["params"] if p["name"] == "BUILDER_IMAGE").pop("default")
    assert old == new
    step = render_step(yaml.safe_load(after), "build-and-push", {"IMAGE": "r/a:b"}, {"source": "/workspace/source"})
    assert step.image == PINNED


def test_repinning_replaces_a_previous_digest_and_is_idempotent(copy):
    assert pin(PINNED, str(copy)).returncode == 0
    other = "registry.example.com:5000/team/executor@sha256:" + "f" * 64
    p = pin(other, str(copy))
    assert p.returncode == 0, p.stderr
    assert builder_default(copy) == other
    again = pin(other, str(copy))
    assert again.returncode == 0 and "already has" in again.stdout
    assert builder_default(copy) == other


@pytest.mark.parametrize("bad", [
    "ghcr.io/executor-project/executor:0.1.0",                  # a tag, no digest
    "ghcr.io/executor-project/executor@sha256:" + "A" * 64,     # upper-case hex
    "ghcr.io/executor-project/executor@sha256:abc",             # short digest
    "ghcr.io/x/executor@sha512:" + "a" * 128,                   # not sha256
    f"ghcr.io/x/executor@{DIGEST} ; rm -rf /",                  # trailing junk
])
def test_bad_references_are_refused_and_leave_the_file_alone(copy, bad):
    before = copy.read_text()
    p = pin(bad, str(copy))
    assert p.returncode == 1
    assert "is not IMAGE@sha256:" in p.stderr
    assert copy.read_text() == before


def test_a_file_without_the_param_is_refused(tmp_path):
    other = tmp_path / "git-clone.yaml"
    shutil.copy(REPO / "tekton/tasks/git-clone/0.1/git-clone.yaml", other)
    before = other.read_text()
    p = pin(PINNED, str(other))
    assert p.returncode == 1
    assert "no single BUILDER_IMAGE/builder-image param" in p.stderr
    assert other.read_text() == before
    assert list(tmp_path.iterdir()) == [other]  # no temp file left behind


def test_usage_and_missing_file(tmp_path):
    assert pin().returncode == 1 and "usage:" in pin().stderr
    p = pin(PINNED, str(tmp_path / "nope.yaml"))
    assert p.returncode == 1 and "no such file" in p.stderr


# ------------------------------------------------------------------ every copy, one pass
CATALOG = REPO / "tekton"
PARAMS = ("BUILDER_IMAGE", "builder-image")
PLACEHOLDER = builder_default(TASK)


def image_defaults(root: Path) -> dict[str, str]:
    """``relative path: default`` of every BUILDER_IMAGE/builder-image param declared under ``root``
    (Task, StepAction and Pipeline spec.params, TriggerTemplate spec.params)."""
    out = {}
    for f in sorted(root.rglob("*.yaml")):
        for doc in yaml.safe_load_all(f.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") not in ("Task", "StepAction", "Pipeline", "TriggerTemplate"):
                continue
            for p in doc.get("spec", {}).get("params", []):
                if p["name"] in PARAMS and "default" in p:
                    assert str(f.relative_to(root)) not in out, f"{f}: two executor image params"
                    out[str(f.relative_to(root))] = p["default"]
    return out


@pytest.fixture
def tree(tmp_path) -> Path:
    dst = tmp_path / "tekton"
    shutil.copytree(CATALOG, dst)
    return dst


def test_every_copy_of_the_default_is_the_same_placeholder():
    """Task, StepAction, Pipeline(s) and TriggerTemplate carry one value, so one pin covers them all."""
    defaults = image_defaults(CATALOG)
    kinds = {Path(k).parts[0] for k in defaults}
    assert {"tasks", "stepactions", "pipelines", "triggers"} <= kinds, defaults
    assert set(defaults.values()) == {PLACEHOLDER}, defaults


def test_one_pass_pins_every_copy_and_leaves_nothing_unpinned(tree):
    before = {f: f.read_text() for f in tree.rglob("*.yaml")}
    p = pin(PINNED, str(tree))
    assert p.returncode == 0, p.stderr
    defaults = image_defaults(tree)
    assert defaults and set(defaults.values()) == {PINNED}, defaults
    # nothing unpinned is left in any YAML (samples and tests included; READMEs are updated by hand)
    for f in tree.rglob("*.yaml"):
        text = f.read_text()
        assert PLACEHOLDER not in text.replace(PINNED, ""), f"{f.relative_to(tree)} still names {PLACEHOLDER}"
    # exactly the default line of each file changed, nothing else
    for f, old in before.items():
        new = f.read_text()
        diff = [(a, b) for a, b in zip(old.splitlines(), new.splitlines(), strict=True) if a != b]
        if str(f.relative_to(tree)) in defaults:
            assert len(diff) == 1 and diff[0][1].strip() == f"default: {PINNED}", (f, diff)
        else:
            assert not diff, f
    again = pin(PINNED, str(tree))
    assert again.returncode == 0 and again.stdout.count("already has") == len(defaults)


def test_the_values_thread_trigger_to_pipeline_to_task(tree):
    """The pinned TriggerTemplate default reaches the Task: TriggerTemplate -> PipelineRun
    builder-image -> Pipeline builder-image -> BUILDER_IMAGE of the kaniko-build task."""
    assert pin(PINNED, str(tree)).returncode == 0
    tt = yaml.safe_load((tree / "triggers/build-and-push/0.1/build-and-push-run.yaml").read_text())
    run = tt["spec"]["resourcetemplates"][0]
    assert {"name": "builder-image", "value": "$(tt.params.builder-image)"} in run["spec"]["params"]
    pl = yaml.safe_load((tree / "pipelines/build-and-push/0.1/build-and-push.yaml").read_text())
    build = next(t for t in pl["spec"]["tasks"] if t.get("taskRef", {}).get("name") == "kaniko-build")
    assert {"name": "BUILDER_IMAGE", "value": "$(params.builder-image)"} in build["params"]


def test_released_versions_are_left_alone(tree):
    assert pin(PINNED, str(tree)).returncode == 0
    new_version = tree / "tasks/kaniko-build/0.2"
    shutil.copytree(tree / "tasks/kaniko-build/0.1", new_version)
    task2 = new_version / "kaniko-build.yaml"
    task2.write_text(task2.read_text().replace(PINNED, PLACEHOLDER))
    other = "ghcr.io/executor-project/executor:0.2.0@sha256:" + "e" * 64
    p = pin(other, str(tree))
    assert p.returncode == 0, p.stderr
    assert builder_default(task2) == other
    assert builder_default(tree / "tasks/kaniko-build/0.1/kaniko-build.yaml") == PINNED
    assert "leaving" in p.stdout and "tasks/kaniko-build/0.1/kaniko-build.yaml" in p.stdout
    # nothing unpinned left -> nothing to do is an error (a release step that pinned nothing)
    p = pin("ghcr.io/x/executor@sha256:" + "d" * 64, str(tree))
    assert p.returncode == 1 and "found no unpinned" in p.stderr


def test_all_files_or_none(tree):
    """One file it cannot rewrite (two executor image defaults) stops the run before any file changes."""
    bad = tree / "pipelines/zz-bad/0.1/zz-bad.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text("apiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata:\n  name: zz-bad\nspec:\n  params:\n"
                   f"    - name: builder-image\n      default: {PLACEHOLDER}\n"
                   "  tasks: []\n---\napiVersion: tekton.dev/v1\nkind: Pipeline\nmetadata:\n  name: zz-bad2\n"
                   f"spec:\n  params:\n    - name: builder-image\n      default: {PLACEHOLDER}\n  tasks: []\n")
    before = {f: f.read_text() for f in tree.rglob("*.yaml")}
    p = pin(PINNED, str(tree))
    assert p.returncode == 1 and "more than one" in p.stderr
    assert {f: f.read_text() for f in tree.rglob("*.yaml")} == before
    assert not [f for f in tree.rglob("*.yaml.*")], "temp files left behind"
