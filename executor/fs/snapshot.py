"""Filesystem snapshots: what changed in the build root during one build step.

:class:`FsIndex` is an lstat-only index of a tree (nothing is read, no symlink is
followed); :func:`diff` compares two indexes and yields a :class:`ChangeSet` that
:func:`executor.layers.writer.write_layer` turns into a layer tarball.

Change detection uses the inode metadata only (like Kaniko's and BuildKit's
"stat-based" snapshotters): a path is changed when its type, permission bits, owner,
size, mtime, ctime, inode number or symlink target differ. ctime catches in-place
writes that keep size and mtime (``touch -r``) and chmod/chown; the inode number
catches a file replaced by rename.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

_S_IFMT = 0o170000
_S_IFDIR = stat.S_IFDIR
_S_IFLNK = stat.S_IFLNK


class FileStat(NamedTuple):
    """lstat of one path: ``mode`` is the full st_mode (type + permission bits);
    ``size`` bytes; ``mtime_ns``/``ctime_ns`` nanoseconds since the epoch; ``link`` is
    the symlink target for symlinks, else None.

    A named tuple (immutable, compared field by field) rather than a frozen dataclass:
    a scan creates one per path, and a frozen dataclass's __init__ costs ~5x more
    (30 000 paths: ~0.6 s of a 0.8 s walk).
    """

    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int
    link: str | None

    @property
    def is_dir(self) -> bool:
        return self.mode & _S_IFMT == _S_IFDIR

    def key(self) -> tuple:
        """The fields :func:`diff` compares (everything but ``dev``)."""
        return (self.mode, self.uid, self.gid, self.size, self.mtime_ns, self.ctime_ns, self.ino, self.link)


_new_filestat = tuple.__new__


def _filestat(st: os.stat_result, link: str | None) -> FileStat:
    return _new_filestat(FileStat, (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                    st.st_ino, st.st_dev, link))


def _norm(relpath: str) -> str:
    """'/a//b/' -> 'a/b'; '.' and '' -> ''."""
    return "/".join(p for p in relpath.split("/") if p not in ("", "."))


@dataclass
class FsIndex:
    """Index of a tree: relative path ("a/b", no leading "/", root is "") -> :class:`FileStat`.

    Built with :meth:`scan`; ``exclude`` holds relative paths that are neither indexed
    nor descended into (e.g. mount points "proc", "sys", "dev"). Behaves as a read-only
    mapping (``in``, ``[]``, ``len``, ``get``, iteration over paths).
    """

    entries: dict[str, FileStat] = field(default_factory=dict)
    exclude: frozenset[str] = frozenset()

    # -- mapping protocol
    def __contains__(self, path: str) -> bool:
        return path in self.entries

    def __getitem__(self, path: str) -> FileStat:
        return self.entries[path]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def get(self, path: str, default: FileStat | None = None) -> FileStat | None:
        return self.entries.get(path, default)

    # -- building
    @classmethod
    def scan(cls, root: Path, exclude: Iterable[str] = ()) -> "FsIndex":
        """lstat every path under ``root`` (an existing directory) with an os.scandir walk.

        Symlinks are recorded (with their target) and never followed; excluded relative
        paths are skipped with their subtrees. Directories that vanish or cannot be read
        during the walk are recorded without children. Raises FileNotFoundError if
        ``root`` does not exist.
        """
        idx = cls(exclude=frozenset(_norm(e) for e in exclude))
        root_s = os.fspath(root)
        idx.entries[""] = _filestat(os.lstat(root_s), None)
        _walk(root_s, "", idx.entries, idx.exclude)
        return idx

    def update(self, root: Path, relpaths: Iterable[str]) -> None:
        """Re-scan ``relpaths`` (and their subtrees) after a step that touched only them.

        Stale entries at or below each path are dropped and the current tree there is
        re-indexed; vanished paths disappear. The existing ancestors of each path are
        re-stat'ed too (adding a file changes its directory's mtime). A relpath whose
        ancestor is now a symlink or a non-directory is treated as vanished.
        """
        root_s = os.fspath(root)
        paths = sorted({_norm(p) for p in relpaths})
        if not paths:
            return
        if "" in paths:
            fresh = FsIndex.scan(root, self.exclude)
            self.entries = fresh.entries
            return
        prefixes = tuple(p + "/" for p in paths)
        pset = set(paths)
        for k in [k for k in self.entries if k in pset or k.startswith(prefixes)]:
            del self.entries[k]
        for p in paths:
            if p in self.exclude:
                continue
            parts = p.split("/")
            ok = True
            for i in range(len(parts)):  # ancestors, root first
                anc = "/".join(parts[:i])
                if anc in self.exclude:
                    ok = False
                    break
                try:
                    st = os.lstat(os.path.join(root_s, anc) if anc else root_s)
                except OSError:
                    ok = False
                    break
                if not stat.S_ISDIR(st.st_mode):
                    ok = False
                    break
                self.entries[anc] = _filestat(st, None)
            if not ok:
                continue
            hp = os.path.join(root_s, p)
            try:
                st = os.lstat(hp)
            except OSError:
                continue
            link = os.readlink(hp) if stat.S_ISLNK(st.st_mode) else None
            self.entries[p] = _filestat(st, link)
            if stat.S_ISDIR(st.st_mode):
                _walk(hp, p, self.entries, self.exclude)


def _walk(top: str, rel: str, out: dict[str, FileStat], exclude: frozenset[str]) -> None:
    """Iterative scandir walk adding lstat records below ``top`` (whose relpath is ``rel``)."""
    stack = [(top, rel)]
    readlink = os.readlink
    new = _new_filestat
    fs = FileStat
    pop = stack.pop
    push = stack.append
    while stack:
        d, r = pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        prefix = r + "/" if r else ""
        with it:
            for e in it:
                p = prefix + e.name
                if exclude and p in exclude:
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                m = st.st_mode & _S_IFMT
                link = None
                if m == _S_IFLNK:
                    try:
                        link = readlink(e.path)
                    except OSError:
                        continue
                elif m == _S_IFDIR:
                    push((e.path, p))
                out[p] = new(fs, (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                                  st.st_ctime_ns, st.st_ino, st.st_dev, link))


def path_sort_key(p: str) -> list[str]:
    """Sort key putting parents before children and each directory's subtree together."""
    return p.split("/")


