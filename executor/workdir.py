"""The executor's own directories on the build host: the private cache directory of RUN cache
mounts, and housekeeping of work directories left behind by killed runs.

RUN cache directory (``RUN --mount=type=cache`` content kept between builds)
    ``--run-cache-dir`` as given, else ``$XDG_CACHE_HOME/executor/run-cache`` (XDG Base
    Directory spec: only an absolute ``XDG_CACHE_HOME`` counts), else
    ``$HOME/.cache/executor/run-cache`` (the user database's home when ``HOME`` is unset).
    Never a predictable host-wide path such as ``/tmp/run-cache``: whoever can write the cache
    directory decides what the next build's cache mounts read. Missing directories are created
    mode 0700; an existing cache directory must be a directory owned by this process's
    effective user and not writable by group or others, else :class:`UnsafeDirectory`.

Work directories (``executor-XXXXXXXX``, :func:`new_work_dir`) are made in the temp directory
    (``$TMPDIR``, else /tmp) when the executor is root, and in ``<cache home>/executor/work``
    (``$XDG_CACHE_HOME`` or ``$HOME/.cache``, created 0700 and checked as the RUN cache is) when
    it is not (a rootless or restricted build: its own directory, not a host-wide one; the temp
    directory only when that one cannot be created).
    A build's work directory holds base layers, stage roots and, during a RUN, copies of
    secret-mount content. A killed executor (SIGKILL, OOM kill) cannot remove it, so every
    start removes those of earlier runs that are provably dead (:func:`remove_stale_work_dirs`).
    The marker that makes a directory removable is the file ``.executor-run`` inside it, created
    by :func:`new_work_dir`, on which the creating process holds an exclusive ``flock(2)`` for
    its whole life: the kernel drops that lock when the process dies however it dies, also
    across PID namespaces (containers sharing /tmp), and a recycled pid cannot fake it. The
    marker appears under its name already locked (locked under a temporary name, then renamed),
    so a live directory is never seen unlocked. A directory is removed only when it is a real
    directory (not a symlink) named ``executor-*`` directly in the scanned directory, it and
    its marker (a regular file) are owned by this effective user, and the marker's lock can be
    taken; the marker is removed last, so an interrupted removal is finished by the next start.
    Directories without the marker (made by others, by earlier versions, or kept on purpose with
    ``keep=True``) are never touched. The pid, process start time and boot id in the marker are
    for people reading it; the decision rests on the lock alone.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import pwd
import shutil
import stat
import tempfile
import threading
import time
from pathlib import Path
from typing import Mapping

from .errors import UserError

log = logging.getLogger("executor.workdir")

#: Name prefix of the work directories :func:`new_work_dir` makes (``tempfile.mkdtemp``).
WORK_PREFIX = "executor-"
#: The marker file inside a managed work directory (see the module docstring).
MARKER = ".executor-run"


class UnsafeDirectory(UserError):
    """A directory the executor keeps private state in belongs to another user, is writable by
    group/others, or is not a directory; the message names it and what to do."""


def cache_home(environ: Mapping[str, str] | None = None) -> Path:
    """The user's cache base directory: ``$XDG_CACHE_HOME`` when absolute (XDG Base Directory
    spec: relative values are invalid and ignored), else ``$HOME/.cache``, else
    ``<home of the effective user in the user database>/.cache``."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    home = env.get("HOME", "")
    if not home or not os.path.isabs(home):
        try:
            home = pwd.getpwuid(os.geteuid()).pw_dir
        except KeyError:
            home = "/"
    return Path(home) / ".cache"


