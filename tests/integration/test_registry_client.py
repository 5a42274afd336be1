"""RegistryClient against a real docker-registry (plain HTTP), checked with skopeo."""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket

import pytest

from executor.errors import NotFound, RegistryError
from executor.reference import Reference, parse_reference
from executor.registry.client import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    RegistryClient,
    RegistryOptions,
)
from tests.support.tools import run, skopeo_inspect

pytestmark = pytest.mark.integration


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def client(registry):
    with RegistryClient(RegistryOptions(insecure_registries=frozenset({registry.host}))) as c:
        yield c


class Counter:
    """Counts (method, path) of every request the client's transport sends."""

    def __init__(self, c: RegistryClient, monkeypatch):
        self.calls: list[tuple[str, str]] = []
        orig = c._transport.send

        def send(ep, method, url, scopes, **kw):
            self.calls.append((method, url))
            return orig(ep, method, url, scopes, **kw)

        monkeypatch.setattr(c._transport, "send", send)

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)


def test_pull_busybox_manifest_config_and_layer(client, busybox, tmp_path):
    ref = parse_reference(busybox)
    img = client.resolve_image(ref)
    raw = skopeo_inspect(busybox, raw=True)
    assert json.loads(img.manifest_bytes) == raw
    assert img.media_type == OCI_MANIFEST
    assert img.digest == skopeo_inspect(busybox)["Digest"]
    assert img.reference.digest == img.digest and img.reference.registry == ref.registry
    assert img.config == skopeo_inspect(busybox, config=True)
    assert sha(img.config_bytes) == img.manifest["config"]["digest"]
    layer = img.manifest["layers"][0]
    dest = tmp_path / "layer"
    with open(dest, "wb") as f:
        n = client.fetch_blob(ref, layer["digest"], f)
    assert n == layer["size"] == dest.stat().st_size
    assert sha(dest.read_bytes()) == layer["digest"]
    data, mt, dg = client.get_manifest(img.reference)
    assert (data, mt, dg) == (img.manifest_bytes, img.media_type, img.digest)
    assert client.head_manifest(ref) == (img.digest, OCI_MANIFEST)


def _copy_busybox(client, busybox, tmp_path, dest: str):
    """Pull busybox's blobs to files and push them + the manifest to ``dest`` with the client."""
    src = parse_reference(busybox)
    img = client.resolve_image(src)
    dst = parse_reference(dest)
    for desc in [img.manifest["config"], *img.manifest["layers"]]:
        p = tmp_path / desc["digest"].replace(":", "_")
        with open(p, "wb") as f:
            client.fetch_blob(src, desc["digest"], f)
        client.upload_blob(dst, p, desc["digest"], desc["size"])
    return img, client.put_manifest(dst, img.manifest_bytes, img.media_type)


def test_push_is_seen_by_skopeo_and_existing_blobs_are_skipped(client, registry, busybox, tmp_path, monkeypatch):
    dest = f"{registry.host}/pushed/one:v1"
    img, digest = _copy_busybox(client, busybox, tmp_path, dest)
    assert digest == img.digest
    info = skopeo_inspect(dest)
    assert info["Digest"] == digest and info["Architecture"] == "amd64"
    assert skopeo_inspect(dest, config=True) == img.config
    # Second push: every blob exists -> HEAD only, no POST/PUT/PATCH for blobs.
    counter = Counter(client, monkeypatch)
    _copy_busybox(client, busybox, tmp_path, dest)
    assert counter.count("POST") == 0 and counter.count("PATCH") == 0
    assert counter.count("HEAD") == 2
    assert counter.count("PUT") == 1    # the manifest only


@pytest.mark.parametrize("as_path", [False, True])
def test_chunked_upload(registry, tmp_path, monkeypatch, as_path):
    data = os.urandom(300 * 1024 + 17)
    d = sha(data)
    opts = RegistryOptions(insecure_registries=frozenset({registry.host}), chunk_size=64 * 1024)
    with RegistryClient(opts) as c:
        counter = Counter(c, monkeypatch)
        ref = parse_reference(f"{registry.host}/chunked/blob{int(as_path)}:x")
        src = tmp_path / "blob" if as_path else data
        if as_path:
            src.write_bytes(data)
        c.upload_blob(ref, src, d, len(data))
        assert counter.count("PATCH") == 5
        assert c.blob_exists(ref, d)
        buf = io.BytesIO()
        assert c.fetch_blob(ref, d, buf) == len(data)
        assert buf.getvalue() == data


def test_monolithic_upload_single_put(registry, client, monkeypatch):
    data = b"small blob"
    ref = parse_reference(f"{registry.host}/mono/x:t")
    counter = Counter(client, monkeypatch)
    client.upload_blob(ref, data, sha(data), len(data))
    assert [m for m, _ in counter.calls] == ["HEAD", "POST", "PUT"]
    assert client.blob_exists(ref, sha(data))


