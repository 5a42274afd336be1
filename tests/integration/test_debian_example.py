"""The Dockerfile users actually write: Debian base, apt-get install, pip install, non-root user.
Built by `executor` (the `debian_example` fixture of tests/integration/conftest.py, shared with
test_supply_chain_debian.py), pushed to a real registry, run with runc."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.support.tools import runc_run, skopeo_inspect

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_debian_python_example(debian_example, tmp_path):
    assert "RUN isolation" in debian_example.stderr
    cfg = skopeo_inspect(debian_example.dest, config=True)
    assert cfg["config"]["User"] == "appuser"
    assert cfg["config"]["Cmd"] == ["python", "/app/app.py"]
    assert any(e.startswith("PATH=/opt/app/bin:") for e in cfg["config"]["Env"])
    bundle = debian_example.bundle
    rootfs = bundle / "rootfs"
    assert (rootfs / "usr" / "bin" / "jq").exists()
    assert not (rootfs / "etc" / "resolv.conf").exists()  # the executor's bind mount left nothing
    assert list((rootfs / "var" / "lib" / "apt" / "lists").glob("*_Packages")) == []
    r = runc_run(bundle, f"deb-{uuid.uuid4().hex[:8]}", args=["python", "/app/app.py"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"jq": "jq-1.6", "six": "1.16.0"}