def make_private_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents, each mode 0700 whatever the umask; returns the
    directories created (outermost first). A directory another thread or process creates
    meanwhile is fine. Raises OSError (EACCES, EROFS, ENOTDIR, ...) naming the path."""
    missing = []
    p = Path(path)
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created = []
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # mkdir(2) applied the umask; a umask cannot add bits, but be exact
        created.append(d)
    return created


def check_private_dir(path: Path, what: str) -> None:
    """Raise :class:`UnsafeDirectory` unless ``path`` (symlinks followed) is a directory owned by
    the effective user and writable by no one else (mode & 0o022 == 0). ``what`` names the
    directory's role in the message."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UnsafeDirectory(f"{what} {path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{what} {path} is not a directory")
    uid = os.geteuid()
    if st.st_uid != uid:
        raise UnsafeDirectory(f"{what} {path} is owned by uid {st.st_uid}, not by this user (uid {uid}): its content "
                              "could have been planted by someone else; use a directory of your own")
    if st.st_mode & 0o022:
        raise UnsafeDirectory(f"{what} {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): "
                              f"anyone who can write it decides what a build reads from it; run chmod go-w {path} "
                              "or use a private directory")


def run_cache_dir(explicit: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The directory of ``RUN --mount=type=cache`` content (see the module docstring): created
    0700 when missing, checked with :func:`check_private_dir` when present.

    Raises :class:`UnsafeDirectory` for a directory of another user or one writable by group or
    others. A directory that cannot be created (read-only home, ...) is returned unchecked: the
    cache mount that needs it fails then, builds without one are not affected."""
    path = Path(explicit) if explicit else cache_home(environ) / "executor" / "run-cache"
    try:
        make_private_dirs(path)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            raise UnsafeDirectory(f"RUN cache directory {path}: {e.strerror}") from None
        if not os.path.lexists(path):
            return path
    check_private_dir(path, "RUN cache directory")
    return path


def _root_is_host_root() -> bool:
    """True unless uid 0 of this process's user namespace is another uid outside (a rootless
    build's namespace, executor.rootless): /proc/self/uid_map's line for 0 maps to 0."""
    try:
        for line in Path("/proc/self/uid_map").read_text().splitlines():
            inside, outside, count = (int(x) for x in line.split())
            if inside <= 0 < inside + count:
                return outside + (0 - inside) == 0
    except (OSError, ValueError):
        pass
    return True


def default_work_parent(environ: Mapping[str, str] | None = None) -> Path:
    """Where work directories go by default: the temp directory as (host) root; otherwise
    ``cache_home()/executor/work`` (created 0700; :class:`UnsafeDirectory` when it is another
    user's or writable by others), or the temp directory when it cannot be created."""
    if os.geteuid() == 0 and _root_is_host_root():
        return Path(tempfile.gettempdir())
    path = cache_home(environ) / "executor" / "work"
    try:
        make_private_dirs(path)
    except OSError as e:
        log.debug("work directory parent %s cannot be created (%s): using the temp directory", path, e.strerror)
        return Path(tempfile.gettempdir())
    check_private_dir(path, "work directory parent")
    return path


_held: dict[str, int] = {}  # work directory -> descriptor of its locked marker
_held_lock = threading.Lock()


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> int | None:
    """Start time of ``pid`` in clock ticks since boot (proc(5), /proc/PID/stat field 22)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
        return int(raw.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def new_work_dir(parent: Path | None = None, *, keep: bool = False, housekeeping: bool = True) -> Path:
    """Create a fresh private (0700) work directory ``<parent>/executor-XXXXXXXX`` for this run
    and return its path; ``parent`` defaults to the temp directory (``$TMPDIR``, else /tmp).

    First removes the stale work directories of killed earlier runs in ``parent``
    (:func:`remove_stale_work_dirs`; ``housekeeping=False`` skips that). The new directory gets
    the locked marker, held until :func:`release_work_dir` or the end of the process, so a later
    start removes it if this process is killed before it removes it itself. With ``keep=True``
    (the work directory is to survive the run) no marker is made and no later start removes it.
    Raises OSError when the directory cannot be created."""
    base = Path(parent) if parent is not None else default_work_parent()
    if housekeeping:
        try:
            remove_stale_work_dirs(base)
        except OSError as e:  # housekeeping must never stop a build
            log.debug("work directory housekeeping in %s failed: %s", base, e)
    path = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=base))
    if keep:
        return path
    tmp = path / f"{MARKER}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        info = {"pid": os.getpid(), "start_ticks": _start_ticks(os.getpid()), "boot_id": _boot_id(),
                "created": time.time()}
        os.write(fd, json.dumps(info).encode() + b"\n")
        os.rename(tmp, path / MARKER)  # appears under its name already locked
    except OSError as e:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        log.debug("work directory %s left unmarked (no lock: %s); it is not housekept", path, e)
        return path
    with _held_lock:
        _held[str(path)] = fd
    return path


def release_work_dir(path: Path) -> None:
    """Drop this process's lock on ``path``'s marker (after removing the directory, or when a
    kept directory is to survive: the marker is removed then, so no later start removes it)."""
    with _held_lock:
        fd = _held.pop(str(path), None)
    if fd is None:
        return
    try:
        os.unlink(Path(path) / MARKER)
    except OSError:
        pass
    os.close(fd)


def remove_stale_work_dirs(parent: Path | None = None) -> list[Path]:
    """Remove the work directories of dead executor runs directly in ``parent`` (default: the
    temp directory); returns those removed. See the module docstring for what qualifies;
    everything else (other users' or programs' directories, live runs, unmarked directories)
    is left alone. A directory that cannot be removed completely is logged and skipped."""
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    removed = []
    try:
        entries = [e for e in os.scandir(base) if e.name.startswith(WORK_PREFIX)]
    except OSError:
        return removed
    for entry in entries:
        path = Path(entry.path)
        try:
            if _remove_if_stale(path):
                removed.append(path)
                log.info("removed the work directory %s of a killed executor run", path)
        except OSError as e:
            log.warning("could not remove the stale work directory %s: %s", path, e)
    return removed


def _remove_if_stale(path: Path) -> bool:
    uid = os.geteuid()
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid:
        return False
    try:
        fd = os.open(path / MARKER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return False  # no marker (not ours, kept, or still being created), or a symlink
    try:
        mst = os.fstat(fd)
        if not stat.S_ISREG(mst.st_mode) or mst.st_uid != uid or mst.st_nlink != 1:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False  # held: a live run (or the lock cannot be taken here: not provably dead)
        if not os.path.samestat(mst, os.lstat(path / MARKER)):
            return False  # the marker was replaced meanwhile
        with _held_lock:
            if str(path) in _held:
                return False  # this very process's own (cannot happen through flock; be sure)
        from .fs.overlay import unmount_below
        unmount_below(path)  # stage roots a killed run left mounted (overlayfs)
        _remove_contents(path, keep=MARKER)
        os.unlink(path / MARKER)  # last: a removal cut short is finished by the next start
        os.rmdir(path)
        return True
    finally:
        os.close(fd)


def _remove_contents(path: Path, keep: str) -> None:
    """Remove everything in directory ``path`` but the entry ``keep``; symlinks are removed, never
    followed (shutil.rmtree's fd-based walk). Read-only directories (an image's ``dr-xr-xr-x``)
    are made writable by their owner first, so a non-root run can remove its own trees."""
    def fix(func, p, exc):
        err = exc if isinstance(exc, BaseException) else exc[1]
        if isinstance(err, PermissionError):
            parent = os.path.dirname(p)
            try:
                os.chmod(parent, stat.S_IMODE(os.lstat(parent).st_mode) | stat.S_IRWXU)
                if os.path.isdir(p) and not os.path.islink(p):
                    os.chmod(p, stat.S_IMODE(os.lstat(p).st_mode) | stat.S_IRWXU)
                    shutil.rmtree(p, onerror=fix)
                else:
                    func(p)
                return
            except OSError:
                pass
        if isinstance(err, FileNotFoundError):
            return
        raise err

    for entry in os.scandir(path):
        if entry.name == keep:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, onerror=fix)
        else:
            os.unlink(entry.path)
