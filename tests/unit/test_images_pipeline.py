"""Base layer download and extraction as one pipeline (executor.engine.images / inflight): the
first layer is unpacked while it downloads; a download that starts over (corrupt bytes) is
unpacked again from the verified blob. The registry client is a stand-in that writes the blob
slowly (a real registry is used by tests/integration/test_registry_integrity_builds.py)."""

from __future__ import annotations

import gzip
import hashlib
import random
import time
from pathlib import Path

from executor.engine.images import BlobStore, ImageSource
from executor.oci.image import Layer
from tests.support.tars import make_tar

_DATA = [random.Random(i).randbytes(5000) for i in range(200)]  # incompressible: a blob of ~1 MB
RAW = make_tar({"name": "first", "data": b"1" * 1000}, *({"name": f"d/f{i}", "data": _DATA[i]} for i in range(200)),
               {"name": "last", "data": b"end"})
BLOB = gzip.compress(RAW)


class SlowClient:
    """Writes BLOB into ``dest`` in pieces; before the last piece it waits until ``root/first``
    exists (only possible when extraction runs during the download). ``corrupt_first``: the
    first attempt sends damaged bytes, then starts over as the real client does (seek, truncate)."""

    def __init__(self, root: Path, corrupt_first: bool):
        self.root = root
        self.corrupt_first = corrupt_first
        self.saw_first_file_early = False

    def fetch_blob(self, ref, digest, dest):
        if self.corrupt_first:
            bad = bytearray(BLOB)
            bad[len(bad) // 2] ^= 0xFF
            dest.write(bytes(bad[: len(bad) * 3 // 4]))
            time.sleep(0.2)
            dest.seek(0)
            dest.truncate()
        pieces = [BLOB[i:i + 4096] for i in range(0, len(BLOB), 4096)]
        for p in pieces[:-1]:
            dest.write(p)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (self.root / "first").exists():
            time.sleep(0.01)
        self.saw_first_file_early = (self.root / "first").exists()
        dest.write(pieces[-1])
        return len(BLOB)


def _unpack(tmp_path: Path, corrupt_first: bool) -> SlowClient:
    root = tmp_path / "root"
    root.mkdir()
    client = SlowClient(root, corrupt_first)
    src = ImageSource(client=client, store=BlobStore(tmp_path / "blobs"))  # type: ignore[arg-type]
    from executor.oci.image import Image
    layer = Layer(descriptor={"digest": "sha256:" + hashlib.sha256(BLOB).hexdigest(), "size": len(BLOB),
                              "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"},
                  diff_id="sha256:" + hashlib.sha256(RAW).hexdigest(), path=None, source="r.example/base")
    try:
        src.unpack(Image(config={}, layers=[layer], oci=True), root)
    finally:
        src.close()
    assert (root / "last").read_bytes() == b"end"
    assert sorted(p.name for p in (root / "d").iterdir()) == sorted(f"f{i}" for i in range(200))
    assert (root / "d" / "f7").read_bytes() == _DATA[7]
    return client


def test_first_layer_is_unpacked_while_it_downloads(tmp_path):
    assert _unpack(tmp_path, corrupt_first=False).saw_first_file_early


def test_download_that_starts_over_is_unpacked_again_from_the_verified_blob(tmp_path):
    _unpack(tmp_path, corrupt_first=True)
