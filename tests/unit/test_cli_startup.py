"""Start-up cost of the CLI: option values are coerced without building pydantic adapters
(executor.clicoerce), with the same results as typer's own coercion."""

from __future__ import annotations

import subprocess
import sys

import typer

from executor import cli
from executor.clicoerce import plain_coercion

ARGV = ["--context", "/tmp", "--destination", "r.example/x:y", "-d", "r.example/x:z", "--cache",
        "--insecure", "--build-arg", "A=1", "--push-retry", "3", "--kaniko-dir", "/k", "--label", "a=b",
        "--digest-file", "rel/d", "--compression-level", "-1"]


def _params(fast: bool) -> dict:
    cmd = typer.main.get_command(cli.build_app)
    if fast:
        plain_coercion(cmd)
    return cmd.make_context("executor", list(ARGV)).params


def test_plain_coercion_gives_typers_values():
    fast, slow = _params(True), _params(False)
    assert fast == slow
    assert {k: type(v) for k, v in fast.items()} == {k: type(v) for k, v in slow.items()}


def test_build_command_parses_without_pydantic():
    code = ("import sys, typer\nfrom executor import cli\nfrom executor.clicoerce import plain_coercion\n"
            "cmd = typer.main.get_command(cli.build_app)\nplain_coercion(cmd)\n"
            f"cmd.make_context('executor', {ARGV!r})\nprint('pydantic' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_bad_values_still_get_typers_message():
    p = subprocess.run([sys.executable, "-m", "executor", "--push-retry", "abc", "--no-push"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert "Invalid value for '--push-retry'" in p.stderr and "valid integer" in p.stderr
