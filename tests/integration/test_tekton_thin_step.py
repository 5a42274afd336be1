"""The kaniko-build Task's step run the way Tekton runs it, on this machine: the container Tekton
would create (tests/support/tekton_step.py: substitution, the script at
/tekton/scripts/script-0-*, args, env, workingDir), with Tekton's own paths (/workspace/source,
/workspace/dockerconfig, /workspace/cache, /tekton/results, /tekton/home) mounted in a private
mount namespace, the real `executor tekton-step` on PATH, pushing to the loopback registry.

One run covers the thin step end to end: BUILD_ARGS/EXTRA_ARGS words, a kubernetes.io/
dockerconfigjson Secret in the dockerconfig workspace (copied to a temp DOCKER_CONFIG that is gone
afterwards), the cache workspace (base image warmed into base-images/, layers cached under
layers/), SBOM and provenance switched on (both found through the referrers tag of the pushed
digest; the source workspace is a git checkout as git-clone leaves it, and the provenance names
the commit git-clone would report as CHAINS-GIT_COMMIT), and the IMAGE_DIGEST / IMAGE_URL /
ARTIFACT_OUTPUTS results."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
import yaml

from tests.support.tekton_step import render_step, write_scripts
from tests.integration.test_supply_chain import referrers
from tests.support.tools import REPO, run, skopeo_inspect

pytestmark = pytest.mark.integration

TASK = yaml.safe_load((REPO / "tekton/tasks/kaniko-build/0.1/kaniko-build.yaml").read_text())
MOUNTS = {"source": "/workspace/source", "dockerconfig": "/workspace/dockerconfig", "cache": "/workspace/cache",
          "results": "/tekton/results", "scripts": "/tekton/scripts", "home": "/tekton/home"}


def run_as_tekton(tmp: Path, step, env_extra: dict) -> subprocess.CompletedProcess:
    """Run ``step`` with tmp/<name> bind-mounted at MOUNTS[name] (tmpfs over /workspace and
    /tekton in a private mount namespace, so nothing outside the test sees them)."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (a private mount namespace for Tekton's paths)")
    created = [d for d in ("/workspace", "/tekton") if not os.path.exists(d)]
    for d in created:
        os.mkdir(d, 0o755)   # empty mount points, removed below; the mounts stay in the namespace
    try:
        setup = ["mount -t tmpfs tmpfs /workspace", "mount -t tmpfs tmpfs /tekton"]
        for name, target in MOUNTS.items():
            setup += [f"mkdir -p {target}", f"mount --bind {shlex.quote(str(tmp / name))} {target}"]
        cmd = " && ".join(setup) + " && cd " + shlex.quote(step.working_dir) + " && exec " + shlex.join(
            step.command + step.args)
        bindir = Path(shutil.which("executor", path=str(REPO / ".venv/bin")) or "").parent
        env = {"PATH": f"{bindir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/tekton/home", **step.env, **env_extra}
        return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", cmd], env=env,
                              capture_output=True, text=True, timeout=600)
    finally:
        for d in created:
            os.rmdir(d)


def test_thin_step_as_tekton_runs_it(registry, busybox, tmp_path):
    if not (REPO / ".venv/bin/executor").exists():
        pytest.skip(".venv/bin/executor missing (make install)")
    for name in MOUNTS:
        (tmp_path / name).mkdir()
    (tmp_path / "source/app").mkdir()
    (tmp_path / "source/app/Containerfile").write_text(textwrap.dedent(f"""\
        FROM {busybox}
        ARG GREETING
        RUN printf '%s\\n' "$GREETING" > /greeting
        LABEL greeting="$GREETING"
        """))
    # the source workspace as git-clone leaves it: origin = the URL, FETCH_HEAD checked out (detached)
    git_env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@example.org", "GIT_CONFIG_GLOBAL": "/dev/null", "PATH": "/usr/bin:/bin"}
    src = tmp_path / "source"
    for cmd in (["init", "-q"], ["remote", "add", "origin", "https://git.example/team/app.git"], ["add", "."],
                ["commit", "-qm", "app"], ["checkout", "-q", "--detach"]):
        run(["git", *cmd], cwd=src, env=git_env)
    commit = run(["git", "rev-parse", "HEAD"], cwd=src, env=git_env).stdout.strip()
    auth = base64.b64encode(b"bot:not-a-real-password").decode()
    (tmp_path / "dockerconfig/.dockerconfigjson").write_text(json.dumps({"auths": {"other.example": {"auth": auth}}}))
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    image = f"{registry.host}/tekton/thin-step:{uuid.uuid4().hex[:8]}"
    step = render_step(TASK, "build-and-push", {
        "IMAGE": image, "DOCKERFILE": "app/Containerfile", "SBOM": "true", "PROVENANCE": "true",
        "BUILD_ARGS": ["GREETING=hello from a thin step"],
        "EXTRA_ARGS": [f"--insecure-registry={registry.host}", "--log-format=text", "--label", "team=a b"]},
        {"source", "dockerconfig", "cache"})
    assert step.working_dir == "/workspace/source" and step.script.count("\n") <= 20
    write_scripts(step, tmp_path / "scripts")
    p = run_as_tekton(tmp_path, step, {"TMPDIR": str(scratch)})
    log = p.stdout + p.stderr
    assert p.returncode == 0, log

    results = tmp_path / "results"
    digest = (results / "IMAGE_DIGEST").read_text()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest) and digest == skopeo_inspect(image)["Digest"]
    assert (results / "IMAGE_URL").read_text() == image
    repo = image.rsplit(":", 1)[0]
    assert json.loads((results / "ARTIFACT_OUTPUTS").read_text()) == {
        "uri": repo, "digest": digest, "isBuildArtifact": "true"}
    assert f"kaniko-build: pushed {image}@{digest}" in log
    assert "kaniko-build: registry credentials from the dockerconfig workspace" in log
    assert auth not in log

    labels = skopeo_inspect(image, config=True)["config"]["Labels"]
    assert labels == {"team": "a b", "greeting": "hello from a thin step"}
    # the cache workspace: the base image warmed, the RUN layer cached
    warmed = json.loads((tmp_path / "cache/base-images/index.json").read_text())["manifests"]
    assert [m["annotations"]["dev.executor.ref"] for m in warmed] == [busybox]
    assert json.loads((tmp_path / "cache/layers/index.json").read_text())["manifests"]
    # SBOM and provenance attached, found from the digest alone (referrers tag schema)
    index = skopeo_inspect(f"{repo}:sha256-{digest.split(':')[1]}", raw=True)
    assert sorted(m["artifactType"] for m in index["manifests"]) == ["application/spdx+json",
                                                                      "application/vnd.in-toto+json"]
    prov = json.loads(referrers(registry.host, repo.split("/", 1)[1], digest)["application/vnd.in-toto+json"])
    deps = {d["name"]: d for d in prov["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["source"] == {"name": "source", "uri": "git+https://git.example/team/app.git",
                              "digest": {"gitCommit": commit}}
    assert prov["subject"][0]["digest"] == {"sha256": digest.split(":")[1]}
    # the temp copy of the dockerconfig Secret is gone
    assert not list(scratch.glob("kaniko-build-*")), list(scratch.iterdir())
