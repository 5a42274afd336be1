"""executor.cache.layout_store without a registry: entries round-trip, TTL, missing blobs are
misses, and concurrent writers (processes) never lose an index.json entry."""

from __future__ import annotations

import json
import multiprocessing
import time
from pathlib import Path

from executor.cache.layout_store import REF_NAME, LayoutLayerCache, add_index_entry, read_index
from executor.oci.image import Layer, sha256_digest

KEY = "a" * 64


def make_layer(tmp: Path, data: bytes = b"layer bytes") -> Layer:
    blob = tmp / "blob"
    blob.write_bytes(data)
    return Layer(descriptor={"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                             "digest": sha256_digest(data), "size": len(data)},
                 diff_id="sha256:" + "d" * 64, path=blob)


def test_store_then_lookup_points_at_the_layout_blob(tmp_path):
    layer = make_layer(tmp_path)
    cache = LayoutLayerCache(tmp_path / "layout", ttl_seconds=3600)
    cache.store(KEY, layer, "RUN x")
    cache.store("b" * 64, None, "RUN true")
    cache.store("c" * 64, None, "image config", config={"os": "linux", "created": "x"})
    assert cache.wait() == (3, 0)
    hit = cache.lookup(KEY)
    assert hit is not None and hit.created_by == "RUN x"
    assert hit.layer.path == tmp_path / "layout/blobs/sha256" / layer.digest.split(":")[1]
    assert hit.layer.source is None and hit.layer.diff_id == layer.diff_id
    assert hit.layer.path.read_bytes() == b"layer bytes"
    empty = cache.lookup("b" * 64)
    assert empty is not None and empty.layer is None
    assert cache.lookup_config("c" * 64) == {"os": "linux", "created": "x"}
    assert cache.lookup_config(KEY) is None and cache.lookup("c" * 64) is None and cache.lookup("e" * 64) is None
    cache.close()


def test_expired_and_broken_entries_are_misses(tmp_path):
    layer = make_layer(tmp_path)
    cache = LayoutLayerCache(tmp_path / "layout", ttl_seconds=1)
    cache.store(KEY, layer, "RUN x")
    cache.wait()
    assert cache.lookup(KEY) is not None
    time.sleep(2.1)
    assert cache.lookup(KEY) is None  # created more than 1 s ago
    cache2 = LayoutLayerCache(tmp_path / "layout", ttl_seconds=3600)
    assert cache2.lookup(KEY) is not None
    (tmp_path / "layout/blobs/sha256" / layer.digest.split(":")[1]).unlink()
    assert cache2.lookup(KEY) is None  # the layer blob is gone
    (tmp_path / "layout/index.json").write_text("{not json")
    assert cache2.lookup(KEY) is None
    cache.close()
    cache2.close()


def test_no_push_cache_writes_nothing(tmp_path):
    cache = LayoutLayerCache(tmp_path / "layout", ttl_seconds=3600, push=False)
    cache.store(KEY, make_layer(tmp_path), "RUN x")
    assert cache.wait() == (0, 0)
    assert not (tmp_path / "layout").exists()


def _writer(root: str, worker: int, n: int) -> None:
    for i in range(n):
        key = f"{worker:02d}{i:062d}"
        add_index_entry(Path(root), {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                     "digest": "sha256:" + "0" * 64, "size": 1, "annotations": {REF_NAME: key}})


def test_concurrent_writers_lose_no_entry(tmp_path):
    """4 processes x 40 read-modify-writes of index.json: without the flock some updates would be
    lost (each writer rewrites the whole file from what it read)."""
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = [m["annotations"][REF_NAME] for m in read_index(tmp_path)["manifests"]]
    assert len(names) == 160 and len(set(names)) == 160
    json.loads((tmp_path / "index.json").read_text())
    assert not list(tmp_path.glob(".*.tmp"))
