"""Kaniko compatibility of the CLI, through ``python -m executor``: no-op flags warn once naming
what the executor does instead, old camelCase spellings are accepted and hidden from --help,
--help at 80 columns shows every flag name whole, and --annotation / --image-format shape the
manifest that is written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from executor.cliapp import _known_build_flags, build_app
from executor.cliargs import NO_OP_FLAGS, normalise_argv

REPO = Path(__file__).resolve().parents[2]


def _executor(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "executor", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def _ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\n")
    (ctx / "a.txt").write_text("a\n")
    return ctx


def _manifest(layout: Path) -> dict:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())


def test_no_op_flags_warn_once_each(tmp_path):
    ctx = _ctx(tmp_path)
    p = _executor(["--context", str(ctx), "--no-push", "--log-format", "text",
                   "--snapshot-mode=redo", "--use-new-run", "--compressed-caching=false", "--force",
                   "--skip-unused-stages=false", "--ignore-var-run=false", "--force-build-metadata",
                   "--image-fs-extract-retry", "2", "--preserve-context", "--pre-cleanup=true", "--materialize",
                   "--credential-helpers", "ecr", "--credential-helpers=google,gitlab"])
    assert p.returncode == 0, p.stderr
    warns = [line for line in p.stderr.splitlines() if line.startswith("WARN")]
    for flag in NO_OP_FLAGS:
        mine = [w for w in warns if f"{flag}=" in w]
        assert len(mine) == 1, (flag, warns)
        assert "ignored; " in mine[0]
    assert any("--snapshot-mode=redo: ignored; the executor takes a RUN's changes from its overlayfs upper "
               "directory, or where it cannot mount from a stat index of the whole root" in w for w in warns)
    assert any("--compressed-caching=false: ignored" in w for w in warns)
    assert any("--preserve-context=true: ignored; the build root is a directory of the executor's work directory, "
               "never its own /" in w for w in warns)
    assert any("--pre-cleanup=true: ignored; every build starts from an empty root of its own" in w for w in warns)
    assert any("--materialize=true: ignored; the image's files never land in the executor's own /" in w
               for w in warns)
    helpers = next(w for w in warns if "--credential-helpers=" in w)
    assert "--credential-helpers=ecr,google,gitlab: ignored; credentials come from a Docker config.json" in helpers
    assert "ecr -> ecr-login; google -> gcloud (or gcr); gitlab -> gitlabci" in helpers


def test_fork_flags_false_or_empty_do_not_warn(tmp_path):
    """``--preserve-context=false`` asks for what the executor does anyway, and
    ``--credential-helpers=''`` (the fork's "no built-in helpers") is what it has: no warning."""
    p = _executor(["--context", str(_ctx(tmp_path)), "--no-push", "--log-format", "text",
                   "--preserve-context=false", "--materialize=false", "--pre-cleanup=0", "--credential-helpers="])
    assert p.returncode == 0, p.stderr
    warns = [line for line in p.stderr.splitlines() if line.startswith("WARN")]
    assert not [w for w in warns if "--preserve-context" in w or "--materialize" in w or "--pre-cleanup" in w]
    assert not [w for w in warns if "--credential-helpers" in w]


def test_no_op_flags_not_given_do_not_warn(tmp_path):
    p = _executor(["--context", str(_ctx(tmp_path)), "--no-push", "--log-format", "text"])
    assert p.returncode == 0, p.stderr
    assert "ignored;" not in p.stderr


def test_old_camelcase_spellings_accepted_and_hidden(tmp_path):
    ctx = _ctx(tmp_path)
    p = _executor(["--context", str(ctx), "--no-push", "--log-format", "text",
                   "--tarPath", str(tmp_path / "img.tar"), "--snapshotMode=full", "--customPlatform=linux/arm64",
                   "--ociLayoutPath", str(tmp_path / "lay"), "--digestFile", str(tmp_path / "digest"),
                   "--cacheDir", str(tmp_path / "cache"), "--whitelist-var-run=true"])
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "img.tar").is_file() and (tmp_path / "lay" / "index.json").is_file()
    assert (tmp_path / "digest").read_text().startswith("sha256:")
    for old, new in (("--tarPath", "--tar-path"), ("--snapshotMode", "--snapshot-mode"),
                     ("--customPlatform", "--custom-platform"), ("--whitelist-var-run", "--ignore-var-run")):
        assert p.stderr.count(f"{old}: deprecated spelling, use {new}") == 1
    config_digest = _manifest(tmp_path / "lay")["config"]["digest"].split(":")[1]
    config = json.loads((tmp_path / "lay" / "blobs" / "sha256" / config_digest).read_text())
    assert config["architecture"] == "arm64"
    help_text = _executor(["--help"], env={"COLUMNS": "200"}).stdout
    for old in ("--tarPath", "--snapshotMode", "--customPlatform", "--cacheRepo", "--no-cleanup",
                "--no-compressed-caching", "--bucket", "--whitelist-var-run"):
        assert old not in help_text


@pytest.mark.parametrize("argv,expected", [
    (["--tarPath=/x"], ["--tar-path=/x"]),
    (["--cacheRepo", "r/c"], ["--cache-repo", "r/c"]),
    (["--imageNameWithDigestFile=f"], ["--image-name-with-digest-file=f"]),
    (["--imageNameTagWithDigestFile=f"], ["--image-name-tag-with-digest-file=f"]),
    (["--oci_layout_path", "d"], ["--oci-layout-path", "d"]),
    (["--compressedCaching=false"], ["--no-compressed-caching"]),
    (["--skipTlsVerify"], ["--skip-tls-verify"]),
    (["--notAFlag"], ["--notAFlag"]),
])
def test_old_spellings_rewritten(argv, expected):
    notes: list[str] = []
    assert normalise_argv(argv, _known_build_flags(), notes) == expected
    assert len(notes) == (0 if expected == argv else 1)


