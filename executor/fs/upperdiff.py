"""The change set of a step from an overlayfs upper directory, without walking the root.

After a step ran on an overlay root (:mod:`executor.fs.overlay`), its upper directory holds
everything it wrote: new and copied-up entries, whiteouts for deleted lower entries, opaque
directories for lower directories that were removed and made again. :func:`upper_changes`
turns that into the :class:`~executor.fs.snapshot.ChangeSet` the lstat walk of the whole root
(:func:`executor.fs.snapshot.diff`) yields for the same step, so both write the same layer:

* an entry of the upper absent from the lowers, or of another type there: changed;
* a directory overlayfs only copied up (because something below it changed) is changed when
  its mode, owner or mtime differ from the lower's (the walk ignores a directory's ctime);
* a copied-up non-directory is changed when its mode, owner, size, mtime, link count, symlink
  target, xattrs or content differ from the lower's. (The walk also notices a no-op chmod,
  chown or ``touch -r`` through the ctime; such a step's file is left out here: its content
  and metadata are those of the layer below.) A file opened for writing but not written is
  unchanged, as in the walk;
* a whiteout: the lower entry is deleted;
* an opaque directory: changed, everything in it is new, and each lower entry of it (and of
  its subdirectories the upper has again as directories) that is gone is deleted.

The lowers are read as overlayfs reads them (top first; a whiteout or non-directory hides
deeper entries, an opaque directory hides deeper directories), with ``lstat`` on paths whose
parents were checked to be real directories: no symlink of a layer is ever followed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable, Sequence

from .overlay import OverlayFlavor, is_opaque, is_whiteout
from .snapshot import ChangeSet, path_sort_key

_CHUNK = 1 << 20


def _lookup(lows: list[str], name: str, flavor: OverlayFlavor) -> tuple[os.stat_result, str, list[str]] | None:
    """``name`` in the merged lower directory whose layer directories are ``lows`` (top first):
    (its stat, host path in the top-most layer having it, and its own layer directories when it
    is a directory), or None when absent or whited out."""
    found = None
    child: list[str] = []
    for d in lows:
        path = d + "/" + name
        try:
            s = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if found is None:
            if is_whiteout(s):
                return None
            found = (s, path)
            if not stat.S_ISDIR(s.st_mode):
                return s, path, []
        elif not stat.S_ISDIR(s.st_mode):
            break  # a whiteout or non-directory below the directory ends the merge
        child.append(path)
        if is_opaque(path, flavor):
            break
    if found is None:
        return None
    return found[0], found[1], child


def _merged_names(lows: list[str]) -> set[str]:
    """Names visible in the merged lower directory made of ``lows`` (top first)."""
    names: set[str] = set()
    hidden: set[str] = set()
    for d in lows:
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                if e.name in names or e.name in hidden:
                    continue
                try:
                    s = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                (hidden if is_whiteout(s) else names).add(e.name)
    return names


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        if n.startswith(("trusted.overlay.", "user.overlay.")):
            continue
        try:
            out[n] = os.getxattr(path, n, follow_symlinks=False)
        except OSError:
            pass
    return out


def _same_content(a: str, b: str) -> bool:
    fa = os.open(a, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        fb = os.open(b, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            while True:
                x = os.read(fa, _CHUNK)
                y = os.read(fb, _CHUNK)
                if x != y:
                    return False
                if not x:
                    return True
        finally:
            os.close(fb)
    finally:
        os.close(fa)


def _file_changed(up: str, s: os.stat_result, low: str, o: os.stat_result) -> bool:
    if (s.st_mode != o.st_mode or s.st_uid != o.st_uid or s.st_gid != o.st_gid or s.st_size != o.st_size
            or s.st_mtime_ns != o.st_mtime_ns or s.st_nlink != o.st_nlink):
        return True
    if stat.S_ISLNK(s.st_mode):
        return os.readlink(up) != os.readlink(low)
    if _xattrs(up) != _xattrs(low):
        return True
    if stat.S_ISREG(s.st_mode):
        return not _same_content(up, low)
    return s.st_rdev != o.st_rdev


def upper_changes(upper: Path, lowers: Sequence[Path], flavor: OverlayFlavor,
                  exclude: Iterable[str] = ()) -> ChangeSet:
    """The :class:`ChangeSet` of what was written into ``upper`` over ``lowers`` (layer
    directories, top first), relative paths as :func:`executor.fs.snapshot.diff` gives them;
    ``exclude``: relative paths neither reported nor descended into (e.g. "proc")."""
    excluded = frozenset("/".join(p for p in e.split("/") if p not in ("", ".")) for e in exclude)
    changed: list[str] = []
    deleted: list[str] = []
    # (upper dir, its relpath, its lower layer dirs, fresh: everything below is new)
    stack: list[tuple[str, str, list[str], bool]] = [(os.fspath(upper), "", [os.fspath(p) for p in lowers], False)]
    while stack:
        udir, rel, lows, fresh = stack.pop()
        prefix = rel + "/" if rel else ""
        present: set[str] = set()
        with os.scandir(udir) as it:
            entries = list(it)
        for e in entries:
            p = prefix + e.name
            if p in excluded:
                continue
            s = e.stat(follow_symlinks=False)
            if is_whiteout(s):
                if not fresh and _lookup(lows, e.name, flavor) is not None:
                    deleted.append(p)
                continue
            present.add(e.name)
            low = _lookup(lows, e.name, flavor) if lows else None
            if stat.S_ISDIR(s.st_mode):
                child_lows = low[2] if low is not None else []
                if fresh or low is None or not stat.S_ISDIR(low[0].st_mode):
                    changed.append(p)
                    stack.append((e.path, p, child_lows, True))
                elif is_opaque(e.path, flavor):
                    changed.append(p)
                    stack.append((e.path, p, child_lows, True))
                else:
                    o = low[0]
                    if (s.st_mode != o.st_mode or s.st_uid != o.st_uid or s.st_gid != o.st_gid
                            or s.st_mtime_ns != o.st_mtime_ns):
                        changed.append(p)
                    stack.append((e.path, p, child_lows, False))
            elif fresh or low is None or stat.S_ISDIR(low[0].st_mode) or _file_changed(e.path, s, low[1], low[0]):
                changed.append(p)
        if fresh and lows:  # a directory made again: the lower entries it no longer has are deleted
            for name in _merged_names(lows) - present:
                if prefix + name not in excluded:
                    deleted.append(prefix + name)
    changed.sort(key=path_sort_key)
    deleted.sort(key=path_sort_key)
    return ChangeSet(tuple(changed), tuple(deleted))


__all__ = ["upper_changes"]
