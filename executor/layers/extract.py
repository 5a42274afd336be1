"""Apply an untrusted layer tarball onto a root filesystem (OCI image-spec layer.md).

Semantics (OCI image-spec, layer.md "Applying Changesets", "Whiteouts"):

* ``DIR/.wh.NAME`` deletes ``DIR/NAME`` (and its subtree) from lower layers; a whiteout
  never deletes an entry of the same layer. Other ``.wh..wh.*`` meta files are ignored.
* ``DIR/.wh..wh..opq`` (opaque) hides every lower entry of ``DIR``; entries of the same
  layer survive whether they come before or after the marker in the tar.
* An entry replacing an existing path of a different kind removes it first (a file over
  a directory removes the whole directory); a directory over a directory merges and
  takes the new metadata; any non-directory is unlinked before it is re-created, so a
  hardlinked lower file is never modified through its other names.
* Regular files, directories, symlinks, hardlinks, fifos and char/block devices
  (``mknod``; when not permitted the entry is listed in ``ExtractStats.skipped``, as are
  GNU sparse files and unknown entry types). New entries are created first (``O_EXCL``,
  ``mkdir``, ``symlink``...); what is in the way is looked at only when that fails.
  Modes incl. setuid/setgid/sticky, numeric uid/gid (``lchown``), mtimes (second
  precision as in the tar header, sub-second from PAX when present), xattrs from PAX
  ``SCHILY.xattr.*`` (ones the filesystem refuses are ignored). Directory modes and
  mtimes are applied after all entries, deepest first.

Security (the layer is untrusted):

* Names are cleaned lexically; a leading ``/`` is stripped; a name or hardlink target
  whose ``..`` climbs above the root raises :class:`LayerError`
  (``"layer entry '../../etc/x' escapes the root"``) and extraction stops.
* Symlinks in parent components are resolved by us inside the root as if it were
  ``/`` (``a -> /etc`` means ``ROOT/etc``): they are neutralised, never followed by
  the OS. The final component is never followed: existing symlinks are replaced,
  files are opened with ``O_NOFOLLOW | O_EXCL``, metadata calls use
  ``follow_symlinks=False``.
* Hardlink targets are resolved the same way and must already exist inside the root
  and not be directories; otherwise :class:`LayerError`.
* Malformed archives (bad headers, truncated data, corrupt compression) raise
  :class:`LayerError`. A partially applied layer is left as is: callers should treat
  the root as unusable after an error.

The tar is read as a stream (:mod:`executor.layers.tarstream`) from chunks decompressed
ahead of it on a background thread (:class:`executor.layers.decompress.ChunkStream`); file
data is written straight from those chunks. Memory use is bounded by the number of entries
(a set of names for opaque-directory handling and one record per directory for deferred
metadata) and a few chunks of 4 MiB, not by the layer's size.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from executor.errors import LayerError

from .decompress import ChunkStream
from .tarstream import BLK, CHR, DIR, FIFO, LNK, REG, SYM, Member, TarReader
from ..fs.overlay import is_whiteout
from ..fs.owners import PRIVATE_XATTRS, record_owner
from ..fs.paths import RootResolver, clean_name

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
XATTR_PAX_PREFIX = "SCHILY.xattr."

_ALLOWED_TYPES = frozenset((REG, DIR, SYM, LNK, CHR, BLK, FIFO))
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass
class ExtractStats:
    """What :func:`apply_layer` did.

    ``entries``: tar members applied (files, dirs, links, devices; not whiteouts);
    ``whiteouts``: whiteout and opaque markers processed;
    ``skipped``: ``"path: reason"`` for entries that could not be created without
    privilege (device nodes) or were of an unsupported kind (e.g. GNU sparse);
    ``implicit_dirs``: in overlay mode, the relative paths of directories the layer did not
    name but needed as parents (sorted).
    """

    entries: int = 0
    whiteouts: int = 0
    skipped: list[str] = field(default_factory=list)
    implicit_dirs: list[str] = field(default_factory=list)
    disk_bytes: int = 0


class NotStackable(LayerError):
    """The layer cannot be an overlayfs lower layer of its own (see ``apply_tar_chunks``'s
    ``overlay``): the build unpacks it into a plain root instead."""


@dataclass
class _DirMeta:
    parts: tuple[str, ...]
    mode: int
    mtime: int | float


@dataclass
class _State:
    """Mutable per-call extraction state (never shared between calls)."""

    res: RootResolver
    same_owner: bool
    is_root: bool
    stats: ExtractStats = field(default_factory=ExtractStats)
    layer_paths: set[tuple[str, ...]] = field(default_factory=set)
    layer_ancestors: set[tuple[str, ...]] = field(default_factory=set)
    dirs: list[_DirMeta] = field(default_factory=list)
    #: overlay mode (``apply_tar_chunks(overlay=...)``): the xattr namespace of overlayfs's markers
    #: (``trusted.overlay.`` or ``user.overlay.``), else None (whiteouts delete, as in a root)
    overlay: str | None = None
    #: overlay mode: resolved relative paths of the directories the tar names itself
    explicit_dirs: set[str] = field(default_factory=set)

    def remember(self, parts: tuple[str, ...]) -> None:
        self.layer_paths.add(parts)
        for i in range(len(parts) - 1, 0, -1):
            anc = parts[:i]
            if anc in self.layer_ancestors:
                break
            self.layer_ancestors.add(anc)


def apply_layer(stream: BinaryIO, root: Path, *, media_type: str | None = None,
                same_owner: bool = True) -> ExtractStats:
    """Apply one layer blob (gzip, zstd or plain tar; sniffed) from ``stream`` onto ``root``.

    ``root`` must be an existing directory. ``same_owner`` restores numeric uid/gid
    from the tar (when not running as root, ownership that cannot be set is ignored).
    Returns :class:`ExtractStats`. Raises :class:`executor.errors.LayerError` for a
    malformed archive or an entry that tries to escape ``root`` (see module docstring).
    Source: OCI image-spec layer.md.
    """
    with ChunkStream(stream, media_type) as chunks:
        return apply_tar_chunks(chunks.next_chunk, root, same_owner=same_owner)


def apply_tar_chunks(next_chunk: Callable[[], bytes], root: Path, *, same_owner: bool = True,
                     overlay: str | None = None) -> ExtractStats:
    """Apply the uncompressed layer tar delivered by ``next_chunk`` (the next bytes, ``b""`` at
    the end; e.g. :meth:`ChunkStream.next_chunk`) onto ``root``; what :func:`apply_layer` does
    after decompressing. Stops at the end-of-archive header: the caller reads what follows.

    ``overlay`` (``"trusted.overlay."`` or ``"user.overlay."``): ``root`` is an empty directory
    that is to hold this one layer as an overlayfs lower layer: whiteouts become overlayfs's
    (a 0/0 character device for ``.wh.NAME``, the ``<prefix>opaque=y`` xattr for the opaque
    marker), xattrs of that namespace in the tar are dropped, and what only the layers below
    could resolve (a hardlink to a file of a lower layer, a 0/0 device that would act as a
    whiteout) raises :class:`NotStackable`. ``ExtractStats.implicit_dirs`` then lists the
    directories the tar did not name (created as 0755 parents)."""
    root_s = os.path.realpath(os.fspath(root))
    if not os.path.isdir(root_s):
        raise LayerError(f"cannot apply layer: {root} is not a directory")
    st = _State(res=RootResolver(root_s), same_owner=same_owner, is_root=os.geteuid() == 0, overlay=overlay)
    reader = TarReader(next_chunk)
    for member in reader:
        try:
            _apply_member(reader, member, st)
        except OSError as e:
            raise LayerError(f"cannot apply layer entry {member.name!r}: {e.strerror or e}") from None
    _finish_dirs(st)
    if overlay is not None:
        dirs, st.stats.disk_bytes = _all_dirs(root_s)
        st.stats.implicit_dirs = sorted(dirs - st.explicit_dirs)
    return st.stats


def _all_dirs(root: str) -> tuple[set[str], int]:
    """Relative paths of every directory below ``root`` (not followed through symlinks), and
    the bytes its entries occupy (st_blocks)."""
    out: set[str] = set()
    size = 0
    stack = [(root, "")]
    while stack:
        d, rel = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                size += e.stat(follow_symlinks=False).st_blocks * 512
                if e.is_dir(follow_symlinks=False):
                    r = f"{rel}/{e.name}" if rel else e.name
                    out.add(r)
                    stack.append((e.path, r))
    return out, size


# -- one member ----------------------------------------------------------------------

def _apply_member(reader: TarReader, m: Member, st: _State) -> None:
    parts = clean_name(m.name)
    base = parts[-1] if parts else ""
    if base.startswith(WHITEOUT_PREFIX):
        _apply_whiteout(m.name, parts, st)
        return
    if len(parts) > 1 and any(p.startswith(WHITEOUT_META_PREFIX) for p in parts[:-1]):
        return  # inside an AUFS meta directory such as .wh..wh.plnk: not part of the image
    if m.type not in _ALLOWED_TYPES or m.sparse:
        kind = "GNU sparse file" if m.sparse else f"tar entry type {m.type!r}"
        st.stats.skipped.append(f"{m.name}: unsupported {kind}")
        return
    if not parts:
        if m.type != DIR:
            raise LayerError(f"layer entry {m.name!r} would replace the root directory with a non-directory")
        st.dirs.append(_DirMeta((), m.mode, m.mtime))
        _chown_xattrs_path(st.res.root, m, st)
        st.stats.entries += 1
        return
    parent_rel, name = st.res.resolve_parent(parts, create=True, name=m.name)
    path = f"{st.res.root}/{parent_rel}/{name}" if parent_rel else f"{st.res.root}/{name}"
    t = m.type
    # Create first and look at what is there only when that fails (EEXIST): one syscall less
    # per entry on the common path; the final component is never followed either way.
    if t == REG:
        _write_file(reader, m, path, st)
    elif t == DIR:
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            existing = os.lstat(path)
            if not stat.S_ISDIR(existing.st_mode):
                _remove(path, existing, st)
                os.mkdir(path, 0o700)
                if st.overlay is not None and is_whiteout(existing):  # lower entries stay deleted
                    os.setxattr(path, st.overlay + "opaque", b"y", follow_symlinks=False)
        st.dirs.append(_DirMeta(parts, m.mode, m.mtime))
        _chown_xattrs_path(path, m, st)
    elif t == SYM:
        _create(path, st, lambda: os.symlink(m.linkname, path))
        _chown_xattrs_path(path, m, st)
        _utime(path, m)
    elif t == LNK:
        _hardlink(m, path, st)
    elif t == FIFO:
        _create(path, st, lambda: os.mkfifo(path, 0o600))
        _meta_path(path, m, st)
    else:
        kind = stat.S_IFCHR if t == CHR else stat.S_IFBLK
        if st.overlay is not None and t == CHR and m.devmajor == 0 and m.devminor == 0:
            raise NotStackable(f"layer entry {m.name!r} is a 0/0 character device (an overlayfs whiteout)")
        try:
            _create(path, st, lambda: os.mknod(path, kind | m.mode, os.makedev(m.devmajor, m.devminor)))
        except PermissionError:
            st.stats.skipped.append(f"{'/'.join(parts)}: cannot create device node (not permitted)")
            return
        _meta_path(path, m, st)
    st.remember(parts)
    st.stats.entries += 1


def _create(path: str, st: _State, make: Callable[[], object]) -> None:
    """``make()`` a new non-directory at ``path``; whatever is there already (not followed) is
    removed first, a directory with its subtree."""
    try:
        make()
    except FileExistsError:
        _remove(path, os.lstat(path), st)
        make()


def _ns(t: int | float) -> int:
    return int(t * 1_000_000_000) if isinstance(t, float) else t * 1_000_000_000


def _utime(path: str, m: Member) -> None:
    ns = _ns(m.mtime)
    try:
        os.utime(path, ns=(ns, ns), follow_symlinks=False)
    except OSError:
        pass


def _chown(target, m: Member, st: _State, follow: bool = False) -> None:
    """Owner of a just-created entry (``target``: an open fd or a path, never followed) from the
    tar's numeric uid/gid; the one place extraction decides about owners."""
    if not st.same_owner:
        return
    if not st.is_root:  # no chown(2) without root: the owner is recorded for the layer headers
        record_owner(target, m.uid, m.gid, strict=False)
        return
    try:
        if isinstance(target, int):
            os.fchown(target, m.uid, m.gid)
        else:
            os.chown(target, m.uid, m.gid, follow_symlinks=False)
    except OSError as e:
        if st.is_root or e.errno not in (errno.EPERM, errno.EINVAL):
            raise LayerError(f"cannot set owner {m.uid}:{m.gid} of {m.name!r}: {e.strerror}") from None


