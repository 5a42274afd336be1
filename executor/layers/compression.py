"""Layer compression kinds and how to recognise them from a blob's first bytes.

The names are the media-type suffixes of the OCI image-spec (media-types.md:
``application/vnd.oci.image.layer.v1.tar+gzip`` / ``+zstd``; no suffix = plain tar).
"""

from __future__ import annotations

import enum
import io
from typing import BinaryIO, Protocol

#: RFC 1952 member magic (ID1 ID2).
GZIP_MAGIC = b"\x1f\x8b"
#: RFC 8878 frame magic number 0xFD2FB528, little-endian.
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Compression(enum.StrEnum):
    """How a layer blob is compressed.

    A ``StrEnum``: members are ``str`` instances equal to their value, so
    ``Compression.GZIP == "gzip"`` and code that passes or compares plain strings keeps
    working; ``str(Compression.ZSTD)`` is ``"zstd"``.
    """

    GZIP = "gzip"
    ZSTD = "zstd"
    NONE = "none"

    @classmethod
    def parse(cls, value: "str | Compression") -> "Compression":
        """``value`` as a member (exact, lower-case name). Raises ValueError naming the choices."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown layer compression {value!r} (use gzip, zstd or none)") from None

    @property
    def media_type_suffix(self) -> str:
        """``"+gzip"``, ``"+zstd"`` or ``""`` (appended to ``...image.layer.v1.tar``)."""
        return "" if self is Compression.NONE else f"+{self.value}"


class Sink(Protocol):
    """Where an encoder puts the compressed bytes (the digesting writer's hashing sink)."""

    def write(self, b: bytes) -> None:
        """Take ``b`` (compressed bytes, in stream order); the encoder may reuse nothing of it."""


class Encoder(Protocol):
    """A streaming compressor for one layer blob, writing into a :class:`Sink`.

    ``write`` takes uncompressed bytes (bytes-like, the tar stream in order); ``close``
    flushes the rest of the stream (trailer, checksum) into the sink; ``abort`` stops any
    worker threads without finishing the stream (after an error). Neither closes the sink.
    """

    def write(self, b) -> None: ...

    def close(self) -> None: ...

    def abort(self) -> None: ...


def sniff(prefix: bytes) -> Compression:
    """Compression of a blob from its first bytes (at least 4 for zstd): gzip, zstd or none."""
    if prefix.startswith(GZIP_MAGIC):
        return Compression.GZIP
    if prefix.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    return Compression.NONE


def read_prefix(f: BinaryIO, n: int) -> bytes:
    """Up to ``n`` first bytes of ``f`` (fewer only at end of stream), for :func:`sniff`."""
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


class Prefixed(io.RawIOBase):
    """A raw reader that yields ``prefix`` and then the rest of ``f`` (puts sniffed bytes back)."""

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
