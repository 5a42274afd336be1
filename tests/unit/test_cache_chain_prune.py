"""executor.cache.chain (--cache-from order, writes to the --cache-repo store only, trails marked
with their source) and executor.cache.prune on OCI layouts (a blob shared by an expired and a
kept entry stays; a foreign image is left alone; a damaged kept manifest stops the GC), without a
registry."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from executor.cache.chain import StoreChain
from executor.cache.layout_store import REF_NAME, LayoutLayerCache
from executor.cache.prune import prune_layout
from executor.errors import UserError
from executor.oci.image import Layer, sha256_digest
from executor.oci.layout import add_index_entry, put_blob

K1, K2, K3 = "1" * 64, "2" * 64, "3" * 64


def layer(tmp: Path, data: bytes) -> Layer:
    blob = tmp / f"blob-{sha256_digest(data)[7:19]}"
    blob.write_bytes(data)
    return Layer(descriptor={"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                             "digest": sha256_digest(data), "size": len(data)},
                 diff_id="sha256:" + "d" * 64, path=blob)


def store(root: Path, push: bool = True) -> LayoutLayerCache:
    return LayoutLayerCache(root, ttl_seconds=3600, push=push)


def test_chain_order_origin_and_writes(tmp_path):
    main, other, own = store(tmp_path / "main"), store(tmp_path / "other"), store(tmp_path / "own")
    main.store(K1, layer(tmp_path, b"main-1"), "RUN one")
    main.store(K2, layer(tmp_path, b"main-2"), "RUN two")
    other.store(K2, layer(tmp_path, b"other-2"), "RUN two (other)")
    own.store(K3, None, "RUN three")
    main.write_trail("trail-x", json.dumps({"v": 1, "roots": {}, "steps": {"a": K1}}))
    for s in (main, other, own):
        s.wait()
    chain = StoreChain(store(tmp_path / "own"), [(f"oci:{tmp_path / 'other'}", store(tmp_path / "other", False)),
                                                 (f"oci:{tmp_path / 'main'}", store(tmp_path / "main", False))])
    assert chain.lookup(K3).origin == ""                                   # the --cache-repo store first
    hit = chain.lookup(K2)
    assert hit.origin == f"oci:{tmp_path / 'other'}" and hit.created_by == "RUN two (other)"  # sources in order
    assert chain.lookup(K1).origin == f"oci:{tmp_path / 'main'}"
    assert chain.lookup("9" * 64) is None
    assert chain.read_trail("trail-x")["source"] == f"oci:{tmp_path / 'main'}"
    main_index = (tmp_path / "main" / "index.json").read_bytes()
    chain.store("8" * 64, None, "RUN new")
    chain.write_trail("trail-x", json.dumps({"v": 1, "roots": {}, "steps": {}}))
    chain.close()
    assert (tmp_path / "main" / "index.json").read_bytes() == main_index  # never written
    names = {m["annotations"][REF_NAME] for m in json.loads((tmp_path / "own" / "index.json").read_text())["manifests"]}
    assert names == {K3, "8" * 64, "trail-x"}
    assert "source" not in StoreChain(store(tmp_path / "own", False)).read_trail("trail-x")

    readonly = StoreChain(None, [("m", store(tmp_path / "main", False))])
    assert not readonly.push and readonly.lookup(K1).origin == "m"
    readonly.store("7" * 64, None, "RUN nothing")  # nowhere to write: a no-op
    readonly.close()


def test_layout_prune_keeps_shared_blobs_and_foreign_images(tmp_path):
    root = tmp_path / "cache"
    cache = store(root)
    shared = layer(tmp_path, b"shared layer")
    cache.store(K1, shared, "RUN old")
    cache.store(K2, layer(tmp_path, b"only old"), "RUN old 2")
    cache.wait()
    time.sleep(1.2)
    cutoff = time.time()
    time.sleep(1.1)
    cache.store(K3, shared, "RUN new (same layer)")
    cache.wait()
    foreign = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":' \
              b'{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"' + \
              sha256_digest(b"{}").encode() + b'","size":2},"layers":[]}'
    put_blob(root, sha256_digest(b"{}"), data=b"{}")
    put_blob(root, sha256_digest(foreign), data=foreign)
    add_index_entry(root, {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": sha256_digest(foreign), "size": len(foreign),
                           "annotations": {REF_NAME: "someone-elses"}})
    stray = root / "blobs" / "sha256" / ("e" * 64)  # garbage from an interrupted writer, new: kept
    stray.write_bytes(b"new stray")

    dry = prune_layout(root, cutoff, dry_run=True)
    assert sorted(e.name for e in dry.expired) == [K1, K2]  # stores run in the background: either order
    assert dry.deleted == () and dry.others == 1
    report = prune_layout(root, cutoff)
    assert sorted(e.name for e in report.deleted) == [K1, K2] and report.entries == 3 and report.others == 1
    assert report.blobs == dry.blobs == 5  # K1, K2: manifest + config each; K2's own layer
    left = store(root)
    assert left.lookup(K3).layer.path.read_bytes() == b"shared layer"
    assert left.lookup(K1) is None and stray.exists()
    assert {m["annotations"][REF_NAME] for m in json.loads((root / "index.json").read_text())["manifests"]} == \
        {K3, "someone-elses"}

    (root / "blobs" / "sha256" / sha256_digest(foreign)[7:]).write_bytes(b"damaged")
    with pytest.raises(UserError, match="unreadable.*no blob was deleted"):
        prune_layout(root, time.time() + 10)
    assert left.lookup(K3) is not None  # nothing was changed


def test_list_tags_follows_link_pages_and_unknown_repo_is_empty():
    """Focused unit test (docker-registry 2.8 ignores ``n`` and never pages, so the paging of
    list_tags is checked against a tiny fake): ``Link: <...>; rel="next"`` is followed."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from executor.reference import parse_reference
    from executor.registry.client import RegistryClient

    pages = {"/v2/c/cache/tags/list?n=2": (["t1", "t2"], "/v2/c/cache/tags/list?n=2&last=t2"),
             "/v2/c/cache/tags/list?n=2&last=t2": (["t3"], None)}
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.path)
            if self.path == "/v2/":
                body, link = b"{}", None
            elif self.path in pages:
                tags, link = pages[self.path]
                body = json.dumps({"name": "c/cache", "tags": tags}).encode()
            else:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if link:
                self.send_header("Link", f'<{link}>; rel="next"')
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"127.0.0.1:{server.server_address[1]}"
    try:
        with RegistryClient() as client:
            assert client.list_tags(parse_reference(f"{host}/c/cache"), page_size=2) == ["t1", "t2", "t3"]
            assert client.list_tags(parse_reference(f"{host}/c/none"), page_size=2) == []
    finally:
        server.shutdown()
    assert "/v2/c/cache/tags/list?n=2&last=t2" in seen
