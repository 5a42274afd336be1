"""RUN ``--mount``: parse the mount specs and provide them to one RUN command.

Source: Docker Dockerfile reference, "RUN --mount" (types bind, cache, tmpfs, secret,
ssh and their options) and BuildKit ``frontend/dockerfile/instructions/commands_runmount.go``
(defaults: ``type=bind``; bind read-only unless ``rw``; cache ``id`` = target, ``sharing=shared``,
``mode=0755``; secret target ``/run/secrets/<id>``, ``mode=0400``; ssh id ``default``, target
``/run/buildkit/ssh_agent.N``, ``mode=0600``; relative targets are taken from WORKDIR).

Two ways to provide the mounts, matching the RUN isolation (:mod:`executor.engine.sandbox`):

``namespace``
    Each mount becomes a :class:`~executor.engine.runspec.Bind` made inside the RUN's private
    mount namespace (bind of a prepared host directory/file, or a tmpfs). Writes go to the
    bound source (the cache directory, a throw-away copy for ``bind,rw``) and never into the
    stage root; :func:`executor.engine.runroot.run_in_root` removes the mount-point placeholders.
``chroot`` (no CAP_SYS_ADMIN: mounting is impossible) — the documented fallback
    The content is *copied into* the root before the command and removed after it: whatever
    was at the target is moved aside and put back, missing parent directories are created and
    removed, parent timestamps are restored. ``type=cache`` content is copied back to the cache
    directory afterwards; ``bind`` writes are discarded (``readonly`` cannot be enforced, the
    content is thrown away either way); ``tmpfs`` is an empty directory (``size`` not enforced).
    Consequence: a file a command leaves open in the background after it exits is not seen;
    nothing written under a mount target reaches the layer in either mode.

``type=ssh`` is served by a relay socket (in both modes) that forwards each connection to the
agent socket given with ``--ssh default`` (``$SSH_AUTH_SOCK``) or ``--ssh ID=PATH``.
Secrets are read from ``--secret id=X,src=PATH|env=VAR`` only when the RUN starts, written to
a 0700 scratch directory of the executor (namespace mode) and deleted when it ends; their
values are never logged.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import logging
import os
import posixpath
import re
import shutil
import socket
import stat
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ...dockerfile.mounts import MountError, MountSpec
from ...options import BuildOptions
from ...fs.paths import resolve_in_root
from ..runspec import Bind

log = logging.getLogger("executor.run")

def default_cache_dir(opts: BuildOptions, work: Path) -> Path:
    """Where ``type=cache`` mounts persist: ``--run-cache-dir`` as given, else the executor's own
    cache directory ``$XDG_CACHE_HOME/executor/run-cache``, else ``~/.cache/executor/run-cache``
    (never a host-wide path next to the work directory; ``work`` is not used). Created 0700;
    one owned by another user or writable by group/others raises
    :class:`executor.workdir.UnsafeDirectory` (see :func:`executor.workdir.run_cache_dir`)."""
    from ...workdir import run_cache_dir
    return run_cache_dir(opts.run_cache_dir)


def ssh_sockets(items: list[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """``--ssh`` values -> {id: socket path}: ``default`` ($SSH_AUTH_SOCK), ``ID=PATH[,PATH]``."""
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for item in items:
        for part in [item] if "=" in item else item.split(","):
            sid, eq, path = part.partition("=")
            sid = sid.strip()
            if not sid:
                continue
            if eq:
                out[sid] = path.split(",")[0]
            elif env.get("SSH_AUTH_SOCK"):
                out[sid] = env["SSH_AUTH_SOCK"]
    return out


def copy_tree(src: Path, dst: Path) -> None:
    """Copy file or directory ``src`` to ``dst`` keeping type, mode, owner, mtime, symlinks."""
    st = os.lstat(src)
    if stat.S_ISDIR(st.st_mode):
        os.makedirs(dst, exist_ok=True)
        for entry in os.scandir(src):
            copy_tree(Path(entry.path), dst / entry.name)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    else:
        return  # sockets, fifos, devices are not part of mount content
    os.lchown(dst, st.st_uid, st.st_gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()


class _SshRelay:
    """A listening unix socket at ``path`` forwarding every connection to ``upstream``."""

    def __init__(self, path: Path, upstream: str, mode: int, uid: int, gid: int):
        self.upstream = upstream
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        os.chmod(path, mode)
        os.lchown(path, uid, gid)
        self.sock.listen(16)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            try:
                up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                up.connect(self.upstream)
            except OSError as e:
                log.warning("ssh agent %s: %s", self.upstream, e.strerror)
                conn.close()
                continue
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


@dataclass
class RunMounts:
    """Prepared mounts of one RUN: ``binds`` for namespace mode, ``env`` additions (secret env,
    SSH_AUTH_SOCK). Use as a context manager; :meth:`close` undoes everything (and, in chroot
    mode, syncs cache content back and removes what was copied into the root).

    ``tree_for(from_value)`` returns the host directory of a stage, image or (``""``) the build
    context. Raises MountError (missing secret marked required, missing bind source, no ssh agent).
    """

    specs: list[MountSpec]
    root: Path
    mode: str                         # namespace | chroot
    scratch: Path                     # executor-owned temp dir for this RUN (removed by close)
    cache_root: Path
    secrets: dict
    ssh: dict[str, str]
    tree_for: Callable[[str], Path]
    binds: list[Bind] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    _locks: list[int] = field(default_factory=list)
    _relays: list[_SshRelay] = field(default_factory=list)
    _undo: list[Callable[[], None]] = field(default_factory=list)
    _where: list[tuple[str, int, int]] = field(default_factory=list)
    _leaks: list[str] = field(default_factory=list)

    def __enter__(self) -> "RunMounts":
        try:
            self.scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
            for spec in self.specs:
                self._prepare(spec)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(raise_errors=exc_type is None)

    # -------------------------------------------------------------- sources
    def _secret_value(self, spec: MountSpec) -> bytes | None:
        src = self.secrets.get(spec.id)
        if src is None:
            if spec.required:
                raise MountError(f"secret {spec.id!r} is required but was not given: pass "
                                 f"--secret id={spec.id},src=PATH (or env=VAR)")
            return None
        if src.path is not None:
            try:
                return Path(src.path).read_bytes()
            except OSError as e:
                raise MountError(f"secret {spec.id!r}: cannot read its file: {e.strerror}") from None
        value = os.environ.get(src.env or spec.id)
        if value is None:
            if spec.required:
                raise MountError(f"secret {spec.id!r}: environment variable {src.env or spec.id} is not set")
            return None
        return value.encode()

    def _source_path(self, spec: MountSpec) -> Path:
        tree = self.tree_for(spec.from_)
        path = resolve_in_root(tree, spec.source or "/")
        if not os.path.lexists(path):
            where = f"--from {spec.from_}" if spec.from_ else "the build context"
            raise MountError(f"bind source {spec.source or '/'!r} does not exist in {where}")
        return path

    def _cache_dir(self, spec: MountSpec) -> Path:
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", spec.id.strip("/"))[:60] or "root"
        name += "-" + hashlib.sha256(spec.id.encode()).hexdigest()[:12]
        self.cache_root.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(self.cache_root / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._locks.append(lock_fd)
        if spec.sharing == "locked":
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
        elif spec.sharing == "private":
            try:
                fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise
                private = Path(tempfile.mkdtemp(prefix="private-", dir=self.scratch))
                os.chmod(private, spec.mode or 0o755)
                os.chown(private, spec.uid, spec.gid)
                return private  # in use elsewhere: a fresh, unshared cache for this RUN
        else:
            fcntl.flock(lock_fd, fcntl.LOCK_SH)
        path = self.cache_root / name
        if not path.is_dir():
            tmp = Path(tempfile.mkdtemp(prefix=f"{name}.new-", dir=self.cache_root))
            if spec.from_:
                src = self._source_path(spec)
                if src.is_dir():
                    for entry in os.scandir(src):
                        copy_tree(Path(entry.path), tmp / entry.name)
            os.chmod(tmp, spec.mode if spec.mode is not None else 0o755)
            os.chown(tmp, spec.uid, spec.gid)
            os.rename(tmp, path)
        return path

    # -------------------------------------------------------------- prepare
    def _prepare(self, spec: MountSpec) -> None:
        if spec.type == "secret":
            value = self._secret_value(spec)
            if value is None:
                log.info("secret %r not given and not required: not mounted", spec.id)
                return
            if spec.env:
                self.env[spec.env] = value.decode(errors="replace")
            if not spec.target:
                return
            if self.mode == "namespace":
                self._secret_in_memory(spec, value)
                return
            host = self.scratch / f"secret-{len(self._undo)}"
            fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(value)
            os.chown(host, spec.uid, spec.gid)
            os.chmod(host, spec.mode if spec.mode is not None else 0o400)
            self._undo.append(lambda h=host: h.unlink(missing_ok=True))
            self._provide(spec, host, readonly=True)
            if self.mode != "namespace":
                self._watch_secret(spec)
        elif spec.type == "ssh":
            upstream = self.ssh.get(spec.id)
            if not upstream or not os.path.exists(upstream):
                how = ("--ssh default (with SSH_AUTH_SOCK set to a running agent)" if spec.id == "default"
                       else f"--ssh {spec.id}=/path/to/agent.sock")
                detail = f"socket {upstream} does not exist" if upstream else "no agent socket was given"
                raise MountError(f"type=ssh id={spec.id}: {detail}; pass {how}")
            if self.mode == "namespace":
                host = self.scratch / f"ssh-{len(self._relays)}.sock"
                self._relays.append(_SshRelay(host, upstream, spec.mode or 0o600, spec.uid, spec.gid))
                self.binds.append(Bind(target=spec.target, source=str(host)))
            else:
                target = self._swap_in(spec.target)
                self._relays.append(_SshRelay(target, upstream, spec.mode or 0o600, spec.uid, spec.gid))
            self.env["SSH_AUTH_SOCK"] = spec.target
        elif spec.type == "tmpfs":
            if self.mode == "namespace":
                opts = "mode=1777" + (f",size={spec.size}" if spec.size else "")
                self.binds.append(Bind(target=spec.target, kind="tmpfs", options=opts))
            else:
                target = self._swap_in(spec.target)
                os.mkdir(target, 0o1777)
                os.chmod(target, 0o1777)
        elif spec.type == "bind":
            src = self._source_path(spec)
            if not spec.readonly and self.mode == "namespace":
                copy = self.scratch / f"bind-{len(self._undo)}"
                copy_tree(Path(os.path.realpath(src)), copy)  # rw: writes land in a throw-away copy
                self._undo.append(lambda c=copy: _remove(c))
                src = copy
            self._provide(spec, Path(os.path.realpath(src)), readonly=spec.readonly)
        elif spec.type == "cache":
            cache = self._cache_dir(spec)
            if self.mode == "namespace":
                self.binds.append(Bind(target=spec.target, source=str(cache), readonly=spec.readonly))
            else:
                target = self._swap_in(spec.target)
                copy_tree(cache, target)
                if not spec.readonly:
                    where = self._where[-1]
                    self._undo.append(lambda w=where, c=cache: _sync_back(self._current(w), c))

    def _secret_in_memory(self, spec: MountSpec, value: bytes) -> None:
        """Namespace mode: the secret never touches a disk. Its bytes sit in a memfd of this
        process; the sandbox mounts a tmpfs (private to the RUN's mount namespace) on an empty
        scratch directory, writes the file there and binds it read-only at the target. A kill of
        the executor (SIGKILL, OOM) frees the memfd and, with the namespace, the tmpfs."""
        fd = os.memfd_create(f"secret-{spec.id}"[:240], os.MFD_CLOEXEC)
        self._undo.append(lambda: os.close(fd))
        os.write(fd, value)
        holder = self.scratch / f"secret-tmpfs-{len(self._undo)}"
        holder.mkdir(mode=0o700)
        self._undo.append(lambda h=holder: h.rmdir() if h.is_dir() else None)
        mode = spec.mode if spec.mode is not None else 0o400
        self.binds.append(Bind(target=spec.target, source=f"/proc/{os.getpid()}/fd/{fd}", kind="secret",
                               readonly=True, options=f"{holder}:{spec.uid}:{spec.gid}:{mode:o}"))

    def _provide(self, spec: MountSpec, host: Path, readonly: bool) -> None:
        if self.mode == "namespace":
            self.binds.append(Bind(target=spec.target, source=str(host), readonly=readonly))
        else:
            copy_tree(host, self._swap_in(spec.target))

    def _swap_in(self, target: str) -> Path:
        """chroot fallback: make ``target`` free in the root (original moved aside, missing parents
        created); the undo removes what is there after the command and restores the original.

        The parents are resolved in the root (chroot semantics) and remembered by inode: the undo
        resolves again and only warns if the command replaced a parent (for example by a symlink
        to a host directory), so it never removes or reads anything outside the root."""
        from ..runroot import _Placeholders, canonical
        ph = _Placeholders(self.root)
        parent_rel = canonical(self.root, posixpath.dirname(target))
        ph.make_dir(parent_rel)
        rel = posixpath.join(parent_rel, posixpath.basename(target)).lstrip("/")
        ph.remember_parent(rel)
        parent = ph.host(parent_rel) if parent_rel else self.root
        pst = parent.lstat()
        if not stat.S_ISDIR(pst.st_mode):
            raise MountError(f"mount target {target}: its parent is not a directory")
        where = (rel, pst.st_dev, pst.st_ino)
        self._where.append(where)
        host = ph.host(rel)
        saved = None
        if os.path.lexists(host):
            saved = self.scratch.parent / f".mount-saved-{os.getpid()}-{id(host)}-{len(self._undo)}"
            if self.root.stat().st_dev != self.scratch.stat().st_dev:
                saved = host.with_name(f".executor-saved-{host.name}")
            os.rename(host, saved)

        def undo(where=where, saved=saved, ph=ph) -> None:
            now = self._current(where)
            if now is None:
                log.warning("RUN replaced a parent of mount target /%s: what it holds was left in place", where[0])
            else:
                _remove(now)
                if saved is not None:
                    os.rename(saved, now)
            ph.undo()
        self._undo.append(undo)
        return host

    def _current(self, where: tuple[str, int, int]) -> Path | None:
        """Host path of a swapped-in target now, or None when its parent is no longer the
        directory it was (``where`` = (in-root path, parent st_dev, parent st_ino))."""
        rel, dev, ino = where
        parent_rel = posixpath.dirname(rel)
        parent = resolve_in_root(self.root, "/" + parent_rel, follow_final=False) if parent_rel else self.root
        try:
            st = parent.lstat()
        except OSError:
            return None
        if (st.st_dev, st.st_ino) != (dev, ino) or not stat.S_ISDIR(st.st_mode):
            return None
        return parent / posixpath.basename(rel)

    def _watch_secret(self, spec: MountSpec) -> None:
        """chroot mode: after the command, the copied secret must still be the only link to its
        inode. A hard link (or a rename) would carry it into the layer: every other path of that
        inode in the root is removed and :meth:`close` fails the RUN."""
        where = self._where[-1]
        st = self._current(where).lstat()
        if not stat.S_ISREG(st.st_mode):
            return
        ident = (st.st_dev, st.st_ino)

        def check(where=where, ident=ident, sid=spec.id) -> None:
            now = self._current(where)
            try:
                nst = now.lstat() if now is not None else None
            except OSError:
                nst = None
            if nst is not None and (nst.st_dev, nst.st_ino) == ident and nst.st_nlink == 1:
                return
            links = [p for p in _paths_of_inode(self.root, ident) if p != now]
            for p in links:
                try:
                    p.unlink()
                except OSError as e:
                    log.warning("could not remove a link to secret %s: %s", sid, e.strerror)
            if links:
                shown = ", ".join("/" + os.path.relpath(p, self.root) for p in links[:3])
                self._leaks.append(f"RUN made a hard link to secret {sid} ({shown}); secrets never enter layers")
        self._undo.append(check)

    def close(self, raise_errors: bool = False) -> None:
        """Undo every preparation (reverse order), stop ssh relays, release cache locks.

        Always runs to the end. With ``raise_errors``, then raises MountError when the command
        made a hard link to (or moved) a chroot-mode secret (see :meth:`_watch_secret`)."""
        for relay in self._relays:
            relay.close()
        self._relays.clear()
        errors = []
        for fn in reversed(self._undo):
            try:
                fn()
            except OSError as e:
                errors.append(e)
        self._undo.clear()
        for fd in self._locks:
            try:
                os.close(fd)
            except OSError:
                pass
        self._locks.clear()
        shutil.rmtree(self.scratch, ignore_errors=True)
        for e in errors:
            log.warning("cleaning up a RUN mount: %s", e)
        leaks, self._leaks = self._leaks, []
        if leaks and raise_errors:
            raise MountError("; ".join(leaks))


def _paths_of_inode(root: Path, ident: tuple[int, int]) -> list[Path]:
    """Every path under ``root`` (same filesystem, symlinks not followed) of inode ``ident``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            p = Path(dirpath) / name
            try:
                st = p.lstat()
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == ident:
                found.append(p)
        keep = []
        for d in dirnames:
            try:
                if os.lstat(os.path.join(dirpath, d)).st_dev == ident[0]:
                    keep.append(d)
            except OSError:
                pass
        dirnames[:] = keep
    return found


def _sync_back(target: Path | None, cache: Path) -> None:
    """chroot fallback of ``type=cache``: the cache directory becomes what the command left
    (nothing happens when ``target`` is None: the command replaced its parent)."""
    if target is None or not target.is_dir() or target.is_symlink():
        return
    for entry in os.scandir(cache):
        _remove(Path(entry.path))
    for entry in os.scandir(target):
        copy_tree(Path(entry.path), cache / entry.name)


def drop_setup_only_dirs(changes, before, after, targets: list[str]):
    """``changes`` without the ancestor directories of ``targets`` (in-image absolute paths) whose
    only difference is ctime: creating and removing a mount point (or /etc/hosts placeholder)
    and restoring the parent's times leaves nothing else, and such a directory must not be put
    in the RUN's layer. ``changes`` is a snapshot.ChangeSet; ``before``/``after`` FsIndexes."""
    parents: set[str] = set()
    for t in targets:
        parts = [p for p in t.split("/") if p]
        for i in range(1, len(parts)):
            parents.add("/".join(parts[:i]))

    def same_but_ctime(p: str) -> bool:
        o, s = before.get(p), after.get(p)
        return (o is not None and s is not None and stat.S_ISDIR(s.mode)
                and (o.mode, o.uid, o.gid, o.size, o.mtime_ns, o.ino, o.link)
                == (s.mode, s.uid, s.gid, s.size, s.mtime_ns, s.ino, s.link))
    kept = tuple(p for p in changes.changed if not (p in parents and same_but_ctime(p)))
    return type(changes)(kept, changes.deleted)
