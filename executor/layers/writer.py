"""Write a layer tarball from a snapshot ChangeSet, streaming and digesting in one pass.

The tar (POSIX.1-2001 PAX format, as produced by Docker/buildah) holds:

* every path of ``changes.changed`` as found in ``root`` now (a directory is written as
  a directory entry only; its children appear only if listed themselves);
* with ``include_parents``, every ancestor directory of those paths and of the deleted
  paths (so parent modes/owners survive, as Docker and buildah do);
* for every deleted path ``D/NAME`` an empty regular file ``D/.wh.NAME`` with mode 0
  (OCI image-spec, layer.md "Whiteouts").

Entries are sorted by path components (parents first, deterministic). Owners are
numeric (uname/gname empty); mtimes are whole seconds (like Docker's Go tar writer);
xattrs go into PAX ``SCHILY.xattr.*`` records (``security.selinux`` is dropped, it
is host policy); files sharing (dev, ino) inside the layer become hardlink entries to
the first one; sockets are skipped. The stream goes straight through
:class:`~executor.layers.compress.DigestingWriter` into ``out_path``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from executor.fs.owners import layer_owner
from executor.fs.snapshot import ChangeSet, path_sort_key
from executor.errors import LayerError
from executor.oci.mediatypes import layer_type

from . import tarfmt
from .compress import GZIP, DigestingWriter
from ..fs.paths import RootResolver, clean_name
from .pathindex import IndexRecorder

_SKIP_XATTRS = ("security.selinux",)


@dataclass(frozen=True)
class LayerResult:
    """A written layer blob: ``path`` on disk, ``digest`` (sha256 of the blob), ``diff_id``
    (sha256 of the uncompressed tar), ``size`` (blob bytes), ``media_type`` (for the
    manifest) and ``uncompressed_size`` (tar bytes)."""

    path: Path
    digest: str
    diff_id: str
    size: int
    media_type: str
    uncompressed_size: int


@dataclass(frozen=True)
class _Item:
    """One planned tar entry: a path of root, or a whiteout for ``path``."""

    path: str
    whiteout: bool = False


def _parents(p: str) -> Iterable[str]:
    i = p.find("/")
    while i >= 0:
        yield p[:i]
        i = p.find("/", i + 1)


def plan_entries(changes: ChangeSet, include_parents: bool = True) -> list[_Item]:
    """Ordered tar entries for ``changes``: (path, is_whiteout) sorted by components."""
    paths: set[str] = set(changes.changed)
    if include_parents:
        for p in list(changes.changed) + list(changes.deleted):
            paths.update(_parents(p))
    paths.discard("")
    items = [_Item(p) for p in paths]
    for d in changes.deleted:
        i = d.rfind("/")
        wh = (d[: i + 1] if i >= 0 else "") + ".wh." + d[i + 1:]
        items.append(_Item(wh, whiteout=True))
    items.sort(key=lambda it: path_sort_key(it.path))
    return items


def _xattrs(path: str) -> dict[str, bytes] | None:
    """Extended attributes of ``path`` (not followed), minus host-specific ones; None if none."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return None
    if not names:
        return None
    out = {}
    for n in names:
        if n in _SKIP_XATTRS:
            continue
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            continue
    return out or None


def layer_threads() -> int:
    """Compression threads the build uses for its layers: every CPU this process may run on.

    Any N > 0 gives the same bytes (see DigestingWriter), so the digest does not depend on
    the machine; ``EXECUTOR_COMPRESSION_THREADS`` overrides (0 = compress on the caller).
    """
    env = os.environ.get("EXECUTOR_COMPRESSION_THREADS")
    if env is not None and env.strip().isdigit():
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _clamp(t: int, mtime: int | None) -> int:
    return t if mtime is None or t <= mtime else mtime


def write_layer(root: Path, changes: ChangeSet, out_path: Path, *, compression: str = GZIP,
                level: int | None = None, oci: bool = True, mtime: int | None = None,
                include_parents: bool = True, threads: int | None = None,
                index: IndexRecorder | None = None) -> LayerResult:
    """Write the layer for ``changes`` (paths relative to ``root``) to ``out_path``.

    ``compression``: "gzip" | "zstd" | "none"; ``level``: compression level (gzip
    default 1, as Kaniko); ``oci`` selects the OCI or Docker layer media type (zstd needs OCI:
    ValueError otherwise); ``mtime`` (seconds since the epoch, e.g. SOURCE_DATE_EPOCH)
    clamps every entry's mtime to at most that value; ``threads`` compression threads
    (0: calling thread; None: :func:`layer_threads`, every CPU -- the bytes are the same for
    any N > 0). Paths listed in ``changes`` that no longer exist are skipped. ``index`` (an
    :class:`~executor.layers.pathindex.IndexRecorder`) gets every header written, for the
    layer's path index.
    Returns :class:`LayerResult`. On error the partial ``out_path`` is removed.
    """
    media_type = layer_type(oci, compression)
    root_s = os.fspath(root)
    out_path = Path(out_path)
    items = plan_entries(changes, include_parents)
    if threads is None:
        threads = layer_threads()
    try:
        with open(out_path, "wb") as out:
            dw = DigestingWriter(out, compression, level, threads)
            try:
                _write_tar(root_s, items, dw, mtime, index)
                d = dw.close()
            except BaseException:
                dw.abort()
                raise
    except BaseException:
        try:
            os.unlink(out_path)
        except OSError:
            pass
        raise
    return LayerResult(out_path, d.digest, d.diff_id, d.size, media_type, d.uncompressed_size)


