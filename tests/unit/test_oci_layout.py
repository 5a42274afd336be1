"""``--oci-layout-path``: the written layout holds what image-layout.md defines and nothing else
(no ``index.json.lock``), while concurrent writers of one layout still never lose an entry."""

from __future__ import annotations

import fcntl
import hashlib
import json
import multiprocessing
import os
import threading
from pathlib import Path

import pytest

from executor.oci import layout as layout_mod
from executor.oci import mediatypes as mt
from executor.oci.image import Image, Layer
from executor.oci.layout import REF_NAME, add_index_entry, read_index, write_oci_layout

SPEC_ENTRIES = {"oci-layout", "index.json", "blobs"}


def _image(tmp: Path, n: int = 2) -> tuple[Image, list[Path]]:
    img = Image.empty()
    paths = []
    for i in range(n):
        body = f"layer {i}".encode()
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        p = tmp / f"blob{i}"
        p.write_bytes(body)
        img.add_layer(Layer({"mediaType": mt.OCI_LAYER_GZIP, "digest": digest, "size": len(body)},
                            diff_id=digest, path=p), {"created_by": f"step {i}"})
        paths.append(p)
    return img, paths


def _all_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _assert_only_spec_files(root: Path) -> None:
    assert set(os.listdir(root)) == SPEC_ENTRIES
    assert set(os.listdir(root / "blobs")) == {"sha256"}
    for name in os.listdir(root / "blobs" / "sha256"):
        assert len(name) == 64 and all(c in "0123456789abcdef" for c in name), name
    assert json.loads((root / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}


def test_written_layout_holds_only_what_the_spec_defines(tmp_path):
    img, paths = _image(tmp_path)
    out = tmp_path / "layout"
    digest = write_oci_layout(out, img, paths, ref_name="v1")
    _assert_only_spec_files(out)
    index = read_index(out)
    assert [m["digest"] for m in index["manifests"]] == [digest]
    write_oci_layout(out, img, paths, ref_name="v2")  # into an existing layout
    _assert_only_spec_files(out)
    assert len(read_index(out)["manifests"]) == 2


def test_unused_lock_file_of_an_earlier_version_is_removed(tmp_path):
    img, paths = _image(tmp_path)
    out = tmp_path / "layout"
    write_oci_layout(out, img, paths, ref_name="v1")
    (out / "index.json.lock").write_bytes(b"")
    write_oci_layout(out, img, paths, ref_name="v2")
    _assert_only_spec_files(out)


def test_a_held_lock_file_of_an_earlier_version_is_left_alone(tmp_path):
    img, paths = _image(tmp_path)
    out = tmp_path / "layout"
    out.mkdir()
    fd = os.open(out / "index.json.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # an old executor writing right now
        writer = threading.Thread(target=write_oci_layout, args=(out, img, paths), kwargs={"ref_name": "v1"})
        writer.start()
        writer.join(20)
        assert not writer.is_alive(), "the layout write waited for a lock file it does not use"
        assert (out / "index.json.lock").exists()
    finally:
        os.close(fd)
        writer.join()


def _writer(root: str, worker: int, n: int) -> None:
    for i in range(n):
        add_index_entry(Path(root), {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + "0" * 64, "size": 1,
                                     "annotations": {REF_NAME: f"{worker:02d}-{i:03d}"}})


def test_concurrent_writers_lose_no_entry_and_leave_no_lock(tmp_path):
    root = tmp_path / "layout"
    root.mkdir()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(root), w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    names = [m["annotations"][REF_NAME] for m in read_index(root)["manifests"]]
    assert len(names) == 160 and len(set(names)) == 160
    assert set(os.listdir(root)) == {"oci-layout", "index.json"}


def _counter(path: str, lock: str, n: int) -> None:
    for _ in range(n):
        with layout_mod._file_lock(Path(lock)):
            value = int(Path(path).read_text())
            Path(path).write_text(str(value + 1))


def test_fallback_lock_file_excludes_and_is_removed(tmp_path):
    """The lock file used where a directory cannot be flocked: mutual exclusion even though
    every holder unlinks it (4 processes x 100 unsynchronised-otherwise increments)."""
    counter = tmp_path / "n"
    counter.write_text("0")
    lock = tmp_path / "index.json.lock"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_counter, args=(str(counter), str(lock), 100)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert counter.read_text() == "400"
    assert not lock.exists()


def test_index_lock_falls_back_when_the_directory_cannot_be_locked(tmp_path, monkeypatch):
    real = fcntl.flock

    def flock(fd, op):
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(9, "Bad file descriptor")  # what NFS answers for a read-only descriptor
        return real(fd, op)

    monkeypatch.setattr(layout_mod.fcntl, "flock", flock)
    img, paths = _image(tmp_path)
    out = tmp_path / "layout"
    write_oci_layout(out, img, paths, ref_name="v1")
    _assert_only_spec_files(out)


@pytest.mark.parametrize("fail_at", ["write", "replace"])
def test_failed_index_write_leaves_no_temp_file(tmp_path, monkeypatch, fail_at):
    root = tmp_path / "layout"
    root.mkdir()
    add_index_entry(root, {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 1})
    if fail_at == "write":
        monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (self.touch(), (_ for _ in ()).throw(
            OSError(28, "No space left on device")))[1])
    else:
        monkeypatch.setattr(layout_mod.os, "replace", lambda *a: (_ for _ in ()).throw(OSError(28, "ENOSPC")))
    with pytest.raises(OSError):
        add_index_entry(root, {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + "2" * 64, "size": 1})
    assert set(os.listdir(root)) == {"oci-layout", "index.json"}
