"""The layer writer's fast paths: stored blocks for incompressible data, hashing and writing on
helper threads, the default thread count and gzip level. Output must stay valid, deterministic
and independent of the number of threads."""

import gzip
import hashlib
import io
import os
import zlib

import pytest

from executor.layers import compress
from executor.layers.compress import DEFAULT_GZIP_LEVEL, DigestingWriter, _incompressible, _stored
from executor.layers.writer import layer_threads


def _blob(data: bytes, threads: int, codec: str = "gzip", chunks: int = 7) -> tuple[bytes, object]:
    out = io.BytesIO()
    w = DigestingWriter(out, codec, threads=threads)
    step = max(1, len(data) // chunks)
    for off in range(0, len(data), step):
        w.write(bytearray(data[off:off + step]))  # a mutable buffer: the writer must copy it
    d = w.close()
    return out.getvalue(), d


@pytest.mark.parametrize("last", [True, False])
@pytest.mark.parametrize("n", [0, 1, 65535, 65536, 3 * 65535 + 7])
def test_stored_blocks_are_valid_raw_deflate(n, last):
    data = os.urandom(n)
    d = zlib.decompressobj(-15)
    assert d.decompress(_stored(data, last)) == data
    assert d.eof == last


def test_incompressible_detection():
    assert _incompressible(os.urandom(1 << 20))
    assert not _incompressible(b"hello layer " * 100_000)
    assert not _incompressible(os.urandom(100))  # small blocks are always deflated
    # compressible in the middle only: still deflated
    assert not _incompressible(os.urandom(400_000) + b"\0" * 300_000 + os.urandom(400_000))


def test_mixed_data_roundtrip_digests_and_thread_independence():
    data = os.urandom(3 << 20) + (b"text " * 400_000) + os.urandom(1 << 20) + b"tail"
    blobs = set()
    for t in (1, 2, 4):
        blob, d = _blob(data, t)
        assert gzip.decompress(blob) == data
        assert d.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()
        assert d.digest == "sha256:" + hashlib.sha256(blob).hexdigest()
        assert d.size == len(blob) and d.uncompressed_size == len(data)
        blobs.add(blob)
    assert len(blobs) == 1
    # random bytes are stored, not deflated: the blob is barely larger than the input
    rnd = os.urandom(4 << 20)
    blob, _ = _blob(rnd, 2)
    assert len(rnd) < len(blob) < len(rnd) * 1.001


@pytest.mark.parametrize("codec", ["zstd", "none"])
def test_threaded_diff_id_other_codecs(codec):
    data = os.urandom(2 << 20) + b"x" * 100_000
    _, d = _blob(data, 2, codec)
    assert d.diff_id == "sha256:" + hashlib.sha256(data).hexdigest()


def test_worker_error_propagates_and_threads_stop(monkeypatch):
    def boom(*a):
        raise RuntimeError("deflate failed")
    monkeypatch.setattr(compress._ParallelGzip, "_deflate", staticmethod(boom))
    w = DigestingWriter(io.BytesIO(), "gzip", threads=2)
    with pytest.raises(RuntimeError, match="deflate failed"):
        for _ in range(20):
            w.write(os.urandom(1 << 20))
        w.close()
    w.abort()


def test_defaults(monkeypatch):
    assert DEFAULT_GZIP_LEVEL == 1  # Kaniko's (go-containerregistry gzip.BestSpeed)
    monkeypatch.setenv("EXECUTOR_COMPRESSION_THREADS", "3")
    assert layer_threads() == 3
    monkeypatch.delenv("EXECUTOR_COMPRESSION_THREADS")
    assert layer_threads() >= 1
