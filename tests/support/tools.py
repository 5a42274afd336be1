"""Run the independent tools (skopeo, umoci, runc) that check what the executor made."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "scripts"


def have(*tools: str) -> list[str]:
    """Return the names in ``tools`` that are not on PATH."""
    return [t for t in tools if shutil.which(t) is None]


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    """Run ``cmd`` capturing text output; raise with stderr shown on failure."""
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    p = subprocess.run(cmd, **kw)
    if kw.get("check", True) and p.returncode != 0:
        raise AssertionError(f"{cmd!r} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def executor_cmd() -> list[str]:
    """The executor CLI as the tests run it (this interpreter, so the venv's package is used)."""
    return [sys.executable, "-m", "executor"]


def run_executor(args: list[str], check: bool = True, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    """Run ``executor ARGS``; by default assert it exits 0."""
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run(executor_cmd() + args, capture_output=True, text=True, env=e, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f"executor {' '.join(args)} exited {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}")
    return p


def skopeo_inspect(ref: str, raw: bool = False, config: bool = False) -> dict:
    """``skopeo inspect`` of ``docker://REF`` over plain HTTP; returns the parsed JSON."""
    cmd = ["skopeo", "inspect", "--tls-verify=false"]
    if raw or config:
        cmd.append("--raw")  # with --config: the config blob as pushed (Docker fields such as Healthcheck kept)
    if config:
        cmd.append("--config")
    return json.loads(run(cmd + [f"docker://{ref}"]).stdout)


def umoci_unpack(ref: str, workdir: Path) -> Path:
    """Copy ``REF`` to an OCI layout with skopeo and unpack it with umoci; return the bundle dir."""
    layout = workdir / "layout"
    bundle = workdir / "bundle"
    workdir.mkdir(parents=True, exist_ok=True)
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:img"])
    run(["umoci", "unpack", "--image", f"{layout}:img", str(bundle)])
    return bundle


def runc_run(bundle: Path, name: str, args: list[str] | None = None, timeout: int = 60) -> subprocess.CompletedProcess:
    """Run the unpacked bundle with ``runc run`` (no terminal); optionally replace process args."""
    cfg_path = bundle / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["process"]["terminal"] = False
    if args is not None:
        cfg["process"]["args"] = args
    cfg_path.write_text(json.dumps(cfg))
    return subprocess.run(["runc", "run", "--bundle", str(bundle), name],
                          capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