def test_help_at_80_columns_shows_every_flag_whole():
    import typer
    p = _executor(["--help"], env={"COLUMNS": "80"})
    assert p.returncode == 0, p.stderr
    assert "…" not in p.stdout
    assert max(len(line) for line in p.stdout.splitlines()) <= 80
    shown = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", p.stdout))
    cmd = typer.main.get_command(build_app)
    visible = {o for prm in cmd.params if not getattr(prm, "hidden", False) for o in prm.opts if o.startswith("--")}
    missing = visible - shown
    assert not missing, missing
    for panel in ("Context and Dockerfile:", "Registry:", "Cache:", "Outputs:", "Logging:"):
        assert panel in p.stdout


def test_annotations_in_the_manifest(tmp_path):
    ctx = _ctx(tmp_path)
    p = _executor(["--context", str(ctx), "--no-push", "--oci-layout-path", str(tmp_path / "lay"),
                   "--digest-file", str(tmp_path / "digest"),
                   "--annotation", "org.opencontainers.image.source=https://example.test/repo",
                   "--annotation", "team=build"])
    assert p.returncode == 0, p.stderr
    man = _manifest(tmp_path / "lay")
    assert man["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert man["annotations"] == {"org.opencontainers.image.source": "https://example.test/repo", "team": "build"}
    index = json.loads((tmp_path / "lay" / "index.json").read_text())
    assert (tmp_path / "digest").read_text() == index["manifests"][0]["digest"]


def test_image_format_docker(tmp_path):
    ctx = _ctx(tmp_path)
    p = _executor(["--context", str(ctx), "--no-push", "--oci-layout-path", str(tmp_path / "lay"),
                   "--image-format", "docker"])
    assert p.returncode == 0, p.stderr
    man = _manifest(tmp_path / "lay")
    assert man["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert all(layer["mediaType"].startswith("application/vnd.docker.image.rootfs") for layer in man["layers"])


@pytest.mark.parametrize("args,message", [
    (["--image-format", "tar"], "--image-format=tar: use docker or oci"),
    (["--image-format", "docker", "--annotation", "a=b"], "--annotation needs an OCI manifest"),
    (["--annotation", "novalue"], "--annotation 'novalue': expected KEY=VALUE"),
    (["--git", "depth=-1"], "--git depth=-1"),
    (["--bucket", "my-bucket"], "Google Cloud Storage contexts are not supported"),
    (["--dockerfile", "https://example.com/Dockerfile"], "remote Dockerfiles are not fetched"),
    (["--digest-file", "https://example.com/put?sig=x"], "--digest-file https://example.com/put?sig=x: a URL"),
    (["--credential-helpers", "ecr,vault"], "--credential-helpers=vault: unknown helper (the fork knows env, google, "
                                            "ecr, acr, gitlab; '' turns them off); here credentials come from a Docker "
                                            "config.json"),
])
def test_bad_flag_values_are_one_line(tmp_path, args, message):
    p = _executor(["--context", str(_ctx(tmp_path)), "--no-push", *args])
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert message in p.stderr


@pytest.mark.parametrize("sub", [["warm"], ["index"], ["push"], ["cache", "prune"]])
def test_subcommand_help_at_80_columns_is_whole(sub):
    p = _executor([*sub, "--help"], env={"COLUMNS": "80"})
    assert p.returncode == 0, p.stderr
    assert "…" not in p.stdout and "╭" not in p.stdout
    assert max(len(line) for line in p.stdout.splitlines()) <= 80
    # options show what to type (FILE, REF, N, ...), not Python types such as <list[str]>
    options = [line for line in p.stdout.splitlines() if line.lstrip().startswith("-")]
    assert options and not [line for line in options if re.search(r"<(?:str|int|path|list\[str\])>", line)], p.stdout


@pytest.mark.parametrize("flag,words", [
    ("--security=insecure", "RUN --security=insecure is not supported"),
    ("--device=/dev/fuse", "RUN --device is not supported"),
])
def test_privileged_run_flags_are_one_line_errors(tmp_path, flag, words):
    """Through the CLI: exit 1, one ``error:`` line naming the Dockerfile line, no traceback, no
    image written (the step is refused, never run without the privilege it asked for)."""
    ctx = _ctx(tmp_path)
    (ctx / "Dockerfile").write_text(f"FROM scratch\nCOPY a.txt /a.txt\nRUN {flag} true\n")
    p = _executor(["--context", str(ctx), "--no-push", "--log-format", "text",
                   "--oci-layout-path", str(tmp_path / "lay")])
    assert p.returncode == 1 and "Traceback" not in p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: Dockerfile:3: ") and words in errors[0], p.stderr
    assert not (tmp_path / "lay" / "index.json").exists()


def test_sbom_format_is_read_in_any_case(tmp_path):
    """``--sbom-format CycloneDX`` (the format's own spelling) as ``cyclonedx``."""
    ctx = _ctx(tmp_path)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\n")
    p = _executor(["--context", str(ctx), "--no-push", "--sbom-format", "CycloneDX", "--sbom-path",
                   str(tmp_path / "sbom.json")])
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "sbom.json").read_text())["bomFormat"] == "CycloneDX"
