"""Path indexes (executor/layers/pathindex.py): what the writer records equals what a header
scan of the written blob finds; serialization round-trips and rejects hostile input; the
merged tree follows OCI whiteout/opaque semantics and resolves symlinks inside the root."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from executor.fs.snapshot import ChangeSet
from executor.layers.pathindex import (IndexEntry, IndexRecorder, MergedTree, PathIndex, PathIndexError,
                                       Unprovable, scan_layer_file)
from executor.layers.writer import write_layer


def _encode_rows(rows, diff_id="sha256:" + "0" * 64, n=None) -> bytes:
    head = {"pathindex": 1, "diff_id": diff_id, "entries": len(rows) if n is None else n}
    text = "\n".join([json.dumps(head)] + [json.dumps(r) for r in rows]) + "\n"
    return gzip.compress(text.encode())


def test_writer_index_equals_header_scan_of_the_blob(tmp_path):
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "usr" / "lib" / "f.txt").write_text("hello")
    os.link(root / "usr" / "lib" / "f.txt", root / "usr" / "lib" / "g.txt")
    os.symlink("usr/lib", root / "lib")
    os.chmod(root / "usr", 0o751)
    changes = ChangeSet(changed=("lib", "usr/lib/f.txt", "usr/lib/g.txt"), deleted=("etc/old",))
    rec = IndexRecorder()
    res = write_layer(root, changes, tmp_path / "layer.tgz", mtime=1_700_000_000, index=rec)
    written = rec.index(res.diff_id)
    scanned = scan_layer_file(res.path, res.media_type, res.diff_id)
    assert written.entries == scanned.entries
    kinds = {e.path: e.kind for e in written.entries}
    assert kinds["lib"] == "l" and kinds["usr"] == "d" and kinds["usr/lib/f.txt"] == "f"
    assert kinds["usr/lib/g.txt"] == "h" and kinds["etc/old"] == "w"
    usr = next(e for e in written.entries if e.path == "usr")
    assert usr.mode == 0o751
    again = PathIndex.decode(written.encode(), res.diff_id)
    assert again.entries == written.entries
    assert written.encode() == again.encode()  # deterministic bytes


def test_scan_rejects_a_blob_whose_content_is_not_its_diff_id(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    (root / "a").write_text("x")
    res = write_layer(root, ChangeSet(changed=("a",)), tmp_path / "l.tgz")
    from executor.errors import LayerError
    with pytest.raises(LayerError):
        scan_layer_file(res.path, res.media_type, "sha256:" + "1" * 64)


@pytest.mark.parametrize("rows,why", [
    ([["../etc/passwd", "f", 0o644, 0, 0, 1, 0, ""]], "clean relative"),
    ([["/etc/passwd", "f", 0o644, 0, 0, 1, 0, ""]], "clean relative"),
    ([["a//b", "f", 0o644, 0, 0, 1, 0, ""]], "clean relative"),
    ([["a/./b", "d", 0o755, 0, 0, 0, 0, ""]], "clean relative"),
    ([["a\u0000b", "f", 0o644, 0, 0, 1, 0, ""]], "bad path"),
    ([["a", "f", 0o644, 0, 0, 1 << 60, 0, ""]], "out of range"),
    ([["a", "f", 0o644, -1, 0, 1, 0, ""]], "out of range"),
    ([["a", "f", 0o17777, 0, 0, 1, 0, ""]], "out of range"),
    ([["a", "f", True, 0, 0, 1, 0, ""]], "out of range"),
    ([["a", "z", 0o644, 0, 0, 1, 0, ""]], "unknown kind"),
    ([["a", "h", 0o644, 0, 0, 0, 0, "../../x"]], "clean relative"),
    ([["a", "f", 0o644, 0, 0, 1, 0, "x"]], "link target"),
    ([["a", "f", 0o644, 0, 0, 1, 0, "", {"user.x": "!!notbase64"}]], "xattr"),
    ([{"path": "a"}], "not an entry"),
])
def test_hostile_rows_reject_the_whole_index(rows, why):
    with pytest.raises(PathIndexError, match=why):
        PathIndex.decode(_encode_rows(rows))


def test_garbage_and_bombs_are_rejected():
    with pytest.raises(PathIndexError):
        PathIndex.decode(b"\x00garbage")
    with pytest.raises(PathIndexError, match="header"):
        PathIndex.decode(gzip.compress(b"not json\n"))
    with pytest.raises(PathIndexError, match="entries"):
        PathIndex.decode(_encode_rows([["a", "f", 0o644, 0, 0, 1, 0, ""]], n=5))
    with pytest.raises(PathIndexError, match="not sha256"):
        PathIndex.decode(_encode_rows([]), "sha256:" + "f" * 64).entries  # noqa: B018
    bomb = gzip.compress(b" " * (300 << 20), compresslevel=9)
    with pytest.raises(PathIndexError, match="more than"):
        PathIndex.decode(bomb)
    with pytest.raises(PathIndexError, match="truncated"):
        PathIndex.decode(_encode_rows([])[:-9])


def _ix(*entries: IndexEntry) -> PathIndex:
    return PathIndex("", list(entries))


def d(path, mode=0o755, **kw):
    return IndexEntry(path, "d", mode, **kw)


def f(path, **kw):
    return IndexEntry(path, "f", 0o644, **kw)


def test_merge_whiteouts_opaque_and_symlinked_parents():
    base = _ix(d("usr"), d("usr/lib"), IndexEntry("lib", "l", 0o777, link="usr/lib"), f("usr/lib/a"),
               d("etc"), f("etc/x"), f("etc/y"), d("opt"), d("opt/sub"), f("opt/sub/old"))
    top = _ix(IndexEntry("etc/x", "w"), IndexEntry("opt", "o"), d("opt"), d("opt/sub", mode=0o700),
              f("opt/sub/new"), f("lib/b"))  # lib/b lands in usr/lib (parent symlink followed)
    t = MergedTree.of([base, top])
    assert t.lookup("etc/x") is None and t.lookup("etc/y") is not None
    assert t.lookup("opt/sub/old") is None and t.lookup("opt/sub/new") is not None
    assert t.lookup("opt/sub").mode == 0o700
    assert t.lookup("usr/lib/b") is not None
    assert [p for p, _ in t.trace("lib/a")] == ["lib", "usr", "usr/lib", "usr/lib/a"]


def test_whiteout_does_not_hide_an_entry_of_the_same_layer():
    t = MergedTree.of([_ix(d("a"), f("a/x")), _ix(f("a/x", uid=5), IndexEntry("a/x", "w"))])
    assert t.lookup("a/x").uid == 5


def test_symlink_loops_and_escapes_stay_inside():
    t = MergedTree.of([_ix(IndexEntry("a", "l", 0o777, link="b"), IndexEntry("b", "l", 0o777, link="a"),
                           IndexEntry("up", "l", 0o777, link="../../../etc"), d("etc"))])
    with pytest.raises(Unprovable):
        t.trace("a/x")
    assert [p for p, _ in t.trace("up/x")] == ["up", "etc"]  # ".." stops at the root


def test_a_parent_made_implicitly_by_extraction_is_unprovable():
    t = MergedTree.of([_ix(f("deep/er/file"))])
    with pytest.raises(Unprovable):
        t.trace("deep/er")


def test_a_layer_with_too_many_entries_is_not_indexed(monkeypatch):
    import executor.layers.pathindex as pi
    monkeypatch.setattr(pi, "MAX_ENTRIES", 3)
    rec = IndexRecorder()
    for i in range(5):
        rec.add(f"f{i}", "f", 0o644, 0, 0, 1, 0)
    assert rec.overflow and rec.entries == []
    with pytest.raises(PathIndexError, match="more than 3"):
        rec.index()
