"""@ibm/tekton-lint (npm, pinned in package.json) runs clean over tekton/ through
scripts/lint-tekton.sh, and the same run fails on a catalog with a real mistake."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts/lint-tekton.sh"

pytestmark = pytest.mark.skipif(shutil.which("npm") is None,
                                reason="npm not found: @ibm/tekton-lint cannot be installed (apt-get install npm)")


def lint(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, TEKTON_LINT_FORMAT="json")
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_tekton_lint_is_clean_over_the_catalog():
    p = lint()
    assert p.returncode == 0, f"tekton-lint failed:\n{p.stdout}\n{p.stderr}"
    assert json.loads(p.stdout) == [], p.stdout


def test_tekton_lint_catches_an_undefined_param(tmp_path):
    src = REPO / "tekton/pipelines/build-and-push/0.1/build-and-push.yaml"
    bad = tmp_path / "build-and-push.yaml"
    bad.write_text(src.read_text().replace("value: $(params.git-url)", "value: $(params.git-uri)"))
    tasks = [str(REPO / "tekton/tasks/kaniko-build/0.1/kaniko-build.yaml"),
             str(REPO / "tekton/tasks/git-clone/0.1/git-clone.yaml")]
    p = lint(str(bad), *tasks)
    assert p.returncode != 0
    rules = {r["rule"] for r in json.loads(p.stdout)}
    assert "no-undefined-param" in rules, p.stdout
