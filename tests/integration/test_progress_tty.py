"""``--progress`` through the CLI on a pseudo-terminal, against the loopback registry: the live
view shows the base image's pull (bytes, rate, elapsed, finished when its layers are in the
root), each stage's steps and the push (bytes uploaded, rate, elapsed); ``--log-format json``
on the same terminal stays JSON lines."""

from __future__ import annotations

import json
import os
import re
import textwrap

import pytest

from tests.support.terminal import run_in_pty
from tests.support.tools import REPO, executor_cmd, skopeo_inspect

pytestmark = pytest.mark.integration

SIZE = r"\d+(?:\.\d+)?[kMG]?B"
ROW = re.compile(rf"^✓ (?P<name>(?:pull|push|stage) \S+)\s+(?P<detail>.*?)\s*(?P<bytes>{SIZE}) "
                 rf"(?P<rate>{SIZE}/s)\s+(?P<elapsed>\d+:\d\d:\d\d) done\s*$")


def _context(tmp_path, base: str):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {base}
        RUN echo ran > /ran.txt && sleep 1
        COPY a.txt /a.txt
        """))
    (ctx / "a.txt").write_text("a\n")
    return ctx


def test_live_view_of_a_pull_build_and_push(registry, busybox, tmp_path):
    dest = f"{registry.host}/progress/app:1"
    # a layer store of its own: the base image's layer is really downloaded
    env = {**os.environ, "COLUMNS": "100", "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    code, out = run_in_pty([*executor_cmd(), "--context", str(_context(tmp_path, busybox)), "--destination", dest,
                            "--progress", "tty", "--digest-file", str(tmp_path / "digest")],
                           env=env, cwd=REPO, timeout=300)
    assert code == 0, out
    digest = (tmp_path / "digest").read_text()
    assert skopeo_inspect(dest)["Digest"] == digest
    final = out[out.rindex("✓ stage"):]  # the last drawing of the view, then the closing line
    rows = {m["name"]: m for m in map(ROW.match, final.splitlines()) if m}
    repo = busybox.rsplit(":", 1)[0]
    pull, push = rows.get(f"pull {repo}"), rows.get(f"push {registry.host}/progress/app")
    assert pull and push and "stage 0" in rows, final
    assert re.fullmatch(r"1 layers (stacked|unpacked)", pull["detail"]), final  # finished at the unpack
    assert "uploaded" in push["detail"], final
    assert rows["stage 0"]["detail"] == "2 steps", final
    assert final.rstrip().endswith(f"done in {final.rsplit('done in ', 1)[1].split(':')[0]}: {digest}")
    assert "INFO[" not in out  # the view replaces the log lines


def test_json_logs_on_a_terminal_stay_lines(registry, busybox, tmp_path):
    env = {**os.environ, "COLUMNS": "100"}
    code, out = run_in_pty([*executor_cmd(), "--context", str(_context(tmp_path, busybox)),
                            "--destination", f"{registry.host}/progress/json:1", "--log-format", "json"],
                           env=env, cwd=REPO, timeout=300)
    assert code == 0, out
    records = [json.loads(line) for line in out.splitlines() if line.strip()]
    messages = [r["msg"] for r in records]
    assert any(m.startswith("pulling base image ") for m in messages)
    assert any(m.startswith("pushed ") and "@sha256:" in m for m in messages)
