"""A streaming reader of tar archives for layer extraction: headers parsed with little Python
work per entry, file data handed out as views of the decompressed chunks (no copy).

Formats (POSIX.1-2001 pax, ustar, GNU; what Go's archive/tar, GNU tar, umoci and Python's
tarfile write): 512-byte headers checked against their checksum (unsigned or signed sum);
octal or base-256 numbers; the ustar ``prefix`` field; GNU long names/links (``L``/``K``);
pax extended headers (``x``, and global ``g`` ones applying to every later entry) with
``path``, ``linkpath``, ``size``, ``mtime`` (sub-second), ``uid``, ``gid`` and
``SCHILY.xattr.*``. The archive ends at the first all-zero header (or at the end of the
stream after a complete entry). Data of regular files and of unknown types is skipped in
512-byte blocks as tarfile does; GNU sparse entries (type ``S`` and pax ``GNU.sparse.*``)
are skipped whole and reported through :attr:`Member.sparse`.

Everything in an entry is untrusted: names are returned as decoded (UTF-8, undecodable bytes
kept through ``surrogateescape``) and must be cleaned by the caller. A bad checksum, a bad
number, a truncated header or data, an empty stream or an extended header over
:data:`MAX_META` bytes raise :class:`executor.errors.LayerError` ("malformed layer: ...").
"""

from __future__ import annotations

import struct
from typing import Callable, Iterator

from executor.errors import LayerError

BLOCK = 512
#: Largest pax extended header or GNU long name/link accepted (bytes).
MAX_META = 16 << 20

REG, AREG, LNK, SYM, CHR, BLK, DIR, FIFO, CONT = b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7"
GNU_LONGNAME, GNU_LONGLINK, GNU_SPARSE, PAX_LOCAL, PAX_GLOBAL, SOLARIS_PAX = b"L", b"K", b"S", b"x", b"g", b"X"
#: Types whose entries carry no data (their size field is ignored, as by tarfile).
_NO_DATA = frozenset((LNK, SYM, CHR, BLK, DIR, FIFO))
_ZERO_BLOCK = bytes(BLOCK)
_POSIX_MAGIC = b"ustar\x00"  # POSIX ustar/pax; GNU headers say "ustar  \0" and have no prefix field
_SIGNED = struct.Struct("148b8x356b")
_XATTR = "SCHILY.xattr."


class Member:
    """One tar entry. ``type``: the one-byte type flag (``b"0"`` regular, ``b"5"`` directory...,
    ``AREG``/``CONT`` normalised to ``REG``); ``mode``: permission bits incl. setuid/setgid/sticky;
    ``mtime``: seconds (int, or float from a pax ``mtime``); ``xattrs``: ``(name, raw value)``;
    ``sparse``: a GNU sparse entry (its data was not read)."""

    __slots__ = ("name", "type", "mode", "uid", "gid", "size", "mtime", "linkname", "devmajor", "devminor",
                 "xattrs", "sparse")

    def __init__(self, name: str, type: bytes, mode: int, uid: int, gid: int, size: int, mtime: int | float,
                 linkname: str, devmajor: int, devminor: int):
        self.name, self.type, self.mode, self.uid, self.gid = name, type, mode, uid, gid
        self.size, self.mtime, self.linkname = size, mtime, linkname
        self.devmajor, self.devminor = devmajor, devminor
        self.xattrs: list[tuple[str, bytes]] = []
        self.sparse = False

    def isreg(self) -> bool:
        return self.type == REG

    def isdir(self) -> bool:
        return self.type == DIR

    def __repr__(self) -> str:
        return f"Member({self.name!r}, type={self.type!r}, size={self.size})"


def _str(b: bytes) -> str:
    p = b.find(0)
    if p != -1:
        b = b[:p]
    return b.decode("utf-8", "surrogateescape")


