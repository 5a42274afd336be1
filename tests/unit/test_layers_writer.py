"""write_layer / DigestingWriter: digests, tar content and round trips through apply_layer."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
import time
import zlib
from pathlib import Path

import pytest
import zstandard

from executor.fs.snapshot import ChangeSet, FsIndex, diff
from executor.layers import compress
from executor.layers.compress import DigestingWriter, open_decompressed
from executor.layers.extract import apply_layer
from executor.layers.writer import directory_changeset, plan_entries, write_layer

CAP = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


def tar_members(blob: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=open_decompressed(io.BytesIO(blob)), mode="r|") as tf:
        return list(tf)


def tree(root: Path, mtimes: bool = True) -> dict[str, tuple]:
    """Everything observable about a tree except inode numbers and the root's own mtime."""
    out = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in sorted(dirnames + filenames):
            p = Path(dirpath, n)
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            rec = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid]
            if mtimes:
                rec.append(int(st.st_mtime))
            if stat.S_ISLNK(st.st_mode):
                rec.append(os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                rec.append(p.read_bytes())
                if st.st_nlink > 1:
                    rec.append(("link-group", inodes.setdefault(st.st_ino, rel)))
            if not stat.S_ISLNK(st.st_mode):
                rec.append(tuple(sorted((k, os.getxattr(p, k)) for k in os.listxattr(p) if k != "security.selinux")))
            out[rel] = tuple(rec)
    return out


# -- DigestingWriter -------------------------------------------------------------------

@pytest.mark.parametrize("codec,threads", [("gzip", 0), ("gzip", 2), ("zstd", 0), ("zstd", 2), ("none", 0)])
def test_digesting_writer_digests(codec, threads):
    data = os.urandom(3_000_000) + b"a" * 3_000_000
    out = io.BytesIO()
    w = DigestingWriter(out, codec, threads=threads)
    for i in range(0, len(data), 65_536 + 7):
        w.write(data[i: i + 65_536 + 7])
    d = w.close()
    blob = out.getvalue()
    assert d.digest == sha(blob) and d.size == len(blob)
    assert d.diff_id == sha(data) and d.uncompressed_size == len(data)
    if codec == "gzip":
        assert gzip.decompress(blob) == data
        # exactly one gzip member (Go's gzip.Reader with multistream off would stop early otherwise)
        dec = zlib.decompressobj(31)
        assert dec.decompress(blob) == data and dec.eof and dec.unused_data == b""
    elif codec == "zstd":
        assert zstandard.ZstdDecompressor().decompressobj().decompress(blob) == data
    else:
        assert blob == data and d.digest == d.diff_id
    assert open_decompressed(io.BytesIO(blob)).read() == data


def test_gzip_threaded_output_independent_of_thread_count():
    data = os.urandom(1_000_000) + bytes(range(256)) * 20_000
    blobs = set()
    for t in (1, 2, 3):
        out = io.BytesIO()
        w = DigestingWriter(out, "gzip", threads=t)
        w.write(data)
        blobs.add(w.close().digest)
    assert len(blobs) == 1


def test_gzip_level_is_honoured_and_deterministic():
    data = (b"hello layer " * 50_000) + os.urandom(10_000)
    sizes = {}
    for lvl in (1, 9):
        outs = []
        for _ in range(2):
            out = io.BytesIO()
            w = DigestingWriter(out, "gzip", level=lvl)
            w.write(data)
            w.close()
            outs.append(out.getvalue())
        assert outs[0] == outs[1]
        sizes[lvl] = len(outs[0])
    assert sizes[9] < sizes[1]
    with pytest.raises(ValueError):
        DigestingWriter(io.BytesIO(), "gzip", level=12)
    with pytest.raises(ValueError):
        DigestingWriter(io.BytesIO(), "lz4")


def test_empty_stream():
    for codec in ("gzip", "zstd", "none"):
        out = io.BytesIO()
        d = DigestingWriter(out, codec).close()
        assert d.diff_id == sha(b"") and d.digest == sha(out.getvalue())
        assert open_decompressed(io.BytesIO(out.getvalue())).read() == b""


# -- write_layer -----------------------------------------------------------------------

@pytest.fixture
def base(tmp_path: Path) -> Path:
    r = tmp_path / "src"
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0\n")
    (r / "usr/lib/x").mkdir(parents=True)
    (r / "usr/lib/x/y").write_text("y")
    (r / "opt").mkdir()
    return r


def build_changes(r: Path) -> None:
    """Everything a build step could do."""
    (r / "app").mkdir(mode=0o750)
    (r / "app/empty-dir").mkdir()
    (r / "app/bin").write_bytes(b"\x7fELF" + os.urandom(100_000))
    os.chmod(r / "app/bin", 0o4755)
    (r / "app/sticky").mkdir()
    os.chmod(r / "app/sticky", 0o1777)
    (r / "app/ünï cødé name.txt").write_text("unicode")
    (r / "app" / ("n" * 150)).write_text("long name")
    os.symlink("bin", r / "app/link")
    os.symlink("/nonexistent/abs", r / "app/dangling")
    os.link(r / "app/bin", r / "app/hard")
    os.mkfifo(r / "app/fifo")
    os.setxattr(r / "app/bin", "user.origin", b"test \xff binary")
    if os.geteuid() == 0:
        os.chown(r / "app/bin", 1000, 1000)
        os.chmod(r / "app/bin", 0o4755)  # chown cleared setuid
        os.setxattr(r / "app/bin", "security.capability", CAP)  # after chown, which drops file caps
        os.lchown(r / "app/link", 33, 44)
        os.chown(r / "app/empty-dir", 5, 6)
    os.utime(r / "app/empty-dir", (1_000_000_000, 1_000_000_000))
    (r / "etc/passwd").write_text("root:x:0:0\napp:x:1000:1000\n")
    shutil.rmtree(r / "usr/lib/x")


@pytest.mark.parametrize("codec", ["gzip", "zstd", "none"])
def test_round_trip_reproduces_tree(base, tmp_path, codec):
    dst = tmp_path / "dst"
    shutil.copytree(base, dst, symlinks=True)
    (dst / "usr/lib/x/lower-only").write_text("must be whited out")
    before = FsIndex.scan(base)
    build_changes(base)
    cs = diff(before, FsIndex.scan(base))
    assert cs.deleted == ("usr/lib/x",)
    res = write_layer(base, cs, tmp_path / "layer.blob", compression=codec)
    blob = res.path.read_bytes()
    assert res.digest == sha(blob) and res.size == len(blob)
    assert res.diff_id == sha(open_decompressed(io.BytesIO(blob)).read())
    assert res.media_type.endswith({"gzip": "+gzip", "zstd": "+zstd", "none": ".tar"}[codec])
    stats = apply_layer(io.BytesIO(blob), dst)
    assert stats.whiteouts == 1 and stats.skipped == []
    for r in (base, dst):
        os.utime(r / "usr", (0, 0)); os.utime(r / "usr/lib", (0, 0))  # touched by rmtree locally
    assert tree(dst) == tree(base)


def test_tar_format_details(base, tmp_path):
    before = FsIndex.scan(base)
    build_changes(base)
    cs = diff(before, FsIndex.scan(base))
    res = write_layer(base, cs, tmp_path / "l.tgz")
    ms = tar_members(res.path.read_bytes())
    names = [m.name for m in ms]
    assert names == sorted(names, key=lambda n: n.split("/"))
    by = {m.name: m for m in ms}
    assert by["usr/lib/.wh.x"].isreg() and by["usr/lib/.wh.x"].mode == 0 and by["usr/lib/.wh.x"].size == 0
    assert "usr" in by and by["usr"].isdir()  # parent of the whiteout
    assert by["app/hard"].islnk() and by["app/hard"].linkname == "app/bin"
    assert by["app/link"].issym() and by["app/link"].linkname == "bin"
    assert all(m.uname == "" and m.gname == "" for m in ms)
    assert by["app/bin"].pax_headers["SCHILY.xattr.user.origin"].encode("utf-8", "surrogateescape") == \
        b"test \xff binary"
    if os.geteuid() == 0:
        assert by["app/bin"].uid == 1000
        raw = by["app/bin"].pax_headers["SCHILY.xattr.security.capability"]
        assert raw.encode("utf-8", "surrogateescape") == CAP
    assert not any(k in m.pax_headers for m in ms for k in ("atime", "ctime"))
    assert res.media_type == "application/vnd.oci.image.layer.v1.tar+gzip"


def test_docker_media_type_and_zstd_needs_oci(base, tmp_path):
    cs = directory_changeset(base, ["etc"])
    assert write_layer(base, cs, tmp_path / "d.tgz", oci=False).media_type == \
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    with pytest.raises(ValueError):
        write_layer(base, cs, tmp_path / "d.zst", oci=False, compression="zstd")


def test_reproducible_mtime_clamp_and_determinism(base, tmp_path):
    build_changes(base)
    cs = directory_changeset(base, ["app", "etc/passwd"])
    r1 = write_layer(base, cs, tmp_path / "a", mtime=1_000)
    time.sleep(0.01)
    os.utime(base / "etc/passwd")  # a touch between builds must not matter
    r2 = write_layer(base, cs, tmp_path / "b", mtime=1_000)
    assert (r1.digest, r1.diff_id) == (r2.digest, r2.diff_id)
    assert all(m.mtime <= 1_000 for m in tar_members(r1.path.read_bytes()))


def test_dir_in_changed_writes_only_the_dir(base, tmp_path):
    cs = ChangeSet(changed=("usr/lib",), deleted=())
    names = [m.name for m in tar_members(write_layer(base, cs, tmp_path / "l").path.read_bytes())]
    assert names == ["usr", "usr/lib"]
    names = [m.name for m in tar_members(
        write_layer(base, cs, tmp_path / "l2", include_parents=False).path.read_bytes())]
    assert names == ["usr/lib"]


def test_directory_changeset_resolves_symlinked_parent(base):
    (base / "usr/bin").mkdir()
    os.symlink("usr/bin", base / "bin")
    (base / "usr/bin/tool").write_text("t")
    (base / "usr/bin/sub").mkdir()
    (base / "usr/bin/sub/f").write_text("f")
    assert directory_changeset(base, ["bin/tool"]).changed == ("usr/bin/tool",)
    assert directory_changeset(base, ["/bin"]).changed == ("bin",)
    assert directory_changeset(base, ["bin/"]).changed == ("bin",)  # a symlink itself: not followed
    assert directory_changeset(base, ["usr/bin"]).changed == ("usr/bin", "usr/bin/sub", "usr/bin/sub/f",
                                                            "usr/bin/tool")
    with pytest.raises(FileNotFoundError):
        directory_changeset(base, ["nope"])


def test_sockets_skipped_and_vanished_paths_ignored(base, tmp_path):
    import socket
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(base / "sock"))
    try:
        cs = ChangeSet(changed=("gone", "sock", "etc/passwd"), deleted=())
        names = [m.name for m in tar_members(write_layer(base, cs, tmp_path / "l").path.read_bytes())]
        assert names == ["etc", "etc/passwd"]
    finally:
        s.close()


