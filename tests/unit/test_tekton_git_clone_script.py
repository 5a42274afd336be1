"""The git-clone Task's step script, run for real as the uid its securityContext names (65534, no
capabilities) with Tekton's substitution applied: a non-root clone works into a world-writable
workspace, with HOME=/tekton/home's stand-in or, when HOME is not writable, a temp HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.tekton_schemas.pod_security import step_security_context
from tests.tekton_schemas.substitute import render_step

REPO = Path(__file__).resolve().parents[2]
TASK = yaml.safe_load((REPO / "tekton/tasks/git-clone/0.1/git-clone.yaml").read_text())
SC = step_security_context(TASK, "clone")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("git") or not shutil.which("setpriv"),
    reason="needs root (to drop to the step's uid with setpriv), git and setpriv")


@pytest.fixture
def tmp_path():
    """A directory the step's uid can reach (pytest's own tmp root is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="git-clone-step-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def upstream(tmp_path) -> tuple[str, str]:
    src = tmp_path / "upstream"
    src.mkdir()
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@e", HOME=str(tmp_path))
    subprocess.run(["git", "init", "-q", "-b", "main", str(src)], check=True, env=env)
    (src / "Dockerfile").write_text("FROM scratch\n")
    subprocess.run(["git", "-C", str(src), "add", "Dockerfile"], check=True, env=env)
    subprocess.run(["git", "-C", str(src), "commit", "-q", "-m", "one"], check=True, env=env)
    sha = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], check=True, env=env,
                         capture_output=True, text=True).stdout.strip()
    # file:// makes git run upload-pack on the repository itself, which must then be the clone's
    # own (git's safe.directory rule); a real remote is a server and has no such check.
    subprocess.run(["chown", "-R", f"{SC['runAsUser']}:{SC['runAsGroup']}", str(src)], check=True)
    return f"file://{src}", sha


def run_as_step(tmp_path: Path, url: str, revision: str, home: Path) -> tuple[subprocess.CompletedProcess, Path, Path]:
    out = tmp_path / "output"
    out.mkdir(mode=0o777)
    os.chmod(out, 0o777)                      # a world-writable volume (kind's local-path does this)
    results = tmp_path / "results"
    results.mkdir(mode=0o777)
    os.chmod(results, 0o777)
    step = render_step(TASK, "clone", {"URL": url, "REVISION": revision}, {"output": str(out)},
                       results_dir=str(results))
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **step.env, "HOME": str(home)}
    script = tmp_path / "script.sh"
    script.write_text(step.script)
    script.chmod(0o755)
    uid, gid = SC["runAsUser"], SC["runAsGroup"]
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
           "--bounding-set=-all", "--no-new-privs", "sh", str(script)]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd="/")
    return p, out, results


def test_clone_as_the_step_uid_without_capabilities(tmp_path, upstream):
    url, sha = upstream
    home = tmp_path / "tekton-home"
    home.mkdir(mode=0o777)
    os.chmod(home, 0o777)                     # Tekton's /tekton/home emptyDir
    p, out, results = run_as_step(tmp_path, url, "main", home)
    assert p.returncode == 0, p.stderr
    assert (out / "Dockerfile").read_text() == "FROM scratch\n"
    assert (results / "COMMIT").read_text() == sha
    assert (out / ".git").stat().st_uid == SC["runAsUser"]
    assert f"directory = {out}" in (home / ".gitconfig").read_text()   # HOME was used


def test_unwritable_home_falls_back_to_a_temp_home(tmp_path, upstream):
    url, sha = upstream
    home = tmp_path / "root-home"
    home.mkdir(mode=0o755)                    # root's, not writable by 65534
    p, out, results = run_as_step(tmp_path, url, sha, home)
    assert p.returncode == 0, p.stderr
    assert "HOME is not writable" in p.stderr
    assert (results / "COMMIT").read_text() == sha