def _num(b: bytes) -> int:
    """A numeric header field: NUL/space-terminated octal, or base-256 (first byte 0x80/0xff)."""
    try:
        return int(b.rstrip(b"\0 ") or b"0", 8)  # the common case: digits, then NULs or spaces
    except ValueError:
        pass
    if b and b[0] in (0x80, 0xFF):
        n = int.from_bytes(b[1:], "big")
        return n - (1 << (8 * (len(b) - 1))) if b[0] == 0xFF else n
    p = b.find(0)
    if p != -1:
        b = b[:p]
    try:
        return int(b.strip() or b"0", 8)
    except ValueError:
        raise LayerError(f"malformed layer: invalid number {b!r} in a tar header") from None


def _pax_records(data: bytes) -> dict[str, bytes]:
    """``"LEN key=value\\n"`` records of a pax extended header (POSIX.1-2001 pax, "pax Extended
    Header"); the values stay bytes (xattr values are binary)."""
    out: dict[str, bytes] = {}
    pos, n = 0, len(data)
    while pos < n and data[pos] != 0:
        sp = data.find(b" ", pos)
        try:
            length = int(data[pos:sp]) if sp > pos else 0
        except ValueError:
            length = 0
        end = pos + length
        if length <= 0 or end > n or data[end - 1] != 0x0A:
            raise LayerError("malformed layer: bad pax extended header record")
        key, eq, value = data[sp + 1:end - 1].partition(b"=")
        if not eq:
            raise LayerError("malformed layer: bad pax extended header record")
        out[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return out


class TarReader:
    """Iterates the members of the tar stream delivered by ``next_chunk`` (a callable returning
    the next bytes chunk, ``b""`` at the end). Read a regular member's content with
    :meth:`data` before asking for the next member; what is left unread is skipped."""

    def __init__(self, next_chunk: Callable[[], bytes]):
        self._next = next_chunk
        self._cur = b""
        self._mv = memoryview(b"")
        self._pos = 0
        self._eof = False
        self._left = 0  # data bytes of the current member not yet handed out
        self._pad = 0  # padding after them
        self._global: dict[str, bytes] = {}

    # -- byte source ---------------------------------------------------------------------
    def _fill(self) -> bool:
        """Make the next chunk current; False at the end of the stream."""
        while not self._eof:
            chunk = self._next()
            if not chunk:
                self._eof = True
                break
            self._cur, self._mv, self._pos = chunk, memoryview(chunk), 0
            return True
        return False

    def _read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or fewer only at the end of the stream."""
        end = self._pos + n
        if end <= len(self._cur):
            b = self._cur[self._pos:end]
            self._pos = end
            return b
        parts = [self._cur[self._pos:]]
        got = len(parts[0])
        self._pos = len(self._cur)
        while got < n and self._fill():
            take = min(n - got, len(self._cur))
            parts.append(self._cur[:take])
            self._pos = take
            got += take
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        while n:
            avail = len(self._cur) - self._pos
            if avail == 0:
                if not self._fill():
                    raise LayerError("malformed layer: the tar stream is truncated")
                continue
            k = min(n, avail)
            self._pos += k
            n -= k

    def data(self) -> Iterator[memoryview]:
        """The current member's content as views of the stream's chunks, in order (valid until
        the next call). Raises LayerError when the stream ends early."""
        while self._left:
            avail = len(self._cur) - self._pos
            if avail == 0:
                if not self._fill():
                    raise LayerError("malformed layer: file data is truncated")
                continue
            k = min(self._left, avail)
            view = self._mv[self._pos:self._pos + k]
            self._pos += k
            self._left -= k
            yield view

    # -- headers -------------------------------------------------------------------------
    def _header(self, first: bool) -> bytes | None:
        """The next 512-byte header; None at the end of the archive."""
        hdr = self._read(BLOCK)
        if len(hdr) < BLOCK:
            if not hdr and not first:
                return None  # end of stream right after a complete entry (no end-of-archive blocks)
            raise LayerError("malformed layer: empty file" if not hdr and first else
                             "malformed layer: truncated tar header")
        if hdr == _ZERO_BLOCK:
            return None
        chk = _num(hdr[148:156])
        if chk != sum(hdr) - sum(hdr[148:156]) + 256 and chk != sum(_SIGNED.unpack_from(hdr)) + 256:
            raise LayerError("malformed layer: bad checksum in a tar header")
        return hdr

    def _meta(self, size: int) -> bytes:
        if size < 0 or size > MAX_META:
            raise LayerError(f"malformed layer: extended tar header of {size} bytes (more than {MAX_META})")
        data = self._read(size)
        if len(data) < size:
            raise LayerError("malformed layer: the tar stream is truncated")
        self._skip(-size % BLOCK)
        return data

    def __iter__(self) -> Iterator[Member]:
        first = True
        while True:
            if self._left or self._pad:
                self._skip(self._left + self._pad)
                self._left = self._pad = 0
            m = self._member(first)
            if m is None:
                return
            first = False
            yield m

    def _member(self, first: bool) -> Member | None:
        pax: dict[str, bytes] = {}
        longname = longlink = None
        while True:
            hdr = self._header(first)
            if hdr is None:
                if pax or longname is not None or longlink is not None:
                    raise LayerError("malformed layer: an extended tar header has no entry")
                return None
            first = False
            t = hdr[156:157]
            size = _num(hdr[124:136])
            if t in (PAX_LOCAL, SOLARIS_PAX):
                pax.update(_pax_records(self._meta(size)))
            elif t == PAX_GLOBAL:
                self._global.update(_pax_records(self._meta(size)))
            elif t == GNU_LONGNAME:
                longname = _str(self._meta(size))
            elif t == GNU_LONGLINK:
                longlink = _str(self._meta(size))
            else:
                break
        name = _str(hdr[0:100])
        if t == AREG and name.endswith("/"):
            t = DIR
        prefix = hdr[345:500]
        if t != GNU_SPARSE and prefix[0] and hdr[257:263] == _POSIX_MAGIC:
            name = _str(prefix) + "/" + name
        if longname is not None:
            name = longname
        if longlink is None:
            longlink = _str(hdr[157:257]) if hdr[157] else ""
        m = Member(name, REG if t in (AREG, CONT) else t, _num(hdr[100:108]) & 0o7777, _num(hdr[108:116]),
                   _num(hdr[116:124]), size, _num(hdr[136:148]), longlink, 0, 0)
        if t in (CHR, BLK):
            m.devmajor, m.devminor = _num(hdr[329:337]), _num(hdr[337:345])
        if self._global or pax:
            _apply_pax({**self._global, **pax} if self._global else pax, m)
        if m.size < 0:
            raise LayerError(f"malformed layer: entry {m.name!r} has a negative size")
        if t == GNU_SPARSE:
            m.sparse = True
            ext = hdr[482]
            while ext:  # old GNU sparse: extension blocks of the sparse map follow the header
                blk = self._read(BLOCK)
                if len(blk) < BLOCK:
                    raise LayerError("malformed layer: the tar stream is truncated")
                ext = blk[504]
        if m.type in _NO_DATA:
            if m.type == DIR:
                m.name = m.name.rstrip("/")
            return m
        self._left, self._pad = m.size, -m.size % BLOCK
        return m


def _apply_pax(pax: dict[str, bytes], m: Member) -> None:
    """pax keywords over the header's fields (POSIX.1-2001 pax); unparsable numbers are ignored
    except ``size``, which must be right to find the next header."""
    for key, raw in pax.items():
        if key.startswith(_XATTR):
            m.xattrs.append((key[len(_XATTR):], raw))
        elif key == "path":
            m.name = raw.decode("utf-8", "surrogateescape")
        elif key == "linkpath":
            m.linkname = raw.decode("utf-8", "surrogateescape")
        elif key == "size":
            try:
                m.size = int(raw)
            except ValueError:
                raise LayerError(f"malformed layer: bad pax size {raw!r}") from None
        elif key == "mtime":
            try:
                m.mtime = float(raw)
            except ValueError:
                pass
        elif key in ("uid", "gid"):
            try:
                setattr(m, key, int(raw))
            except ValueError:
                pass
        elif key.startswith("GNU.sparse."):
            m.sparse = True
