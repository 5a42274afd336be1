"""Path handling inside an untrusted root: lexical cleaning and chroot-like resolution.

Every path taken from a layer (an entry name, a hardlink target, a whiteout) is first
cleaned with :func:`clean_name`, then its parent directories are resolved with
:class:`RootResolver`, which follows symlinks *itself*, as if ``root`` were ``/``:
an absolute link target restarts at ``root`` and ``..`` never climbs above ``root``
(the semantics of ``openat2(RESOLVE_IN_ROOT)`` / umoci's securejoin). The final
component is never followed; callers operate on it with ``follow_symlinks=False`` /
``O_NOFOLLOW``. The resulting host paths therefore consist of ``root`` followed by
components that were each verified (lstat) to be real directories.
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from pathlib import Path

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: the RUN sandbox's start-up)
if TYPE_CHECKING:
    from collections.abc import Iterable

from executor.errors import LayerError
from executor.fs.owners import set_owner

#: Linux's MAXSYMLINKS: more symlinks than this while resolving one path is a loop.
MAX_SYMLINKS = 40


def clean_name(name: str, what: str = "layer entry") -> tuple[str, ...]:
    """Split a tar member name into clean components relative to the root.

    A leading ``/`` and ``.`` / empty components are dropped (OCI image-spec layer.md
    allows absolute-looking names, which are relative to the root). ``..`` is resolved
    lexically; a name that climbs above the root raises :class:`LayerError`
    (``"layer entry '../../etc/x' escapes the root"``). NUL bytes raise as well.
    Returns ``()`` for the root itself.
    """
    if "\x00" in name:
        raise LayerError(f"{what} {name!r} contains a NUL byte")
    out: list[str] = []
    for part in name.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not out:
                raise LayerError(f"{what} {name!r} escapes the root")
            out.pop()
            continue
        out.append(part)
    return tuple(out)


class RootResolver:
    """Resolve directory paths inside ``root`` without ever leaving it.

    ``root`` is a host path (str) of an existing directory. ``cache`` maps a cleaned
    relative directory (tuple of components) to its resolved relative path; call
    :meth:`invalidate` whenever a directory or symlink inside the root is removed or
    replaced (the extractor does). Not thread-safe. (A plain class: this module is imported
    by every RUN's sandbox process, whose start-up a dataclass import would cost ~20 ms.)
    """

    __slots__ = ("root", "cache")

    def __init__(self, root: str, cache: dict[tuple[str, ...], str] | None = None):
        self.root = root
        self.cache: dict[tuple[str, ...], str] = {} if cache is None else cache

    def invalidate(self) -> None:
        """Forget cached resolutions (after removing directories)."""
        self.cache.clear()

    def host(self, rel: str) -> str:
        """Host path of an already resolved relative path ('' is the root)."""
        return os.path.join(self.root, rel) if rel else self.root

    def resolve_dir(self, parts: tuple[str, ...], create: bool, name: str = "") -> str | None:
        """Resolve the directory ``parts`` inside the root; return its real relative path.

        Symlinks met on the way are followed within the root. Missing directories are
        created (mode 0755, owned by the caller) when ``create`` is true, else None is
        returned. A component that exists but is not a directory (after following
        symlinks) raises :class:`LayerError`, as does a symlink loop. ``name`` is only
        used in error messages.
        """
        if not parts:
            return ""
        hit = self.cache.get(parts)
        if hit is not None:
            return hit
        what = name or "/".join(parts)
        try:
            cur = walk_in_root(self.root, parts, create=create, strict=True)
        except NotADirectoryError as e:
            raise LayerError(f"cannot resolve {what!r}: {e.strerror}") from None
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise LayerError(f"cannot resolve {what!r}: too many levels of symbolic links") from None
            raise
        if cur is None:
            return None
        rel = "/".join(cur)
        self.cache[parts] = rel
        return rel

    def resolve_parent(self, parts: tuple[str, ...], create: bool, name: str = "") -> tuple[str, str] | None:
        """Resolve all but the last component; return ``(parent_rel, last)`` or None if missing."""
        parent = self.resolve_dir(parts[:-1], create, name)
        if parent is None:
            return None
        return parent, parts[-1]

    def resolve_path(self, parts: tuple[str, ...]) -> str | None:
        """Real relative path of ``parts`` with parents resolved and the last not followed."""
        if not parts:
            return ""
        r = self.resolve_parent(parts, create=False)
        if r is None:
            return None
        return f"{r[0]}/{r[1]}" if r[0] else r[1]

def walk_in_root(root: str, parts: Iterable[str], *, follow_final: bool = True, create: bool = False,
                 strict: bool = False) -> list[str] | None:
    """The one resolver: components of the real path of ``parts`` inside ``root`` (chroot semantics).

    Symlinks are read and followed here, never by the kernel: an absolute target restarts at
    ``root`` and ``..`` never climbs above it. ``follow_final=False`` leaves the last
    component unresolved. A missing component is created as a 0755 directory with ``create``;
    otherwise, with ``strict`` the walk returns None, without it the rest is kept literally.
    With ``strict`` a component that is not a directory raises NotADirectoryError. More than
    :data:`MAX_SYMLINKS` links raise OSError(ELOOP).
    """
    cur: list[str] = []
    todo = [p for p in reversed(list(parts))]
    links = 0
    while todo:
        comp = todo.pop()
        if comp in ("", "."):
            continue
        if comp == "..":
            if cur:
                cur.pop()
            continue
        cur.append(comp)
        if not todo and not follow_final:
            break
        host = os.path.join(root, *cur)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            if create:
                os.mkdir(host, 0o755)
                os.chmod(host, 0o755)  # mkdir applied the caller's umask; images must not depend on it
                continue
            if strict:
                return None
            continue
        except NotADirectoryError:
            if strict:
                raise NotADirectoryError(errno.ENOTDIR, "a parent is not a directory") from None
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, f"too many levels of symbolic links resolving {'/'.join(parts)}")
            target = os.readlink(host)
            cur.pop()
            if target.startswith("/"):
                cur = []
            todo.extend(reversed(target.split("/")))
            continue
        if strict and not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(errno.ENOTDIR, f"{'/'.join(cur)!r} is not a directory")
    return cur


def host_in_root(root: str, path: str, follow_final: bool = True) -> str:
    """Host path (str) of in-root ``path`` with every symlink resolved relative to ``root``.

    ``..`` never climbs above the root; absolute symlink targets restart at the root.
    With ``follow_final=False`` the last component is not followed (for lstat/replace).
    Raises OSError(ELOOP) on too many symlinks. Missing components are kept literally.
    """
    resolved = walk_in_root(root, path.split("/"), follow_final=follow_final) or []
    return posixpath.join(root, *resolved) if resolved else root


def resolve_in_root(root: Path, path: str, follow_final: bool = True) -> Path:
    """:func:`host_in_root` as a Path."""
    return Path(host_in_root(str(root), path, follow_final))


def make_dirs(root: Path, path: str, uid: int, gid: int, what: str) -> list[str]:
    """Create in-root directory ``path`` and its missing parents (mode 0755, owner uid:gid).

    Returns the created paths relative to ``root``, parents first. Raises BuildError naming
    ``what`` (the instruction) when a component exists and is not a directory.
    """
    from ..errors import BuildError
    created = []
    cur = "/"
    for part in [p for p in path.split("/") if p]:
        cur = posixpath.join(cur, part)
        host = resolve_in_root(root, cur)
        if host.is_dir():
            continue
        if os.path.lexists(host):
            raise BuildError(f"{what}: cannot create directory {cur}: a file of another type exists there")
        os.mkdir(host, 0o755)
        os.chmod(host, 0o755)
        set_owner(host, uid, gid)  # chown(2), or recorded without root (fs/owners)
        created.append(relpath_in_root(root, host))
    return created


def relpath_in_root(root: Path, host_path: Path) -> str:
    """The ``/``-separated path of ``host_path`` relative to ``root`` (no leading ``/``)."""
    rel = os.path.relpath(host_path, root)
    return "" if rel == "." else rel.replace(os.sep, "/")


def clean_abs(path: str, workdir: str = "/") -> str:
    """Absolute, normalised in-image path: relative paths are taken from ``workdir``.

    A trailing ``/`` is kept (it is meaningful for COPY destinations).
    """
    trailing = path.endswith("/") or path.endswith("/.") or path in (".", "..")
    joined = posixpath.normpath(posixpath.join(workdir or "/", path))
    if joined.startswith("//"):
        joined = joined[1:]
    if trailing and joined != "/":
        joined += "/"
    return joined