_OVERLAY_XATTRS = ("trusted.overlay.", "user.overlay.")


def _set_xattrs(target, m: Member, st: "_State | None" = None) -> None:
    for name, value in m.xattrs:
        if name.startswith(PRIVATE_XATTRS):
            continue  # only ever set by this executor (fs/owners), never taken from a layer
        if st is not None and st.overlay is not None and name.startswith(_OVERLAY_XATTRS):
            continue  # overlayfs's own markers (opaque, redirect...): never from a layer
        try:
            if isinstance(target, int):
                os.setxattr(target, name, value)
            else:
                os.setxattr(target, name, value, follow_symlinks=False)
        except OSError:
            pass  # filesystem or privilege refuses it (e.g. trusted.*, user.* on symlinks)


def _chown_xattrs_path(path: str, m: Member, st: _State) -> None:
    _chown(path, m, st)
    if m.xattrs:
        _set_xattrs(path, m, st)


def _meta_path(path: str, m: Member, st: _State) -> None:
    """Owner, mode, xattrs, mtime of a just-created fifo or device node (not a symlink)."""
    _chown(path, m, st)
    os.chmod(path, m.mode)  # a fifo or device node we just made: nothing to follow
    _set_xattrs(path, m, st)
    _utime(path, m)


def _write_file(reader: TarReader, m: Member, path: str, st: _State) -> None:
    try:
        fd = os.open(path, _CREATE, 0o600)
    except FileExistsError:
        _remove(path, os.lstat(path), st)
        fd = os.open(path, _CREATE, 0o600)
    try:
        write = os.write
        for view in reader.data():  # views of the decompressed chunks: written without a copy
            while view:
                view = view[write(fd, view):]
        _chown(fd, m, st)
        os.fchmod(fd, m.mode)  # after chown, which clears setuid/setgid
        if m.xattrs:
            _set_xattrs(fd, m, st)
        ns = _ns(m.mtime)
        os.utime(fd, ns=(ns, ns))
    finally:
        os.close(fd)


