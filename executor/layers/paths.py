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

import os
import stat
from dataclasses import dataclass, field

from executor.errors import LayerError

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


@dataclass
class RootResolver:
    """Resolve directory paths inside ``root`` without ever leaving it.

    ``root`` is a host path (str) of an existing directory. ``cache`` maps a cleaned
    relative directory (tuple of components) to its resolved relative path; call
    :meth:`invalidate` whenever a directory or symlink inside the root is removed or
    replaced (the extractor does). Not thread-safe.
    """

    root: str
    cache: dict[tuple[str, ...], str] = field(default_factory=dict)

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
        cur: list[str] = []
        todo: list[str] = list(reversed(parts))
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
            hp = os.path.join(self.root, *cur)
            try:
                st = os.lstat(hp)
            except FileNotFoundError:
                if not create:
                    return None
                os.mkdir(hp, 0o755)
                continue
            except NotADirectoryError:
                raise LayerError(f"cannot resolve {name or '/'.join(parts)!r}: a parent is not a directory") from None
            if stat.S_ISDIR(st.st_mode):
                continue
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_SYMLINKS:
                    raise LayerError(f"cannot resolve {name or '/'.join(parts)!r}: too many levels of symbolic links")
                target = os.readlink(hp)
                cur.pop()
                if target.startswith("/"):
                    cur = []
                todo.extend(reversed(target.split("/")))
                continue
            raise LayerError(f"cannot resolve {name or '/'.join(parts)!r}: {'/'.join(cur)!r} is not a directory")
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
