"""The layer store's size bound (executor.engine.layerstore.LayerStore.prune): applied when a
build that stored a new entry ends, never when the build only used what was stored (the prune
reads every entry's meta.json: a build start must not pay for a large store)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from executor.engine.layerstore import LayerStore
from executor.fs.overlay import OverlayFlavor
from executor.fs.snapshot import ChangeSet
from executor.layers.writer import write_layer
from executor.oci.image import Layer


class _LocalSource:
    """The one ImageSource method the store calls: the blob's local path (focused unit test)."""

    def __init__(self, blobs: dict[str, Path]):
        self.blobs = blobs

    def fetch(self, layer: Layer) -> Path:
        return self.blobs[layer.digest]


def _old_entries(store: LayerStore, n: int, size: int) -> list[Path]:
    """``n`` stored entries of ``size`` bytes each, used long ago (oldest first)."""
    out = []
    for i in range(n):
        d = store.entry("sha256:" + f"{i:064x}")
        (d / "fs").mkdir(parents=True, mode=0o755)
        (d / "meta.json").write_text(json.dumps({"diff_id": "sha256:" + f"{i:064x}", "bytes": size,
                                                 "stackable": True, "implicit_dirs": []}))
        os.utime(d / "meta.json", (time.time() - 3600 + i, time.time() - 3600 + i))
        out.append(d)
    return out


def _layer(tmp: Path) -> tuple[Layer, Path]:
    root = tmp / "src"
    root.mkdir()
    (root / "hello").write_text("hello\n")
    res = write_layer(root, ChangeSet(changed=("hello",)), tmp / "layer.tgz", threads=0)
    desc = {"mediaType": res.media_type, "digest": res.digest, "size": res.size}
    return Layer(descriptor=desc, diff_id=res.diff_id, path=res.path), res.path


def test_a_build_that_stores_nothing_leaves_an_over_budget_store_alone(tmp_path):
    store = LayerStore(tmp_path / "store", OverlayFlavor(False), max_bytes=1)
    old = _old_entries(store, 3, 1000)
    store.close()
    assert all(d.is_dir() for d in old)


def test_a_build_that_stored_a_layer_prunes_the_least_recently_used_at_its_end(tmp_path):
    store = LayerStore(tmp_path / "store", OverlayFlavor(False))
    old = _old_entries(store, 3, 1000)
    layer, blob = _layer(tmp_path)
    got = store.get(layer, _LocalSource({layer.digest: blob}))
    assert (got.fs / "hello").read_text() == "hello\n"
    assert all(d.is_dir() for d in old)  # nothing removed while the build runs
    new_bytes = json.loads((store.entry(layer.diff_id) / "meta.json").read_text())["bytes"]
    store.max_bytes = new_bytes + 2500
    store.close()
    # 3000 bytes of old entries + the new one (held until close, newest): the oldest goes first
    assert not old[0].exists() and old[1].is_dir() and old[2].is_dir()
    assert store.entry(layer.diff_id).is_dir()
    assert not os.listdir(tmp_path / "store" / "tmp")


def test_a_damaged_entry_does_not_stop_the_prune_nor_keep_the_locks(tmp_path):
    """meta.json files that parse but have the wrong shape are skipped; the build's shared
    locks are released whatever the prune met."""
    store = LayerStore(tmp_path / "store", OverlayFlavor(False))
    old = _old_entries(store, 2, 1000)
    for d, bad in zip(old, ('{"bytes": null}', "[]")):
        (d / "meta.json").write_text(bad)
    layer, blob = _layer(tmp_path)
    store.get(layer, _LocalSource({layer.digest: blob}))
    store.max_bytes = 1
    store.close()
    assert all(d.is_dir() for d in old)  # skipped, not counted
    assert store._held == {}
    assert store.entry(layer.diff_id).is_dir()  # over the bound, but held by this build while it pruned
