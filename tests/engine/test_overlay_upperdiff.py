"""The change set from an overlayfs upper directory equals the lstat walk's (real mounts).

Each case runs one shell script twice: in a plain copy of a lower tree (snapshot walk before
and after, :func:`executor.fs.snapshot.diff`) and in an overlay mount of that tree
(:func:`executor.fs.upperdiff.upper_changes` of the upper); the two ChangeSets must be equal.
Also: layers unpacked in overlay form (whiteouts as 0/0 devices, opaque xattrs), what cannot
be stacked, and the clean-up of stale mounts.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from executor.engine.overlayroot import OverlayRoot, probe
from executor.fs.overlay import OverlayFlavor, mounts_below, unmount_below
from executor.fs.snapshot import FsIndex, diff
from executor.layers.extract import NotStackable, apply_tar_chunks

FLAVOR = OverlayFlavor(False)


@pytest.fixture(scope="module")
def can_mount(tmp_path_factory) -> None:
    if os.geteuid() != 0:
        pytest.skip("overlay mounts need root")
    d = tmp_path_factory.mktemp("probe")
    choice = probe(d, d / "store", environ={})
    if not choice.enabled or choice.flavor != FLAVOR:
        pytest.skip(f"overlayfs (trusted xattrs) not usable here: {choice.reason}")


def _lower(root: Path) -> None:
    """A small tree: files, nested dirs, a symlink, a hardlink pair, odd modes and owners."""
    (root / "etc" / "conf.d").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (root / "etc" / "conf.d" / "a").write_text("a\n")
    (root / "etc" / "conf.d" / "b").write_text("b\n")
    (root / "usr" / "share" / "doc" / "pkg").mkdir(parents=True)
    (root / "usr" / "share" / "doc" / "pkg" / "README").write_text("r\n")
    (root / "usr" / "bin").mkdir()
    (root / "usr" / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(root / "usr" / "bin" / "tool", 0o755)
    os.link(root / "usr" / "bin" / "tool", root / "usr" / "bin" / "tool2")
    os.symlink("usr/bin", root / "bin")
    (root / "var" / "lib" / "state").mkdir(parents=True)
    (root / "var" / "lib" / "state" / "lock").write_text("")
    os.chown(root / "var" / "lib" / "state", 1, 1)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)


SCRIPTS = {
    "delete a file": "rm etc/passwd",
    "delete a tree": "rm -rf usr/share/doc",
    "delete then recreate a dir": "rm -rf etc/conf.d && mkdir etc/conf.d && echo new > etc/conf.d/b",
    "recreate nested": "rm -rf usr/share && mkdir -p usr/share/doc && echo x > usr/share/doc/x",
    "chmod only": "chmod 600 etc/passwd && chmod 700 var/lib/state",
    "chown only": "chown 5:5 etc/conf.d/a",
    "new hardlinks": "echo n > n && ln n n2 && ln etc/passwd passwd-link",
    "symlinks": "ln -s /etc/passwd etc/pl && rm bin && ln -s usr/share bin",
    "open for writing only": "exec 3>>var/lib/state/lock; exec 3>>etc/passwd",
    "append": "echo more >> etc/conf.d/a",
    "replace a dir by a file": "rm -rf usr/share && echo f > usr/share",
    "replace a file by a dir": "rm etc/passwd && mkdir etc/passwd && echo p > etc/passwd/x",
    "mv a dir": "mv usr/share/doc usr/doc",
    "temp file created and removed": "echo t > tmp/t && rm tmp/t",
    "nothing": "true",
}


def _walk_changes(lower: Path, tmp: Path, script: str):
    plain = tmp / "plain"
    subprocess.run(["cp", "-a", str(lower), str(plain)], check=True)
    before = FsIndex.scan(plain)
    subprocess.run(["sh", "-c", script], cwd=plain, check=True)
    return diff(before, FsIndex.scan(plain))


@pytest.mark.parametrize("flavor", [FLAVOR, OverlayFlavor(True)], ids=["trusted", "userxattr"])
@pytest.mark.parametrize("name", list(SCRIPTS))
def test_upper_changes_equal_the_walk(can_mount, tmp_path, name, flavor):
    script = SCRIPTS[name]
    lower = tmp_path / "lower"
    _lower(lower)
    walk = _walk_changes(lower, tmp_path, script)
    assert walk.is_empty() == (name in ("nothing", "open for writing only"))
    ov = OverlayRoot(root=tmp_path / "root", base=tmp_path / "ov", lowers=[lower], flavor=flavor)
    ov.mount()
    try:
        subprocess.run(["sh", "-c", script], cwd=ov.root, check=True)
        got = ov.changes([])
    finally:
        ov.close()
    assert got == walk


@pytest.mark.parametrize("flavor", [FLAVOR, OverlayFlavor(True)], ids=["trusted", "userxattr"])
def test_changes_after_sealing_are_those_of_the_last_step(can_mount, tmp_path, flavor):
    """Two steps: the second one's upper holds only its own changes, over the sealed first."""
    lower = tmp_path / "lower"
    _lower(lower)
    ov = OverlayRoot(root=tmp_path / "root", base=tmp_path / "ov", lowers=[lower], flavor=flavor)
    ov.mount()
    try:
        subprocess.run(["sh", "-c", "rm -rf etc/conf.d && mkdir etc/conf.d && echo 1 > etc/conf.d/one"],
                       cwd=ov.root, check=True)
        assert ov.seal() and ov.upper_empty() and len(ov.lowers) == 2
        subprocess.run(["sh", "-c", "rm etc/conf.d/one && echo 2 > etc/conf.d/two && rm usr/bin/tool2"],
                       cwd=ov.root, check=True)
        got = ov.changes([])
        child = ov.stacked(tmp_path / "child", tmp_path / "ov-child")
        try:
            assert sorted(os.listdir(child.root / "etc" / "conf.d")) == ["two"]
        finally:
            child.close()
    finally:
        ov.close()
    assert got.changed == ("etc/conf.d", "etc/conf.d/two", "usr/bin")
    assert got.deleted == ("etc/conf.d/one", "usr/bin/tool2")