def _hardlink(m: Member, path: str, st: _State) -> None:
    tparts = clean_name(m.linkname, what=f"hardlink target of {m.name!r}:")
    if not tparts:
        raise LayerError(f"layer entry {m.name!r} is a hardlink to the root directory")
    r = st.res.resolve_parent(tparts, create=False, name=m.linkname)
    tpath = os.path.join(st.res.host(r[0]), r[1]) if r else None
    try:
        tst = os.lstat(tpath) if tpath else None
    except FileNotFoundError:
        tst = None
    if tst is None and st.overlay is not None:
        raise NotStackable(f"layer entry {m.name!r} is a hardlink to {m.linkname!r} of a lower layer")
    if tst is None:
        raise LayerError(f"layer entry {m.name!r} is a hardlink to {m.linkname!r}, which does not exist in the layer")
    if stat.S_ISDIR(tst.st_mode):
        raise LayerError(f"layer entry {m.name!r} is a hardlink to directory {m.linkname!r}")
    try:
        os.link(tpath, path, follow_symlinks=False)
    except FileExistsError:
        existing = os.lstat(path)
        if existing.st_ino == tst.st_ino and existing.st_dev == tst.st_dev:
            return
        _remove(path, existing, st)
        os.link(tpath, path, follow_symlinks=False)


