"""The kaniko-build step as Tekton runs it, in-process: the Task's step rendered with Tekton's
substitution (tests/tekton_schemas/substitute.py), its env and args handed to
``executor.tekton.run`` (what ``executor tekton-step`` runs) with a recording stand-in for the
executor's build and warm commands. Checks build args, credentials, the cache workspace, SBOM and
provenance switches and the results; the step's 3-line script is run for real by sh once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from executor import tekton
from tests.tekton_schemas.checker import CATALOG_ROOT, load_yaml_docs
from tests.tekton_schemas.substitute import render_step, write_script

TASK = load_yaml_docs(CATALOG_ROOT / "tasks/kaniko-build/0.1/kaniko-build.yaml")[0]
DIGEST = "sha256:" + "ab" * 32


class FakeExecutor:
    """Records each invocation (argv, DOCKER_CONFIG and its config.json) and writes the digest
    files the way the executor does: ``--digest-file`` the bare digest, the names file
    ``repo@digest`` with the repository normalised."""

    def __init__(self, digest: str = DIGEST, fail: int = 0, warm_fail: bool = False, suffix: str = ""):
        self.calls: list[dict] = []
        self.digest, self.fail, self.warm_fail, self.suffix = digest, fail, warm_fail, suffix

    def __call__(self, argv) -> int:
        argv = list(argv)
        cfg = os.environ.get("DOCKER_CONFIG")
        self.calls.append({"argv": argv, "DOCKER_CONFIG": cfg, "config": (
            Path(cfg, "config.json").read_text() if cfg and Path(cfg, "config.json").exists() else None)})
        if argv[:1] == ["warm"]:
            return 1 if self.warm_fail else 0
        if self.fail:
            return self.fail
        dest = argv[argv.index("--destination") + 1]
        repo = dest.split("@")[0]
        last = repo.rsplit("/", 1)[-1]
        if ":" in last:
            repo = repo[: len(repo) - len(last)] + last.split(":")[0]
        if "/" not in repo:
            repo = "index.docker.io/library/" + repo
        Path(argv[argv.index("--digest-file") + 1]).write_text(self.digest + self.suffix)
        Path(argv[argv.index("--image-name-with-digest-file") + 1]).write_text(f"{repo}@{self.digest}\n")
        return 0

    @property
    def build(self) -> dict | None:
        builds = [c for c in self.calls if c["argv"][:1] != ["warm"]]
        return builds[-1] if builds else None

    @property
    def warms(self) -> list[list[str]]:
        return [c["argv"] for c in self.calls if c["argv"][:1] == ["warm"]]


@pytest.fixture
def env(tmp_path, monkeypatch):
    for d in ("source", "results", "home"):
        (tmp_path / d).mkdir()
    monkeypatch.delenv("DOCKER_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def run_step(tmp: Path, monkeypatch, params: dict, workspaces: dict | None = None, extra_env: dict | None = None,
             fake: FakeExecutor | None = None, capsys=None):
    ws = {"source": str(tmp / "source")}
    ws.update(workspaces or {})
    r = render_step(TASK, "build-and-push", params, ws, results_dir=str(tmp / "results"))
    for k, v in {**r.env, **(extra_env or {})}.items():
        monkeypatch.setenv(k, v)
    fake = fake or FakeExecutor()
    code = tekton.run(r.args, runner=fake)
    return code, fake


def result(tmp: Path, name: str) -> str:
    return (tmp / "results" / name).read_text()


def tail(argv: list[str]) -> list[str]:
    return argv[argv.index("--image-name-with-digest-file") + 2:]


def test_defaults_build_and_results(env, monkeypatch, capsys):
    code, fake = run_step(env, monkeypatch, {"IMAGE": "registry:5000/team/app:1.0"})
    assert code == 0
    argv = fake.build["argv"]
    assert argv[argv.index("--dockerfile") + 1] == f"{env}/source/./Dockerfile"
    assert argv[argv.index("--context") + 1] == f"{env}/source/./"
    assert argv[argv.index("--destination") + 1] == "registry:5000/team/app:1.0"
    assert tail(argv) == []
    assert fake.build["DOCKER_CONFIG"] is None and fake.warms == []
    assert result(env, "IMAGE_DIGEST") == DIGEST
    assert result(env, "IMAGE_URL") == "registry:5000/team/app:1.0"
    assert json.loads(result(env, "ARTIFACT_OUTPUTS")) == {
        "uri": "registry:5000/team/app", "digest": DIGEST, "isBuildArtifact": "true"}
    assert f"kaniko-build: pushed registry:5000/team/app:1.0@{DIGEST}" in capsys.readouterr().out


def test_build_args_and_extra_args_keep_their_words(env, monkeypatch):
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b", "BUILD_ARGS": ["A=1", "MSG=hello world", "BARE", ""],
                                             "EXTRA_ARGS": ["--target=final", "--label", "x=y z", "--", ""]})
    assert code == 0
    assert tail(fake.build["argv"]) == ["--build-arg", "A=1", "--build-arg", "MSG=hello world", "--build-arg", "BARE",
                                        "--target=final", "--label", "x=y z", "--"]


@pytest.mark.parametrize("build_args,message", [
    (["--privileged"], "BUILD_ARGS element is not KEY=VALUE (put executor flags in EXTRA_ARGS): --privileged"),
    (["A=1", "--", "B=2"], "BUILD_ARGS element is not KEY=VALUE (put executor flags in EXTRA_ARGS): --"),
])
def test_bad_build_arg_is_rejected(env, monkeypatch, capsys, build_args, message):
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b", "BUILD_ARGS": build_args})
    assert code == 1 and fake.calls == []
    assert f"kaniko-build: {message}" in capsys.readouterr().err


def test_build_args_after_an_empty_element_stay_build_args(env, monkeypatch):
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b", "BUILD_ARGS": ["", "A=1"],
                                             "EXTRA_ARGS": ["", "--", "X=1"]})
    assert code == 0
    assert tail(fake.build["argv"]) == ["--build-arg", "A=1", "--", "X=1"]


@pytest.mark.parametrize("where", ["BUILD_ARGS", "EXTRA_ARGS"])
def test_the_separator_itself_is_rejected_in_either_array(env, monkeypatch, capsys, where):
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b", where: ["--kaniko-build-extra-args--"]})
    assert code == 1 and fake.calls == []
    assert "must not contain the element '--kaniko-build-extra-args--'" in capsys.readouterr().err


def test_image_without_tag_reports_latest_and_normalised_repo(env, monkeypatch):
    code, _ = run_step(env, monkeypatch, {"IMAGE": "app"})
    assert code == 0
    assert result(env, "IMAGE_URL") == "index.docker.io/library/app:latest"
    assert json.loads(result(env, "ARTIFACT_OUTPUTS"))["uri"] == "index.docker.io/library/app"


def test_image_by_digest_reports_the_repository(env, monkeypatch):
    code, _ = run_step(env, monkeypatch, {"IMAGE": "r:5000/a@sha256:" + "cd" * 32})
    assert code == 0
    assert result(env, "IMAGE_URL") == "r:5000/a"


def test_digest_file_newline_is_stripped(env, monkeypatch):
    code, _ = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b"}, fake=FakeExecutor(suffix="\n"))
    assert code == 0
    assert result(env, "IMAGE_DIGEST") == DIGEST


def test_missing_digest_fails_the_step_and_writes_no_result(env, monkeypatch, capsys):
    code, _ = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b"}, fake=FakeExecutor(digest="nothing"))
    assert code == 1
    assert "no sha256 digest" in capsys.readouterr().err
    assert not list((env / "results").iterdir())


def test_executor_failure_keeps_its_status(env, monkeypatch):
    code, _ = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b"}, fake=FakeExecutor(fail=3))
    assert code == 3
    assert not list((env / "results").iterdir())


@pytest.mark.parametrize("sbom,prov,flags", [
    ("false", "false", []),
    ("true", "false", ["--sbom", "--sbom-format=spdx"]),
    ("cyclonedx", "true", ["--sbom", "--sbom-format=cyclonedx", "--provenance"]),
    ("spdx", "true", ["--sbom", "--sbom-format=spdx", "--provenance"]),
])
def test_sbom_and_provenance_switches(env, monkeypatch, sbom, prov, flags):
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b", "SBOM": sbom, "PROVENANCE": prov})
    assert code == 0
    assert tail(fake.build["argv"]) == flags


@pytest.mark.parametrize("param,value", [("SBOM", "yes"), ("PROVENANCE", "slsa")])
def test_bad_switch_values_are_one_line_errors(env, monkeypatch, capsys, param, value):
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b", param: value})
    assert code == 1 and fake.calls == []
    assert f"kaniko-build: {param}={value}: use" in capsys.readouterr().err


def test_dockerconfig_workspace_sets_docker_config(env, monkeypatch, capsys):
    ws = env / "dockerconfig"
    ws.mkdir()
    (ws / "config.json").write_text('{"auths": {"r:5000": {}}}')
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b"}, {"dockerconfig": str(ws)})
    assert code == 0
    assert fake.build["DOCKER_CONFIG"] == str(ws)
    out = capsys.readouterr()
    assert "credentials from the dockerconfig workspace" in out.out and "auths" not in out.out + out.err


def test_dockerconfigjson_secret_key_is_used_and_the_copy_removed(env, monkeypatch):
    ws = env / "dockerconfig"
    ws.mkdir()
    (ws / ".dockerconfigjson").write_text('{"auths": {"secret": {}}}')
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b"}, {"dockerconfig": str(ws)})
    assert code == 0
    copy = fake.build["DOCKER_CONFIG"]
    assert copy != str(ws) and json.loads(fake.build["config"]) == {"auths": {"secret": {}}}
    assert not Path(copy).exists()  # the temp copy of the secret is gone after the step


def test_empty_dockerconfig_workspace_falls_back_to_serviceaccount(env, monkeypatch, capsys):
    ws = env / "dockerconfig"
    ws.mkdir()
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b"}, {"dockerconfig": str(ws)})
    assert code == 0
    assert fake.build["DOCKER_CONFIG"] is None
    assert "using the ServiceAccount credentials" in capsys.readouterr().err


def test_unbound_dockerconfig_keeps_creds_init_config_visible(env, monkeypatch):
    """A DOCKER_CONFIG baked into the image must not hide $HOME/.docker/config.json (creds-init)."""
    (env / "home/.docker").mkdir()
    (env / "home/.docker/config.json").write_text("{}")
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b"}, extra_env={"DOCKER_CONFIG": "/kaniko/.docker"})
    assert code == 0
    assert fake.build["DOCKER_CONFIG"] is None


def test_unbound_dockerconfig_leaves_a_working_docker_config_alone(env, monkeypatch):
    own = env / "own"
    own.mkdir()
    (own / "config.json").write_text("{}")
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b"}, extra_env={"DOCKER_CONFIG": str(own)})
    assert code == 0
    assert fake.build["DOCKER_CONFIG"] == str(own)


def test_cache_workspace_enables_on_disk_cache(env, monkeypatch):
    cache = env / "cache"
    cache.mkdir()
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b"}, {"cache": str(cache)})
    assert code == 0
    argv = fake.build["argv"]
    assert "--cache" in argv
    assert argv[argv.index("--cache-dir") + 1] == f"{cache}/base-images"
    assert argv[argv.index("--cache-repo") + 1] == f"oci:{cache}/layers"
    assert (cache / "layers").is_dir() and (cache / "base-images").is_dir()
    # the base images are warmed first (the build itself only reads --cache-dir, as Kaniko's)
    assert fake.warms == [["warm", "--force", "--cache-dir", f"{cache}/base-images",
                           "--dockerfile", f"{env}/source/./Dockerfile"]]
    assert fake.calls[0]["argv"][0] == "warm"


def test_cache_warm_gets_build_args_and_registry_flags_only(env, monkeypatch):
    cache = env / "cache"
    cache.mkdir()
    code, fake = run_step(env, monkeypatch, {
        "IMAGE": "r:5000/a:b", "BUILD_ARGS": ["BASE=r:5000/base:1", "BARE"],
        "EXTRA_ARGS": ["--target", "release", "--insecure-registry=r:5000", "--label", "team=a", "--insecure-registry",
                       "m:5000", "--skip-tls-verify=true", "--registry-mirror", "mirror:5000", "--reproducible",
                       "--custom-platform=linux/arm64", "--cache-ttl=24h", "--no-push-cache"]}, {"cache": str(cache)})
    assert code == 0
    assert fake.warms == [["warm", "--force", "--cache-dir", f"{cache}/base-images",
                           "--dockerfile", f"{env}/source/./Dockerfile",
                           "--build-arg", "BASE=r:5000/base:1", "--build-arg", "BARE",
                           "--insecure-registry=r:5000", "--insecure-registry", "m:5000",
                           "--skip-tls-verify=true", "--registry-mirror", "mirror:5000",
                           "--custom-platform=linux/arm64", "--cache-ttl=24h"]]
    argv = fake.build["argv"]
    assert ["--target", "release"] == argv[argv.index("--target"):argv.index("--target") + 2]
    assert "--no-push-cache" in argv and "--reproducible" in argv


def test_cache_warm_failure_is_only_a_warning(env, monkeypatch, capsys):
    cache = env / "cache"
    cache.mkdir()
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b"}, {"cache": str(cache)},
                          fake=FakeExecutor(warm_fail=True))
    assert code == 0
    assert "could not cache the base images" in capsys.readouterr().err
    assert fake.build["argv"][fake.build["argv"].index("--cache-dir") + 1] == f"{cache}/base-images"


def test_cache_dir_in_extra_args_wins_and_is_not_warmed(env, monkeypatch):
    cache = env / "cache"
    cache.mkdir()
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b", "EXTRA_ARGS": ["--cache-dir=/prewarmed"]},
                          {"cache": str(cache)})
    assert code == 0
    assert [a for a in fake.build["argv"] if a.startswith("--cache-dir")] == ["--cache-dir=/prewarmed"]
    assert fake.warms == []
    assert fake.build["argv"][fake.build["argv"].index("--cache-repo") + 1] == f"oci:{cache}/layers"


def test_cache_repo_in_extra_args_wins(env, monkeypatch):
    cache = env / "cache"
    cache.mkdir()
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b", "EXTRA_ARGS": ["--cache-repo=r:5000/cache"]},
                          {"cache": str(cache)})
    assert code == 0
    assert [a for a in fake.build["argv"] if a.startswith("--cache-repo")] == ["--cache-repo=r:5000/cache"]


def test_oversized_results_are_refused_before_the_build(env, monkeypatch, capsys):
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/" + "a" * 3000 + ":b"})
    assert code == 1 and fake.calls == []
    assert "4096-byte result limit" in capsys.readouterr().err


def test_missing_result_directory_is_refused_before_the_build(env, monkeypatch, capsys):
    code, fake = run_step(env, monkeypatch, {"IMAGE": "r:5000/a:b"},
                          extra_env={"RESULT_IMAGE_URL": f"{env}/nowhere/IMAGE_URL"})
    assert code == 1 and fake.calls == [] and not list((env / "results").iterdir())
    assert f"kaniko-build: {env}/nowhere/IMAGE_URL: the result directory does not exist" in capsys.readouterr().err


def test_result_message_size_is_the_termination_message():
    url, artifact = "r:5000/a:b", tekton.artifact_outputs("r:5000/a", DIGEST)
    size = tekton.result_message_size(url, DIGEST, artifact)
    assert 200 < size < 400 and size == len(json.dumps([
        {"key": "IMAGE_DIGEST", "value": DIGEST, "type": 1}, {"key": "IMAGE_URL", "value": url, "type": 1},
        {"key": "ARTIFACT_OUTPUTS", "value": artifact, "type": 1}]))


def test_the_script_passes_args_and_env_unchanged(env):
    """The 3-line script only execs `executor tekton-step "$@"`: hostile param values stay data."""
    if shutil.which("sh") is None:
        pytest.skip("no /bin/sh")
    bindir = env / "bin"
    bindir.mkdir()
    (bindir / "executor").write_text("#!/usr/bin/env python3\nimport json, os, sys\n"
                                     "json.dump({'argv': sys.argv[1:], 'env': dict(os.environ)}, "
                                     "open(os.environ['RECORD'], 'w'))\n")
    (bindir / "executor").chmod(0o755)
    marker = env / "pwned"
    r = render_step(TASK, "build-and-push", {"IMAGE": f"r:5000/a:b$(touch {marker})", "CONTEXT": f"x; touch {marker}",
                                             "BUILD_ARGS": ["A=1 2", "$(id)"], "EXTRA_ARGS": ["--label=x=`id`"]},
                    {"source": str(env / "source")}, results_dir=str(env / "results"))
    assert len(r.script.splitlines()) <= 20
    script = write_script(r, env / "script.sh")
    p = subprocess.run(["sh", str(script), *r.args], cwd=r.working_dir, capture_output=True, text=True, timeout=30,
                       env={**r.env, "PATH": f"{bindir}:/usr/bin:/bin", "RECORD": str(env / "record.json")})
    assert p.returncode == 0, p.stderr
    rec = json.loads((env / "record.json").read_text())
    assert rec["argv"] == ["tekton-step", "A=1 2", "$(id)", "--kaniko-build-extra-args--", "--label=x=`id`"]
    assert rec["env"]["PARAM_IMAGE"] == f"r:5000/a:b$(touch {marker})"
    assert rec["env"]["PARAM_CONTEXT"] == f"x; touch {marker}"
    assert not marker.exists()


def test_tekton_step_help_is_a_usage_naming_every_variable_it_reads():
    """``executor tekton-step --help``: a usage line and every environment variable the step
    reads (not the module's reST docstring)."""
    import re

    from tests.support.tools import run_executor
    p = run_executor(["tekton-step", "--help"])
    assert p.stdout.startswith("usage: executor tekton-step ") and "``" not in p.stdout
    read = set(re.findall(r'env\.get\("([A-Z_]+)"', Path(tekton.__file__).read_text()))
    assert len(read) >= 10
    for name in read:
        assert name in p.stdout, name
