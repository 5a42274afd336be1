"""zstd for layer blobs (RFC 8878 frames, via the ``zstandard`` bindings to libzstd)."""

from __future__ import annotations

import io
from typing import BinaryIO

import zstandard

from executor.errors import LayerError
from executor.layers.compression import Sink

DEFAULT_ZSTD_LEVEL = 3
MIN_ZSTD_LEVEL, MAX_ZSTD_LEVEL = -7, 22


class ZstdWriter:
    """An :class:`~executor.layers.compression.Encoder`: one zstd frame with a content
    checksum written to ``sink``. ``level`` None means :data:`DEFAULT_ZSTD_LEVEL`; outside
    -7..22 is a ValueError.

    ``threads > 0`` uses libzstd's own worker threads; its multi-threaded output is the
    same for any N > 0 but differs from the single-threaded one.
    """

    def __init__(self, sink: Sink, level: int | None, threads: int):
        lvl = DEFAULT_ZSTD_LEVEL if level is None else level
        if not MIN_ZSTD_LEVEL <= lvl <= MAX_ZSTD_LEVEL:
            raise ValueError(f"zstd level must be {MIN_ZSTD_LEVEL}..{MAX_ZSTD_LEVEL}, got {lvl}")
        self.sink = sink
        params = zstandard.ZstdCompressionParameters.from_level(lvl, threads=threads, write_checksum=True)
        self.c = zstandard.ZstdCompressor(compression_params=params).compressobj()

    def write(self, b) -> None:
        self.sink.write(self.c.compress(b))

    def close(self) -> None:
        self.sink.write(self.c.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH))

    def abort(self) -> None:
        pass


class ZstdReader(io.RawIOBase):
    """Streaming zstd decoder of ``raw`` (concatenated frames read across), translating
    ``zstandard.ZstdError`` into :class:`executor.errors.LayerError`."""

    def __init__(self, raw: BinaryIO):
        super().__init__()
        self._r = zstandard.ZstdDecompressor().stream_reader(raw, read_size=256 * 1024, read_across_frames=True)

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