def test_upload_rejects_wrong_digest(registry, client):
    ref = parse_reference(f"{registry.host}/mono/bad:t")
    with pytest.raises(RegistryError) as ei:
        client.upload_blob(ref, b"abc", sha(b"abd"), 3)
    msg = str(ei.value)
    assert registry.host in msg and "mono/bad" in msg and "400" in msg
    # Our own bytes are not that blob: said so at once, not retried as corruption on the way.
    assert f"the data being pushed hashes to {sha(b'abc')}" in msg and "attempts" not in msg, msg
    assert ei.value.status == 400


def test_cross_repo_mount(client, registry, busybox):
    src = parse_reference(busybox)
    img = client.resolve_image(src)
    layer = img.manifest["layers"][0]["digest"]
    dst = parse_reference(f"{registry.host}/mounted/app:v1")
    assert not client.blob_exists(dst, layer)
    assert client.mount_blob(dst, layer, src.repository) is True
    assert client.blob_exists(dst, layer)
    missing = sha(b"never pushed")
    assert client.mount_blob(dst, missing, src.repository) is False


def _push_image(c: RegistryClient, ref, layer_digest: str, layer_size: int, from_repo: str, arch: str,
                variant: str | None = None, media_type: str = OCI_MANIFEST) -> dict:
    cfg = {"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "config": {}}
    if variant:
        cfg["variant"] = variant
    cfg_bytes = json.dumps(cfg).encode()
    c.upload_blob(ref, cfg_bytes, sha(cfg_bytes), len(cfg_bytes))
    assert c.mount_blob(ref, layer_digest, from_repo)
    layer_mt = "application/vnd.oci.image.layer.v1.tar" if media_type == OCI_MANIFEST else \
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    cfg_mt = "application/vnd.oci.image.config.v1+json" if media_type == OCI_MANIFEST else \
        "application/vnd.docker.container.image.v1+json"
    man = {"schemaVersion": 2, "mediaType": media_type,
           "config": {"mediaType": cfg_mt, "digest": sha(cfg_bytes), "size": len(cfg_bytes)},
           "layers": [{"mediaType": layer_mt, "digest": layer_digest, "size": layer_size}]}
    mb = json.dumps(man).encode()
    d = c.put_manifest(Reference(ref.registry, ref.repository, None, sha(mb)), mb, media_type)
    plat = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
    return {"mediaType": media_type, "digest": d, "size": len(mb), "platform": plat}


def test_index_platform_selection(client, registry, busybox):
    src = parse_reference(busybox)
    layer = client.resolve_image(src).manifest["layers"][0]
    ref = parse_reference(f"{registry.host}/multi/app:v1")
    entries = [
        _push_image(client, ref, layer["digest"], layer["size"], src.repository, "amd64"),
        _push_image(client, ref, layer["digest"], layer["size"], src.repository, "arm", "v7"),
        _push_image(client, ref, layer["digest"], layer["size"], src.repository, "arm64", "v8"),
    ]
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
    idx_digest = client.put_manifest(ref, index, OCI_INDEX)
    raw = skopeo_inspect(str(ref), raw=True)
    assert raw["mediaType"] == OCI_INDEX and len(raw["manifests"]) == 3
    assert client.get_manifest(ref)[1:] == (OCI_INDEX, idx_digest)

    for plat, arch, entry in [("linux/amd64", "amd64", 0), ("linux/arm/v7", "arm", 1),
                              ("linux/arm64", "arm64", 2), ("linux/aarch64/v8", "arm64", 2)]:
        img = client.resolve_image(ref, plat)
        assert img.config["architecture"] == arch
        assert img.digest == entries[entry]["digest"] == img.reference.digest
        assert img.media_type == OCI_MANIFEST
    with pytest.raises(RegistryError) as ei:
        client.resolve_image(ref, "linux/s390x")
    assert "linux/s390x" in str(ei.value) and "linux/arm/v7" in str(ei.value)


def test_docker_manifest_list(client, registry, busybox):
    src = parse_reference(busybox)
    layer = client.resolve_image(src).manifest["layers"][0]
    ref = parse_reference(f"{registry.host}/dockerlist/app:v1")
    entries = [_push_image(client, ref, layer["digest"], layer["size"], src.repository, a, media_type=DOCKER_MANIFEST)
               for a in ("amd64", "ppc64le")]
    ml = "application/vnd.docker.distribution.manifest.list.v2+json"
    client.put_manifest(ref, json.dumps({"schemaVersion": 2, "mediaType": ml, "manifests": entries}).encode(), ml)
    img = client.resolve_image(ref, "linux/ppc64le")
    assert img.config["architecture"] == "ppc64le" and img.media_type == DOCKER_MANIFEST


def test_manifest_with_missing_blob_is_refused(client, registry):
    ref = parse_reference(f"{registry.host}/broken/app:v1")
    man = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(b"nope"), "size": 4},
           "layers": []}
    with pytest.raises(RegistryError) as ei:
        client.put_manifest(ref, json.dumps(man).encode(), OCI_MANIFEST)
    assert "MANIFEST_BLOB_UNKNOWN" in str(ei.value) and registry.host in str(ei.value)
    assert client.head_manifest(ref) is None


