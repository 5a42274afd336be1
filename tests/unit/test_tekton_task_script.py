"""Run the kaniko-build step script for real (POSIX sh), with Tekton's substitution applied by
tests/tekton_schemas/substitute.py and a stand-in `executor` on PATH that records its argv and
environment. Checks build-arg handling, credentials selection and the results it writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.tekton_schemas.checker import CATALOG_ROOT, load_yaml_docs
from tests.tekton_schemas.substitute import render_step, write_script

TASK = load_yaml_docs(CATALOG_ROOT / "tasks/kaniko-build/0.1/kaniko-build.yaml")[0]
DIGEST = "sha256:" + "ab" * 32

FAKE_EXECUTOR = r"""#!/usr/bin/env python3
import json, os, sys
argv = sys.argv[1:]
def opt(name):
    return argv[argv.index(name) + 1]
if argv[:1] == ["warm"]:
    with open(os.environ["FAKE_RECORD"] + ".warm", "a") as f:
        f.write(json.dumps(argv) + "\n")
    sys.exit(1 if os.environ.get("FAKE_WARM_FAIL") else 0)
cfg = os.environ.get("DOCKER_CONFIG")
record = {"argv": argv, "DOCKER_CONFIG": cfg,
          "config": open(os.path.join(cfg, "config.json")).read() if cfg else None}
json.dump(record, open(os.environ["FAKE_RECORD"], "w"))
if os.environ.get("FAKE_FAIL"):
    sys.exit(3)
dest = opt("--destination")
repo = dest.split("@")[0]
last = repo.rsplit("/", 1)[-1]
if ":" in last:
    repo = repo[: len(repo) - len(last)] + last.split(":")[0]
if "/" not in repo:
    repo = "index.docker.io/library/" + repo
