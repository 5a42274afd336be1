"""Streaming layer compression with the layer digest and diff_id computed in one pass.

A layer blob has two identities (OCI image-spec, config.md "rootfs.diff_ids" and
descriptor.md "digest"):

* ``diff_id`` -- sha256 of the *uncompressed* tar stream;
* ``digest``  -- sha256 of the *compressed* blob as stored in the registry.

:class:`DigestingWriter` is a write-only file-like sink: the tar writer writes the
uncompressed stream into it and it hashes, compresses, hashes again and writes the
blob to ``out`` -- nothing is buffered beyond one compression block.

:func:`open_decompressed` is the reading side: it sniffs the magic bytes of a blob
and returns a stream of the uncompressed tar.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO

import zstandard

from executor.errors import LayerError

GZIP = "gzip"
ZSTD = "zstd"
NONE = "none"
COMPRESSIONS = (GZIP, ZSTD, NONE)

#: gzip level 1 (zlib's fastest), as Kaniko: go-containerregistry's tarball.LayerFromOpener
#: defaults to gzip.BestSpeed and Kaniko passes no other level unless --compression-level is
#: set. Measured on a Debian minbase rootfs tar (2 threads): level 1 compresses ~3x faster
#: than level 6 for a blob ~9% larger (0.42 vs 0.39 of the tar); see benchmarks/README.md.
DEFAULT_GZIP_LEVEL = 1
DEFAULT_ZSTD_LEVEL = 3

_GZIP_MAGIC = b"\x1f\x8b"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

#: Uncompressed bytes per independently compressed gzip block when ``threads > 0``.
GZIP_BLOCK = 1 << 20
#: Deflate window: each parallel block is primed with the previous block's last 32 KiB.
_WINDOW = 32 * 1024
#: Fixed 10-byte gzip member header (RFC 1952): deflate, no flags, mtime 0, XFL 0, OS 255.
#: Deterministic (no name, no timestamp) so equal input gives equal digests.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


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


class _HashingSink:
    """Hashes and counts compressed bytes on their way to the output file."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, b: bytes) -> None:
        if b:
            self.sha.update(b)
            self.size += len(b)
            self.out.write(b)


class _ParallelGzip:
    """pigz-style gzip: fixed-size blocks deflated on worker threads, one gzip member.

    Each block is raw deflate primed with the previous 32 KiB of input as a preset
    dictionary and ended with a sync flush (byte aligned, not final); the last block
    is finished with Z_FINISH. The concatenation is one valid deflate stream (RFC 1951),
    wrapped in a gzip header and a CRC32/ISIZE trailer computed on the calling thread.
    The output depends only on the input, the level and GZIP_BLOCK -- not on the number
    of threads -- so digests are reproducible across machines. zlib releases the GIL.
    Blocks that look incompressible (:func:`_incompressible`) are written as stored
    deflate blocks.
    """

    def __init__(self, sink: _HashingSink, level: int, threads: int):
        self.sink = sink
        self.level = level
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gzip")
        # One-thread executors run their tasks in submission order: the CRC of the input and
        # the (hash + write) of the output stay ordered while the calling thread reads on.
        self.crc_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gzip-crc")
        self.out_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gzip-out")
        self.pending: deque[Future] = deque()
        self.crc_pending: deque[Future] = deque()
        self.max_pending = threads * 2 + 2
        self.buf = bytearray()
        self.prev_tail = b""
        self.crc = 0
        self.isize = 0
        sink.write(_GZIP_HEADER)

    @staticmethod
    def _deflate(level: int, block: bytes, zdict: bytes, last: bool) -> bytes:
        if level and _incompressible(block):
            return _stored(block, last)  # random bytes: no time spent trying to deflate them
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict) if zdict \
            else zlib.compressobj(level, zlib.DEFLATED, -15, 9)
        out = c.compress(block)
        return out + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    def _crc_update(self, block: bytes) -> None:
        self.crc = zlib.crc32(block, self.crc)

    def _write_out(self, fut: Future) -> None:
        self.sink.write(fut.result())

    def _submit(self, block: bytes, last: bool) -> None:
        self.isize += len(block)
        self.crc_pending.append(self.crc_pool.submit(self._crc_update, block))
        cf = self.pool.submit(self._deflate, self.level, block, self.prev_tail, last)
        self.pending.append(self.out_pool.submit(self._write_out, cf))
        self.prev_tail = block[-_WINDOW:] if len(block) >= _WINDOW else (self.prev_tail + block)[-_WINDOW:]
        while len(self.pending) > self.max_pending:
            self.pending.popleft().result()
        while len(self.crc_pending) > self.max_pending:
            self.crc_pending.popleft().result()

    def write(self, b) -> None:
        self.buf += b
        while len(self.buf) > GZIP_BLOCK:  # keep >0 bytes back so the last block can be final
            block = bytes(self.buf[:GZIP_BLOCK])
            del self.buf[:GZIP_BLOCK]
            self._submit(block, last=False)

    def close(self) -> None:
        try:
            self._submit(bytes(self.buf), last=True)
            self.buf = bytearray()
            while self.pending:
                self.pending.popleft().result()
            while self.crc_pending:
                self.crc_pending.popleft().result()
            self.sink.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.isize & 0xFFFFFFFF))
        finally:
            self.abort()

    def abort(self) -> None:
        for pool in (self.pool, self.crc_pool, self.out_pool):
            pool.shutdown(wait=True, cancel_futures=True)


