"""Retries and resume through a fault-injecting proxy in front of a real docker-registry."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time

import pytest

from executor.errors import RegistryError
from executor.reference import Reference, parse_reference
from executor.registry.client import OCI_MANIFEST, RegistryClient, RegistryOptions
from tests.support.fault_proxy import Fault, FaultProxy

pytestmark = pytest.mark.integration


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.fixture
def proxy(registry):
    h, p = registry.host.split(":")
    with FaultProxy((h, int(p))) as px:
        yield px


@pytest.fixture
def client(proxy):
    with RegistryClient(RegistryOptions(insecure_registries=frozenset({proxy.host}), chunk_size=64 * 1024)) as c:
        yield c


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr("executor.registry.retry.backoff_delay",
                        lambda attempt, retry_after, rng=None: retry_after if retry_after is not None else 0.01)


def injected(proxy: FaultProxy) -> list[str]:
    return [a for _, _, a in proxy.log if a != "forward"]


def test_503_on_manifest_is_retried(proxy, client, busybox, fast_backoff):
    ref = parse_reference(busybox.replace(busybox.split("/")[0], proxy.host))
    proxy.add(Fault("status", "GET", "/manifests/", status=503, times=2))
    data, mt, digest = client.get_manifest(ref)
    assert mt == OCI_MANIFEST and digest == sha(data)
    assert injected(proxy) == ["status 503", "status 503"]


def test_429_retry_after_is_honoured(proxy, client, fast_backoff):
    ref = parse_reference(f"{proxy.host}/faults/ra:v1")
    proxy.add(Fault("status", "HEAD", "/blobs/", status=429, retry_after=1))
    t0 = time.monotonic()
    assert client.blob_exists(ref, sha(b"none")) is False
    assert time.monotonic() - t0 >= 1.0
    assert injected(proxy) == ["status 429"]


def test_ping_honours_retry_after(proxy, client, fast_backoff):
    """The destination check's GET /v2/ waits as long as a 503's Retry-After asks (the fixture's
    backoff returns Retry-After when there is one, else 10 ms)."""
    proxy.add(Fault("status", "GET", "/v2/$", status=503, retry_after=1))
    t0 = time.monotonic()
    client.ping(proxy.host)
    assert time.monotonic() - t0 >= 1.0
    assert injected(proxy) == ["status 503"]


def test_reset_mid_download_resumes(proxy, client, registry, fast_backoff):
    data = os.urandom(400 * 1024)
    direct = RegistryClient(RegistryOptions(insecure_registries=frozenset({registry.host})))
    direct.upload_blob(parse_reference(f"{registry.host}/faults/dl:v1"), data, sha(data), len(data))
    direct.close()
    proxy.add(Fault("reset_response", "GET", "/blobs/sha256", after_bytes=100 * 1024, times=2))
    buf = io.BytesIO()
    n = client.fetch_blob(parse_reference(f"{proxy.host}/faults/dl:v1"), sha(data), buf)
    assert n == len(data) and buf.getvalue() == data
    assert injected(proxy) == ["reset_response", "reset_response"]


def test_reset_mid_chunked_upload_resumes_then_manifest_is_consistent(proxy, client, fast_backoff):
    ref = parse_reference(f"{proxy.host}/faults/up:v1")
    layer = os.urandom(300 * 1024)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    proxy.add(Fault("reset_request", "PUT", "/blobs/uploads/", after_bytes=10, times=1),      # monolithic cfg
              Fault("reset_request", "PATCH", "/blobs/uploads/", after_bytes=10 * 1024, times=1),  # 1st chunk
              Fault("reset_request", "PATCH", "/blobs/uploads/", after_bytes=10 * 1024, skip=3),  # a later chunk
              Fault("reset_request", "PUT", "/blobs/uploads/", after_bytes=0, times=1))        # chunked commit
    client.upload_blob(ref, cfg, sha(cfg), len(cfg))
    client.upload_blob(ref, layer, sha(layer), len(layer))
    actions = injected(proxy)
    assert len(actions) == 4 and all(a.startswith("reset_request") for a in actions)
    # The resumed upload asked the registry where to continue (GET on the session).
    assert any(m == "GET" and "/blobs/uploads/" in p for m, p, _ in proxy.log)
    man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(cfg), "size": len(cfg)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(layer), "size": len(layer)}]}
    digest = client.put_manifest(ref, json.dumps(man).encode(), OCI_MANIFEST)
    assert client.head_manifest(ref)[0] == digest
    for d in (sha(cfg), sha(layer)):
        assert client.blob_exists(ref, d)
    buf = io.BytesIO()
    client.fetch_blob(ref, sha(layer), buf)
    assert buf.getvalue() == layer


def test_retry_budget_exhausted_is_a_clear_error_and_no_manifest(proxy, fast_backoff):
    opts = RegistryOptions(insecure_registries=frozenset({proxy.host}), push_retry=1)
    ref = parse_reference(f"{proxy.host}/faults/dead:v1")
    proxy.add(Fault("status", "POST", "/blobs/uploads/", status=503, times=100))

    def push_image(c: RegistryClient) -> None:
        """What a build loop does: blobs first, the manifest only after every blob succeeded."""
        c.upload_blob(ref, b"layer", sha(b"layer"), 5)
        c.put_manifest(ref, b"{}", OCI_MANIFEST)

    with RegistryClient(opts) as c:
        with pytest.raises(RegistryError) as ei:
            push_image(c)
        msg = str(ei.value)
        assert proxy.host in msg and "after 5 attempts" in msg and "503" in msg
        assert sum(1 for m, _, a in proxy.log if m == "POST") == 5   # 1 + 3 default + 1 --push-retry
        assert c.head_manifest(ref) is None
