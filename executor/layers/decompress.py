"""Reading layer blobs: :func:`open_decompressed` sniffs the magic bytes and returns a stream
of the uncompressed tar, optionally decompressed ahead of the reader on a background thread."""

from __future__ import annotations

import io
import queue
import threading
from typing import BinaryIO, Iterator

from executor.errors import LayerError
from executor.layers.compression import Compression, Prefixed, read_prefix, sniff
from executor.layers.gzip_codec import GzipReader, gzip_chunks
from executor.layers.zstd_codec import ZstdReader

_BUFFER = 256 * 1024


def _put_unless_stopped(q: queue.Queue, stop: threading.Event, item) -> bool:
    """Put ``item`` on the bounded queue ``q``, waiting for room; False once ``stop`` is set (the
    reader went away), so a producer thread never blocks forever."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.2)
            return True
        except queue.Full:
            continue
    return False


class Prefetch(io.RawIOBase):
    """Reads ``inner`` on a background thread (decompression releases the GIL), so the
    consumer (tar parsing, file writes) overlaps with decompressing the next megabytes.

    At most ``depth`` chunks of 1 MiB wait in the queue. Errors raised by ``inner`` are
    re-raised by ``readinto``. ``close()`` stops the thread.
    """

    _CHUNK = 1 << 20

    def __init__(self, inner: BinaryIO, depth: int = 8):
        super().__init__()
        self._inner = inner
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._cur = memoryview(b"")
        self._done = False
        self._t = threading.Thread(target=self._run, name="decompress", daemon=True)
        self._t.start()

    def _put(self, item) -> bool:
        return _put_unless_stopped(self._q, self._stop, item)

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


def _check_media_type(media_type: str | None) -> None:
    if media_type and "+" in media_type:
        suffix = media_type.rsplit("+", 1)[1]
        if suffix not in (Compression.GZIP, Compression.ZSTD):
            raise LayerError(f"unsupported layer media type {media_type!r}")


def decompressed_chunks(blob: BinaryIO, media_type: str | None = None) -> Iterator[bytes]:
    """The uncompressed content of a layer blob as chunks of at most 4 MiB (compression sniffed
    as in :func:`open_decompressed`; corrupt data raises LayerError while iterating)."""
    _check_media_type(media_type)
    prefix = read_prefix(blob, 4)
    kind = sniff(prefix)
    if kind is Compression.GZIP:
        yield from gzip_chunks(Prefixed(prefix, blob))
        return
    reader = ZstdReader(Prefixed(prefix, blob)) if kind is Compression.ZSTD else blob
    if kind is Compression.NONE and prefix:
        yield prefix
    while True:
        chunk = reader.read(ChunkStream.CHUNK)
        if not chunk:
            return
        yield chunk


class ChunkStream:
    """The uncompressed bytes of a layer blob, produced ahead of the consumer on a background
    thread that reads ``blob``, decompresses it (:func:`decompressed_chunks`; ISA-L inflate and
    zstd release the GIL) and, given ``hasher`` (a hashlib object), hashes every uncompressed
    byte before handing the chunk over -- the diff_id costs the consumer nothing.

    :meth:`next_chunk` returns the chunks in order (bytes, at most :data:`CHUNK`), ``b""`` at the
    end, and re-raises the thread's error (LayerError for corrupt data, OSError from ``blob``).
    At most ``depth`` chunks wait (memory bound: depth x 4 MiB). ``passed`` counts the bytes
    handed over. Use as a context manager, or call :meth:`close` to stop the thread.
    """

    CHUNK = 4 << 20

    def __init__(self, blob: BinaryIO, media_type: str | None = None, hasher=None, depth: int = 6):
        self._blob = blob
        self._media_type = media_type
        self._hasher = hasher
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._done = False
        self.passed = 0
        self._t = threading.Thread(target=self._run, name="decompress", daemon=True)
        self._t.start()

    def _put(self, item) -> bool:
        return _put_unless_stopped(self._q, self._stop, item)

    def _run(self) -> None:
        try:
            hasher = self._hasher
            for chunk in decompressed_chunks(self._blob, self._media_type):
                if hasher is not None:
                    hasher.update(chunk)
                if not self._put(chunk):
                    return
            self._put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the consuming thread
            self._put(e)

    def next_chunk(self) -> bytes:
        """The next chunk of uncompressed bytes; ``b""`` at the end of the stream."""
        if self._done:
            return b""
        item = self._q.get()
        if item is None:
            self._done = True
            return b""
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self.passed += len(item)
        return item

    def drain(self) -> int:
        """Consume the rest of the stream (so the hasher sees every byte); the total passed."""
        while self.next_chunk():
            pass
        return self.passed

    def close(self) -> None:
        """Stop the thread (it may be blocked reading ``blob``: waits for that read)."""
        self._stop.set()
        self._t.join()

    def __enter__(self) -> "ChunkStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_decompressed(fileobj: BinaryIO, media_type: str | None = None, prefetch: bool = False) -> BinaryIO:
    """Return a readable stream of the uncompressed content of a layer blob.

    The compression is taken from the magic bytes (gzip ``1f 8b``, zstd ``28 b5 2f fd``,
    anything else is an uncompressed tar), because registries in the wild serve blobs
    under mismatched media types; ``media_type`` is accepted for the caller's
    convenience and is only consulted to reject unknown ``+`` suffixes (LayerError).
    ``fileobj`` need not be seekable; it is read in chunks and never held whole in memory.
    Corrupt compressed data raises :class:`executor.errors.LayerError` when read.
    ``prefetch``: decompress on a background thread, ahead of the reader; the caller must
    then ``close()`` the returned stream.
    """
    _check_media_type(media_type)
    prefix = read_prefix(fileobj, 4)
    raw = Prefixed(prefix, fileobj)
    kind = sniff(prefix)
    if kind is Compression.GZIP:
        out: BinaryIO = io.BufferedReader(GzipReader(raw), _BUFFER)
    elif kind is Compression.ZSTD:
        out = ZstdReader(raw)  # type: ignore[assignment]
    else:
        return io.BufferedReader(raw, _BUFFER)
    if prefetch:
        return io.BufferedReader(Prefetch(out), _BUFFER)  # type: ignore[return-value]
    return out
