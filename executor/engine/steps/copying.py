"""COPY and ADD: copy sources into the stage root following Docker's destination rules.

Sources: Docker Dockerfile reference (COPY, ADD): a directory source copies its contents;
several sources (or a wildcard) need a destination ending in ``/``; a destination ending
in ``/`` or naming an existing directory receives ``basename(src)``; files from the
context become 0:0 unless ``--chown``; ``COPY --from`` keeps owners; mtimes are kept;
symlinks inside copied directories stay symlinks; hardlinks stay hardlinks.
"""

from __future__ import annotations

import errno
import os
import posixpath
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ...context import Context, SourceMatch
from ...errors import BuildError
from ...fs.owners import PRIVATE_XATTRS, recorded_owner, set_owner
from ...fs.paths import make_dirs, relpath_in_root, resolve_in_root

XATTR_PREFIXES = ("user.", "security.capability", "trusted.")


@dataclass
class CopySpec:
    """One COPY/ADD after expansion and source matching.

    ``dest`` is absolute in the image; a trailing ``/`` means "into this directory".
    ``chown`` is (uid, gid) or None; ``chmod`` an int mode or None; ``keep_owner`` is True for
    ``--from`` sources; ``filter`` is the .dockerignore-aware context for context sources.
    ``excludes`` are ``--exclude`` patterns relative to each source.
    """

    sources: list[SourceMatch]
    dest: str
    chown: tuple[int, int] | None = None
    chmod: int | None = None
    keep_owner: bool = False
    context: Context | None = None
    excludes: list[str] = field(default_factory=list)
    wildcard: bool = False
    parents: bool = False
    pivots: dict[str, str] = field(default_factory=dict)  # --parents: source rel -> leading part to drop

    def parents_rel(self, rel: str) -> str:
        """The path a ``--parents`` source keeps under the destination: ``rel`` minus the part
        before a ``/./`` pivot in its pattern (``COPY --parents ./x/./y/a.txt /d/`` -> ``/d/y/a.txt``)."""
        cut = self.pivots.get(rel, "")
        return rel[len(cut):].lstrip("/") if cut and (rel == cut or rel.startswith(cut + "/")) else rel


@dataclass
class _CopyState:
    root: Path
    spec: CopySpec
    written: list[str] = field(default_factory=list)
    links: dict[tuple[int, int], Path] = field(default_factory=dict)
    dir_times: list[tuple[Path, int, int]] = field(default_factory=list)


def _flag_excluded(spec: CopySpec, rel_in_source: str, rel_in_context: str, is_dir: bool) -> bool:
    """``--exclude``: Go filepath.Match patterns (``**`` and a matching parent directory count, as in
    .dockerignore) against the path relative to the copied source directory, or the source path
    as written in the instruction (Docker Dockerfile reference, COPY --exclude)."""
    if not spec.excludes:
        return False
    from ...dockerfile.ignore import DockerIgnore
    matcher = spec.__dict__.get("_exclude_matcher")
    if matcher is None:
        matcher = spec.__dict__["_exclude_matcher"] = DockerIgnore.from_lines(spec.excludes)
    if rel_in_source and matcher.excluded(rel_in_source, is_dir):
        return True
    return bool(rel_in_context) and rel_in_context != rel_in_source and matcher.excluded(rel_in_context, is_dir)


def _excluded(spec: CopySpec, rel_in_source: str, rel_in_context: str, is_dir: bool) -> bool:
    return spec.context is not None and spec.context.excluded(rel_in_context, is_dir)


def _mkdirs(state: _CopyState, dest_dir: str) -> Path:
    """Create ``dest_dir`` (absolute in image) and missing parents, owned by --chown or 0:0."""
    uid, gid = state.spec.chown if state.spec.chown else (0, 0)
    state.written += make_dirs(state.root, dest_dir, uid, gid, "COPY")
    return resolve_in_root(state.root, dest_dir)


