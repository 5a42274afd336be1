"""apply_layer semantics on hand-built tars (OCI image-spec layer.md)."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from executor.errors import LayerError
from executor.layers.extract import apply_layer
from tests.support.tars import make_tar


def apply(data: bytes, root: Path, **kw):
    return apply_layer(io.BytesIO(data), root, **kw)


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


def lower(root: Path) -> None:
    """A lower layer: etc/{passwd,group}, usr/bin/{a,b}, usr/lib/x/y, opt/keep."""
    apply(make_tar({"name": "etc", "type": "d"}, {"name": "etc/passwd", "data": b"root"},
                   {"name": "etc/group", "data": b"g"},
                   {"name": "usr/bin/a", "data": b"a"}, {"name": "usr/bin/b", "data": b"b"},
                   {"name": "usr/lib/x/y", "data": b"y"}, {"name": "opt/keep", "data": b"k"}), root)


def test_basic_entries_modes_owners_mtimes(root):
    stats = apply(make_tar(
        {"name": "d", "type": "d", "mode": 0o1777, "mtime": 1_500_000_000},
        {"name": "d/suid", "data": b"#!/bin/sh\n", "mode": 0o4755, "uid": 1000, "gid": 1001, "mtime": 1_400_000_000},
        {"name": "d/ln", "type": "l", "link": "suid", "uid": 7, "gid": 8, "mtime": 1_300_000_000},
        {"name": "d/hard", "type": "h", "link": "d/suid"},
        {"name": "d/fifo", "type": "p", "mode": 0o600},
        {"name": "ro", "type": "d", "mode": 0o555},
        {"name": "ro/f", "data": b"in read-only dir"},
        {"name": "spaced name/ünï €", "data": b"u"},
    ), root)
    assert stats.entries == 8 and stats.whiteouts == 0
    d = os.lstat(root / "d")
    assert stat.S_IMODE(d.st_mode) == 0o1777 and d.st_mtime == 1_500_000_000
    s = os.lstat(root / "d/suid")
    assert stat.S_IMODE(s.st_mode) == 0o4755 and (s.st_uid, s.st_gid) == (1000, 1001)
    assert s.st_mtime == 1_400_000_000 and s.st_nlink == 2
    assert os.lstat(root / "d/hard").st_ino == s.st_ino
    ln = os.lstat(root / "d/ln")
    assert os.readlink(root / "d/ln") == "suid" and (ln.st_uid, ln.st_gid) == (7, 8)
    assert ln.st_mtime == 1_300_000_000
    assert stat.S_ISFIFO(os.lstat(root / "d/fifo").st_mode)
    assert stat.S_IMODE(os.lstat(root / "ro").st_mode) == 0o555
    assert (root / "spaced name/ünï €").read_bytes() == b"u"


def test_devices_created_or_skipped(root):
    stats = apply(make_tar({"name": "dev/null", "type": "c", "dev": (1, 3), "mode": 0o666},
                           {"name": "dev/loop0", "type": "b", "dev": (7, 0), "mode": 0o660}), root)
    if os.geteuid() == 0 and not stats.skipped:
        st = os.lstat(root / "dev/null")
        assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3
        assert stat.S_ISBLK(os.lstat(root / "dev/loop0").st_mode)
    else:
        assert len(stats.skipped) == 2 and "dev/null" in stats.skipped[0]


def test_same_owner_false_keeps_our_ids(root):
    apply(make_tar({"name": "f", "data": b"x", "uid": 1234, "gid": 4321}), root, same_owner=False)
    st = os.lstat(root / "f")
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


def test_xattrs_from_pax(root):
    cap = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"  # cap_net_bind_service+ep
    layer = make_tar({"name": "bin/ping", "data": b"elf", "mode": 0o755,
                      "pax": {"SCHILY.xattr.security.capability": cap.decode("utf-8", "surrogateescape"),
                              "SCHILY.xattr.user.note": "hello",
                              "SCHILY.xattr.trusted.nope": "x" if os.geteuid() else "x"}})
    apply(layer, root)
    assert os.getxattr(root / "bin/ping", "user.note") == b"hello"
    if os.geteuid() == 0:
        assert os.getxattr(root / "bin/ping", "security.capability") == cap


def test_whiteout_deletes_file_and_dir_from_lower(root):
    lower(root)
    stats = apply(make_tar({"name": "etc/.wh.group"}, {"name": "usr/.wh.lib"}, {"name": ".wh.nonexistent"}), root)
    assert stats.whiteouts == 3
    assert not (root / "etc/group").exists() and (root / "etc/passwd").exists()
    assert not (root / "usr/lib").exists() and (root / "usr/bin/a").exists()


def test_whiteout_does_not_delete_same_layer_entry(root):
    apply(make_tar({"name": "x", "data": b"same layer"}, {"name": ".wh.x"}), root)
    assert (root / "x").read_bytes() == b"same layer"


@pytest.mark.parametrize("marker_first", [True, False])
def test_opaque_dir_hides_lower_not_same_layer(root, marker_first):
    lower(root)
    entries = [{"name": "usr", "type": "d"}, {"name": "usr/bin/new", "data": b"n"}, {"name": "usr/top", "data": b"t"}]
    marker = {"name": "usr/.wh..wh..opq"}
    layer = [entries[0], marker, *entries[1:]] if marker_first else [*entries, marker]
    apply(make_tar(*layer), root)
    assert listing(root / "usr") == ["bin", "bin/new", "top"]
    assert (root / "opt/keep").exists()


def test_other_aufs_meta_entries_ignored(root):
    lower(root)
    stats = apply(make_tar({"name": ".wh..wh.plnk", "type": "d"}, {"name": ".wh..wh.plnk/123.456", "data": b"x"}),
                  root)
    assert not (root / ".wh..wh.plnk").exists() and (root / "etc/passwd").exists()
    assert stats.entries == 0


def test_file_replaces_dir_and_dir_replaces_file(root):
    lower(root)
    apply(make_tar({"name": "usr/lib", "data": b"now a file"}, {"name": "etc/passwd", "type": "d", "mode": 0o700}),
          root)
    assert (root / "usr/lib").read_bytes() == b"now a file"
    assert (root / "etc/passwd").is_dir() and stat.S_IMODE(os.lstat(root / "etc/passwd").st_mode) == 0o700


def test_dir_over_dir_merges_and_updates_metadata(root):
    lower(root)
    apply(make_tar({"name": "usr/bin", "type": "d", "mode": 0o711, "uid": 5, "mtime": 1_000_000_000},
                   {"name": "usr/bin/c", "data": b"c"}), root)
    assert listing(root / "usr/bin") == ["a", "b", "c"]
    st = os.lstat(root / "usr/bin")
    assert stat.S_IMODE(st.st_mode) == 0o711 and st.st_uid == 5 and st.st_mtime == 1_000_000_000


def test_symlink_replaced_by_dir_and_back(root):
    apply(make_tar({"name": "target", "type": "d"}, {"name": "target/t", "data": b"t"},
                   {"name": "lnk", "type": "l", "link": "target"}), root)
    apply(make_tar({"name": "lnk", "type": "d"}, {"name": "lnk/inside", "data": b"i"}), root)
    assert (root / "lnk").is_dir() and not (root / "lnk").is_symlink()
    assert listing(root / "target") == ["t"] and listing(root / "lnk") == ["inside"]
    apply(make_tar({"name": "lnk", "type": "l", "link": "target"}), root)
    assert os.readlink(root / "lnk") == "target" and listing(root / "target") == ["t"]


def test_parent_symlink_inside_root_is_followed_like_chroot(root):
    apply(make_tar({"name": "usr/bin", "type": "d"}, {"name": "bin", "type": "l", "link": "usr/bin"},
                   {"name": "bin/sh", "data": b"sh"}, {"name": "abs", "type": "l", "link": "/usr"},
                   {"name": "abs/lib/x", "data": b"x"}), root)
    assert (root / "usr/bin/sh").read_bytes() == b"sh"
    assert (root / "usr/lib/x").read_bytes() == b"x"


def test_file_over_hardlinked_lower_file_does_not_change_other_link(root):
    apply(make_tar({"name": "a", "data": b"orig"}, {"name": "b", "type": "h", "link": "a"}), root)
    apply(make_tar({"name": "b", "data": b"new"}), root)
    assert (root / "a").read_bytes() == b"orig" and (root / "b").read_bytes() == b"new"


def test_missing_parents_created_and_root_entry(root):
    os.chmod(root, 0o700)
    apply(make_tar({"name": "./", "type": "d", "mode": 0o755, "mtime": 1_234_567_890},
                   {"name": "./a/b/c/file", "data": b"deep"}), root)
    assert (root / "a/b/c/file").read_bytes() == b"deep"
    st = os.lstat(root)
    assert stat.S_IMODE(st.st_mode) == 0o755 and st.st_mtime == 1_234_567_890


def test_parent_is_regular_file_is_an_error(root):
    with pytest.raises(LayerError, match="not a directory"):
        apply(make_tar({"name": "f", "data": b"x"}, {"name": "f/g", "data": b"y"}), root)


def test_hardlink_to_missing_or_dir(root):
    with pytest.raises(LayerError, match="does not exist"):
        apply(make_tar({"name": "h", "type": "h", "link": "nope"}), root)
    with pytest.raises(LayerError, match="directory"):
        apply(make_tar({"name": "d", "type": "d"}, {"name": "h", "type": "h", "link": "d"}), root)


@pytest.mark.parametrize("codec", ["none", "gzip", "zstd", "gzip-multi"])
def test_compressions_sniffed(root, codec):
    raw = make_tar({"name": "f", "data": os.urandom(300_000)}, {"name": "g", "data": b"g" * 100_000})
    blob = {"none": lambda b: b, "gzip": gzip.compress, "zstd": zstandard.ZstdCompressor().compress,
            "gzip-multi": lambda b: gzip.compress(b[:7000]) + gzip.compress(b[7000:])}[codec](raw)
    apply(blob, root)
    assert (root / "g").read_bytes() == b"g" * 100_000 and (root / "f").stat().st_size == 300_000


def test_empty_layer(root):
    assert apply(make_tar(), root).entries == 0
    assert apply(gzip.compress(make_tar()), root).entries == 0


def test_large_file_streams(root):
    size = 64 * 1024 * 1024 + 17

    class Gen(io.RawIOBase):
        """Produces a tar with one large file without ever holding it in memory."""

        def __init__(self):
            ti = tarfile.TarInfo("big")
            ti.size = size
            self.parts = [ti.tobuf(tarfile.PAX_FORMAT)]
            self.left = size
            self.tail = b"\0" * ((512 - size % 512) % 512) + b"\0" * 1024

        def readable(self):
            return True

        def readinto(self, b):
            if self.parts:
                d = self.parts.pop(0)
            elif self.left:
                n = min(len(b), self.left, 1 << 20)
                self.left -= n
                d = b"z" * n
            else:
                d, self.tail = self.tail[: len(b)], self.tail[len(b):]
            b[: len(d)] = d
            return len(d)

    apply_layer(io.BufferedReader(Gen()), root)
    assert (root / "big").stat().st_size == size
