"""The CLI's argument handling: Kaniko spellings, usage errors, user errors without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from executor.cliargs import build_args_from, normalise_argv, parse_secret, resolve_dockerfile
from executor.errors import UserError


@pytest.mark.parametrize("argv,expected", [
    (["--cache=true"], ["--cache"]),
    (["--cache=false"], []),
    (["--cache-run-layers=false"], ["--no-cache-run-layers"]),
    (["--cleanup=true"], ["--cleanup"]),
    (["--cache-copy-layers=false"], ["--no-cache-copy-layers"]),
    (["-f=Dockerfile.x"], ["-f", "Dockerfile.x"]),
    (["--destination=r/x:y"], ["--destination=r/x:y"]),
    (["--no-push=1"], ["--no-push"]),
    (["--cache=T"], ["--cache"]),
    (["--cache=f"], []),
    (["--cache-run-layers=FALSE"], ["--no-cache-run-layers"]),
    (["--cleanup=True"], ["--cleanup"]),
    # a boolean given again overrides the earlier one (pflag; Tekton appends EXTRA_ARGS last)
    (["--no-push", "--no-push=false"], []),
    (["--reproducible", "--reproducible=false"], []),
    (["--cleanup=false", "--cleanup=true"], ["--cleanup"]),
    (["--cleanup", "--cleanup=false"], ["--no-cleanup"]),
    (["--no-cleanup", "--destination=r/x", "--cleanup"], ["--destination=r/x", "--cleanup"]),
    (["--cache=false", "--cache-repo=r/c", "--cache"], ["--cache-repo=r/c", "--cache"]),
])
def test_normalise_argv_accepts_go_flag_spellings(argv, expected):
    assert normalise_argv(argv) == expected


def test_boolean_flag_with_another_value_is_one_clear_error():
    with pytest.raises(UserError, match=r"^--cache=yes: --cache takes true or false"):
        normalise_argv(["--cache=yes"])
    p = subprocess.run([sys.executable, "-m", "executor", "--no-push", "--cache=yes", "--context", "/nonexistent"],
                       capture_output=True, text=True)
    assert p.returncode == 1, p.stderr
    assert p.stderr.strip().splitlines() == ["error: --cache=yes: --cache takes true or false (or Go's 1/t, 0/f), "
                                             "e.g. --cache=false"], p.stderr


def test_build_arg_bare_key_takes_environment_value():
    assert build_args_from(["A=1", "B", "C", "D=x=y"], {"B": "from-env"}) == {"A": "1", "B": "from-env", "D": "x=y"}


def test_secret_specs():
    s = parse_secret("id=tok,env=MY_TOKEN")
    assert s.id == "tok" and s.env == "MY_TOKEN" and "MY_TOKEN" not in repr(s)
    f = parse_secret("id=npmrc,src=/tmp/x")
    assert f.path == Path("/tmp/x")
    with pytest.raises(UserError):
        parse_secret("src=/tmp/x")


def test_dockerfile_relative_to_context(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "Dockerfile.x").write_text("FROM scratch\n")
    assert resolve_dockerfile(tmp_path, "sub/Dockerfile.x") == tmp_path / "sub" / "Dockerfile.x"
    assert resolve_dockerfile(tmp_path, "/abs/Dockerfile") == Path("/abs/Dockerfile")


def _cli(*args: str) -> subprocess.CompletedProcess:
    import os
    env = dict(os.environ, COLUMNS="200")  # wide help, so long flag names are not cut
    return subprocess.run([sys.executable, "-m", "executor", *args], capture_output=True, text=True, env=env)


def test_unknown_flag_is_a_usage_error():
    p = _cli("--bogus-flag")
    assert p.returncode == 2
    assert "No such option: --bogus-flag" in p.stderr and "Traceback" not in p.stderr
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("error: ")


def test_bad_flag_type_and_missing_value_are_one_line_usage_errors():
    for args in (["--push-retry", "abc"], ["--destination"], ["push", "--push-retry", "x"]):
        p = _cli(*args)
        assert p.returncode == 2 and p.stderr.startswith("error: ") and p.stderr.count("\n") == 1, (args, p.stderr)
    p = _cli("cache", "prune")
    assert p.returncode == 2 and "(see executor cache prune --help)" in p.stderr, p.stderr


def test_missing_destination_is_explained(tmp_path):
    p = _cli("--context", str(tmp_path))
    assert p.returncode == 1
    assert "--destination" in p.stderr and "--no-push" in p.stderr and "Traceback" not in p.stderr


def test_missing_dockerfile_is_explained(tmp_path):
    p = _cli("--context", str(tmp_path), "--no-push")
    assert p.returncode == 1
    assert "Dockerfile not found" in p.stderr and "Traceback" not in p.stderr


def test_version():
    p = _cli("version")
    assert p.returncode == 0 and p.stdout.startswith("executor ")


def test_help_lists_kaniko_flags():
    p = _cli("--help")
    assert p.returncode == 0, p.stderr
    for flag in ("--context", "--dockerfile", "--destination", "--digest-file", "--cache-repo",
                 "--custom-platform", "--image-name-tag-with-digest-file"):
        assert flag in p.stdout


def test_version_flag():
    p = _cli("--version")
    assert p.returncode == 0 and p.stdout.startswith("executor ")


def test_warm_help_renders():
    p = _cli("warm", "--help")
    assert p.returncode == 0, p.stderr
    assert "--image" in p.stdout and "--cache-dir" in p.stdout


@pytest.mark.parametrize("value, no_push", [("", False), ("false", False), ("0", False), ("F", False),
                                            ("true", True), ("1", True), ("TRUE", True)])
def test_kaniko_no_push_is_read_as_go_reads_a_boolean(monkeypatch, value, no_push):
    from executor.buildflags import parse
    monkeypatch.setenv("KANIKO_NO_PUSH", value)
    assert parse([]).values["no_push"] is no_push


def test_kaniko_no_push_with_another_spelling_is_one_error_line():
    import os
    p = subprocess.run([sys.executable, "-m", "executor", "--context", "/nonexistent"], capture_output=True,
                       text=True, env={**os.environ, "KANIKO_NO_PUSH": "yes"})
    assert p.returncode == 1 and p.stderr.strip().splitlines() == [
        "error: KANIKO_NO_PUSH=yes: KANIKO_NO_PUSH takes true or false (or Go's 1/t, 0/f)"], p.stderr


def test_kaniko_dir_that_cannot_hold_a_work_directory_is_one_error_line(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    for kdir, says in ((ctx / "k", "is inside the build context"), (Path("/proc/executor-kaniko-dir"),
                                                                    "cannot make the work directory there")):
        p = subprocess.run([sys.executable, "-m", "executor", "--context", str(ctx), "--no-push", "--kaniko-dir",
                            str(kdir)], capture_output=True, text=True)
        assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
        last = p.stderr.strip().splitlines()[-1]
        assert last.startswith(f"error: --kaniko-dir {kdir}") and says in last, p.stderr
    assert not (ctx / "k").exists()
