"""scripts/pin-builder-image.sh rewrites the kaniko-build Task's BUILDER_IMAGE default to
IMAGE@sha256:... (the release step in tekton/README.md), on a temp copy of the real Task."""

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
    assert "no single BUILDER_IMAGE param" in p.stderr
    assert other.read_text() == before
    assert list(tmp_path.iterdir()) == [other]  # no temp file left behind


def test_usage_and_missing_file(tmp_path):
    assert pin().returncode == 1 and "usage:" in pin().stderr
    p = pin(PINNED, str(tmp_path / "nope.yaml"))
    assert p.returncode == 1 and "no such file" in p.stderr
