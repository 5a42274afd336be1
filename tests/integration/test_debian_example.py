"""The Dockerfile users actually write: Debian base, apt-get install, pip install, non-root user.
Built by `executor`, pushed to a real registry, run with runc."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest

from tests.support.tools import REPO, run_executor, runc_run, skopeo_inspect, umoci_unpack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_debian_python_example(registry, debian_base, tmp_path):
    ctx = tmp_path / "ctx"
    shutil.copytree(REPO / "examples" / "debian-python", ctx)
    dest = f"{registry.host}/examples/debian-python:{uuid.uuid4().hex[:8]}"
    p = run_executor(["--context", str(ctx), "--build-arg", f"BASE={debian_base}", "--destination", dest,
                      "--insecure-registry", registry.host, "--log-format", "text"], timeout=900)
    assert "RUN isolation" in p.stderr
    cfg = skopeo_inspect(dest, config=True)
    assert cfg["config"]["User"] == "appuser"
    assert cfg["config"]["Cmd"] == ["python", "/app/app.py"]
    assert any(e.startswith("PATH=/opt/app/bin:") for e in cfg["config"]["Env"])
    bundle = umoci_unpack(dest, tmp_path / "u")
    rootfs = bundle / "rootfs"
    assert (rootfs / "usr" / "bin" / "jq").exists()
    assert not (rootfs / "etc" / "resolv.conf").exists()  # the executor's bind mount left nothing
    assert list((rootfs / "var" / "lib" / "apt" / "lists").glob("*_Packages")) == []
    r = runc_run(bundle, f"deb-{uuid.uuid4().hex[:8]}")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"jq": "jq-1.6", "six": "1.16.0"}
