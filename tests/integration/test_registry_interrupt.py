"""SIGTERM (or SIGINT) while a push is in flight: the executor stops within 2 s, exits 143
(130), starts no new request and tags nothing.

Kubernetes sends SIGTERM and kills the pod 30 s later (terminationGracePeriodSeconds), so a
push that keeps uploading after the signal is killed half-way and, worse, may tag an image
after it was asked to stop. The build runs as a user runs it (``python -m executor``) and
pushes a 32 MiB incompressible layer through a throttled proxy (1 MiB/s) in front of a real
docker-registry; the signal is sent once the layer's upload is under way.
"""

from __future__ import annotations

import os
import signal
import subprocess
import textwrap
import time
import uuid

import httpx
import pytest

from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.tools import executor_cmd

pytestmark = pytest.mark.integration

LAYER_BYTES = 32 << 20
RATE = 1 << 20            # bytes per second through the proxy, both ways


def _wait_for(cond, timeout: float, what: str, proc: subprocess.Popen) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"executor exited {proc.returncode} before {what}\nstdout:\n{out}\nstderr:\n{err}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_signal_mid_push_stops_within_2s_and_tags_nothing(registry, busybox, tmp_path, signum, code):
    host, port = registry.host.split(":")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {busybox}
        COPY big.bin /big.bin
        """))
    with open(ctx / "big.bin", "wb") as f:
        for _ in range(LAYER_BYTES >> 20):
            f.write(os.urandom(1 << 20))
    repo, tag = "interrupt/push", uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"}
    env["HOME"] = str(tmp_path)
    with FaultProxy((host, int(port))) as proxy:
        proxy.add(Fault("throttle", "PATCH|PUT", "/blobs/uploads/", rate=RATE, times=10**6))
        proc = subprocess.Popen(
            executor_cmd() + ["--log-format", "text", "--context", str(ctx),
                              "--destination", f"{proxy.host}/{repo}:{tag}",
                              "--insecure-registry", proxy.host, "--insecure-registry", registry.host,
                              "--push-retry", "3"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            # The base layer (~1 MiB) goes first or alongside; wait until the big layer is well under way.
            _wait_for(lambda: proxy.body_bytes > 3 * RATE, 180, "the layer upload to start", proc)
            t0 = time.monotonic()
            proc.send_signal(signum)
            try:
                out, err = proc.communicate(timeout=240)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        late = [(round(t - t0, 2), m, p) for t, m, p in proxy.started if t > t0 + 0.5]
    report = f"exit {proc.returncode} after {elapsed:.2f}s\nstdout:\n{out[-3000:]}\nstderr:\n{err[-3000:]}"
    print(f"{signal.Signals(signum).name} to exit: {elapsed:.2f}s; requests started more than 0.5 s after it: {late}")
    assert proc.returncode == code, report
    assert elapsed < 2.5, report
    assert late == [], report
    assert "Traceback" not in err, report
    assert [ln for ln in err.splitlines() if ln.startswith("error: ")] == ["error: interrupted"], report
    with httpx.Client(timeout=30) as direct:
        r = direct.get(f"http://{registry.host}/v2/{repo}/manifests/{tag}",
                       headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                                          "application/vnd.docker.distribution.manifest.v2+json"})
        assert r.status_code == 404, (r.status_code, r.text[:300])
        tags = direct.get(f"http://{registry.host}/v2/{repo}/tags/list")
        assert tags.status_code == 404 or not (tags.json().get("tags") or []), tags.text
