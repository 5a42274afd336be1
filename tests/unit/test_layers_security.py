"""Hostile layers must never write outside the root (executor.layers.extract).

Policy under test (documented in executor/layers/extract.py):
* names / hardlink targets / whiteouts whose ``..`` climbs above the root -> LayerError;
* absolute names are relative to the root (leading "/" stripped);
* symlinks in parent components are resolved inside the root (neutralised);
* an existing symlink as the final component is replaced, never written through.
Every test checks that a sentinel directory around the root is byte-for-byte unchanged.
The hostile names are built so that, should the protection ever regress, the escape
lands inside that sentinel (a pytest tmp dir) and is detected -- never in the host's
real /etc: ROOT is SENTINEL/a/b/root, so three ``..`` reach SENTINEL, and absolute
targets name SENTINEL's own absolute path.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from executor.errors import LayerError
from executor.layers.extract import apply_layer
from tests.support.tars import make_tar


def snapshot_tree(top: Path) -> dict[str, tuple]:
    """Path -> (mode, size, content or link target) for everything under ``top``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            st = p.lstat()
            if p.is_symlink():
                out[str(p.relative_to(top))] = (st.st_mode, os.readlink(p))
            elif p.is_file():
                out[str(p.relative_to(top))] = (st.st_mode, p.read_bytes())
            else:
                out[str(p.relative_to(top))] = (st.st_mode,)
    return out


@pytest.fixture
def jail(tmp_path: Path):
    """(root, sentinel, before): ROOT = SENTINEL/a/b/root, so ROOT/../../.. is SENTINEL."""
    sentinel = tmp_path / "sentinel"
    (sentinel / "etc").mkdir(parents=True)
    (sentinel / "etc" / "passwd").write_text("host-passwd\n")
    (sentinel / "outside").write_text("outside\n")
    root = sentinel / "a" / "b" / "root"
    root.mkdir(parents=True)
    (sentinel / "a" / "b" / "outside").write_text("near\n")
    before = snapshot_tree(sentinel)
    del before["a/b/root"]
    yield root, sentinel, before


def host(sentinel: Path, rel: str) -> str:
    """Absolute name of SENTINEL/rel without the leading '/' (what an escape would hit)."""
    return str(sentinel / rel).lstrip("/")


def assert_untouched(sentinel: Path, before: dict) -> None:
    now = snapshot_tree(sentinel)
    now = {k: v for k, v in now.items() if not (k == "a/b/root" or k.startswith("a/b/root/"))}
    # "a" and "a/b" are checked too: a write one or two levels above ROOT shows up there
    assert now == before


def apply(data: bytes, root: Path):
    return apply_layer(io.BytesIO(data), root)


@pytest.mark.parametrize("name", ["../../../etc/x", "../x", "a/../../x", "./../../../etc/passwd", "a/b/../../../x",
                                  "../../../outside"])
def test_dotdot_names_are_rejected(jail, name):
    root, sentinel, before = jail
    with pytest.raises(LayerError, match="escapes the root"):
        apply(make_tar({"name": name, "data": b"pwned"}), root)
    assert_untouched(sentinel, before)


def test_inner_dotdot_that_stays_inside_is_cleaned(jail):
    root, sentinel, before = jail
    apply(make_tar({"name": "a/../b", "data": b"ok"}), root)
    assert (root / "b").read_bytes() == b"ok"
    assert_untouched(sentinel, before)


def test_absolute_names_land_inside_root(jail):
    root, sentinel, before = jail
    target = host(sentinel, "etc/passwd")
    apply(make_tar({"name": "/abs/path", "data": b"x"}, {"name": "//" + target, "data": b"y"}), root)
    assert (root / "abs/path").read_bytes() == b"x"
    assert (root / target).read_bytes() == b"y"
    assert_untouched(sentinel, before)


def test_symlink_to_slash_then_write_through_it(jail):
    root, sentinel, before = jail
    layer = make_tar({"name": "evil", "type": "l", "link": "/"},
                     {"name": "evil/" + host(sentinel, "etc/passwd"), "data": b"pwned"},
                     {"name": "evil/" + host(sentinel, "outside"), "data": b"pwned"})
    apply(layer, root)
    assert (root / host(sentinel, "etc/passwd")).read_bytes() == b"pwned"
    assert os.readlink(root / "evil") == "/"
    assert_untouched(sentinel, before)


def test_relative_symlink_climbing_out_then_write(jail):
    root, sentinel, before = jail
    layer = make_tar({"name": "d", "type": "l", "link": "../../../"},
                     {"name": "d/x", "data": b"pwned"},
                     {"name": "d/etc/passwd", "data": b"pwned"})
    apply(layer, root)
    assert (root / "x").read_bytes() == b"pwned"
    assert (root / "etc/passwd").read_bytes() == b"pwned"
    assert_untouched(sentinel, before)