#: Probe size and threshold of :func:`_incompressible`.
_PROBE = 64 * 1024
_PROBE_RATIO = 0.98


def _stored(block: bytes, last: bool) -> bytes:
    """``block`` as raw deflate *stored* blocks (RFC 1951 3.2.4), byte aligned like a sync flush.

    Each piece is a 1-byte header (BFINAL, BTYPE=00, padding), LEN, NLEN and up to 65 535
    bytes; one join copies the data once (zlib level 0 is ~4x slower for the same bytes).
    """
    n = len(block)
    mv = memoryview(block)
    parts = []
    step = 65535
    off = 0
    while True:
        end = min(n, off + step)
        final = last and end == n
        ln = end - off
        parts.append(struct.pack("<BHH", 1 if final else 0, ln, ln ^ 0xFFFF))
        parts.append(mv[off:end])
        off = end
        if off >= n:
            break
    return b"".join(parts)


def _incompressible(block: bytes) -> bool:
    """True when ``block`` looks like random or already-compressed bytes.

    Probes three 64 KiB samples (start, middle, end) at level 1: if none of them shrinks
    below 98 %, the block is stored instead of deflated (deflate would gain < 2 % at several
    times the cost: 1 GB of such data takes ~10 s of CPU at level 1, ~0.3 s stored). Depends
    only on the block's bytes, so the output stays deterministic.
    """
    n = len(block)
    if n < 4 * _PROBE:
        return False
    for off in (0, n // 2 - _PROBE // 2, n - _PROBE):
        sample = block[off:off + _PROBE]
        if len(zlib.compress(sample, 1)) < _PROBE_RATIO * _PROBE:
            return False
    return True


class _SerialGzip:
    """Single-threaded gzip: one zlib stream with a fixed deterministic header."""

    def __init__(self, sink: _HashingSink, level: int):
        self.sink = sink
        self.c = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
        self.crc = 0
        self.isize = 0
        sink.write(_GZIP_HEADER)

    def write(self, b) -> None:
        self.crc = zlib.crc32(b, self.crc)
        self.isize += len(b)
        self.sink.write(self.c.compress(b))

    def close(self) -> None:
        self.sink.write(self.c.flush(zlib.Z_FINISH))
        self.sink.write(struct.pack("<II", self.crc & 0xFFFFFFFF, self.isize & 0xFFFFFFFF))

    def abort(self) -> None:
        pass


class _Zstd:
    """zstd frame via zstandard; ``threads > 0`` uses libzstd's own worker threads."""

    def __init__(self, sink: _HashingSink, level: int, threads: int):
        self.sink = sink
        params = zstandard.ZstdCompressionParameters.from_level(level, threads=threads, write_checksum=True)
        self.c = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def write(self, b) -> None:
        self.sink.write(self.c.compress(b))

    def close(self) -> None:
        self.sink.write(self.c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))

    def abort(self) -> None:
        pass