def _tar(entries) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, kind, data in entries:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            if kind == tarfile.REGTYPE:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
            else:
                if kind in (tarfile.LNKTYPE, tarfile.SYMTYPE):
                    ti.linkname = data
                if kind == tarfile.DIRTYPE:
                    ti.mode = 0o755
                t.addfile(ti)
    return buf.getvalue()


def _apply(raw: bytes, root: Path):
    chunks = [raw]
    return apply_tar_chunks(lambda: chunks.pop() if chunks else b"", root, overlay=FLAVOR.prefix)


def test_layer_in_overlay_form(can_mount, tmp_path):
    root = tmp_path / "l"
    root.mkdir()
    stats = _apply(_tar([("etc/", tarfile.DIRTYPE, None), ("etc/.wh.gone", tarfile.REGTYPE, b""),
                         ("var/lib/.wh..wh..opq", tarfile.REGTYPE, b""), ("var/lib/x", tarfile.REGTYPE, b"x"),
                         ("opt/.wh.d", tarfile.REGTYPE, b""), ("opt/d/", tarfile.DIRTYPE, None)]), root)
    s = os.lstat(root / "etc" / "gone")
    assert stat.S_ISCHR(s.st_mode) and s.st_rdev == 0
    assert os.getxattr(root / "var" / "lib", "trusted.overlay.opaque") == b"y"
    assert (root / "var" / "lib" / "x").read_text() == "x"
    # a directory of the layer over its own whiteout hides the lower one: opaque
    assert os.getxattr(root / "opt" / "d", "trusted.overlay.opaque") == b"y"
    assert sorted(stats.implicit_dirs) == ["opt", "var", "var/lib"]


@pytest.mark.parametrize("entries", [
    [("a", tarfile.LNKTYPE, "lower-file")],
    [("dev0", tarfile.CHRTYPE, None)],
    [("new", tarfile.REGTYPE, b"n"), (".wh..wh..opq", tarfile.REGTYPE, b"")],  # overlayfs ignores it at a root
])
def test_not_stackable(can_mount, tmp_path, entries):
    root = tmp_path / "l"
    root.mkdir()
    with pytest.raises(NotStackable):
        _apply(_tar(entries), root)


def test_escape_still_refused_in_overlay_form(can_mount, tmp_path):
    from executor.errors import LayerError
    root = tmp_path / "l"
    root.mkdir()
    with pytest.raises(LayerError, match="escapes"):
        _apply(_tar([("../../evil", tarfile.REGTYPE, b"x")]), root)
    with pytest.raises(LayerError, match="escapes"):
        _apply(_tar([("a/.wh...", tarfile.REGTYPE, b"")]), root)


