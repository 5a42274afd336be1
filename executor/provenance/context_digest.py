"""A digest of a build context directory as the build saw it (``.dockerignore`` applied).

Format (this project's, stable): the sha256 of the concatenation, in byte order of the
``/``-separated relative paths, of one record per entry that is not excluded::

    <type> <mode octal> <path>\\0<content>\\n

with type ``f`` (content: ``sha256:<hex>`` of the file), ``l`` (content: the link target) or
``d`` (content: empty). The Dockerfile counts like any other file when it lies in the context.
Ownership and timestamps are left out: they do not reach the image through COPY by default.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from ..oci.image import file_digest


def context_digest(root: Path, dockerfile: Path | None = None) -> tuple[str, int]:
    """(``sha256:<hex>`` of the context tree, number of entries hashed)."""
    from ..context import Context
    from ..dockerfile.ignore import DockerIgnore, find_dockerignore
    ignore = find_dockerignore(root, dockerfile) if dockerfile is not None else None
    ctx = Context(root, DockerIgnore.from_file(ignore) if ignore else None)
    records: list[tuple[bytes, bytes]] = []
    base = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(base):
        rel_dir = os.path.relpath(dirpath, base).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir else d
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                filenames.append(d)  # a symlink to a directory: recorded as a link, not followed
                continue
            if ctx.descend(rel):
                keep.append(d)
            if not ctx.excluded(rel, True):
                mode = stat.S_IMODE(os.lstat(full).st_mode)
                records.append((rel.encode(), f"d {mode:o} ".encode() + rel.encode() + b"\0\n"))
        dirnames[:] = keep
        for name in filenames:
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if ctx.excluded(rel):
                continue
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                rec = f"l {mode:o} ".encode() + rel.encode() + b"\0" + os.fsencode(os.readlink(full)) + b"\n"
            elif stat.S_ISREG(st.st_mode):
                rec = f"f {mode:o} ".encode() + rel.encode() + b"\0" + file_digest(full).encode() + b"\n"
            else:
                continue
            records.append((rel.encode(), rec))
    h = hashlib.sha256()
    for _, rec in sorted(records):
        h.update(rec)
    return "sha256:" + h.hexdigest(), len(records)