# -- removal ------------------------------------------------------------------------

def _remove(path: str, existing: os.stat_result, st: _State) -> None:
    """Remove ``path`` (never following it); a directory goes with its whole subtree."""
    if stat.S_ISDIR(existing.st_mode):
        _rmtree(path)
        st.res.invalidate()
    else:
        os.unlink(path)
        if stat.S_ISLNK(existing.st_mode):
            st.res.invalidate()


def _rmtree(path: str) -> None:
    def onerror(func, p, exc):  # read-only dirs when not root: make writable and retry once
        if isinstance(exc, PermissionError):
            try:
                os.chmod(os.path.dirname(p), 0o700)
                func(p)
                return
            except OSError:
                pass
        raise exc

    shutil.rmtree(path, onerror=lambda f, p, ei: onerror(f, p, ei[1]))


def _apply_whiteout(raw: str, parts: tuple[str, ...], st: _State) -> None:
    base = parts[-1]
    st.stats.whiteouts += 1
    dparts = parts[:-1]
    if base == WHITEOUT_OPAQUE:
        if st.overlay is not None and not dparts:  # overlayfs ignores a lower layer root's mark
            raise NotStackable(f"layer entry {raw!r}: an opaque marker at the layer's root")
        d = st.res.resolve_dir(dparts, create=True, name=raw)
        if st.overlay is not None:  # the layer's own entries of the directory stay visible
            os.setxattr(st.res.host(d), st.overlay + "opaque", b"y", follow_symlinks=False)
            return
        _opaque(st.res.host(d), dparts, st)
        return
    if base.startswith(WHITEOUT_META_PREFIX):
        return  # other AUFS meta entries (.wh..wh.plnk, .wh..wh.aufs): ignored per spec
    victim = base[len(WHITEOUT_PREFIX):]
    if victim in ("", ".", "..") or "/" in victim:
        raise LayerError(f"layer entry {raw!r}: whiteout of {victim!r} escapes its directory")
    vparts = dparts + (victim,)
    if vparts in st.layer_paths or vparts in st.layer_ancestors:
        return  # whiteouts only apply to lower layers
    if st.overlay is not None:  # the lower layers are elsewhere: leave overlayfs's whiteout
        d = st.res.resolve_dir(dparts, create=True, name=raw)
        path = os.path.join(st.res.host(d), victim)
        _create(path, st, lambda: os.mknod(path, stat.S_IFCHR | 0o600, 0))
        return
    d = st.res.resolve_dir(dparts, create=False, name=raw)
    if d is None:
        return
    path = os.path.join(st.res.host(d), victim)
    try:
        existing = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    _remove(path, existing, st)


