"""Parent side of RUN: prepare the root's mount points, start the sandbox child, clean up.

Whatever is created here only so the command can run (mount-point placeholders,
/dev nodes and resolv.conf in chroot mode) is removed again before the snapshot, and
the parent directories' timestamps are restored, so none of it reaches a layer.

The root is untrusted (a base image's /etc or /dev may be a symlink, absolute or not, and
the command may replace directories with symlinks while it runs). Every path written here
is resolved inside the root with :func:`executor.fs.paths.resolve_in_root` (chroot
semantics), a final symlink is never followed, and the clean-up resolves again and removes
only the very inodes it created, so nothing is created, changed or removed outside the root.

Interruption: the sandbox runs in a new session; if waiting for it is interrupted
(KeyboardInterrupt, :class:`executor.errors.Interrupted`, any exception) the session is
killed with SIGKILL (namespace and userns modes: the namespace's pid 1 dies with its parent through
PR_SET_PDEATHSIG, taking the whole PID namespace), in chroot mode every process whose root
is the stage root is killed too (also after a normal exit: background processes do not
outlive their RUN, as in Docker), then the placed files are removed and the exception goes on.
"""

from __future__ import annotations

import logging
import os
import posixpath
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..fs.paths import relpath_in_root, resolve_in_root
from .runspec import Bind, RunSpec
from .sandbox import DEV_NODES

log = logging.getLogger("executor.run")

HOSTS_DEFAULT = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


def canonical(root: Path, path: str) -> str:
    """In-root absolute ``path`` with every symlink resolved in the root (chroot semantics),
    as a ``/``-separated path relative to ``root`` ('' for the root itself)."""
    return relpath_in_root(root, resolve_in_root(root, path))


