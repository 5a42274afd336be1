"""gzip for layer blobs (RFC 1952 around RFC 1951 deflate): deterministic writers and a
streaming reader.

Writers take a ``sink`` with ``write(bytes)`` (the digesting sink of
:mod:`executor.layers.digesting`) and emit exactly one gzip member with a fixed header
(no file name, mtime 0), so equal input gives an equal blob and digest.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Iterator

from executor.errors import LayerError
from executor.layers.compression import Prefixed, Sink

#: gzip level 1 (zlib's fastest), as Kaniko: go-containerregistry's tarball.LayerFromOpener
#: defaults to gzip.BestSpeed and Kaniko passes no other level unless --compression-level is
#: set. Measured on a Debian minbase rootfs tar (2 threads): level 1 compresses ~3x faster
#: than level 6 for a blob ~9% larger (0.42 vs 0.39 of the tar); see benchmarks/README.md.
DEFAULT_GZIP_LEVEL = 1

#: Uncompressed bytes per independently compressed gzip block when ``threads > 0``.
GZIP_BLOCK = 1 << 20
#: Deflate window: each parallel block is primed with the previous block's last 32 KiB.
WINDOW = 32 * 1024
#: Fixed 10-byte gzip member header (RFC 1952): deflate, no flags, mtime 0, XFL 0, OS 255.
#: Deterministic (no name, no timestamp) so equal input gives equal digests.
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"

#: Probe size and threshold of :func:`incompressible`.
PROBE = 16 * 1024
PROBE_RATIO = 0.98


def _trailer(crc: int, isize: int) -> bytes:
    """RFC 1952 member trailer: CRC32 and ISIZE (input size mod 2**32), little-endian."""
    return struct.pack("<II", crc & 0xFFFFFFFF, isize & 0xFFFFFFFF)


def stored(block: bytes, last: bool) -> bytes:
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


def _fast_crc32():
    """CRC32 for the gzip trailer: ISA-L's (python-isal) when installed, else zlib's. The same
    polynomial (equal values), ~4x faster: 2 ms instead of 8 ms per 20 MB."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; the stdlib is the fallback
        return zlib.crc32
    return isal_zlib.crc32


_crc32 = _fast_crc32()