def _copy_xattrs(src: Path, dst: Path) -> None:
    try:
        names = os.listxattr(src, follow_symlinks=False)
    except OSError:
        return
    for name in names:
        if name.startswith(XATTR_PREFIXES) and not name.startswith(PRIVATE_XATTRS):
            try:
                os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False), follow_symlinks=False)
            except OSError:
                pass


def _remove_existing(dst: Path, new_is_dir: bool) -> None:
    try:
        st = dst.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if new_is_dir:
            return
        shutil.rmtree(dst)
    else:
        dst.unlink()


def _owner(state: _CopyState, st: os.stat_result, src: Path) -> tuple[int, int]:
    if state.spec.chown is not None:
        return state.spec.chown
    if state.spec.keep_owner:
        return recorded_owner(src, st)  # the on-disk owner, or the one recorded without root
    return 0, 0


def _copy_one(state: _CopyState, src: Path, dst: Path, st: os.stat_result) -> None:
    """Copy one non-directory entry ``src`` (lstat ``st``) to host path ``dst``."""
    mode = stat.S_IMODE(st.st_mode)
    uid, gid = _owner(state, st, src)
    key = (st.st_dev, st.st_ino)
    _remove_existing(dst, False)
    if stat.S_ISREG(st.st_mode) and st.st_nlink > 1 and key in state.links:
        os.link(state.links[key], dst)
        state.written.append(relpath_in_root(state.root, dst))
        return
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        set_owner(dst, uid, gid)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            with open(src, "rb") as fsrc, os.fdopen(fd, "wb", closefd=False) as fdst:
                shutil.copyfileobj(fsrc, fdst, 1 << 20)
            set_owner(fd, uid, gid)
            os.fchmod(fd, state.spec.chmod if state.spec.chmod is not None else mode)
        finally:
            os.close(fd)
        _copy_xattrs(src, dst)
        if st.st_nlink > 1:
            state.links[key] = dst
    elif stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        os.mknod(dst, st.st_mode, st.st_rdev)
        set_owner(dst, uid, gid)
    else:  # sockets are not copied (as Docker)
        return
    os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)
    state.written.append(relpath_in_root(state.root, dst))


def _copy_dir_contents(state: _CopyState, src_dir: Path, dst_dir: Path, rel_src: str, rel_ctx: str) -> None:
    try:
        entries = sorted(os.scandir(src_dir), key=lambda e: e.name)
    except OSError as e:
        raise BuildError(f"cannot read source directory {rel_ctx or '.'}: {e.strerror}") from e
    for entry in entries:
        r_src = posixpath.join(rel_src, entry.name) if rel_src else entry.name
        r_ctx = posixpath.join(rel_ctx, entry.name) if rel_ctx else entry.name
        st = entry.stat(follow_symlinks=False)
        is_dir = stat.S_ISDIR(st.st_mode)
        if _flag_excluded(state.spec, r_src, r_ctx, is_dir):
            continue
        ignored_dir = False
        if _excluded(state.spec, r_src, r_ctx, is_dir):
            if not (is_dir and state.spec.context is not None and state.spec.context.descend(r_ctx)):
                continue
            ignored_dir = True  # entered only because an exception may re-include something inside
        dst = dst_dir / entry.name
        if is_dir:
            existed = os.path.lexists(dst)
            mark = len(state.written)
            _make_dir(state, dst, st, Path(entry.path))
            _copy_dir_contents(state, Path(entry.path), dst, r_src, r_ctx)
            if ignored_dir and not existed and len(state.written) == mark + 1:
                # Nothing inside was re-included: BuildKit's context walker creates an ignored
                # directory only as the parent of an included path, so it must not appear.
                os.rmdir(dst)
                state.written.pop()
                state.dir_times = [t for t in state.dir_times if t[0] != dst]
        else:
            _copy_one(state, Path(entry.path), dst, st)


def _make_dir(state: _CopyState, dst: Path, st: os.stat_result, src: Path) -> None:
    _remove_existing(dst, True)
    if not dst.is_dir():
        os.mkdir(dst, 0o700)
    uid, gid = _owner(state, st, src)
    set_owner(dst, uid, gid)
    os.chmod(dst, state.spec.chmod if state.spec.chmod is not None else stat.S_IMODE(st.st_mode))
    _copy_xattrs(Path(dst), dst)
    state.dir_times.append((dst, st.st_mtime_ns, st.st_mtime_ns))
    state.written.append(relpath_in_root(state.root, dst))