def test_stale_mounts_are_unmounted(can_mount, tmp_path):
    lower = tmp_path / "lower"
    _lower(lower)
    ov = OverlayRoot(root=tmp_path / "w" / "stages" / "0" / "rootfs", base=tmp_path / "w" / "ov",
                     lowers=[lower], flavor=FLAVOR)
    ov.mount()
    assert mounts_below(tmp_path / "w") == [str(ov.root)]
    assert unmount_below(tmp_path / "w") == 1
    assert mounts_below(tmp_path / "w") == []
    shutil.rmtree(tmp_path / "w")
    assert (lower / "etc" / "passwd").exists()


def test_parents_a_layer_did_not_name_keep_the_lower_layers_metadata(can_mount, tmp_path):
    """A layer holding only ``etc/motd`` (its ``etc`` made as a plain 0755 parent) stacked on
    one whose ``etc`` is 0750 uid 7: the merged ``etc`` is 0750 uid 7, as when applied in order;
    a layer whose ``etc`` is a symlink below such a parent cannot be stacked."""
    from executor.engine.layerstore import LayerDir, make_fixup_layer, stack_fixups
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    _apply(_tar([("etc/", tarfile.DIRTYPE, None), ("etc/passwd", tarfile.REGTYPE, b"p")]), a)
    os.chmod(a / "etc", 0o750)
    os.chown(a / "etc", 7, 7)
    stats = _apply(_tar([("etc/motd", tarfile.REGTYPE, b"m")]), b)
    assert stats.implicit_dirs == ["etc"]
    layers = [LayerDir("a", a, ()), LayerDir("b", b, tuple(stats.implicit_dirs))]
    fix = stack_fixups(layers)
    assert list(fix) == ["etc"]
    make_fixup_layer(tmp_path / "fix", fix, top=b)
    ov = OverlayRoot(root=tmp_path / "root", base=tmp_path / "ov", lowers=[tmp_path / "fix", b, a], flavor=FLAVOR)
    ov.mount()
    try:
        st = os.lstat(ov.root / "etc")
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o750, 7)
        assert sorted(os.listdir(ov.root / "etc")) == ["motd", "passwd"]
    finally:
        ov.close()
    c = tmp_path / "c"
    c.mkdir()
    os.symlink("usr/etc", c / "etc")
    with pytest.raises(NotStackable):
        stack_fixups([LayerDir("c", c, ()), layers[1]])


def test_a_directory_made_only_for_whiteouts_is_not_stacked(can_mount, tmp_path):
    """``a/.wh.b`` with no ``a`` in any lower layer: applied to a root it does nothing; stacked,
    the directory made to hold the whiteout would appear, so the stack is refused. With ``a``
    in a lower layer it stacks."""
    from executor.engine.layerstore import LayerDir, stack_fixups
    low, top = tmp_path / "low", tmp_path / "top"
    low.mkdir()
    top.mkdir()
    _apply(_tar([("etc/", tarfile.DIRTYPE, None), ("etc/x", tarfile.REGTYPE, b"x")]), low)
    stats = _apply(_tar([("a/.wh.b", tarfile.REGTYPE, b""), ("etc/.wh.x", tarfile.REGTYPE, b"")]), top)
    layers = [LayerDir("sha256:1", low, ()), LayerDir("sha256:2", top, tuple(stats.implicit_dirs))]
    with pytest.raises(NotStackable, match="/a exists only to hold whiteouts"):
        stack_fixups(layers)
    (low / "a").mkdir()
    stack_fixups(layers)


def test_stage_roots_are_volatile_mounts(can_mount, tmp_path):
    """A stage root's upper is never synced at unmount (sealing a root after a step, releasing
    it after the build): the mount carries overlayfs's ``volatile`` option (Linux 5.10+)."""
    (tmp_path / "lower").mkdir()
    ov = OverlayRoot(root=tmp_path / "root", base=tmp_path / "ov", lowers=[tmp_path / "lower"], flavor=FLAVOR)
    ov.mount()
    try:
        (ov.root / "written").write_bytes(b"x" * 1_000_000)
        with open("/proc/self/mountinfo") as f:
            line = next(x for x in f if f" {ov.root} " in x)
        release = tuple(int(p) for p in os.uname().release.split(".")[:2] if p.isdigit())
        if release < (5, 10):
            pytest.skip(f"kernel {os.uname().release} has no volatile overlay mounts (5.10+)")
        super_opts = line.split(" - ", 1)[1]
        assert "volatile" in super_opts
        assert ov.seal()  # remounted over a fresh upper and work directory
        assert (ov.root / "written").stat().st_size == 1_000_000
    finally:
        ov.close()
