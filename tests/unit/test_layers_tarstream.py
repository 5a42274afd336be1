"""executor.layers.tarstream reads what tarfile (and GNU tar) write, field for field, and refuses
malformed headers with a LayerError; the chunked decompressor feeds it in any chunking."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile

import pytest

from executor.errors import LayerError
from executor.layers.decompress import ChunkStream
from executor.layers.tarstream import DIR, REG, TarReader


def _archive(fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        def add(name, kind=tarfile.REGTYPE, data=b"", **kw):
            ti = tarfile.TarInfo(name)
            ti.type, ti.size = kind, len(data) if kind == tarfile.REGTYPE else 0
            ti.mode, ti.uid, ti.gid, ti.mtime = kw.get("mode", 0o644), kw.get("uid", 0), kw.get("gid", 0), 1_700_000_000
            for k, v in kw.items():
                setattr(ti, k, v)
            tf.addfile(ti, io.BytesIO(data) if data else None)
        add("dir", tarfile.DIRTYPE, mode=0o1755)
        add("dir/file", data=b"x" * 1000, mode=0o4755, uid=1000, gid=2000)
        add("d" * 50 + "/" + "long" * 20 + "/name", data=b"long name")  # > 100 bytes: GNU L, ustar prefix or pax path
        add("link", tarfile.SYMTYPE, linkname="t" * 150 if fmt != tarfile.USTAR_FORMAT else "target")
        add("hard", tarfile.LNKTYPE, linkname="dir/file")
        add("fifo", tarfile.FIFOTYPE)
        add("dev", tarfile.CHRTYPE, devmajor=1, devminor=3)
        add("big-ids", data=b"y", uid=3_000_000 if fmt != tarfile.USTAR_FORMAT else 7)
        add("empty")
    return buf.getvalue()


def _fields_tarfile(data: bytes):
    out = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r|") as tf:
        for m in tf:
            content = tf.extractfile(m).read() if m.isreg() else b""
            out.append((m.name.rstrip("/"), m.mode & 0o7777, m.uid, m.gid, int(m.mtime), m.linkname,
                        (m.devmajor, m.devminor) if m.ischr() else (0, 0), content))
    return out


def _fields_ours(data: bytes, chunk: int):
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)]
    r = TarReader(lambda: pieces.pop(0) if pieces else b"")
    out = []
    for m in r:
        content = b"".join(bytes(v) for v in r.data()) if m.type == REG else b""
        out.append((m.name.rstrip("/"), m.mode, m.uid, m.gid, int(m.mtime), m.linkname,
                    (m.devmajor, m.devminor), content))
    return out


@pytest.mark.parametrize("fmt, chunk", [(f, c) for f in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT)
                                          for c in (511, 4096, 1 << 20)] + [(tarfile.PAX_FORMAT, 1)])
def test_fields_match_tarfile(fmt, chunk):
    data = _archive(fmt)
    assert _fields_ours(data, chunk) == _fields_tarfile(data)


def test_gnu_tar_archive_with_global_header_and_xattrs(tmp_path):
    src = tmp_path / "src"
    (src / "a").mkdir(parents=True)
    (src / "a" / "f").write_bytes(b"hello")
    try:
        os.setxattr(src / "a" / "f", "user.k", b"\x00\xff\x01")
    except OSError:
        pass  # the filesystem refuses user xattrs: the archive then has none (checked below)
    raw = subprocess.run(["tar", "-C", str(src), "--format=posix", "--xattrs", "--pax-option=globexthdr.name=g",
                          "--pax-option=comment=hi", "-cf", "-", "a"], check=True, capture_output=True).stdout
    pieces = [raw]
    r = TarReader(lambda: pieces.pop() if pieces else b"")
    got = {m.name: (m.type, b"".join(bytes(v) for v in r.data()), m.xattrs) for m in r}
    assert got["a/f"][:2] == (REG, b"hello") and got["a"][0] == DIR
    if got["a/f"][2]:  # the filesystem took the user xattr
        assert got["a/f"][2] == [("user.k", b"\x00\xff\x01")]


def test_base256_numbers_and_sparse_entries_are_skipped():
    ti = tarfile.TarInfo("big-uid")
    ti.uid, ti.size = 1 << 40, 3  # GNU format writes this base-256
    sp = tarfile.TarInfo("sparse")
    sp.type, sp.size = tarfile.GNUTYPE_SPARSE, 512
    tail = tarfile.TarInfo("after")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.addfile(ti, io.BytesIO(b"abc"))
        tf.addfile(sp, io.BytesIO(b"s" * 512))
        tf.addfile(tail)
    pieces = [buf.getvalue()]
    r = TarReader(lambda: pieces.pop() if pieces else b"")
    ms = [(m.name, m.uid, m.sparse) for m in r]
    assert ms == [("big-uid", 1 << 40, False), ("sparse", 0, True), ("after", 0, False)]


@pytest.mark.parametrize("damage, message", [
    (lambda d: d[:148] + b"1234567\0" + d[156:], "bad checksum"),
    (lambda d: b"", "empty file"),
    (lambda d: d[:700], "truncated"),
    (lambda d: d[:300], "truncated tar header"),
])
def test_malformed_archives_raise(damage, message):
    ti = tarfile.TarInfo("f")
    ti.size = 400
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        tf.addfile(ti, io.BytesIO(b"z" * 400))
    pieces = [damage(buf.getvalue())]
    r = TarReader(lambda: pieces.pop() if pieces else b"")
    with pytest.raises(LayerError, match=message):
        for _ in r:
            list(r.data())


def test_chunk_stream_hashes_every_byte_and_reports_corruption():
    raw = _archive(tarfile.PAX_FORMAT) + b"\0" * 5000
    h = hashlib.sha256()
    with ChunkStream(io.BytesIO(gzip.compress(raw)), hasher=h) as cs:
        assert cs.drain() == len(raw)
    assert h.hexdigest() == hashlib.sha256(raw).hexdigest()
    with ChunkStream(io.BytesIO(gzip.compress(raw)[:-30])) as cs, pytest.raises(LayerError, match="truncated"):
        cs.drain()
