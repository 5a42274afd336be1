"""A blob read while it is being downloaded: the download and the extraction of a base layer as
one pipeline instead of one after the other.

:class:`DownloadFile` is what the registry client writes into (a file object that counts the
times the download started over: ``truncate`` after a broken or corrupt transfer);
:class:`GrowingReader` reads the same file from another thread, waiting for bytes that are not
written yet, until the download's future is done. Bytes read before a restart are void: the
reader raises :class:`Restarted`, and the caller applies the layer again from the finished,
verified file (only a layer applied onto an empty root can be redone; see
``ImageSource.unpack``).
"""

from __future__ import annotations

import io
import os
import time
from concurrent.futures import Future
from typing import BinaryIO

#: How long the reader sleeps when it has caught up with the download (seconds).
POLL_S = 0.003


class Restarted(Exception):
    """The download being followed started over: what was read of it so far is void."""


class DownloadFile(io.RawIOBase):
    """The destination of a blob download (``fetch_blob``'s ``dest``), wrapping ``f``;
    ``generation`` counts the restarts (truncations)."""

    def __init__(self, f: BinaryIO):
        super().__init__()
        self._f = f
        self.generation = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b) -> int:
        n = self._f.write(b)
        self._f.flush()  # visible to the reader at once
        return n

    def seek(self, pos: int, whence: int = 0) -> int:
        return self._f.seek(pos, whence)

    def tell(self) -> int:
        return self._f.tell()

    def truncate(self, size: int | None = None) -> int:
        self.generation += 1
        return self._f.truncate(size)


class GrowingReader(io.RawIOBase):
    """Reads ``path`` while ``dest`` (the :class:`DownloadFile` of the same file) is written
    by the download behind ``future``: at the end of what is written it waits, until the
    future is done; then the rest is read and the stream ends. The download's error is
    raised here; :class:`Restarted` when the download started over."""

    def __init__(self, path: str, dest: DownloadFile, future: Future):
        super().__init__()
        self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self._dest = dest
        self._gen = dest.generation
        self._future = future

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while True:
            done = self._future.done()
            n = os.readv(self._fd, [b])
            if self._dest.generation != self._gen:
                raise Restarted()
            if n or done:
                if not n:
                    self._future.result()  # the download's error, if it failed
                return n
            time.sleep(POLL_S)

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