class _Plain:
    def __init__(self, sink: _HashingSink):
        self.sink = sink

    def write(self, b) -> None:
        self.sink.write(bytes(b))

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class DigestingWriter(io.RawIOBase):
    """Write-only sink for an uncompressed tar stream that emits a compressed layer blob.

    Bytes written are hashed (diff_id), compressed with ``compression`` (``"gzip"``,
    ``"zstd"`` or ``"none"``), hashed again (digest) and written to ``out``. ``level``
    defaults to 1 for gzip (:data:`DEFAULT_GZIP_LEVEL`) and 3 for zstd. ``threads``: 0 compresses on the calling
    thread; N > 0 uses N worker threads (gzip: pigz-style blocks; zstd: libzstd workers).
    The gzip output is a single RFC 1952 member with mtime 0 and no file name, so it is
    deterministic. The bytes (hence ``digest``) depend on the input, compression, level
    and only on whether ``threads`` is 0 or not: any N > 0 gives identical output
    (fixed 1 MiB gzip blocks; libzstd's multi-threaded format), so pass a fixed choice
    (e.g. always 0, or always >0) for reproducible digests across machines. ``close()`` finishes the stream, does not
    close ``out`` and returns the :class:`LayerDigests`. Raises ValueError for an
    unknown compression or level.
    """

    def __init__(self, out: BinaryIO, compression: str = GZIP, level: int | None = None, threads: int = 0):
        super().__init__()
        if compression not in COMPRESSIONS:
            raise ValueError(f"unknown layer compression {compression!r} (use gzip, zstd or none)")
        if threads < 0:
            threads = os.cpu_count() or 1
        self.compression = compression
        self._sink = _HashingSink(out)
        self._diff = hashlib.sha256()
        self._usize = 0
        self._result: LayerDigests | None = None
        # threads > 0: the diff_id hash runs on its own ordered thread (hashlib releases the GIL)
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffid") if threads > 0 else None
        self._hash_pending: deque[Future] = deque()
        if compression == GZIP:
            lvl = DEFAULT_GZIP_LEVEL if level is None else level
            if not 0 <= lvl <= 9:
                raise ValueError(f"gzip level must be 0..9, got {lvl}")
            self._enc = _ParallelGzip(self._sink, lvl, threads) if threads > 0 else _SerialGzip(self._sink, lvl)
        elif compression == ZSTD:
            lvl = DEFAULT_ZSTD_LEVEL if level is None else level
            if not -7 <= lvl <= 22:
                raise ValueError(f"zstd level must be -7..22, got {lvl}")
            self._enc = _Zstd(self._sink, lvl, threads)
        else:
            self._enc = _Plain(self._sink)

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


