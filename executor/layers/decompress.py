"""Reading layer blobs: :func:`open_decompressed` sniffs the magic bytes and returns a stream
of the uncompressed tar, optionally decompressed ahead of the reader on a background thread."""

from __future__ import annotations

import io
import queue
import threading
from typing import BinaryIO

from executor.errors import LayerError
from executor.layers.compression import Compression, Prefixed, read_prefix, sniff
from executor.layers.gzip_codec import GzipReader
from executor.layers.zstd_codec import ZstdReader

_BUFFER = 256 * 1024


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
    convenience and is only consulted to reject unknown ``+`` suffixes (LayerError).
    ``fileobj`` need not be seekable; it is read in chunks and never held whole in memory.
    Corrupt compressed data raises :class:`executor.errors.LayerError` when read.
    ``prefetch``: decompress on a background thread, ahead of the reader; the caller must
    then ``close()`` the returned stream.
    """
    if media_type and "+" in media_type:
        suffix = media_type.rsplit("+", 1)[1]
        if suffix not in (Compression.GZIP, Compression.ZSTD):
            raise LayerError(f"unsupported layer media type {media_type!r}")
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