@dataclass(frozen=True)
class ChangeSet:
    """The difference between two snapshots.

    ``changed``: added or modified relative paths, sorted by components so parents
    precede children; ``deleted``: removed paths, only the top-most path of each removed
    subtree (and none below a path replaced by a non-directory). The root ("") never
    appears.
    """

    changed: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not self.changed and not self.deleted


def diff(before: FsIndex, after: FsIndex) -> ChangeSet:
    """Compare two indexes of the same root; see :class:`ChangeSet`.

    A path is changed when type/mode/uid/gid/size/mtime_ns/ctime_ns/ino/link differ
    (``dev`` is ignored; ``ctime_ns`` only for non-directories). A path whose type changed between directory and non-directory
    is changed; the old directory's children need no whiteouts since the new entry
    replaces the whole subtree when the layer is applied.
    """
    b = before.entries
    a = after.entries
    changed: list[str] = []
    get = b.get
    for p, s in a.items():
        o = get(p)
        if o == s:  # whole-tuple compare in C: the common case, nothing changed
            continue
        # A directory's ctime moves whenever an entry is created or removed in it (even a
        # placeholder the executor removes again, with mtime restored): its own metadata is
        # mode/owner/mtime, and its content shows up as its children, so ctime is not compared.
        if o is None or (o.mode != s.mode or o.mtime_ns != s.mtime_ns
                         or (o.ctime_ns != s.ctime_ns and s.mode & _S_IFMT != _S_IFDIR)
                         or o.size != s.size or o.ino != s.ino or o.uid != s.uid or o.gid != s.gid
                         or o.link != s.link):
            if p:
                changed.append(p)
    deleted: list[str] = []
    for p in b.keys() - a.keys():  # set difference in C
        if not p:
            continue
        i = p.rfind("/")
        parent = p[:i] if i >= 0 else ""
        ps = a.get(parent)
        if ps is None or ps.mode & _S_IFMT != _S_IFDIR:
            continue  # parent deleted too, or replaced by a non-directory
        deleted.append(p)
    changed.sort(key=path_sort_key)
    deleted.sort(key=path_sort_key)
    return ChangeSet(tuple(changed), tuple(deleted))