@dataclass
class _Placeholders:
    """What one RUN placed in ``root``, by in-root path; :meth:`undo` removes it again.

    Paths given to ``make_*`` are canonical (``canonical()``: no symlink component). Each
    created inode is remembered as (path, st_dev, st_ino); undo re-resolves the path in the
    root and removes it only if it is still that inode, so a command that swapped a parent
    for a symlink cannot make the clean-up touch anything outside the root (or anything it
    did not create)."""

    root: Path
    created: list[tuple[str, int, int]] = field(default_factory=list)  # deepest last
    parent_times: dict[str, tuple[int, int]] = field(default_factory=dict)
    swapped: list[tuple[str, Path, bool]] = field(default_factory=list)  # (in-root path, saved copy, renamed)
    temporary: list[tuple[str, int, int]] = field(default_factory=list)  # files placed for the command only

    def host(self, rel: str) -> Path:
        """Host path of in-root ``rel`` now: parents resolved in the root, final not followed."""
        return resolve_in_root(self.root, "/" + rel, follow_final=False)

    def remember_parent(self, rel: str) -> None:
        parent = posixpath.dirname(rel.strip("/"))
        if parent not in self.parent_times:
            try:
                st = self.host(parent).lstat() if parent else self.root.lstat()
                self.parent_times[parent] = (st.st_atime_ns, st.st_mtime_ns)
            except FileNotFoundError:
                pass

    def _record(self, rel: str, into: list) -> None:
        st = self.host(rel).lstat()
        into.append((rel, st.st_dev, st.st_ino))

    def make_dir(self, rel: str) -> None:
        rel = rel.strip("/")
        if not rel:
            return
        path = self.host(rel)
        if os.path.lexists(path):
            return
        self.make_dir(posixpath.dirname(rel))
        self.remember_parent(rel)
        host = self.host(rel)
        os.mkdir(host, 0o755)
        _fix_mode(host, 0o755, directory=True)  # mkdir(2) applies the executor's umask
        self._record(rel, self.created)

    def make_file(self, rel: str) -> None:
        rel = rel.strip("/")
        if os.path.lexists(self.host(rel)):
            return
        self.make_dir(posixpath.dirname(rel))
        self.remember_parent(rel)
        fd = os.open(self.host(rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            os.fchmod(fd, 0o644)  # open(2) applies the executor's umask
        finally:
            os.close(fd)
        self._record(rel, self.created)

    def make_node(self, rel: str, rdev: int) -> None:
        """A 0666 character device at ``rel`` (chroot-mode /dev); the parent must exist."""
        rel = rel.strip("/")
        self.remember_parent(rel)
        host = self.host(rel)
        os.mknod(host, 0o600 | stat.S_IFCHR, rdev)  # mknod never follows a final symlink
        self._record(rel, self.created)
        os.chmod(host, 0o666)

    def write_file(self, rel: str, content: bytes, mode: int, temporary: bool) -> None:
        """Create ``rel`` (O_EXCL|O_NOFOLLOW) with ``content``; removed by undo."""
        rel = rel.strip("/")
        self.remember_parent(rel)
        host = self.host(rel)
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(content)
            os.fchmod(f.fileno(), mode)
        self._record(rel, self.temporary if temporary else self.created)

    def swap_file(self, rel: str, content: bytes, saved: Path) -> None:
        """Replace the regular file ``rel`` by ``content`` for the command; undo puts it back.
        The original is renamed to ``saved`` (same filesystem) or copied there (another one:
        then it is overwritten in place and written back)."""
        rel = rel.strip("/")
        host = self.host(rel)
        saved.unlink(missing_ok=True)
        self.remember_parent(rel)
        renamed = host.lstat().st_dev == saved.parent.stat().st_dev
        if renamed:
            os.rename(host, saved)
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        else:
            fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                saved.write_bytes(f.read())
            flags = os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW
        self.swapped.append((rel, saved, renamed))
        fd = os.open(self.host(rel), flags, 0o644)
        with os.fdopen(fd, "wb") as f:
            if renamed:
                os.fchmod(f.fileno(), 0o644)  # a new file: not left to the executor's umask
            f.write(content)

    def _same(self, rel: str, dev: int, ino: int) -> Path | None:
        host = self.host(rel)
        try:
            st = host.lstat()
        except OSError:
            return None
        return host if (st.st_dev, st.st_ino) == (dev, ino) else None

    def undo(self) -> None:
        for rel, dev, ino in self.temporary:
            host = self._same(rel, dev, ino)
            if host is not None:
                try:
                    host.unlink()
                except OSError:
                    pass
        for rel, saved, renamed in reversed(self.swapped):
            try:
                if renamed:
                    os.replace(saved, self.host(rel))  # rename(2): a final symlink is replaced, not followed
                else:
                    fd = os.open(self.host(rel), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
                    with os.fdopen(fd, "wb") as f:
                        f.write(saved.read_bytes())
                    saved.unlink()
            except OSError as e:
                log.warning("could not restore /%s: %s", rel, e)
        for rel, dev, ino in reversed(self.created):
            host = self._same(rel, dev, ino)
            if host is None:
                continue
            try:
                st = host.lstat()
                if stat.S_ISDIR(st.st_mode):
                    host.rmdir()  # only if still empty: the command may have used it
                elif stat.S_ISCHR(st.st_mode) or st.st_size == 0 or host.name == "resolv.conf":
                    host.unlink()
            except OSError:
                pass
        for parent, (atime, mtime) in self.parent_times.items():
            try:
                host = self.host(parent) if parent else self.root
                if not host.is_symlink():
                    os.utime(host, ns=(atime, mtime), follow_symlinks=False)
            except OSError:
                pass


def _fix_mode(path: Path, mode: int, directory: bool) -> None:
    """chmod a just-created ``path`` to ``mode`` through a descriptor opened with O_NOFOLLOW
    (never through a symlink someone put in its place); creation modes are masked by the
    executor's umask, which must not decide what the command or the image sees."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_DIRECTORY if directory else 0)
    fd = os.open(path, flags)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _host_file_copy(workdir: Path, name: str, fallback: str) -> Path:
    """A copy of the host's /etc/``name`` (or ``fallback``) in ``workdir``, mode 0644 whatever
    the umask: it is bind-mounted into the root, where a non-root command must read it."""
    dest = workdir / name
    if not dest.exists():
        try:
            dest.write_bytes(Path(f"/etc/{name}").read_bytes())
        except OSError:
            dest.write_text(fallback)
    os.chmod(dest, 0o644)
    return dest


def run_in_root(root: Path, argv: list[str], env: dict[str, str], *, cwd: str, uid: int, gid: int,
                groups: tuple[int, ...], mode: str, network: str, workdir: Path,
                binds: list[Bind] | None = None, files: dict[str, str] | None = None,
                stdout=None, stderr=None, proc: bool = True) -> int:
    """Run ``argv`` inside ``root`` with the given identity; returns the exit status.

    ``mode`` is ``namespace``, ``userns`` or ``chroot`` (see :mod:`executor.engine.sandbox`); ``workdir``
    is a scratch directory owned by the executor (for the spec file and resolv.conf copies).
    ``binds`` are extra mounts (RUN --mount), namespace and userns modes only. ``files`` maps an in-root
    top-level name to content placed (mode 0755) for the command and removed afterwards
    (heredoc scripts). ``proc`` False: no fresh /proc is mounted (userns mode where the kernel
    refuses one; :class:`executor.engine.isolation.Isolation`). Every placed file is removed again, also when this call is
    interrupted; an exception while waiting kills every process of the RUN first and is
    re-raised.
    """
    ph = _Placeholders(root)
    extra = list(binds or [])
    binds = []
    try:
        if mode != "chroot":  # namespace, userns: everything is mounted inside the sandbox
            for d in ("proc", "sys", "dev"):
                ph.make_dir(canonical(root, "/" + d))
            for name, fallback in (("resolv.conf", ""), ("hosts", HOSTS_DEFAULT)):
                rel = canonical(root, f"/etc/{name}")
                target = ph.host(rel)
                if os.path.lexists(target) and not stat.S_ISREG(target.lstat().st_mode):
                    continue
                ph.make_file(rel)
                binds.append(Bind(target=f"/etc/{name}", source=str(_host_file_copy(workdir, name, fallback))))
            for b in extra:
                _make_mount_point(root, b, ph)
            binds.extend(extra)
        else:
            dev = canonical(root, "/dev")
            ph.make_dir(dev)
            if ph.host(dev).is_dir() and not ph.host(dev).is_symlink():
                for name in DEV_NODES:
                    node = posixpath.join(dev, name)
                    if os.path.lexists(ph.host(node)):
                        continue
                    try:
                        ph.make_node(node, os.stat(f"/dev/{name}").st_rdev)
                    except OSError as e:
                        log.debug("cannot create /dev/%s: %s", name, e)
            rel = canonical(root, "/etc/resolv.conf")
            target = ph.host(rel)
            content = _host_file_copy(workdir, "resolv.conf", "").read_bytes()
            if not os.path.lexists(target):
                ph.make_dir(posixpath.dirname(rel))
                ph.write_file(rel, content, 0o644, temporary=False)
            elif stat.S_ISREG(target.lstat().st_mode):
                ph.swap_file(rel, content, workdir / "resolv.conf.saved")
        for name, content in (files or {}).items():
            ph.write_file(name.strip("/"), content.encode(), 0o755, temporary=True)
        spec = RunSpec(root=str(root), argv=argv, env=[f"{k}={v}" for k, v in env.items()], cwd=cwd,
                       uid=uid, gid=gid, groups=list(groups), mode=mode, network=network, binds=binds, proc=proc)
        with tempfile.NamedTemporaryFile("wb", dir=workdir, suffix=".spec", delete=False) as f:
            f.write(spec.to_bytes())
            spec_path = f.name
        try:
            return _run_sandbox(spec_path, root, mode, stdout, stderr)
        finally:
            os.unlink(spec_path)
    finally:
        ph.undo()


def child_argv(spec_path: str) -> list[str]:
    """The command line of a RUN's sandbox process: this interpreter without ``site`` (``-S``:
    no site-packages scan or .pth processing; the child needs the standard library and this
    package only, whose parent directory it is given): its interpreter starts ~10 ms sooner
    (~50 ms) than with ``python -m``."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return [sys.executable, "-S", "-c", CHILD_CODE, package_parent, spec_path]


#: ``python -S -c CHILD_CODE PACKAGE_PARENT SPEC_PATH`` (see :func:`child_argv`)
CHILD_CODE = ("import sys; sys.path.insert(0, sys.argv[1]); "
              "from executor.engine.sandbox import main; main(sys.argv[2])")


def _run_sandbox(spec_path: str, root: Path, mode: str, stdout, stderr) -> int:
    proc = subprocess.Popen(child_argv(spec_path),
                            stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True)
    try:
        return proc.wait()
    except BaseException:
        kill_session(proc.pid)
        raise
    finally:
        if mode == "chroot":
            kill_rooted(root)
        _reap(proc)


def _reap(proc: subprocess.Popen) -> None:
    while proc.returncode is None:
        try:
            proc.wait()
        except BaseException:  # a second interruption while reaping: the kill is already sent
            kill_session(proc.pid)


def kill_session(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (the sandbox started with start_new_session)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def rooted_pids(root: Path) -> list[int]:
    """Pids of the processes whose root directory (``/proc/PID/root``) is ``root`` or below it."""
    real = os.path.realpath(root)
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            where = os.readlink(f"/proc/{entry}/root")
        except OSError:
            continue
        if where == real or where.startswith(real + "/"):
            out.append(int(entry))
    return out


def kill_rooted(root: Path, passes: int = 50) -> None:
    """SIGKILL every process chrooted into ``root`` (chroot mode has no PID namespace to tear
    down: a RUN's background or setsid'd processes would otherwise survive it). Repeats until
    a pass finds none (a process may fork while being killed), at most ``passes`` times."""
    for _ in range(passes):
        pids = [p for p in rooted_pids(root) if p != os.getpid()]
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)  # let the killed exit before looking again
    log.warning("processes of the RUN in %s could not all be killed", root)


def _make_mount_point(root: Path, b: Bind, ph: _Placeholders) -> None:
    rel = canonical(root, b.target)
    if os.path.lexists(ph.host(rel)):
        return
    if b.kind == "secret" or (b.kind == "bind" and b.source and not os.path.isdir(b.source)):
        ph.make_file(rel)
    else:
        ph.make_dir(rel)