def _source_stat(spec: CopySpec, src: SourceMatch, what: str) -> tuple[Path, os.stat_result]:
    """The host path to copy for top-level source ``src`` (its symlinks followed) and its lstat.

    A stage or image source was resolved inside its own root by match_sources (chroot
    semantics); following it again with the host's realpath would read host files through an
    absolute symlink, so it is used as is. A context source has been checked to stay inside
    the context.
    """
    path = src.path if spec.context is None else Path(os.path.realpath(src.path))
    try:
        return path, os.lstat(path)
    except OSError as e:
        raise BuildError(f"{what}: source {src.rel or '.'!r}: {e.strerror}") from None


def copy_into_root(root: Path, spec: CopySpec, what: str) -> list[str]:
    """Perform the copy; returns the written paths relative to ``root`` (parents first).

    Raises BuildError for destination rule violations (several sources into a non-directory).
    """
    state = _CopyState(root=root, spec=spec)
    many = len(spec.sources) > 1  # one wildcard match into a path without "/" is that file (Docker)
    dest_is_dir = spec.dest.endswith("/")
    if len(spec.sources) > 1 and not dest_is_dir:
        raise BuildError(f"{what}: when using COPY with more than one source file, "
                         f"the destination must be a directory and end with a /")
    dest = spec.dest.rstrip("/") or "/"
    for src in spec.sources:
        host_src, st = _source_stat(spec, src, what)
        if src.rel and _flag_excluded(spec, src.rel, src.rel, stat.S_ISDIR(st.st_mode)):
            continue  # a source matched by the pattern but named by --exclude (COPY --exclude=*.md hom* /d/)
        prel = spec.parents_rel(src.rel) if spec.parents else ""
        if stat.S_ISDIR(st.st_mode):
            target = dest
            if prel:
                target = posixpath.join(dest, prel)
            dst_host = _mkdirs(state, target)
            _copy_dir_contents(state, host_src, dst_host, "", src.rel if src.ctx_rel is None else src.ctx_rel)
            continue
        if prel:
            target_dir = posixpath.join(dest, posixpath.dirname(prel))
            final = posixpath.join(target_dir, posixpath.basename(prel))
        elif dest_is_dir or many:
            target_dir, final = dest, posixpath.join(dest, posixpath.basename(src.rel or host_src.name))
        else:
            existing = resolve_in_root(root, dest)
            if existing.is_dir():
                target_dir, final = dest, posixpath.join(dest, posixpath.basename(src.rel or host_src.name))
            else:
                target_dir, final = posixpath.dirname(dest) or "/", dest
        _mkdirs(state, target_dir)
        dst_host = resolve_in_root(root, final, follow_final=False)
        _copy_one(state, host_src, dst_host, st)
    for path, atime, mtime in reversed(state.dir_times):
        try:
            os.utime(path, ns=(atime, mtime), follow_symlinks=False)
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
    return sorted(set(state.written))


def write_heredoc_file(root: Path, dest: str, name: str, content: str, chown: tuple[int, int] | None,
                       chmod: int | None) -> list[str]:
    """``COPY <<EOF /dest``: write ``content`` as a file (``dest`` ending in ``/`` gets ``name``)."""
    state = _CopyState(root=root, spec=CopySpec(sources=[], dest=dest, chown=chown, chmod=chmod))
    final = posixpath.join(dest, name) if dest.endswith("/") else dest
    _mkdirs(state, posixpath.dirname(final) or "/")
    dst = resolve_in_root(root, final, follow_final=False)
    _remove_existing(dst, False)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, content.encode())
        uid, gid = chown or (0, 0)
        set_owner(fd, uid, gid)
        os.fchmod(fd, chmod if chmod is not None else 0o644)
    finally:
        os.close(fd)
    state.written.append(relpath_in_root(root, dst))
    return sorted(set(state.written))
