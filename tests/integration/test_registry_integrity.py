"""Corrupt bytes, truncation and stalls between the client and a real docker-registry.

The fault proxy (tests/support/fault_proxy.py) flips one byte of a response body, cuts a
body short, or holds a connection silent. Within the retry budget the client recovers
(downloading again from scratch after a digest mismatch, resuming after a truncation or a
timeout); beyond it, it fails with one line naming the registry and the blob or manifest,
and a push never reaches the manifest PUT.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time

import pytest

from executor.errors import RegistryError
from executor.reference import parse_reference
from executor.registry.client import OCI_MANIFEST, RegistryClient, RegistryOptions
from tests.support.fault_proxy import Fault, FaultProxy

pytestmark = pytest.mark.integration

CONFIG_MT = "application/vnd.oci.image.config.v1+json"
LAYER_MT = "application/vnd.oci.image.layer.v1.tar"


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.fixture
def proxy(registry):
    h, p = registry.host.split(":")
    with FaultProxy((h, int(p))) as px:
        yield px


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr("executor.registry.retry.backoff_delay",
                        lambda attempt, retry_after, rng=None: retry_after if retry_after is not None else 0.01)


def client_for(proxy: FaultProxy, **kw) -> RegistryClient:
    kw.setdefault("chunk_size", 64 * 1024)
    return RegistryClient(RegistryOptions(insecure_registries=frozenset({proxy.host}), **kw))


def fired(proxy: FaultProxy) -> list[str]:
    return [a for _, _, a in proxy.log if a != "forward"]


def blob_gets(proxy: FaultProxy, digest: str) -> int:
    return sum(1 for m, p, _ in proxy.log if m == "GET" and p.endswith(f"/blobs/{digest}"))


@pytest.fixture
def image(registry):
    """A small image pushed directly (no proxy): (repo, tag, manifest bytes, config, layer)."""
    repo, tag = f"integrity/img{os.getpid()}-{time.monotonic_ns()}", "v1"
    layer = os.urandom(400 * 1024)
    cfg = json.dumps({"architecture": "amd64", "os": "linux",
                      "rootfs": {"type": "layers", "diff_ids": [sha(layer)]}}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                      "config": {"mediaType": CONFIG_MT, "digest": sha(cfg), "size": len(cfg)},
                      "layers": [{"mediaType": LAYER_MT, "digest": sha(layer), "size": len(layer)}]}).encode()
    with RegistryClient(RegistryOptions(insecure_registries=frozenset({registry.host}))) as direct:
        ref = parse_reference(f"{registry.host}/{repo}:{tag}")
        direct.upload_blob(ref, layer, sha(layer), len(layer))
        direct.upload_blob(ref, cfg, sha(cfg), len(cfg))
        direct.put_manifest(ref, man, OCI_MANIFEST)
    return repo, tag, man, cfg, layer


# --- corrupt bytes ----------------------------------------------------------------------------

def test_corrupt_blob_is_downloaded_again_from_scratch(proxy, image, fast_backoff):
    repo, _, _, _, layer = image
    proxy.add(Fault("corrupt", "GET", f"/blobs/{sha(layer)}", after_bytes=200 * 1024, times=2))
    buf = io.BytesIO()
    with client_for(proxy) as c:
        n = c.fetch_blob(parse_reference(f"{proxy.host}/{repo}"), sha(layer), buf)
    assert n == len(layer) and buf.getvalue() == layer
    assert fired(proxy) == ["corrupt", "corrupt"] and blob_gets(proxy, sha(layer)) == 3


def test_corrupt_blob_beyond_the_budget_is_one_clean_line(proxy, image, fast_backoff):
    repo, _, _, _, layer = image
    proxy.add(Fault("corrupt", "GET", f"/blobs/{sha(layer)}", after_bytes=1000, times=100))
    with client_for(proxy, image_download_retry=3) as c, pytest.raises(RegistryError) as ei:
        c.fetch_blob(parse_reference(f"{proxy.host}/{repo}"), sha(layer), io.BytesIO())
    msg = str(ei.value)
    assert "\n" not in msg and proxy.host in msg and sha(layer) in msg, msg
    assert "after 7 attempts" in msg and "corrupt" in msg and "--image-download-retry" in msg, msg
    assert ei.value.status is None
    assert blob_gets(proxy, sha(layer)) == 7          # 1 + 3 built-in + 3 --image-download-retry


def test_corrupt_manifest_by_tag_is_caught_by_docker_content_digest(proxy, image, fast_backoff):
    repo, tag, man, cfg, _ = image
    proxy.add(Fault("corrupt", "GET", f"/manifests/{tag}$", after_bytes=30, times=1))
    with client_for(proxy) as c:
        data, mt, digest = c.get_manifest(parse_reference(f"{proxy.host}/{repo}:{tag}"))
        assert data == man and digest == sha(man) and mt == OCI_MANIFEST
        proxy.add(Fault("corrupt", "GET", f"/manifests/{tag}$", after_bytes=100, times=1))
        img = c.resolve_image(parse_reference(f"{proxy.host}/{repo}:{tag}"))
        assert img.digest == sha(man) and img.config_bytes == cfg
    assert fired(proxy) == ["corrupt", "corrupt"]


def test_corrupt_manifest_by_digest_is_retried(proxy, image, fast_backoff):
    repo, _, man, _, _ = image
    proxy.add(Fault("corrupt", "GET", "/manifests/sha256:", after_bytes=5, times=2))
    with client_for(proxy) as c:
        data, _, digest = c.get_manifest(parse_reference(f"{proxy.host}/{repo}@{sha(man)}"))
    assert data == man and digest == sha(man) and fired(proxy) == ["corrupt", "corrupt"]


def test_corrupt_manifest_beyond_the_budget_says_so_not_incomplete_image(proxy, image, fast_backoff):
    repo, tag, man, _, _ = image
    proxy.add(Fault("corrupt", "GET", "/manifests/", after_bytes=60, times=100))
    with client_for(proxy) as c, pytest.raises(RegistryError) as ei:
        c.resolve_image(parse_reference(f"{proxy.host}/{repo}:{tag}"))
    msg = str(ei.value)
    assert "\n" not in msg and proxy.host in msg and "after 4 attempts" in msg, msg
    assert "Docker-Content-Digest" in msg and sha(man) in msg and "incomplete" not in msg, msg


# --- truncation ---------------------------------------------------------------------------------

def test_truncated_blob_resumes_and_truncated_manifest_is_retried(proxy, image, fast_backoff):
    repo, tag, man, _, layer = image
    proxy.add(Fault("truncate", "GET", f"/blobs/{sha(layer)}", after_bytes=100 * 1024, times=2),
              Fault("truncate", "GET", f"/manifests/{tag}$", after_bytes=50, times=1))
    buf = io.BytesIO()
    with client_for(proxy) as c:
        assert c.fetch_blob(parse_reference(f"{proxy.host}/{repo}"), sha(layer), buf) == len(layer)
        assert c.get_manifest(parse_reference(f"{proxy.host}/{repo}:{tag}"))[0] == man
    assert buf.getvalue() == layer
    assert sorted(fired(proxy)) == ["truncate"] * 3


# --- stalls -------------------------------------------------------------------------------------

def test_stalled_download_times_out_and_resumes(proxy, image, fast_backoff):
    repo, _, _, _, layer = image
    proxy.add(Fault("stall_response", "GET", f"/blobs/{sha(layer)}", after_bytes=100 * 1024, times=1))
    buf = io.BytesIO()
    t0 = time.monotonic()
    with client_for(proxy, timeout=1.0) as c:
        assert c.fetch_blob(parse_reference(f"{proxy.host}/{repo}"), sha(layer), buf) == len(layer)
    assert buf.getvalue() == layer and fired(proxy) == ["stall_response"]
    assert 1.0 <= time.monotonic() - t0 < 10


def test_stalled_upload_times_out_and_is_retried(proxy, fast_backoff):
    ref = parse_reference(f"{proxy.host}/integrity/stall-up:v1")
    data = os.urandom(300 * 1024)
    proxy.add(Fault("stall_request", "PATCH", "/blobs/uploads/", after_bytes=10 * 1024, times=1, skip=1))
    with client_for(proxy, timeout=1.0) as c:
        c.upload_blob(ref, data, sha(data), len(data))
        buf = io.BytesIO()
        c.fetch_blob(ref, sha(data), buf)
    assert buf.getvalue() == data
    assert [a.split("@")[0] for a in fired(proxy)] == ["stall_request"]


def test_stalls_beyond_the_budget_fail_in_one_line_and_never_tag(proxy, registry, fast_backoff):
    ref = parse_reference(f"{proxy.host}/integrity/stall-dead:v1")
    layer = os.urandom(100 * 1024)
    proxy.add(Fault("stall_request", "PUT|PATCH", "/blobs/uploads/", after_bytes=1024, times=100))
    t0 = time.monotonic()
    with client_for(proxy, timeout=1.0) as c, pytest.raises(RegistryError) as ei:
        c.upload_blob(ref, layer, sha(layer), len(layer))
        c.put_manifest(ref, b"{}", OCI_MANIFEST)            # what a push does after its blobs
    msg = str(ei.value)
    assert "\n" not in msg and proxy.host in msg and "in all 4 attempts" in msg and "timed out" in msg, msg
    assert time.monotonic() - t0 < 20
    assert not any(m == "PUT" and "/manifests/" in p for m, p, _ in proxy.log)
    with RegistryClient(RegistryOptions(insecure_registries=frozenset({registry.host}))) as direct:
        assert direct.head_manifest(parse_reference(f"{registry.host}/integrity/stall-dead:v1")) is None


def test_upload_corrupted_on_the_way_is_uploaded_again(proxy, fast_backoff):
    """distribution answers the commit PUT with 400 DIGEST_INVALID; the client starts over."""
    ref = parse_reference(f"{proxy.host}/integrity/corrupt-up:v1")
    small, big = os.urandom(20 * 1024), os.urandom(300 * 1024)     # monolithic PUT; PATCH chunks
    proxy.add(Fault("corrupt_request", "PUT", "/blobs/uploads/", after_bytes=100, times=1),
              Fault("corrupt_request", "PATCH", "/blobs/uploads/", after_bytes=100, times=1, skip=2))
    with client_for(proxy) as c:
        c.upload_blob(ref, small, sha(small), len(small))
        c.upload_blob(ref, big, sha(big), len(big))
        for data in (small, big):
            buf = io.BytesIO()
            c.fetch_blob(ref, sha(data), buf)
            assert buf.getvalue() == data
    assert fired(proxy) == ["corrupt_request", "corrupt_request"]
    assert sum(1 for m, p, _ in proxy.log if m == "POST" and "/blobs/uploads/" in p) == 4   # a new session each


def test_upload_corrupted_every_time_fails_cleanly(proxy, fast_backoff):
    ref = parse_reference(f"{proxy.host}/integrity/corrupt-up-dead:v1")
    data = os.urandom(20 * 1024)
    proxy.add(Fault("corrupt_request", "PUT", "/blobs/uploads/", after_bytes=7, times=100))
    with client_for(proxy) as c, pytest.raises(RegistryError) as ei:
        c.upload_blob(ref, data, sha(data), len(data))
    msg = str(ei.value)
    assert "\n" not in msg and proxy.host in msg and sha(data) in msg and "after 4 attempts" in msg, msg
    assert "DIGEST_INVALID" in msg and "--push-retry" in msg, msg