def test_chained_symlinks_and_loops(jail):
    root, sentinel, before = jail
    layer = make_tar({"name": "l1", "type": "l", "link": "l2/../../.."},
                     {"name": "l2", "type": "l", "link": "sub"},
                     {"name": "sub", "type": "d"},
                     {"name": "l1/outside", "data": b"pwned"})
    apply(layer, root)
    assert (root / "outside").read_bytes() == b"pwned"
    loop = make_tar({"name": "x", "type": "l", "link": "y"}, {"name": "y", "type": "l", "link": "x"},
                    {"name": "x/f", "data": b"1"})
    with pytest.raises(LayerError, match="too many levels"):
        apply(loop, root)
    assert_untouched(sentinel, before)


def test_existing_symlink_in_lower_layer_is_neutralised(jail):
    root, sentinel, before = jail
    os.symlink(str(sentinel / "etc"), root / "etc")  # planted by a lower layer: host path
    apply(make_tar({"name": "etc/passwd", "data": b"pwned"}), root)
    # resolved as ROOT + host path of sentinel/etc, i.e. still inside root
    assert_untouched(sentinel, before)


def test_final_component_symlink_is_replaced_not_followed(jail):
    root, sentinel, before = jail
    os.symlink(str(sentinel / "outside"), root / "f")
    os.symlink("../../outside", root / "g")
    apply(make_tar({"name": "f", "data": b"new"}, {"name": "g", "type": "d"}), root)
    assert not (root / "f").is_symlink() and (root / "f").read_bytes() == b"new"
    assert (root / "g").is_dir() and not (root / "g").is_symlink()
    assert_untouched(sentinel, before)


@pytest.mark.parametrize("target", ["<abs>", "../outside", "../../../outside", "../../../etc/passwd"])
def test_hardlink_outside_root(jail, target):
    root, sentinel, before = jail
    if target == "<abs>":
        target = "/" + host(sentinel, "etc/passwd")
    layer = make_tar({"name": "h", "type": "h", "link": target})
    with pytest.raises(LayerError):
        apply(layer, root)
    assert not (root / "h").exists() or os.stat(root / "h").st_ino != os.stat(sentinel / "etc/passwd").st_ino
    assert_untouched(sentinel, before)


def test_hardlink_through_escaping_symlink(jail):
    root, sentinel, before = jail
    layer = make_tar({"name": "s", "type": "l", "link": "../../../etc"},
                     {"name": "h", "type": "h", "link": "s/passwd"})
    with pytest.raises(LayerError, match="does not exist"):
        apply(layer, root)
    assert_untouched(sentinel, before)


def test_hardlink_to_symlink_links_the_symlink_itself(jail):
    root, sentinel, before = jail
    layer = make_tar({"name": "s", "type": "l", "link": str(sentinel / "outside")},
                     {"name": "h", "type": "h", "link": "s"},
                     {"name": "h2", "type": "h", "link": "h"})
    apply(layer, root)
    assert (root / "h").is_symlink()
    assert os.lstat(root / "h").st_ino == os.lstat(root / "s").st_ino
    assert_untouched(sentinel, before)


@pytest.mark.parametrize("name", [".wh...", "sub/.wh...", "../.wh.outside", "../../../.wh.outside", ".wh.",
                                  "sub/.wh.."])
def test_escaping_whiteouts(jail, name):
    root, sentinel, before = jail
    (root / "sub").mkdir()
    (root / "keep").write_text("k")
    with pytest.raises(LayerError):
        apply(make_tar({"name": name}), root)
    assert (root / "keep").exists()
    assert_untouched(sentinel, before)


def test_whiteout_through_symlinked_dir_stays_inside(jail):
    root, sentinel, before = jail
    layer = make_tar({"name": "s", "type": "l", "link": "../../../"},
                     {"name": "s/.wh.outside"},
                     {"name": "s/etc/.wh.passwd"},
                     {"name": "s/etc/.wh..wh..opq"})
    apply(layer, root)
    assert_untouched(sentinel, before)


def test_opaque_through_symlink_to_host_dir(jail):
    root, sentinel, before = jail
    os.symlink(str(sentinel), root / "s")
    apply(make_tar({"name": "s/.wh..wh..opq"}), root)
    assert_untouched(sentinel, before)


def test_device_and_pax_path_escape(jail):
    root, sentinel, before = jail
    # a PAX 'path' record overrides the ustar name: it is checked too
    layer = make_tar({"name": "innocent", "data": b"x", "pax": {"path": "../../../outside"}})
    with pytest.raises(LayerError, match="escapes the root"):
        apply(layer, root)
    assert_untouched(sentinel, before)


def test_symlink_target_is_stored_verbatim_not_followed(jail):
    root, sentinel, before = jail
    layer = make_tar({"name": "l", "type": "l", "link": "../../../../../../etc/shadow"},
                     {"name": "l", "data": b"replaced"})
    apply(layer, root)
    assert (root / "l").read_bytes() == b"replaced"
    assert_untouched(sentinel, before)


def test_nul_in_name_and_garbage_archives(jail, tmp_path):
    root, sentinel, before = jail
    with pytest.raises(LayerError):
        apply(b"this is not a tar archive at all" * 40, root)
    good = make_tar({"name": "f", "data": b"x" * 5000})
    with pytest.raises(LayerError):
        apply(good[:1500], root)  # truncated in the middle of file data
    import gzip
    with pytest.raises(LayerError):
        apply(gzip.compress(good)[:-20], root)
    assert_untouched(sentinel, before)
