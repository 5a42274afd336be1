"""A small, fast, deterministic POSIX.1-2001 (PAX) tar *writer*.

Used instead of :mod:`tarfile` for writing layers because it (a) streams straight into
a sink with one buffer (tarfile's stream mode re-copies its buffer on every append),
(b) writes xattr values as raw bytes without the ``hdrcharset=BINARY`` record that
GNU tar warns about, and (c) gives full control over every header byte so layers are
reproducible. Format reference: POSIX.1-2001 "pax Interchange Format" and the ustar
header it extends; PAX records are emitted only when the ustar fields cannot hold a
value (long or non-ASCII names, big ids/sizes/mtimes) or for ``SCHILY.xattr.*``.
Reading is left to :mod:`tarfile`.
"""

from __future__ import annotations

import os
from typing import Protocol

BLOCK = 512
REGTYPE = b"0"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
XHDTYPE = b"x"

_FLUSH_AT = 256 * 1024
_COPY_CHUNK = 1 << 20
_ZERO_BLOCK = bytes(BLOCK)


class Sink(Protocol):
    def write(self, b) -> int: ...


def _octal(value: int, width: int) -> bytes | None:
    """``width``-byte NUL-terminated zero-padded octal field, or None when it does not fit."""
    if value < 0:
        return None
    s = b"%0*o" % (width - 1, value)
    if len(s) > width - 1:
        return None
    return s + b"\0"


def _pax_record(key: bytes, value: bytes) -> bytes:
    """One ``"%d %s=%s\\n"`` record whose leading length counts itself."""
    body = b" " + key + b"=" + value + b"\n"
    n = len(body) + 1
    while True:
        rec = str(n).encode() + body
        if len(rec) == n:
            return rec
        n = len(rec)


def ustar_block(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes,
                linkname: bytes = b"", devmajor: int = 0, devminor: int = 0) -> bytes:
    """One 512-byte ustar header; caller guarantees fields fit (see :func:`header`)."""
    parts = [
        name.ljust(100, b"\0"),
        _octal(mode, 8),
        _octal(uid, 8),
        _octal(gid, 8),
        _octal(size, 12),
        _octal(mtime, 12),
        b"        ",  # checksum placeholder
        typeflag,
        linkname.ljust(100, b"\0"),
        b"ustar\x0000",
        b"\0" * 32,  # uname: empty, numeric ids only
        b"\0" * 32,  # gname
        _octal(devmajor, 8),
        _octal(devminor, 8),
        b"\0" * 155,  # prefix unused: long names go into PAX "path"
        b"\0" * 12,
    ]
    buf = bytearray(b"".join(parts))  # type: ignore[arg-type]
    chk = sum(buf)
    buf[148:156] = b"%06o\0 " % chk
    return bytes(buf)


def header(name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes,
           linkname: bytes = b"", devmajor: int = 0, devminor: int = 0,
           xattrs: dict[str, bytes] | None = None) -> bytes:
    """Header block(s) for one entry: an optional PAX 'x' header plus the ustar header.

    ``name``/``linkname`` are raw path bytes (directories should end in ``/``);
    ``mtime`` in whole seconds; ``xattrs`` maps attribute names to raw values
    (written as ``SCHILY.xattr.NAME``). Deterministic: same input, same bytes.
    """
    recs: list[bytes] = []
    if len(name) > 100 or not name.isascii():
        recs.append(_pax_record(b"path", name))
        name = _ascii_stub(name)
    if len(linkname) > 100 or not linkname.isascii():
        recs.append(_pax_record(b"linkpath", linkname))
        linkname = _ascii_stub(linkname)
    fields = {b"uid": (uid, 8), b"gid": (gid, 8), b"size": (size, 12), b"mtime": (mtime, 12)}
    vals = {}
    for k, (v, w) in fields.items():
        if _octal(v, w) is None:
            recs.append(_pax_record(k, str(v).encode()))
            vals[k] = 0
        else:
            vals[k] = v
    if xattrs:
        for k in sorted(xattrs):
            recs.append(_pax_record(b"SCHILY.xattr." + k.encode("utf-8", "surrogateescape"), xattrs[k]))
    out = b""
    if recs:
        data = b"".join(recs)
        out = ustar_block(b"././@PaxHeader", 0o644, 0, 0, len(data), 0, XHDTYPE) + data + _pad(len(data))
    return out + ustar_block(name, mode & 0o7777, vals[b"uid"], vals[b"gid"], vals[b"size"], vals[b"mtime"],
                             typeflag, linkname, devmajor, devminor)


def _ascii_stub(raw: bytes) -> bytes:
    """What goes into a ustar field whose real value is in a PAX record: printable ASCII, 100 bytes."""
    return bytes(c if 32 <= c < 127 else 0x5F for c in raw[:100])


def _pad(n: int) -> bytes:
    r = n % BLOCK
    return b"" if r == 0 else bytes(BLOCK - r)


class TarWriter:
    """Buffered tar stream into ``sink`` (anything with ``write(bytes)``).

    ``add(header_bytes)`` for entries without data; ``add_file(header_bytes, fd, size)``
    copies exactly ``size`` bytes from ``fd`` (raising OSError if the file is shorter
    now, i.e. it changed under us). ``close()`` writes the two zero end blocks and
    flushes; it does not close the sink.
    """

    def __init__(self, sink: Sink):
        self.sink = sink
        self.buf = bytearray()

    def _flush(self) -> None:
        if self.buf:
            self.sink.write(bytes(self.buf))
            self.buf.clear()

    def add(self, hdr: bytes) -> None:
        self.buf += hdr
        if len(self.buf) >= _FLUSH_AT:
            self._flush()

    def add_file(self, hdr: bytes, fd: int, size: int) -> None:
        self.buf += hdr
        left = size
        if size <= _FLUSH_AT:
            while left:
                chunk = os.read(fd, left)
                if not chunk:
                    raise OSError(f"file shrank while being archived ({size - left} of {size} bytes read)")
                self.buf += chunk
                left -= len(chunk)
        else:
            self._flush()
            while left:
                chunk = os.read(fd, min(left, _COPY_CHUNK))
                if not chunk:
                    raise OSError(f"file shrank while being archived ({size - left} of {size} bytes read)")
                self.sink.write(chunk)
                left -= len(chunk)
        self.buf += _pad(size)
        if len(self.buf) >= _FLUSH_AT:
            self._flush()

    def close(self) -> None:
        self.buf += _ZERO_BLOCK * 2
        self._flush()
