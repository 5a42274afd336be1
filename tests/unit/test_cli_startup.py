"""Start-up cost of the CLI: option values are coerced without building pydantic adapters
(executor.clicoerce), with the same results as typer's own coercion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer

from executor import cli, cliapp
from executor.clicoerce import plain_coercion

ARGV = ["--context", "/tmp", "--destination", "r.example/x:y", "-d", "r.example/x:z", "--cache",
        "--insecure", "--build-arg", "A=1", "--push-retry", "3", "--kaniko-dir", "/k", "--label", "a=b",
        "--digest-file", "rel/d", "--compression-level", "-1"]


def _params(fast: bool) -> dict:
    cmd = typer.main.get_command(cliapp.build_app)
    if fast:
        plain_coercion(cmd)
    return cmd.make_context("executor", list(ARGV)).params


def test_plain_coercion_gives_typers_values():
    fast, slow = _params(True), _params(False)
    assert fast == slow
    assert {k: type(v) for k, v in fast.items()} == {k: type(v) for k, v in slow.items()}


def test_build_command_parses_without_pydantic():
    code = ("import sys, typer\nfrom executor import cli\nfrom executor.clicoerce import plain_coercion\n"
            "from executor import cliapp\ncmd = typer.main.get_command(cliapp.build_app)\nplain_coercion(cmd)\n"
            f"cmd.make_context('executor', {ARGV!r})\nprint('pydantic' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_bad_values_still_get_typers_message():
    p = subprocess.run([sys.executable, "-m", "executor", "--push-retry", "abc", "--no-push"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "Invalid value for '--push-retry'" in p.stderr and "valid integer" in p.stderr


# -- the fast build-flag parser (executor.buildflags) against the typer command -----------------

def _typer_command():
    cmd = typer.main.get_command(cliapp.build_app)
    plain_coercion(cmd)
    return cmd


def test_flag_table_matches_the_typer_command_flag_for_flag():
    from executor.buildflags import FLAGS, KNOWN_FLAGS
    from executor.cliapp import _known_build_flags
    cmd = _typer_command()
    kinds = {str: "str", int: "int", bool: "bool"}
    typer_side = {}
    for p in cmd.params:
        if not getattr(p, "opts", None):
            continue
        ann = p.type_descriptor.annotation
        if p.multiple:
            kind = "list"
        elif ann is Path or ann is str and p.default is None:
            kind = "path?" if ann is Path else "str?"
        else:
            kind = kinds[ann]
        typer_side[p.name] = (kind, tuple(p.opts) + tuple(p.secondary_opts), p.default if kind != "list" else None)
    table_side = {f.name: (f.kind, f.names, None if f.kind == "list" else f.default_value()) for f in FLAGS}
    assert table_side == typer_side
    assert set(KNOWN_FLAGS) == _known_build_flags(cmd)


FAST_ARGVS = [
    [],
    ARGV,
    ["-c", "dir:///ctx", "-f", "Dockerfile.x", "-d", "r/a:1", "-dr/a:2", "--destination=r/a:3", "-j", "3"],
    ["--context=/c", "--build-arg", "A=1", "--build-arg=B", "--build-arg", "C=--x", "--label", "k=v", "--label=l=w"],
    ["--no-push", "--tar-path", "out.tar", "--oci-layout-path=lay", "--cache-dir", "/cd", "--run-cache-dir", "rc"],
    ["--cache", "--cache-repo", "r/c", "--cache-from", "r/x", "--cache-from", "oci:/d", "--cache-ttl", "1h"],
    ["--platform", "linux/arm64", "--custom-platform=linux/amd64,linux/arm64", "-v", "debug", "--verbosity=warn"],
    ["--snapshot-mode", "redo", "--use-new-run", "--force", "--image-fs-extract-retry", "2", "--no-cleanup"],
    ["--cleanup=false", "--cache-run-layers=false", "--compressed-caching=false", "--insecure=true", "--reproducible=1"],
    ["--tarPath", "t.tar", "--cacheRepo", "r/c", "--customPlatform", "linux/arm64", "--snapshotMode=time",
     "--whitelist-var-run=false", "--skip_tls_verify", "--insecure-registry", "a", "--insecure-registry=b"],
    ["-f=Dockerfile", "-c=/x", "-d=r/a", "--registry-map", "a=b;c=d", "--registry-mirror", "m", "--ssh", "default",
     "--secret", "id=a,src=/f", "--git", "branch=x", "--annotation", "a=b", "--image-format", "oci",
     "--compression", "zstd", "--compression-level", "3", "--sbom", "--sbom-format", "cyclonedx", "--sbom-path", "s",
     "--provenance", "--provenance-path", "p", "--digest-file", "d", "--image-name-with-digest-file", "n",
     "--image-name-tag-with-digest-file", "t", "--ignore-path", "/var", "--ignore-path=/tmp", "--kaniko-dir", "/k",
     "--log-format", "json", "--log-timestamp", "--progress", "plain", "--push-retry", "2",
     "--image-download-retry=4", "--skip-push-permission-check", "--skip-default-registry-fallback",
     "--skip-tls-verify-pull", "--skip-tls-verify-registry", "h", "--registry-certificate", "h=ca",
     "--registry-client-cert", "h=c,k", "--no-push-cache", "--single-snapshot", "--run-isolation", "chroot",
     "--target", "t", "--context-sub-path", "sub", "--bucket", "b", "--version", "--force-build-metadata"],
    ["-cd", "--destination", "--no-push"],  # a value that looks like a flag is the value (click's rule)
    ["--jobs", "-1", "--compression-level=-1", "--destination=", "--dockerfile", ""],
]


@pytest.mark.parametrize("argv", FAST_ARGVS, ids=range(len(FAST_ARGVS)))
def test_fast_parser_gives_typers_values_and_given_flags(argv):
    from executor.buildflags import KNOWN_FLAGS, parse
    fast_notes: list[str] = []
    norm = cli.normalise_argv(argv, set(KNOWN_FLAGS), fast_notes)
    typer_notes: list[str] = []
    cmd = _typer_command()
    assert norm == cli.normalise_argv(argv, cliapp._known_build_flags(cmd), typer_notes)
    assert fast_notes == typer_notes
    parsed = parse(norm)
    assert parsed is not None, norm
    ctx = cmd.make_context("executor", list(norm))
    assert parsed.values == ctx.params
    assert {k: type(v) for k, v in parsed.values.items()} == {k: type(v) for k, v in ctx.params.items()}
    assert parsed.given == cliapp.given_flags(ctx)


@pytest.mark.parametrize("argv", [
    ["--help"], ["-h"], ["--bogus"], ["positional"], ["--", "x"], ["-"], ["--destination"], ["--jobs", "x"],
    ["--jobs=+3"], ["-x"], ["--dest", "r/a"],
])
def test_fast_parser_leaves_everything_else_to_typer(argv):
    from executor.buildflags import KNOWN_FLAGS, parse
    assert parse(cli.normalise_argv(argv, set(KNOWN_FLAGS))) is None


@pytest.mark.parametrize("argv", [["--cache=yes"], ["--cache=maybe"]])
def test_boolean_flag_values_go_does_not_accept_stop_before_either_parser(argv):
    from executor.buildflags import KNOWN_FLAGS
    with pytest.raises(cli.UserError, match="takes true or false"):
        cli.normalise_argv(argv, set(KNOWN_FLAGS))


def test_fast_parser_default_no_push_follows_the_environment(monkeypatch):
    from executor.buildflags import parse
    monkeypatch.setenv("KANIKO_NO_PUSH", "1")
    assert parse([]).values["no_push"] is True
    monkeypatch.delenv("KANIKO_NO_PUSH")
    assert parse([]).values["no_push"] is False


def test_a_build_imports_neither_typer_nor_click_nor_httpx_before_it_needs_them(tmp_path):
    """``executor --no-push`` of a missing context: flags parsed, the error printed, and typer
    never imported (typer is for --help and usage errors)."""
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "executor", "--no-push", "--context",
                        str(tmp_path / "missing"), "--cache-ttl=1h"], capture_output=True, text=True)
    assert p.returncode == 1 and "error: --context" in p.stderr and "not a directory" in p.stderr
    imported = {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines() if line.startswith("import time:")}
    assert "executor.buildflags" in imported
    assert not {m for m in imported if m.split(".")[0] in ("typer", "click", "rich", "pydantic")}
    # a usage error still goes through typer, with its message
    p = subprocess.run([sys.executable, "-m", "executor", "--no-push", "--destinaton", "x"],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "No such option: --destinaton" in p.stderr and "(see executor --help)" in p.stderr


SBOM_MODULES = ("executor.sbom", "spdx_tools", "cyclonedx", "license_expression", "beartype")


def _build_modules(tmp_path: Path, *extra: str) -> list[str]:
    """Run a real ``FROM scratch`` + COPY build (no push) in a fresh interpreter and list the
    SBOM-side modules it imported."""
    ctx = tmp_path / "ctx"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY a.txt /a.txt\n")
    (ctx / "a.txt").write_text("a\n")
    argv = ["--context", str(ctx), "--no-push", "--kaniko-dir", str(tmp_path / "k"), *extra]
    code = ("import sys\nfrom executor import cli\ntry:\n    cli.main(%r)\nexcept SystemExit as e:\n"
            "    assert not e.code, e.code\nprint('\\n'.join(sorted(m for m in sys.modules if m.startswith(%r))))\n"
            % (argv, SBOM_MODULES))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout.split()


def test_a_plain_build_imports_no_sbom_module_and_an_sbom_build_does(tmp_path):
    assert _build_modules(tmp_path) == []
    mods = _build_modules(tmp_path, "--sbom-path", str(tmp_path / "s.spdx.json"))
    assert "executor.sbom.spdx" in mods and "spdx_tools.spdx.writer.json.json_writer" in mods
    assert (tmp_path / "s.spdx.json").read_text().lstrip().startswith("{")


#: modules only a step that executes (a cache miss) or an unpack, upload or push failure uses:
#: a no-change rebuild (every step a cache hit) imports none of them
EXECUTE_ONLY = ("executor.engine.sandbox", "executor.engine.userns", "executor.engine.isolation",
                "executor.engine.runroot", "executor.engine.output", "executor.engine.users",
                "executor.engine.steps.mounts", "executor.engine.steps.archives", "executor.engine.steps.copying",
                "executor.engine.overlayroot", "executor.engine.layerstore", "executor.engine.inflight",
                "executor.fs.overlay", "executor.fs.upperdiff", "executor.fs.snapshot", "executor.layers.extract",
                "executor.layers.writer", "executor.layers.compress", "executor.layers.decompress",
                "executor.layers.tarstream", "executor.layers.pathindex", "executor.oci.layout",
                "executor.registry.immutable")


def test_the_build_stack_imports_no_module_only_an_executing_step_uses(tmp_path):
    code = ("import sys\nfrom pathlib import Path\n"
            "import executor.cli, executor.buildcmd, executor.engine.build, executor.engine.lazyfs, executor.job\n"
            "import executor.outputs, executor.cache.registry_store, executor.cache.base_images, executor.attest\n"
            "from executor.engine.lazyfs import LayerIndexes\nfrom executor.engine.stagemounts import StageMounts\n"
            "LayerIndexes()\nStageMounts(Path(%r)).release()\n"
            "print('\\n'.join(sorted(m for m in sys.modules if m in %r)))\n" % (str(tmp_path), EXECUTE_ONLY))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == []
    for name in EXECUTE_ONLY:  # each name is a real module
        assert Path(__file__).parents[2].joinpath(*name.split(".")).with_suffix(".py").is_file(), name