def incompressible(block: bytes) -> bool:
    """True when ``block`` looks like random or already-compressed bytes.

    Probes three 16 KiB samples (start, middle, end) with zlib at level 1: if none of them
    shrinks below 98 %, the block is stored instead of deflated (deflate would gain < 2 % at
    several times the cost: 1 GB of such data takes ~10 s of CPU at level 1, ~0.3 s stored).
    zlib, not a faster deflate: the decision must depend only on the block's bytes, on every
    machine (ISA-L's output length varies with the CPU's code path), so the output stays
    deterministic. 16 KiB samples (48 KiB of each 1 MiB block) cost 31 ms per 20 MB of random
    bytes, 64 KiB ones cost 130 ms (zlib's level 1 still hashes every position when nothing
    matches). Blocks under 64 KiB: False.
    """
    n = len(block)
    if n < 4 * PROBE:
        return False
    for off in (0, n // 2 - PROBE // 2, n - PROBE):
        if len(zlib.compress(block[off:off + PROBE], 1)) < PROBE_RATIO * PROBE:
            return False
    return True


class ParallelGzip:
    """An :class:`~executor.layers.compression.Encoder`: pigz-style gzip: fixed-size blocks deflated on worker threads, one gzip member.

    Each block is raw deflate primed with the previous 32 KiB of input as a preset
    dictionary and ended with a sync flush (byte aligned, not final); the last block
    is finished with Z_FINISH. The concatenation is one valid deflate stream (RFC 1951),
    wrapped in a gzip header and a CRC32/ISIZE trailer computed on an ordered helper thread.
    The output depends only on the input, the level and GZIP_BLOCK -- not on the number
    of threads -- so digests are reproducible across machines. zlib releases the GIL.
    Blocks that look incompressible (:func:`incompressible`) are written as stored
    deflate blocks. At most ``2 * threads + 2`` blocks (1 MiB each) are in flight.
    """

    def __init__(self, sink: Sink, level: int, threads: int):
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
        sink.write(GZIP_HEADER)

    @staticmethod
    def _deflate(level: int, block: bytes, zdict: bytes, last: bool) -> bytes:
        if level and incompressible(block):
            return stored(block, last)  # random bytes: no time spent trying to deflate them
        c = zlib.compressobj(level, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, zdict) if zdict \
            else zlib.compressobj(level, zlib.DEFLATED, -15, 9)
        out = c.compress(block)
        return out + c.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    def _crc_update(self, block: bytes) -> None:
        self.crc = _crc32(block, self.crc)

    def _write_out(self, fut: Future) -> None:
        self.sink.write(fut.result())

    def _submit(self, block: bytes, last: bool) -> None:
        self.isize += len(block)
        self.crc_pending.append(self.crc_pool.submit(self._crc_update, block))
        cf = self.pool.submit(self._deflate, self.level, block, self.prev_tail, last)
        self.pending.append(self.out_pool.submit(self._write_out, cf))
        self.prev_tail = block[-WINDOW:] if len(block) >= WINDOW else (self.prev_tail + block)[-WINDOW:]
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
            self.sink.write(_trailer(self.crc, self.isize))
        finally:
            self.abort()

    def abort(self) -> None:
        for pool in (self.pool, self.crc_pool, self.out_pool):
            pool.shutdown(wait=True, cancel_futures=True)


class SerialGzip:
    """An :class:`~executor.layers.compression.Encoder`: single-threaded gzip, one zlib
    stream with the fixed deterministic header."""

    def __init__(self, sink: Sink, level: int):
        self.sink = sink
        self.c = zlib.compressobj(level, zlib.DEFLATED, -15, 9)
        self.crc = 0
        self.isize = 0
        sink.write(GZIP_HEADER)

    def write(self, b) -> None:
        self.crc = _crc32(b, self.crc)
        self.isize += len(b)
        self.sink.write(self.c.compress(b))

    def close(self) -> None:
        self.sink.write(self.c.flush(zlib.Z_FINISH))
        self.sink.write(_trailer(self.crc, self.isize))

    def abort(self) -> None:
        pass


def gzip_encoder(sink: Sink, level: int | None, threads: int) -> ParallelGzip | SerialGzip:
    """The gzip writer for ``level`` (None = :data:`DEFAULT_GZIP_LEVEL`; 0..9, else ValueError)
    on ``threads`` worker threads (0 = the calling thread)."""
    lvl = DEFAULT_GZIP_LEVEL if level is None else level
    if not 0 <= lvl <= 9:
        raise ValueError(f"gzip level must be 0..9, got {lvl}")
    return ParallelGzip(sink, lvl, threads) if threads > 0 else SerialGzip(sink, lvl)


def _inflater():
    """A gzip (wbits 31) decompressor: ISA-L's inflate (python-isal, 2-3x zlib's speed) when
    installed, else the stdlib's zlib; both release the GIL while inflating."""
    try:
        from isal import isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; the stdlib is the fallback
        return zlib.decompressobj(31), (zlib.error,)
    return isal_zlib.decompressobj(31), (zlib.error, isal_zlib.error)


def gzip_chunks(f: BinaryIO, read_size: int = 1 << 20, out_size: int = 4 << 20) -> Iterator[bytes]:
    """The decompressed bytes of the gzip stream ``f`` (RFC 1952; several members read across,
    zero padding after the last one ignored), as chunks of at most ``out_size`` bytes, reading
    ``read_size`` bytes of ``f`` at a time (memory stays bounded whatever the ratio). Raises
    :class:`executor.errors.LayerError` on corrupt or truncated data."""
    d, errors = _inflater()
    started = False
    while True:
        data = d.unconsumed_tail or f.read(read_size)
        if not data:
            if started and not d.eof:
                raise LayerError("malformed layer: gzip stream is truncated")
            return
        if not started and not data.strip(b"\0"):
            continue  # zero padding after the last member (some writers pad blobs): ignore
        started = True
        try:
            out = d.decompress(data, out_size)
        except errors as e:
            raise LayerError(f"malformed layer: bad gzip data ({e})") from None
        if out:
            yield out
        if d.eof:
            rest = d.unused_data
            d, errors = _inflater()
            started = False
            if rest:
                f = Prefixed(rest, f)  # another member follows


class GzipReader(io.RawIOBase):
    """Streaming gzip decoder of ``f`` (multi-member streams; zero padding after the last
    member ignored) over :func:`gzip_chunks`. Raises :class:`executor.errors.LayerError` on
    corrupt or truncated data."""

    def __init__(self, f: BinaryIO):
        super().__init__()
        self._chunks = gzip_chunks(f, 256 * 1024, 1 << 20)
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        n = min(len(b), len(self._pending))
        b[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n
