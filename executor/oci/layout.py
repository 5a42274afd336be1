"""Write an OCI image layout directory (``--oci-layout-path``).

Source: OCI image-spec, image-layout.md (oci-layout, index.json, blobs/<alg>/<hex>).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from . import mediatypes as mt
from .image import Image, manifest_bytes, sha256_digest

log = logging.getLogger("executor.oci")


REF_NAME = "org.opencontainers.image.ref.name"
LAYOUT_VERSION = {"imageLayoutVersion": "1.0.0"}


def blob_path(root: Path, digest: str) -> Path:
    """``root/blobs/<alg>/<hex>``; raises ValueError for something that is not a digest."""
    alg, _, hexd = digest.partition(":")
    if not hexd or "/" in hexd or "/" in alg:
        raise ValueError(f"not a digest: {digest!r}")
    return root / "blobs" / alg / hexd


def tmp_name(dest: Path) -> Path:
    """A unique sibling temp name (process, thread and random part) for write-then-rename."""
    return dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.{uuid.uuid4().hex[:8]}.tmp")


def put_blob(root: Path, digest: str, *, data: bytes | None = None, src: Path | None = None) -> Path:
    """Blob ``digest`` in the layout at ``root`` from ``data`` or the file ``src``; returns its path.

    A present blob is kept (content-addressed). The file is hard-linked from ``src`` when both
    are on one filesystem, else copied; either way it appears under its name only complete.
    """
    dest = blob_path(root, digest)
    if dest.is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(dest)
    try:
        if data is not None:
            tmp.write_bytes(data)
        else:
            assert src is not None
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return dest


#: Lock file name of earlier versions (left in layouts they wrote; removed when found unused).
LEGACY_LOCK = "index.json.lock"


@contextmanager
def index_lock(root: Path):
    """Hold an exclusive lock for updating ``root/index.json`` (blocks until another writer,
    thread or process, is done); ``root`` must exist.

    The lock leaves nothing in the layout (image-layout.md defines only ``oci-layout``,
    ``index.json`` and ``blobs/``): it is an ``flock(2)`` on the layout directory itself. Where
    the filesystem refuses to lock a directory (an NFS emulation needs a writable descriptor)
    it falls back to a lock file ``index.json.lock`` that is removed again while still held:
    the holder checks after locking that the name still leads to the inode it locked (a
    writer that lost a race to an unlink retries), so two writers never both hold it.
    A lock file of an earlier version is removed when no one holds it."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        with _file_lock(root / LEGACY_LOCK):
            yield
        return
    try:
        _drop_legacy_lock(root)
        yield
    finally:
        os.close(fd)  # closing releases the lock


@contextmanager
def _file_lock(path: Path):
    """flock on a lock file at ``path`` that is unlinked before it is released (see index_lock)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
        except BaseException:
            os.close(fd)
            raise
        if same:
            break
        os.close(fd)  # the holder before us removed it: lock the current one
    try:
        yield
    finally:
        try:
            os.unlink(path)
        finally:
            os.close(fd)


def _drop_legacy_lock(root: Path) -> None:
    """Remove ``root/index.json.lock`` left by an earlier version, unless someone holds it."""
    path = root / LEGACY_LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.path.samestat(os.fstat(fd), os.lstat(path)):
            os.unlink(path)
    except OSError:
        pass  # held (or gone): leave it to its holder
    finally:
        os.close(fd)


def read_index(root: Path) -> dict:
    """``root/index.json`` as a dict (an empty index when absent or unreadable)."""
    try:
        doc = json.loads((root / "index.json").read_text())
        if isinstance(doc, dict) and isinstance(doc.get("manifests", []), list):
            return doc
        log.warning("%s/index.json is not an OCI image index; treating it as empty", root)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as e:
        log.warning("%s/index.json is unreadable (%s); treating it as empty", root, e)
    return {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}


def add_index_entry(root: Path, descriptor: dict, replaces: Callable[[dict], bool] | None = None) -> None:
    """Put ``descriptor`` into ``root/index.json``, dropping entries for which ``replaces`` is true
    (default: the same ``org.opencontainers.image.ref.name``).

    Read-modify-write under :func:`index_lock` (which leaves no file in the layout); oci-layout
    is written when missing and the new index replaces the old by rename, so a reader never sees
    a half-written index. ``root`` is created when missing.
    """
    if replaces is None:
        name = (descriptor.get("annotations") or {}).get(REF_NAME)
        replaces = lambda m: name is not None and (m.get("annotations") or {}).get(REF_NAME) == name  # noqa: E731
    root.mkdir(parents=True, exist_ok=True)
    with index_lock(root):
        layout = root / "oci-layout"
        if not layout.is_file():
            tmp = tmp_name(layout)
            try:
                tmp.write_text(json.dumps(LAYOUT_VERSION))
                os.replace(tmp, layout)
            finally:
                tmp.unlink(missing_ok=True)
        index = read_index(root)
        index["schemaVersion"] = 2
        index["mediaType"] = mt.OCI_INDEX
        index["manifests"] = [m for m in index.get("manifests") or [] if not replaces(m)] + [descriptor]
        write_index(root, index)


def write_index(root: Path, index: dict) -> None:
    """Replace ``root``/index.json with ``index`` atomically (temp file + rename); the caller
    holds the layout's lock."""
    path = root / "index.json"
    tmp = tmp_name(path)
    try:
        tmp.write_text(json.dumps(index, indent=1))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_oci_layout(path: Path, image: Image, blob_paths: list[Path], ref_name: str | None = None) -> str:
    """Write ``image`` into an OCI image layout at ``path``; returns the manifest digest.

    ``blob_paths[i]`` is the local compressed blob of ``image.layers[i]``. Blobs are
    written first and index.json last, so a reader never sees a manifest whose blobs
    are missing. An existing layout gains the manifest (index.json entries are merged).
    """
    path.mkdir(parents=True, exist_ok=True)
    for layer, src in zip(image.layers, blob_paths, strict=True):
        put_blob(path, layer.digest, src=src)
    cfg = image.config_bytes()
    put_blob(path, sha256_digest(cfg), data=cfg)
    man = manifest_bytes(image.manifest(cfg))
    digest = sha256_digest(man)
    put_blob(path, digest, data=man)
    desc: dict = {"mediaType": image.manifest_media_type(), "digest": digest, "size": len(man)}
    if ref_name:
        desc["annotations"] = {REF_NAME: ref_name}
    add_index_entry(path, desc)
    return digest
