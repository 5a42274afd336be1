"""``--progress auto|tty|plain`` through the CLI (``python -m executor``), and the live view's
model fed with the engine's log lines; plus ``executor push`` usage errors (no registry)."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from executor.progress import ProgressHandler, resolve_mode
from tests.support.terminal import run_in_pty

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}


def _executor(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "executor", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO, env=ENV, stdin=subprocess.DEVNULL)


def _ctx(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch AS base\nCOPY a.txt /a.txt\n"
                                    "FROM scratch AS final\nCOPY --from=base /a.txt /b.txt\nCOPY a.txt /c.txt\n")
    (ctx / "a.txt").write_text("a\n")
    return ctx


def _in_pty(args: list[str], timeout: float = 120) -> tuple[int, str]:
    """Run ``executor ARGS`` with stdout and stderr on a pseudo-terminal; (exit code, text without ANSI)."""
    return run_in_pty([sys.executable, "-m", "executor", *args], env=ENV, cwd=REPO, timeout=timeout)


def _normalise(text: str) -> list[str]:
    """Log lines with times and temp paths made comparable."""
    text = re.sub(r"\d+\.\d+s", "Ts", text)
    return [line for line in text.splitlines() if line]


def test_progress_plain_is_todays_lines(tmp_path):
    ctx = _ctx(tmp_path)
    common = ["--context", str(ctx), "--no-push", "--log-format", "text", "--reproducible"]
    default = _executor(common)
    plain = _executor(common + ["--progress", "plain"])
    assert default.returncode == 0 and plain.returncode == 0, plain.stderr
    assert _normalise(plain.stderr) == _normalise(default.stderr)  # auto off a terminal = plain
    assert "INFO[engine] [base] stage 0 AS base: FROM scratch" in plain.stderr
    assert all(re.match(r"^(INFO|WARN|DEBUG)\[", line) for line in _normalise(plain.stderr))


def test_progress_plain_json_unchanged(tmp_path):
    p = _executor(["--context", str(_ctx(tmp_path)), "--no-push", "--log-format", "json", "--progress", "plain"])
    assert p.returncode == 0, p.stderr
    import json
    assert all(isinstance(json.loads(line), dict) for line in p.stderr.splitlines() if line)


def test_progress_tty_under_a_pty_shows_the_final_view(tmp_path):
    code, out = _in_pty(["--context", str(_ctx(tmp_path)), "--no-push", "--progress", "tty",
                         "--digest-file", str(tmp_path / "digest")])
    assert code == 0, out
    digest = (tmp_path / "digest").read_text()
    final = out[out.rindex("stage base"):]  # the last drawing of the view, then the closing line
    assert "stage final" in final
    assert re.search(r"stage base .*done", final) and re.search(r"stage final .*done", final), final
    assert "done in " in final and digest in final
    assert "INFO[" not in out  # the view replaces the lines


def test_progress_auto_under_a_pty_is_the_view_but_json_stays_lines(tmp_path):
    ctx = _ctx(tmp_path)
    code, out = _in_pty(["--context", str(ctx), "--no-push"])
    assert code == 0, out
    assert "stage final" in out and "INFO[" not in out
    code, out = _in_pty(["--context", str(ctx), "--no-push", "--log-format", "json"])
    assert code == 0, out
    assert '"msg": "stage 0 AS base: FROM scratch"' in out


@pytest.mark.parametrize("argv", [["--context", "/nonexistent", "--no-push", "--progress", "bogus"],
                                  ["push", "--oci-layout-path", "/nonexistent", "-d", "r.example/a:1",
                                   "--progress", "bogus"]])
def test_progress_bogus_is_a_one_line_usage_error(argv):
    p = _executor(argv)
    assert p.returncode != 0
    assert p.stderr.strip() == "error: --progress=bogus: use auto, tty or plain"


def test_resolve_mode():
    assert resolve_mode("auto", "color", True) == "tty"
    assert resolve_mode("auto", "json", True) == "plain"
    assert resolve_mode("auto", "text", False) == "plain"
    assert resolve_mode("tty", "text", False) == "tty"
    with pytest.raises(ValueError):
        resolve_mode("fancy", "text", True)


def test_view_model_from_log_lines():
    buf = io.StringIO()
    h = ProgressHandler(Console(file=buf, width=100, force_terminal=False))

    def rec(msg: str, stage: str = "", name: str = "executor.engine", level: int = logging.INFO) -> None:
        r = logging.LogRecord(name, level, "", 0, msg, None, None)
        r.stage = stage
        h.handle(r)

    rec("stage 0 AS base: FROM 127.0.0.1:5000/busybox:latest", "base")
    rec("pulling base image 127.0.0.1:5000/busybox:latest", "base")
    rec("stage base: unpacked 1 layers in 0.20s", "base")
    rec("RUN echo hi > /hi", "base")
    rec("RUN isolation: namespace (pivot_root into private mount/PID/IPC/UTS namespaces)", "base")  # not a step
    rec("layer 1255471d6256: 1 paths changed, 0 deleted, 1500 bytes", "base")
    rec("stage 1: FROM base", "1")
    rec("COPY Dockerfile /d", "1")
    rec("built image in 0.74s", name="executor")
    rec("uploaded blob sha256:99 (2500 bytes) to 127.0.0.1:5000/live/app", name="executor.registry")
    rec("pushed blobs to 127.0.0.1:5000/live/app: 1 uploaded, 2 exists", name="executor.push")
    rec("pushed 127.0.0.1:5000/live/app:2@sha256:d7b91bb455aa1d2e", name="executor.push")
    rec("something odd", name="executor", level=logging.WARNING)
    rec("done in 0.53s: sha256:d7b91bb455aa1d2e", name="executor")
    h.stop()
    out = buf.getvalue()
    lines = {line.split()[1] + " " + line.split()[2]: line for line in out.splitlines() if line.startswith("✓")}
    assert "1 layers unpacked" in lines["pull 127.0.0.1:5000/busybox"]
    assert "1.5kB" in lines["stage base"] and lines["stage base"].rstrip().endswith("done")
    assert "1 steps" in lines["stage base"]
    assert "1 steps" in lines["stage 1"]
    push = lines["push 127.0.0.1:5000/live/app"]
    assert "2.5kB" in push and "1 uploaded, 2 exists" in push
    assert push.rstrip().endswith("done"), push  # like every finished row (it said "pushed")
    assert "something odd" in out
    assert out.rstrip().endswith("done in 0.53s: sha256:d7b91bb455aa1d2e")


def test_pull_row_finishes_when_its_layers_are_stacked():
    """With overlayfs stage roots the engine logs ``stage S: stacked N layers``, not ``unpacked``:
    the pull row finishes there too (it used to stay "pulling" until the closing line, its elapsed
    time and rate counting the whole build)."""
    buf = io.StringIO()
    h = ProgressHandler(Console(file=buf, width=100, force_terminal=False))
    for msg in ("stage 0: FROM 127.0.0.1:5000/busybox:latest", "pulling base image 127.0.0.1:5000/busybox:latest",
                "stage 0: stacked 1 layers in 0.27s", "RUN sleep 1"):
        r = logging.LogRecord("executor.engine", logging.INFO, "", 0, msg, None, None)
        r.stage = ""
        h.handle(r)
    pull = next(task for task in h.progress.tasks if task.description.startswith("pull "))
    stage = next(task for task in h.progress.tasks if task.description.startswith("stage "))
    finished = (pull.finished, stage.finished)
    h.stop()
    assert finished == (True, False)
    assert "1 layers stacked" in buf.getvalue()


def _final_rows(lines: list[tuple[str, str]], width: int) -> dict[str, str]:
    """Feed ``(logger name, message)`` records to a view ``width`` columns wide; the rows of its
    final drawing, by their first word (``stage``, ``push``, ``done``...) and position."""
    buf = io.StringIO()
    h = ProgressHandler(Console(file=buf, width=width, force_terminal=False))
    for name, msg in lines:
        r = logging.LogRecord(name, logging.INFO, "", 0, msg, None, None)
        r.stage = ""
        h.handle(r)
    h.stop()
    out = buf.getvalue()
    final = out[:out.rindex("done in ")] if "done in " in out else out
    rows = [ln.rstrip() for ln in final.splitlines() if ln.strip()]
    return {f"{ln.split()[1]} {i}": ln for i, ln in enumerate(rows)}


APP, CACHE = "127.0.0.1:5000/live/app", "127.0.0.1:5000/live/app/cache"
D1, D2, IDX = ("sha256:" + c * 64 for c in "123")
#: a two-platform build and push with --cache, as the executor logs it: the app row is finished by
#: the first platform's manifest and busy again with the second's blobs; the index line has a
#: suffix; cache entries are still written after the closing line
TWO_PLATFORMS = [
    ("executor.engine", "stage 0: FROM scratch"),
    ("executor.engine", "COPY a.txt /a.txt"),
    ("executor", "built 2 platform images in 0.40s"),
    ("executor.registry", f"uploaded blob sha256:aa (2500 bytes) to {CACHE}"),
    ("executor.registry", f"uploaded blob sha256:aa (2500 bytes) to {APP}"),
    ("executor.push", f"pushed blobs to {APP}: 1 uploaded"),
    ("executor.push", f"pushed {APP}@{D1}@{D1}"),
    ("executor.push", f"pushed the linux/amd64 image ({D1})"),
    ("executor.registry", f"uploaded blob sha256:bb (500 bytes) to {APP}"),
    ("executor.registry", f"mounted sha256:cc from live/app/cache into {APP}"),
    ("executor.push", f"pushed blobs to {APP}: 1 exists"),
    ("executor.push", f"pushed {APP}@{D2}@{D2}"),
    ("executor.push", f"pushed the linux/arm64 image ({D2})"),
    ("executor.push", f"pushed {APP}:v1@{IDX} (index of linux/amd64, linux/arm64)"),
    ("executor", f"done in 0.90s: {IDX}"),
    ("executor.registry", f"uploaded blob sha256:dd (300 bytes) to {CACHE}"),
]


@pytest.mark.parametrize("width", [100, 80])
def test_view_final_state_every_finished_row_reads_done(width):
    """Every row of the final view reads "done", the push rows included, also on an 80-column
    terminal (before: "pushed", the second platform's "blobs pushed", the cache row's "pushing"
    after the closing line; at 80 columns cut to "pus" and "don" -- the table cut every column
    alike instead of shortening the free text)."""
    rows = _final_rows(TWO_PLATFORMS, width)
    assert [k.split()[0] for k in rows] == ["stage", "push", "push", "done"], rows
    for line in rows.values():
        assert line.startswith("✓ ") and line.endswith(" done"), rows
    push = next(line for k, line in rows.items() if k.startswith("push") and "exists" in line)
    assert "1 exists" in push and "3.0kB" in push, rows  # the last summary; the bytes of both platforms


def test_view_final_state_of_a_failed_run_keeps_the_last_status():
    """No closing line (the build failed): a row that did not finish is not called done."""
    rows = _final_rows(TWO_PLATFORMS[:2], 100)
    [stage] = rows.values()
    assert stage.endswith("step 1") and not stage.startswith("✓"), rows


def test_push_needs_exactly_one_source_and_a_destination(tmp_path):
    p = _executor(["push", "-d", "r.example/a:1"])
    assert p.returncode == 1
    assert p.stderr.strip() == "error: executor push: give exactly one of --tar-path FILE or --oci-layout-path DIR"
    p = _executor(["push", "--oci-layout-path", str(tmp_path)])
    assert p.stderr.strip().startswith("error: executor push: no --destination given")
    p = _executor(["push", "--oci-layout-path", str(tmp_path), "-d", "r.example/a:1"])
    assert p.returncode == 1 and p.stderr.strip().endswith("no index.json; not an OCI image layout")
    p = _executor(["push", "--tar-path", str(tmp_path / "nope.tar"), "-d", "r.example/a:1"])
    assert p.returncode == 1 and p.stderr.strip().endswith("nope.tar: no such file")


def test_run_output_goes_above_the_live_view_when_it_is_on():
    """With a view active, a RUN's output lines are printed through it (never raw onto the
    terminal, where the next redraw would paint over them), prefixed when stages run together."""
    import os

    from executor import progress
    from executor.engine.output import prefixed_streams

    class FakeView:
        def __init__(self):
            self.lines: list[str] = []

        def print_text(self, text: str) -> None:
            self.lines.append(text)

        def stop(self) -> None:
            pass

    view = FakeView()
    progress.install(view)
    try:
        for label, want in (("", ["one", "two"]), ("build", ["[build] one", "[build] two"])):
            view.lines.clear()
            with prefixed_streams(label) as (out, err):
                os.write(out, b"one\n")
                os.write(err, b"two")
            assert sorted(view.lines) == sorted(want), view.lines
    finally:
        progress.stop()
    with prefixed_streams("") as (out, err):  # no view, one stage: the raw streams
        assert (out, err) == (None, None)
