"""Path resolution inside a build root, as if the root were ``/`` (chroot semantics).

Every path the build writes goes through :func:`resolve_in_root`, so a symlink in the
image (``/usr/lib -> /lib``, or a hostile ``x -> ../../..``) can never lead a write
outside the root.
"""

from __future__ import annotations

import errno
import os
import posixpath
from pathlib import Path

MAX_SYMLINKS = 40


def resolve_in_root(root: Path, path: str, follow_final: bool = True) -> Path:
    """Host path of in-root ``path`` with every symlink resolved relative to ``root``.

    ``..`` never climbs above the root; absolute symlink targets restart at the root.
    With ``follow_final=False`` the last component is not followed (for lstat/replace).
    Raises OSError(ELOOP) on too many symlinks. Missing components are kept literally.
    """
    root_s = str(root)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    resolved: list[str] = []
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        candidate = posixpath.join(root_s, *resolved, part)
        is_last = not parts
        if is_last and not follow_final:
            resolved.append(part)
            break
        try:
            st_link = os.path.islink(candidate)
        except OSError:
            st_link = False
        if st_link:
            links += 1
            if links > MAX_SYMLINKS:
                raise OSError(errno.ELOOP, f"too many levels of symbolic links resolving {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            continue
        resolved.append(part)
    return Path(posixpath.join(root_s, *resolved)) if resolved else Path(root_s)


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
        os.lchown(host, uid, gid)
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