def _opaque(dirpath: str, dparts: tuple[str, ...], st: _State) -> None:
    """Remove entries under ``dirpath`` that this layer did not create (recursively)."""
    try:
        it = os.scandir(dirpath)
    except (FileNotFoundError, NotADirectoryError):
        return
    with it:
        children = list(it)
    for e in children:
        cparts = dparts + (e.name,)
        if cparts in st.layer_paths or cparts in st.layer_ancestors:
            # created by (or holding entries of) this layer: keep it, but lower entries
            # below it are hidden by the opaque parent as well
            if e.is_dir(follow_symlinks=False):
                _opaque(e.path, cparts, st)
            continue
        _remove(e.path, e.stat(follow_symlinks=False), st)


# -- deferred directory metadata ------------------------------------------------------

def _finish_dirs(st: _State) -> None:
    """Apply directory modes and mtimes, deepest first, after all children exist."""
    for d in sorted(st.dirs, key=lambda d: len(d.parts), reverse=True):
        rel = st.res.resolve_path(d.parts) if d.parts else ""
        if rel is None:
            continue
        path = st.res.host(rel)
        try:
            s = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(s.st_mode):
            continue
        if st.overlay is not None:
            st.explicit_dirs.add(rel)
        os.chmod(path, d.mode)
        ns = _ns(d.mtime)
        os.utime(path, ns=(ns, ns), follow_symlinks=False)