open(opt("--digest-file"), "w").write(os.environ.get("FAKE_DIGEST", "%s") + os.environ.get("FAKE_DIGEST_SUFFIX", ""))
open(opt("--image-name-with-digest-file"), "w").write(repo + "@" + os.environ.get("FAKE_DIGEST", "%s") + "\n")
""" % (DIGEST, DIGEST)


@pytest.fixture
def env(tmp_path):
    if shutil.which("sh") is None:
        pytest.skip("no /bin/sh")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "executor"
    exe.write_text(FAKE_EXECUTOR)
    exe.chmod(0o755)
    (tmp_path / "source").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "home").mkdir()
    return tmp_path


def run_step(tmp: Path, params: dict, workspaces: dict | None = None, extra_env: dict | None = None):
    ws = {"source": str(tmp / "source")}
    ws.update(workspaces or {})
    r = render_step(TASK, "build-and-push", params, ws, results_dir=str(tmp / "results"))
    script = write_script(r, tmp / "script.sh")
    e = {"PATH": f"{tmp / 'bin'}:/usr/bin:/bin", "HOME": str(tmp / "home"),
         "FAKE_RECORD": str(tmp / "record.json")}
    e.update(r.env)
    e.update(extra_env or {})
    p = subprocess.run(["sh", str(script), *r.args], cwd=r.working_dir, env=e,
                       capture_output=True, text=True, timeout=30)
    record = json.loads((tmp / "record.json").read_text()) if (tmp / "record.json").exists() else None
    return p, record


def result(tmp: Path, name: str) -> str:
    return (tmp / "results" / name).read_text()


def test_defaults_build_and_results(env):
    p, rec = run_step(env, {"IMAGE": "registry:5000/team/app:1.0"})
    assert p.returncode == 0, p.stderr
    argv = rec["argv"]
    assert argv[argv.index("--dockerfile") + 1] == f"{env}/source/./Dockerfile"
    assert argv[argv.index("--context") + 1] == f"{env}/source/./"
    assert argv[argv.index("--destination") + 1] == "registry:5000/team/app:1.0"
    assert argv[argv.index("--digest-file") + 1] == f"{env}/results/IMAGE_DIGEST"
    assert "--build-arg" not in argv and "--cache" not in argv
    assert rec["DOCKER_CONFIG"] is None
    assert result(env, "IMAGE_DIGEST") == DIGEST
    assert result(env, "IMAGE_URL") == "registry:5000/team/app:1.0"


def test_build_args_and_extra_args_keep_their_words(env):
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b", "BUILD_ARGS": ["A=1", "MSG=hello world", "BARE", ""],
                            "EXTRA_ARGS": ["--target=final", "--label", "x=y z", "--", ""]})
    assert p.returncode == 0, p.stderr
    tail = rec["argv"][rec["argv"].index("--image-name-with-digest-file") + 2:]
    assert tail == ["--build-arg", "A=1", "--build-arg", "MSG=hello world", "--build-arg", "BARE",
                    "--target=final", "--label", "x=y z", "--"]


def test_bad_build_arg_is_rejected(env):
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b", "BUILD_ARGS": ["--privileged"]})
    assert p.returncode != 0 and rec is None
    assert "not KEY=VALUE" in p.stderr


def test_double_dash_in_build_args_is_not_the_separator(env):
    """A BUILD_ARGS element "--" used to end the build args: "B=2" then reached the executor as a
    bare flag-less word. Now "--" is just a malformed build arg, rejected by name."""
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b", "BUILD_ARGS": ["A=1", "--", "B=2"],
                            "EXTRA_ARGS": ["--target=final"]})
    assert p.returncode != 0 and rec is None
    assert "BUILD_ARGS element is not KEY=VALUE (put executor flags in EXTRA_ARGS): --" in p.stderr


def test_build_args_after_an_empty_element_stay_build_args(env):
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b", "BUILD_ARGS": ["", "A=1"], "EXTRA_ARGS": ["", "--", "X=1"]})
    assert p.returncode == 0, p.stderr
    tail = rec["argv"][rec["argv"].index("--image-name-with-digest-file") + 2:]
    assert tail == ["--build-arg", "A=1", "--", "X=1"]


@pytest.mark.parametrize("where", ["BUILD_ARGS", "EXTRA_ARGS"])
def test_the_separator_itself_is_rejected_in_either_array(env, where):
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b", where: ["--kaniko-build-extra-args--"]})
    assert p.returncode != 0 and rec is None
    assert "must not contain the element '--kaniko-build-extra-args--'" in p.stderr


def test_image_without_tag_reports_latest_and_normalised_repo(env):
    p, _ = run_step(env, {"IMAGE": "app"})
    assert p.returncode == 0, p.stderr
    assert result(env, "IMAGE_URL") == "index.docker.io/library/app:latest"


def test_digest_file_newline_is_stripped(env):
    p, _ = run_step(env, {"IMAGE": "r:5000/a:b"}, extra_env={"FAKE_DIGEST_SUFFIX": "\n"})
    assert p.returncode == 0, p.stderr
    assert result(env, "IMAGE_DIGEST") == DIGEST


def test_missing_digest_fails_the_step(env):
    p, _ = run_step(env, {"IMAGE": "r:5000/a:b"}, extra_env={"FAKE_DIGEST": "nothing"})
    assert p.returncode != 0
    assert "no sha256 digest" in p.stderr


def test_executor_failure_fails_the_step(env):
    p, _ = run_step(env, {"IMAGE": "r:5000/a:b"}, extra_env={"FAKE_FAIL": "1"})
    assert p.returncode == 3
    assert not (env / "results" / "IMAGE_URL").exists()


def test_dockerconfig_workspace_sets_docker_config(env):
    ws = env / "dockerconfig"
    ws.mkdir()
    (ws / "config.json").write_text('{"auths": {"r:5000": {}}}')
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b"}, {"dockerconfig": str(ws)})
    assert p.returncode == 0, p.stderr
    assert rec["DOCKER_CONFIG"] == str(ws)


def test_dockerconfigjson_secret_key_is_used(env):
    ws = env / "dockerconfig"
    ws.mkdir()
    (ws / ".dockerconfigjson").write_text('{"auths": {"secret": {}}}')
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b"}, {"dockerconfig": str(ws)})
    assert p.returncode == 0, p.stderr
    assert rec["DOCKER_CONFIG"] != str(ws)
    assert json.loads(rec["config"]) == {"auths": {"secret": {}}}


def test_empty_dockerconfig_workspace_falls_back_to_serviceaccount(env):
    ws = env / "dockerconfig"
    ws.mkdir()
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b"}, {"dockerconfig": str(ws)})
    assert p.returncode == 0, p.stderr
    assert rec["DOCKER_CONFIG"] is None
    assert "using the ServiceAccount credentials" in p.stderr


def test_unbound_dockerconfig_keeps_creds_init_config_visible(env):
    """A DOCKER_CONFIG baked into the image must not hide $HOME/.docker/config.json (creds-init)."""
    (env / "home/.docker").mkdir()
    (env / "home/.docker/config.json").write_text("{}")
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b"}, extra_env={"DOCKER_CONFIG": "/kaniko/.docker"})
    assert p.returncode == 0, p.stderr
    assert rec["DOCKER_CONFIG"] is None


def test_unbound_dockerconfig_leaves_a_working_docker_config_alone(env):
    own = env / "own"
    own.mkdir()
    (own / "config.json").write_text("{}")
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b"}, extra_env={"DOCKER_CONFIG": str(own)})
    assert p.returncode == 0, p.stderr
    assert rec["DOCKER_CONFIG"] == str(own)


def warm_calls(tmp: Path) -> list[list[str]]:
    f = tmp / "record.json.warm"
    return [json.loads(line) for line in f.read_text().splitlines()] if f.exists() else []


def test_cache_workspace_enables_on_disk_cache(env):
    cache = env / "cache"
    cache.mkdir()
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b"}, {"cache": str(cache)})
    assert p.returncode == 0, p.stderr
    argv = rec["argv"]
    assert "--cache" in argv
    assert argv[argv.index("--cache-dir") + 1] == f"{cache}/base-images"
    assert argv[argv.index("--cache-repo") + 1] == f"oci:{cache}/layers"
    assert (cache / "layers").is_dir() and (cache / "base-images").is_dir()
    # the base images are warmed first (the build itself only reads --cache-dir, as Kaniko's)
    assert warm_calls(env) == [["warm", "--force", "--cache-dir", f"{cache}/base-images",
                                "--dockerfile", f"{env}/source/./Dockerfile"]]


def test_cache_warm_gets_build_args_and_registry_flags_only(env):
    cache = env / "cache"
    cache.mkdir()
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b", "BUILD_ARGS": ["BASE=r:5000/base:1", "BARE"],
                            "EXTRA_ARGS": ["--target", "release", "--insecure-registry=r:5000", "--label",
                                           "team=a", "--insecure-registry", "m:5000", "--skip-tls-verify=true",
                                           "--registry-mirror", "mirror:5000", "--reproducible",
                                           "--custom-platform=linux/arm64", "--cache-ttl=24h", "--no-push-cache"]},
                      {"cache": str(cache)})
    assert p.returncode == 0, p.stderr
    assert warm_calls(env) == [["warm", "--force", "--cache-dir", f"{cache}/base-images",
                                "--dockerfile", f"{env}/source/./Dockerfile",
                                "--build-arg", "BASE=r:5000/base:1", "--build-arg", "BARE",
                                "--insecure-registry=r:5000", "--insecure-registry", "m:5000",
                                "--skip-tls-verify=true", "--registry-mirror", "mirror:5000",
                                "--custom-platform=linux/arm64", "--cache-ttl=24h"]]
    # the build still gets everything
    argv = rec["argv"]
    assert ["--target", "release"] == argv[argv.index("--target"):argv.index("--target") + 2]
    assert "--no-push-cache" in argv and "--reproducible" in argv


def test_cache_warm_failure_is_only_a_warning(env):
    cache = env / "cache"
    cache.mkdir()
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b"}, {"cache": str(cache)}, extra_env={"FAKE_WARM_FAIL": "1"})
    assert p.returncode == 0, p.stderr
    assert "could not cache the base images" in p.stderr
    assert rec["argv"][rec["argv"].index("--cache-dir") + 1] == f"{cache}/base-images"


def test_cache_dir_in_extra_args_wins_and_is_not_warmed(env):
    cache = env / "cache"
    cache.mkdir()
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b", "EXTRA_ARGS": ["--cache-dir=/prewarmed"]}, {"cache": str(cache)})
    assert p.returncode == 0, p.stderr
    assert [a for a in rec["argv"] if a.startswith("--cache-dir")] == ["--cache-dir=/prewarmed"]
    assert warm_calls(env) == []
    assert rec["argv"][rec["argv"].index("--cache-repo") + 1] == f"oci:{cache}/layers"


def test_cache_repo_in_extra_args_wins(env):
    cache = env / "cache"
    cache.mkdir()
    p, rec = run_step(env, {"IMAGE": "r:5000/a:b", "EXTRA_ARGS": ["--cache-repo=r:5000/cache"]},
                      {"cache": str(cache)})
    assert p.returncode == 0, p.stderr
    assert [a for a in rec["argv"] if a.startswith("--cache-repo")] == ["--cache-repo=r:5000/cache"]


def test_hostile_param_values_stay_data(env):
    """Params reach the script only through env, so shell syntax in them is never run."""
    marker = env / "pwned"
    p, rec = run_step(env, {"IMAGE": f"r:5000/a:b$(touch {marker})", "CONTEXT": f"x; touch {marker}"})
    assert not marker.exists()
    assert rec["argv"][rec["argv"].index("--context") + 1] == f"{env}/source/x; touch {marker}"
