"""Streaming layer compression with the layer digest and diff_id computed in one pass.

A layer blob has two identities (OCI image-spec, config.md "rootfs.diff_ids" and
descriptor.md "digest"):

* ``diff_id`` -- sha256 of the *uncompressed* tar stream;
* ``digest``  -- sha256 of the *compressed* blob as stored in the registry.

:class:`DigestingWriter` is a write-only file-like sink: the tar writer writes the
uncompressed stream into it and it hashes, compresses (:mod:`~executor.layers.gzip_codec`,
:mod:`~executor.layers.zstd_codec`), hashes again and writes the blob to ``out`` --
nothing is buffered beyond one compression block.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

from executor.layers.compression import Compression
from executor.layers.gzip_codec import gzip_encoder
from executor.layers.zstd_codec import ZstdWriter


@dataclass(frozen=True)
class LayerDigests:
    """The identities of one written layer blob.

    ``digest``: ``"sha256:<hex>"`` of the compressed bytes written to ``out``;
    ``diff_id``: ``"sha256:<hex>"`` of the uncompressed tar stream;
    ``size``: compressed bytes written; ``uncompressed_size``: tar stream bytes.
    For ``compression="none"`` digest == diff_id and size == uncompressed_size.
    """

    digest: str
    diff_id: str
    size: int
    uncompressed_size: int


class HashingSink:
    """Hashes (sha256) and counts compressed bytes on their way to the output file."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, b: bytes) -> None:
        if b:
            self.sha.update(b)
            self.size += len(b)
            self.out.write(b)


class PlainWriter:
    """The :class:`~executor.layers.compression.Encoder` for no compression: the tar stream is the blob."""

    def __init__(self, sink: HashingSink):
        self.sink = sink

    def write(self, b) -> None:
        self.sink.write(bytes(b))

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class DigestingWriter(io.RawIOBase):
    """Write-only sink for an uncompressed tar stream that emits a compressed layer blob.

    Bytes written are hashed (diff_id), compressed with ``compression`` (a
    :class:`~executor.layers.compression.Compression` or its string value ``"gzip"``,
    ``"zstd"``, ``"none"``), hashed again (digest) and written to ``out``. ``level``
    defaults to 1 for gzip (:data:`~executor.layers.gzip_codec.DEFAULT_GZIP_LEVEL`) and 3
    for zstd. ``threads``: 0 compresses on the calling thread; N > 0 uses N worker threads
    (gzip: pigz-style blocks; zstd: libzstd workers); N < 0 means one per CPU.
    The gzip output is a single RFC 1952 member with mtime 0 and no file name, so it is
    deterministic. The bytes (hence ``digest``) depend on the input, compression, level
    and only on whether ``threads`` is 0 or not: any N > 0 gives identical output
    (fixed 1 MiB gzip blocks; libzstd's multi-threaded format), so pass a fixed choice
    (e.g. always 0, or always >0) for reproducible digests across machines. ``close()``
    finishes the stream, does not close ``out`` and returns the :class:`LayerDigests`.
    Raises ValueError for an unknown compression or level.
    """

    def __init__(self, out: BinaryIO, compression: Compression | str = Compression.GZIP, level: int | None = None,
                 threads: int = 0):
        super().__init__()
        kind = Compression.parse(compression)
        if threads < 0:
            threads = os.cpu_count() or 1
        self.compression = kind
        self._sink = HashingSink(out)
        self._diff = hashlib.sha256()
        self._usize = 0
        self._result: LayerDigests | None = None
        # threads > 0: the diff_id hash runs on its own ordered thread (hashlib releases the GIL)
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffid") if threads > 0 else None
        self._hash_pending: deque[Future] = deque()
        if kind is Compression.GZIP:
            self._enc = gzip_encoder(self._sink, level, threads)
        elif kind is Compression.ZSTD:
            self._enc = ZstdWriter(self._sink, level, threads)
        else:
            self._enc = PlainWriter(self._sink)

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        """Consume ``b`` (bytes-like, uncompressed); returns ``len(b)``."""
        if self._result is not None:
            raise ValueError("write to a closed DigestingWriter")
        n = len(b)
        if n:
            if self._hasher is not None:
                if not isinstance(b, bytes):
                    b = bytes(b)  # the caller may reuse its buffer once we return
                self._hash_pending.append(self._hasher.submit(self._diff.update, b))
                if len(self._hash_pending) > 8:
                    self._hash_pending.popleft().result()
            else:
                self._diff.update(b)
            self._usize += n
            self._enc.write(b)
        return n

    def _hash_done(self) -> None:
        if self._hasher is not None:
            while self._hash_pending:
                self._hash_pending.popleft().result()
            self._hasher.shutdown(wait=True)

    def __del__(self) -> None:
        # io.IOBase.__del__ would call close(), which submits to thread pools. A garbage
        # collection can run inside another executor's submit() (which holds
        # concurrent.futures' global lock), so finishing from here could deadlock. A writer that
        # was never closed is abandoned: its pools' idle workers exit once the pools are freed.
        pass

    def close(self) -> LayerDigests:  # type: ignore[override]
        """Finish compression; return the digests (idempotent: later calls return the same)."""
        if self._result is None:
            self._enc.close()
            self._hash_done()
            self._result = LayerDigests(
                digest="sha256:" + self._sink.sha.hexdigest(),
                diff_id="sha256:" + self._diff.hexdigest(),
                size=self._sink.size,
                uncompressed_size=self._usize,
            )
            super().close()
        return self._result

    def abort(self) -> None:
        """Stop worker threads without finishing the stream (after an error)."""
        self._enc.abort()
        if self._hasher is not None:
            self._hasher.shutdown(wait=True, cancel_futures=True)

    @property
    def digests(self) -> LayerDigests | None:
        """The result once closed, else None."""
        return self._result