class _Prefixed(io.RawIOBase):
    """A raw reader that yields ``prefix`` and then the rest of ``f``."""

    def __init__(self, prefix: bytes, f: BinaryIO):
        super().__init__()
        self._prefix = prefix
        self._f = f

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._prefix:
            n = min(len(b), len(self._prefix))
            b[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._f.read(len(b))
        if not data:
            return 0
        n = len(data)
        b[:n] = data
        return n


class _GzipReader(io.RawIOBase):
    """Streaming gzip decoder (handles multi-member streams), raising LayerError on damage."""

    def __init__(self, f: BinaryIO):
        super().__init__()
        self._f = f
        self._d = zlib.decompressobj(31)
        self._pending = b""
        self._eof = False
        self._started = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        want = len(b)
        while not self._pending and not self._eof:
            data = self._d.unconsumed_tail or self._f.read(256 * 1024)
            if not data:
                if self._started and not self._d.eof:
                    raise LayerError("malformed layer: gzip stream is truncated")
                self._eof = True
                break
            if not self._started and not data.strip(b"\0"):
                continue  # zero padding after the last member (some writers pad blobs): ignore
            self._started = True
            try:
                self._pending = self._d.decompress(data, max(want, 64 * 1024))
            except zlib.error as e:
                raise LayerError(f"malformed layer: bad gzip data ({e})") from None
            if self._d.eof:
                rest = self._d.unused_data
                self._d = zlib.decompressobj(31)
                self._started = False
                if rest:
                    self._f = _Prefixed(rest, self._f)  # another member follows
        n = min(want, len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n


def _read_exact_prefix(f: BinaryIO, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def sniff(prefix: bytes) -> str:
    """Compression of a blob from its first bytes: ``"gzip"``, ``"zstd"`` or ``"none"``."""
    if prefix.startswith(_GZIP_MAGIC):
        return GZIP
    if prefix.startswith(_ZSTD_MAGIC):
        return ZSTD
    return NONE


class _Prefetch(io.RawIOBase):
    """Reads ``inner`` on a background thread (decompression releases the GIL), so the
    consumer (tar parsing, file writes) overlaps with decompressing the next megabytes.

    Errors raised by ``inner`` are re-raised by ``readinto``. ``close()`` stops the thread.
    """

    _CHUNK = 1 << 20

    def __init__(self, inner: BinaryIO, depth: int = 8):
        super().__init__()
        import queue
        import threading
        self._inner = inner
        self._q: "queue.Queue" = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._cur = memoryview(b"")
        self._done = False
        self._t = threading.Thread(target=self._run, name="decompress", daemon=True)
        self._t.start()

    def _put(self, item) -> bool:
        import queue
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self._inner.read(self._CHUNK)
                if not chunk:
                    self._put(None)
                    return
                if not self._put(chunk):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the reading thread
            self._put(e)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._cur:
            if self._done:
                return 0
            item = self._q.get()
            if item is None:
                self._done = True
                return 0
            if isinstance(item, BaseException):
                self._done = True
                raise item
            self._cur = memoryview(item)
        n = min(len(b), len(self._cur))
        b[:n] = self._cur[:n]
        self._cur = self._cur[n:]
        return n

    def close(self) -> None:
        if not self.closed:
            self._stop.set()
            self._t.join()
        super().close()


def open_decompressed(fileobj: BinaryIO, media_type: str | None = None, prefetch: bool = False) -> BinaryIO:
    """Return a readable stream of the uncompressed content of a layer blob.

    The compression is taken from the magic bytes (gzip ``1f 8b``, zstd ``28 b5 2f fd``,
    anything else is an uncompressed tar), because registries in the wild serve blobs
    under mismatched media types; ``media_type`` is accepted for the caller's
    convenience and is only consulted to reject unknown ``+`` suffixes. ``fileobj``
    need not be seekable; it is read in chunks and never held whole in memory.
    Corrupt compressed data raises :class:`executor.errors.LayerError` when read.
    ``prefetch``: decompress on a background thread, ahead of the reader; the caller must
    then ``close()`` the returned stream.
    """
    if media_type and "+" in media_type:
        suffix = media_type.rsplit("+", 1)[1]
        if suffix not in (GZIP, ZSTD):
            raise LayerError(f"unsupported layer media type {media_type!r}")
    prefix = _read_exact_prefix(fileobj, 4)
    raw = _Prefixed(prefix, fileobj)
    kind = sniff(prefix)
    if kind == GZIP:
        out: BinaryIO = io.BufferedReader(_GzipReader(raw), 256 * 1024)
    elif kind == ZSTD:
        reader = zstandard.ZstdDecompressor().stream_reader(raw, read_size=256 * 1024, read_across_frames=True)
        out = _ZstdErrors(reader)  # type: ignore[assignment]
    else:
        return io.BufferedReader(raw, 256 * 1024)
    if prefetch:
        return io.BufferedReader(_Prefetch(out), 256 * 1024)  # type: ignore[return-value]
    return out


class _ZstdErrors(io.RawIOBase):
    """Translate zstandard errors into LayerError."""

    def __init__(self, reader):
        super().__init__()
        self._r = reader

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            data = self._r.read(len(b))
        except zstandard.ZstdError as e:
            raise LayerError(f"malformed layer: bad zstd data ({e})") from None
        n = len(data)
        b[:n] = data
        return n

    def read(self, n: int = -1) -> bytes:
        try:
            if n is None or n < 0:
                return self._r.readall()
            return self._r.read(n)
        except zstandard.ZstdError as e:
            raise LayerError(f"malformed layer: bad zstd data ({e})") from None