def test_plan_entries_whiteouts_sorted_with_parents():
    cs = ChangeSet(changed=("a/b",), deleted=("a/c/d", "z"))
    items = [(i.path, i.whiteout) for i in plan_entries(cs)]
    assert items == [("a", False), ("a/b", False), ("a/c", False), ("a/c/.wh.d", True), (".wh.z", True)] or \
        items == sorted(items, key=lambda x: x[0].split("/"))


def test_failed_write_removes_partial_file(base, tmp_path):
    cs = ChangeSet(changed=("etc/passwd",), deleted=())
    with pytest.raises(ValueError):
        write_layer(base, cs, tmp_path / "x", compression="bogus")
    assert not (tmp_path / "x").exists()


def test_odd_names_and_big_ids_round_trip(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    raw_name = b"bad-\xff\xfe-utf8"  # not valid UTF-8: stored as raw bytes in PAX path
    (src / os.fsdecode(raw_name)).write_text("raw")
    long_dir = src / ("d" * 120) / ("e" * 200)
    long_dir.mkdir(parents=True)
    (long_dir / ("f" * 99)).write_text("long")
    os.symlink("t" * 150, src / "longlink")
    (src / ("x" * 100)).write_text("exactly 100")
    if os.geteuid() == 0:
        os.chown(src / ("x" * 100), 3_000_000, 4_000_000)  # beyond the 7-digit octal ustar field
    cs = directory_changeset(src, os.listdir(src))
    res = write_layer(src, cs, tmp_path / "l.tar", compression="none")
    dst = tmp_path / "dst"
    dst.mkdir()
    apply_layer(open(res.path, "rb"), dst)
    assert tree(dst) == tree(src)
    if os.geteuid() == 0:
        assert os.lstat(dst / ("x" * 100)).st_uid == 3_000_000


def test_gnu_tar_reads_our_layers_without_warnings(base, tmp_path):
    import subprocess
    if shutil.which("tar") is None:
        pytest.skip("GNU tar missing")
    build_changes(base)
    cs = directory_changeset(base, ["app", "etc", "usr"])
    res = write_layer(base, cs, tmp_path / "l.tar.gz")
    p = subprocess.run(["tar", "-tvzf", str(res.path)], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == ""
    assert "app/hard link to app/bin" in p.stdout
    out = tmp_path / "gnu"
    out.mkdir()
    p = subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xzpf", str(res.path), "-C", str(out)],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert (out / "app/bin").read_bytes() == (base / "app/bin").read_bytes()
    assert os.getxattr(out / "app/bin", "user.origin") == b"test \xff binary"


@pytest.mark.parametrize("n", [1, 2, 3, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 101, 990, 995, 1000])
def test_pax_record_lengths_at_digit_boundaries(n):
    from executor.layers import tarfmt
    name = ("ü" + "a" * n).encode()
    xa = {"user.v": b"v" * n}
    buf = io.BytesIO()
    tw = tarfmt.TarWriter(buf)
    tw.add(tarfmt.header(name, 0o644, 0, 0, 0, 0, tarfmt.REGTYPE, xattrs=xa))
    tw.close()
    buf.seek(0)
    (m,) = tarfile.open(fileobj=buf, mode="r:").getmembers()
    assert m.name.encode() == name
    assert m.pax_headers["SCHILY.xattr.user.v"] == "v" * n


def test_open_decompressed_tolerates_zero_padding_and_rejects_garbage():
    data = b"payload" * 1000
    assert open_decompressed(io.BytesIO(gzip.compress(data) + bytes(1024))).read() == data
    from executor.errors import LayerError
    with pytest.raises(LayerError):
        open_decompressed(io.BytesIO(gzip.compress(data) + b"junk!")).read()
    with pytest.raises(LayerError):
        open_decompressed(io.BytesIO(b"\x28\xb5\x2f\xfd" + b"\x00garbage" * 10)).read()
    with pytest.raises(LayerError):
        open_decompressed(io.BytesIO(data), media_type="application/vnd.oci.image.layer.v1.tar+lz4")


def test_abandoned_writer_finaliser_does_no_work():
    """A garbage-collected, never-closed writer must not finish its stream from __del__: GC can
    run inside another ThreadPoolExecutor.submit (holding concurrent.futures' global lock), and
    submitting from there deadlocked the whole test run once."""
    out = io.BytesIO()
    w = DigestingWriter(out, "gzip", threads=2)
    w.write(b"x" * 100_000)
    w.__del__()
    assert not w.closed and out.getvalue() == out.getvalue()[:10]  # at most the gzip header
    w.close()
    assert w.closed