def test_not_found_messages(client, registry, busybox):
    ref = parse_reference(f"{registry.host}/does/not-exist:v1")
    with pytest.raises(NotFound, match=r"has no tag .*not found, 404") as ei:
        client.get_manifest(ref)
    assert ei.value.status == 404 and isinstance(ei.value, RegistryError)
    with pytest.raises(NotFound, match="blob .* not found") as ei:
        client.fetch_blob(parse_reference(busybox), sha(b"missing"), io.BytesIO())
    assert ei.value.status == 404
    # A digest reference that does not exist.
    with pytest.raises(NotFound, match="404"):
        client.get_manifest(parse_reference(busybox).with_digest(sha(b"x")))


def test_get_manifest_or_none(client, registry, busybox):
    assert client.get_manifest_or_none(parse_reference(f"{registry.host}/does/not-exist:v1")) is None
    assert client.get_manifest_or_none(parse_reference(busybox).with_digest(sha(b"x"))) is None
    data, mt, digest = client.get_manifest_or_none(parse_reference(busybox), accept=(OCI_MANIFEST,))
    assert mt == OCI_MANIFEST and digest == sha(data)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_connection_refused_message(monkeypatch):
    monkeypatch.setattr("executor.registry.retry.backoff_delay", lambda *a, **k: 0.01)
    host = f"127.0.0.1:{_closed_port()}"
    with RegistryClient(RegistryOptions(insecure_registries=frozenset({host}))) as c:
        with pytest.raises(RegistryError) as ei:
            c.get_manifest(parse_reference(f"{host}/a/b:c"))
    msg = str(ei.value)
    assert f"cannot reach registry {host} (connection refused) after 4 attempts" in msg
    with RegistryClient(RegistryOptions()) as c:
        with pytest.raises(RegistryError) as ei:
            c.ping(host)
    # a loopback registry needs no flag for plain HTTP (it falls back by itself): nothing listens
    msg = str(ei.value)
    assert msg.endswith("; is it running?") and "--insecure-registry" not in msg, msg


def test_https_to_plain_registry_suggests_insecure(registry, monkeypatch):
    # A loopback registry falls back to plain HTTP by itself (test_registry_loopback.py); with
    # that off it behaves as any other host's plain-HTTP registry does.
    monkeypatch.setattr("executor.registry.retry.backoff_delay", lambda *a, **k: 0.01)
    with RegistryClient(RegistryOptions(loopback_plain_http=False)) as c:
        with pytest.raises(RegistryError) as ei:
            c.ping(registry.host)
    assert f"--insecure-registry {registry.host}" in str(ei.value)


def test_insecure_pull_only_applies_to_pulls(registry, busybox, monkeypatch):
    monkeypatch.setattr("executor.registry.retry.backoff_delay", lambda *a, **k: 0.01)
    with RegistryClient(RegistryOptions(insecure_pull=True, loopback_plain_http=False)) as c:
        ref = parse_reference(busybox)
        assert c.resolve_image(ref).config["architecture"] == "amd64"
        with pytest.raises(RegistryError, match="insecure-registry"):
            c.upload_blob(parse_reference(f"{registry.host}/x/y:z"), b"a", sha(b"a"), 1)


def test_mirror_fallback_and_map(registry, busybox):
    ref = parse_reference(busybox)
    dead = f"127.0.0.1:{_closed_port()}"
    # ORIG -> [dead mirror, real registry under a path prefix that does not exist, real registry]
    opts = RegistryOptions(insecure_registries=frozenset({registry.host, dead}),
                           registry_maps={"example.invalid": (dead, f"{registry.host}/nothing-here", registry.host)},
                           skip_default_registry_fallback=True, image_download_retry=0)
    with RegistryClient(opts) as c:
        orig = parse_reference(f"example.invalid/{ref.repository}:{ref.tag}")
        cands = c.pull_candidates(orig)
        assert [x.name for x in cands] == [f"{dead}/busybox", f"{registry.host}/nothing-here/busybox",
                                           f"{registry.host}/busybox"]
        img = c.resolve_image(orig)
        assert img.reference.registry == registry.host and img.reference.repository == "busybox"
        assert c.fetch_blob(orig, img.manifest["layers"][0]["digest"], io.BytesIO()) > 0
    hub = RegistryClient(RegistryOptions(registry_mirrors=("mirror.gcr.io",)))
    assert [x.name for x in hub.pull_candidates(parse_reference("busybox"))] == [
        "mirror.gcr.io/library/busybox", "docker.io/library/busybox"]
    hub.close()