def _write_tar(root: str, items: list[_Item], sink: DigestingWriter, mtime: int | None,
               index: IndexRecorder | None = None) -> None:
    seen_inodes: dict[tuple[int, int], bytes] = {}
    tw = tarfmt.TarWriter(sink)
    for it in items:
        if it.whiteout:
            tw.add(tarfmt.header(os.fsencode(it.path), 0, 0, 0, 0, 0, tarfmt.REGTYPE))
            if index is not None:
                index.add(it.path, "f", 0, 0, 0, 0, 0)
        else:
            _add_path(tw, root, it.path, mtime, seen_inodes, index)
    tw.close()


def _add_path(tw: tarfmt.TarWriter, root: str, rel: str, mtime: int | None,
              seen_inodes: dict[tuple[int, int], bytes], index: IndexRecorder | None = None) -> None:
    hp = os.path.join(root, rel)
    try:
        st = os.lstat(hp)
    except (FileNotFoundError, NotADirectoryError):
        return
    fmt = stat.S_IFMT(st.st_mode)
    if fmt == stat.S_IFSOCK:
        return
    name = os.fsencode(rel)
    mode = st.st_mode & 0o7777
    mt = _clamp(int(st.st_mtime), mtime)
    xa = _xattrs(hp)
    uid, gid = layer_owner(st, xa, hp)  # the recorded owner of a build without root (fs/owners)
    xa = xa or None
    if index is not None:
        _record(index, rel, hp, st, fmt, mode, uid, gid, mt, xa, seen_inodes)
    if fmt == stat.S_IFDIR:
        tw.add(tarfmt.header(name + b"/", mode, uid, gid, 0, mt, tarfmt.DIRTYPE, xattrs=xa))
        return
    if fmt == stat.S_IFLNK:
        target = os.fsencode(os.readlink(hp))
        tw.add(tarfmt.header(name, mode, uid, gid, 0, mt, tarfmt.SYMTYPE, target, xattrs=xa))
        return
    if st.st_nlink > 1:
        key = (st.st_dev, st.st_ino)
        first = seen_inodes.get(key)
        if first is not None:
            tw.add(tarfmt.header(name, mode, uid, gid, 0, mt, tarfmt.LNKTYPE, first, xattrs=xa))
            return
        seen_inodes[key] = name
    if fmt == stat.S_IFREG:
        fd = os.open(hp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            fst = os.fstat(fd)
            if not stat.S_ISREG(fst.st_mode):
                raise LayerError(f"{rel!r} changed while the layer was being written")
            tw.add_file(tarfmt.header(name, mode, uid, gid, fst.st_size, mt, tarfmt.REGTYPE, xattrs=xa),
                        fd, fst.st_size)
        finally:
            os.close(fd)
        return
    if fmt in (stat.S_IFCHR, stat.S_IFBLK):
        tf = tarfmt.CHRTYPE if fmt == stat.S_IFCHR else tarfmt.BLKTYPE
        tw.add(tarfmt.header(name, mode, uid, gid, 0, mt, tf, b"", os.major(st.st_rdev), os.minor(st.st_rdev),
                             xattrs=xa))
        return
    if fmt == stat.S_IFIFO:
        tw.add(tarfmt.header(name, mode, uid, gid, 0, mt, tarfmt.FIFOTYPE, xattrs=xa))


_KINDS = {stat.S_IFREG: "f", stat.S_IFDIR: "d", stat.S_IFLNK: "l", stat.S_IFCHR: "c", stat.S_IFBLK: "b",
          stat.S_IFIFO: "p"}


def _record(index: IndexRecorder, rel: str, hp: str, st: os.stat_result, fmt: int, mode: int, uid: int, gid: int,
            mt: int, xa: dict[str, bytes] | None, seen_inodes: dict[tuple[int, int], bytes]) -> None:
    """Record the entry :func:`_add_path` is about to write (same fields as its header)."""
    kind, link, size = _KINDS.get(fmt, "f"), "", 0
    if fmt == stat.S_IFLNK:
        link = os.readlink(hp)
    if fmt == stat.S_IFREG:
        size = st.st_size
        first = seen_inodes.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
        if first is not None:
            kind, link, size = "h", os.fsdecode(first), 0
    index.add(rel, kind, mode, uid, gid, size, mt, link, tuple((xa or {}).items()))


def directory_changeset(root: Path, relpaths: Iterable[str]) -> ChangeSet:
    """All paths at and below ``relpaths`` (files or directories, recursively) as a ChangeSet.

    For COPY/ADD steps whose destinations are known, so no full scan is needed. Each
    relpath is resolved inside ``root`` like a layer path (a symlinked parent such as
    ``bin -> usr/bin`` yields ``usr/bin/...``; the last component is not followed).
    Symlinks below are listed, not followed. Raises FileNotFoundError for a relpath that
    does not exist and LayerError for one that escapes the root.
    """
    root_s = os.fspath(root)
    res = RootResolver(root_s)
    out: set[str] = set()
    for rp in relpaths:
        parts = clean_name(rp, what="path")
        if not parts:
            raise ValueError("directory_changeset: the root itself cannot be a changed path")
        real = res.resolve_path(parts)
        if real is None or not os.path.lexists(res.host(real)):
            raise FileNotFoundError(f"{rp!r} does not exist under {root_s}")
        out.add(real)
        hp = res.host(real)
        if os.path.isdir(hp) and not os.path.islink(hp):
            stack = [(hp, real)]
            while stack:
                d, r = stack.pop()
                with os.scandir(d) as entries:
                    for e in entries:
                        p = r + "/" + e.name
                        out.add(p)
                        if e.is_dir(follow_symlinks=False):
                            stack.append((e.path, p))
    return ChangeSet(tuple(sorted(out, key=path_sort_key)), ())
