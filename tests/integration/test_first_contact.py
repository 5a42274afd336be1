"""The CLI's first contact (executor.registry.firstcontact) against a real docker-registry behind
a logging, fault-injecting proxy: the build's GET /v2/ is sent once, first, by the first contact;
a first contact that fails or stalls is replaced by the client's own ping and the build goes on.
Counts and order only; the time to the first request is in the benchmark."""

from __future__ import annotations

import time
import uuid

import pytest

from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.tools import run_executor, skopeo_inspect

pytestmark = pytest.mark.integration


def _context(tmp_path, base_host: str):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base_host}/busybox:latest\nENV FIRST=contact\n")
    return ctx


def _build(ctx, dest: str, proxy: FaultProxy):
    return run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", proxy.host,
                         "--log-format", "text", "--verbosity", "debug"])


def _pings(proxy: FaultProxy) -> list:
    return [x for x in proxy.log if x[0] == "GET" and x[1] == "/v2/"]


def test_first_request_is_the_only_ping(registry, busybox, tmp_path):
    host, port = registry.host.split(":")
    with FaultProxy((host, int(port))) as proxy:
        repo = f"contact/ok-{uuid.uuid4().hex[:6]}:1"
        p = _build(_context(tmp_path, proxy.host), f"{proxy.host}/{repo}", proxy)
        first = proxy.started[0]
        pings = _pings(proxy)
        assert f"first contact with {proxy.host}: GET /v2/ 200" in p.stderr, p.stderr
    assert skopeo_inspect(f"{registry.host}/{repo}")["Env"][-1] == "FIRST=contact"
    assert (first[1], first[2]) == ("GET", "/v2/"), proxy.started[:3]
    assert len(pings) == 1, proxy.log


def test_failed_first_contact_falls_back_to_the_clients_ping(registry, busybox, tmp_path):
    host, port = registry.host.split(":")
    with FaultProxy((host, int(port))) as proxy:
        proxy.add(Fault("status", "GET", "^/v2/$", status=404, times=1))  # (not an answer to keep)
        repo = f"contact/fail-{uuid.uuid4().hex[:6]}:1"
        p = _build(_context(tmp_path, proxy.host), f"{proxy.host}/{repo}", proxy)
        pings = _pings(proxy)
    assert skopeo_inspect(f"{registry.host}/{repo}")["Env"][-1] == "FIRST=contact"
    assert [a for _, _, a in pings][0] != "forward" and len(pings) == 2, proxy.log
    assert "taught nothing" in p.stderr, p.stderr


def test_stalled_first_contact_is_not_waited_for(registry, busybox, tmp_path):
    """The registry holds the first GET /v2/ for 30 s: the client stops waiting for it after
    a bounded wait, pings by itself, and the build finishes long before the stall ends."""
    host, port = registry.host.split(":")
    with FaultProxy((host, int(port))) as proxy:
        proxy.add(Fault("stall_request", "GET", "^/v2/$", stall_s=30, times=1))
        repo = f"contact/stall-{uuid.uuid4().hex[:6]}:1"
        t0 = time.monotonic()
        p = _build(_context(tmp_path, proxy.host), f"{proxy.host}/{repo}", proxy)
        took = time.monotonic() - t0
        pings = _pings(proxy)
    assert skopeo_inspect(f"{registry.host}/{repo}")["Env"][-1] == "FIRST=contact"
    assert took < 15, took
    assert len(pings) == 2, (proxy.log, p.stderr)


@pytest.mark.parametrize("failures", [2, 9])
def test_first_contact_counts_in_the_ping_budget(registry, busybox, tmp_path, failures):
    """A 503 to the first contact is the ping's first failed attempt, as it was when the client
    sent the first GET /v2/: the registry sees no more GET /v2/ than the budget (1 + 3 built-in
    retries), and the warnings number the attempts as they did before the first contact."""
    host, port = registry.host.split(":")
    with FaultProxy((host, int(port))) as proxy:
        proxy.add(Fault("status", "GET", "^/v2/$", status=503, times=failures))
        repo = f"contact/budget-{uuid.uuid4().hex[:6]}:1"
        p = run_executor(["--context", str(_context(tmp_path, proxy.host)), "--destination", f"{proxy.host}/{repo}",
                          "--insecure-registry", proxy.host, "--log-format", "text"], check=False)
        pings = _pings(proxy)
        where = proxy.host
    warned = [n for n in range(1, 5) if f"checking the registry (GET /v2/) at {where} failed (attempt {n}/4)" in p.stderr]
    if failures == 2:
        assert p.returncode == 0, p.stderr
        assert len(pings) == 3 and warned == [1, 2], (pings, p.stderr)
    else:
        assert p.returncode == 1 and "checking the registry (GET /v2/) failed after 4 attempts" in p.stderr, p.stderr
        assert len(pings) == 4 and warned == [1, 2, 3], (pings, p.stderr)


def test_plain_http_loopback_destination_is_announced(registry, tmp_path):
    """A loopback destination that does not speak TLS is used over plain HTTP, and the build says
    so (as the client's own scheme probe did) also when the first contact found it out."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nENV FIRST=contact\n")
    dest = f"{registry.host}/contact/plain-{uuid.uuid4().hex[:6]}:1"
    p = run_executor(["--context", str(ctx), "--destination", dest, "--log-format", "text", "--verbosity", "debug"])
    assert f"first contact with {registry.host}: GET /v2/ 200" in p.stderr, p.stderr
    assert f"registry {registry.host} does not speak HTTPS; using plain HTTP" in p.stderr, p.stderr
