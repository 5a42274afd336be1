"""Run one command inside a stage's root directory: the RUN instruction's isolation.

Three modes, chosen once per build (strongest first, :mod:`executor.engine.isolation`):

``namespace``
    The process may mount (CAP_SYS_ADMIN). The command runs as pid 1 of new mount, PID, IPC
    and UTS namespaces (+ network for ``--network=none``), with hostname ``executor``. Inside:
    /proc (``/proc/sys``, ``/proc/sysrq-trigger``, ``/proc/irq``, ``/proc/bus``, ``/proc/fs``
    read-only; ``/proc/kcore``, ``/proc/keys``, ``/proc/timer_list`` ... masked, as the OCI
    runtime-spec / runc defaults do), a fresh read-only sysfs at /sys (left out when the kernel
    refuses it; never a bind of the host's /sys, whose cgroup submounts would stay writable),
    a tmpfs /dev with the basic nodes, /etc/resolv.conf and /etc/hosts bind-mounted from
    copies. The stage root is bind-mounted onto itself and made the namespace's root with
    ``pivot_root(".", ".")`` + ``umount2(".", MNT_DETACH)`` (pivot_root(2), "NOTES"), so the
    host's root is not reachable at all: a ``chroot(2)`` + ``chdir("..")`` escape ends at the
    stage root. Everything mounted disappears with the namespace, nothing of it reaches a layer.
    If pivot_root is refused (the executor itself runs in a chroot: EINVAL), the command is
    chrooted instead and treated as in ``chroot`` mode (no CAP_SYS_CHROOT).
``userns``
    No CAP_SYS_ADMIN, but user namespaces allowed (root in a pod with the default capabilities
    and no seccomp profile, ``hostUsers: false``): ``namespace`` mode inside a new user
    namespace whose ids map 1:1 onto the executor's (:mod:`executor.engine.userns`).
``chroot``
    Neither is possible (a pod with default capabilities whose seccomp profile refuses
    unshare(CLONE_NEWUSER), or user namespaces disabled): plain chroot; the parent creates the basic /dev nodes and a
    resolv.conf beforehand and removes them afterwards (see :mod:`executor.engine.runroot`).
    Trade-off: pivot_root is impossible without CAP_SYS_ADMIN and a process that keeps
    CAP_SYS_CHROOT can leave a chroot (``mkdir x; chroot x; chdir("..")`` x N; ``chroot(".")``),
    so CAP_SYS_CHROOT is dropped from the command's capability bounding set: a RUN that needs
    ``chroot(2)`` itself (debootstrap, some package post-install scripts) fails in this mode
    with EPERM. Creating a user namespace to regain it is refused by the kernel inside a
    chroot (unshare(2), EPERM). Every inherited file descriptor above 2 is closed before exec.

In both modes the capability bounding set is reduced to Docker's default set
(:data:`DEFAULT_CAPS`, capabilities(7) names; minus CAP_SYS_CHROOT in chroot mode), the
inheritable and ambient sets are cleared, so the command's CapEff as root is exactly that set.

This module is also the child program: ``python -m executor.engine.sandbox SPEC`` (the
:mod:`executor.engine.runspec` hand-over file)
sets up the isolation and execs the command, so the command's exit status is the
process's. A failure before exec exits 127 (command not found) or 126 (setup failed).
The runner (:func:`executor.engine.runroot.run_in_root`) starts it in a new session and, when
interrupted, kills it: the namespace's pid 1 has ``PR_SET_PDEATHSIG=SIGKILL``, so killing the
sandbox parent kills pid 1 and with it every process of the PID namespace.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import marshal
import os
import signal
import struct
import sys
from types import SimpleNamespace

from ..fs.paths import host_in_root

TYPE_CHECKING = False  # (typing.TYPE_CHECKING without importing typing: the child's start-up)
if TYPE_CHECKING:
    from .runspec import Bind, RunSpec

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")

HOSTNAME = "executor"

#: umask(2) a RUN command starts with, whatever the executor's own (Docker and BuildKit: 0022).
RUN_UMASK = 0o022

#: capabilities(7) numbers of Docker's default set (moby oci/caps/defaults.go), the bounding set
#: of a RUN command: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
#: NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
DEFAULT_CAPS = {
    "CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
    "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
    "CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31,
}
CAP_SYS_CHROOT = 18

#: OCI runtime-spec / runc default ``maskedPaths`` (files get /dev/null, dirs an empty read-only tmpfs).
MASKED_PATHS = ("/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap")
#: OCI runtime-spec / runc default ``readonlyPaths``.
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


def caps_mask(mode: str) -> int:
    """Bit mask of the capabilities a RUN keeps in ``mode`` (namespace|userns|chroot; in userns
    mode they are capabilities in the RUN's own user namespace); see DEFAULT_CAPS."""
    mask = 0
    for bit in DEFAULT_CAPS.values():
        if not (mode == "chroot" and bit == CAP_SYS_CHROOT):
            mask |= 1 << bit
    return mask


def load_spec(path: str) -> SimpleNamespace:
    """The :class:`~executor.engine.runspec.RunSpec` the runner wrote to ``path`` (its
    :meth:`~executor.engine.runspec.RunSpec.to_bytes`), as attributes (``binds`` too)."""
    with open(path, "rb") as f:
        d = marshal.loads(f.read())
    d["binds"] = [SimpleNamespace(**b) for b in d.get("binds", [])]
    return SimpleNamespace(**d)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    """unshare(2); raises OSError (EPERM without CAP_SYS_ADMIN)."""
    _check(_libc().unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2); raises OSError naming the target."""
    libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    rc = libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                    flags, data.encode() if data else None)
    _check(rc, f"mount {target}")


def umount2(target: str, flags: int) -> None:
    """umount2(2); raises OSError naming the target."""
    _check(_libc().umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) (no glibc wrapper: syscall 155 on x86_64, 41 on aarch64); raises OSError."""
    import platform
    nr = {"x86_64": 155, "aarch64": 41, "arm64": 41, "s390x": 217, "ppc64le": 203, "riscv64": 41}.get(
        platform.machine(), 155)
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    _check(libc.syscall(ctypes.c_long(nr), ctypes.c_char_p(new_root.encode()),
                        ctypes.c_char_p(put_old.encode())), "pivot_root")


def sethostname(name: str) -> None:
    """sethostname(2); only ever called inside a fresh UTS namespace."""
    raw = name.encode()
    _check(_libc().sethostname(raw, len(raw)), "sethostname")


def _prctl(option: int, arg2: int = 0, arg3: int = 0) -> None:
    libc = _libc()
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    _check(libc.prctl(option, arg2, arg3, 0, 0), f"prctl({option})")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities(keep: int) -> None:
    """Reduce this process's capability bounding set to the bits of ``keep`` and clear the
    inheritable and ambient sets (capabilities(7): after execve as root, P' = bounding set).

    Effective/permitted are untouched, so setuid/setgid/chroot still work until exec.
    Raises OSError (EPERM without CAP_SETPCAP)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 63
    for cap in range(last + 1):
        if not keep & (1 << cap):
            try:
                _prctl(PR_CAPBSET_DROP, cap)
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: a capability this kernel does not know
                    raise
    try:
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as e:
        if e.errno != errno.EINVAL:  # kernels before 4.3 have no ambient set
            raise
    libc = _libc()
    hdr = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc.capget(ctypes.byref(hdr), data), "capget")
    data[0].inheritable = 0
    data[1].inheritable = 0
    _check(libc.capset(ctypes.byref(hdr), data), "capset")


def can_unshare_network() -> bool:
    """True when this process may create a network namespace (needed for RUN --network=none).

    Probes in a forked child so the parent's namespaces are never changed."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            unshare(CLONE_NEWNET)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def detect_mode() -> str:
    """The strongest mode this process can use: ``namespace`` (may create a mount namespace and
    mount in it), else ``userns`` (may create a user namespace and a fresh /proc in it), else
    ``chroot``. Probes in forked children (:mod:`.userns`); the namespaces never change here."""
    from .userns import namespace_refusal, userns_refusal
    if namespace_refusal() is None:
        return "namespace"
    return "userns" if userns_refusal() is None else "chroot"


def _locked_flags(path: str) -> int:
    """The mount flags of the mount holding ``path`` that a remount must keep: in a user
    namespace, flags of a mount inherited from a more privileged namespace are locked and a
    bind remount that drops them fails with EPERM (mount_namespaces(7))."""
    try:
        f = os.statvfs(path).f_flag
    except OSError:
        return 0
    out = f & (MS_NOSUID | MS_NODEV | MS_NOEXEC | 1024 | 2048)  # ST_* = MS_* for these, NOATIME/NODIRATIME
    return out | (1 << 21 if f & 4096 else 0)  # ST_RELATIME -> MS_RELATIME


def _inside(root: str, rel: str, want_dir: bool | None = None) -> str:
    """Host path of in-root ``rel`` resolved with chroot semantics (symlinks, absolute ones too,
    stay in the root; :func:`executor.fs.paths.host_in_root`). The result must exist and
    not be a symlink (mount(2) would follow it); ``want_dir`` also checks its type.
    Raises OSError naming ``rel``."""
    path = host_in_root(root, rel)
    if not os.path.lexists(path) or os.path.islink(path):
        raise OSError(errno.ENOENT, f"mount target {rel} does not exist in the root")
    if want_dir is not None and os.path.isdir(path) != want_dir:
        raise OSError(errno.ENOTDIR if want_dir else errno.EISDIR,
                      f"mount target {rel} is not a {'directory' if want_dir else 'file'}")
    return path


def _loopback_up() -> None:
    """Bring ``lo`` up in a fresh network namespace (SIOCSIFFLAGS, IFF_UP)."""
    import socket  # (RUN --network=none only)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s.fileno(), 0x8913, ifr))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH", b"lo", flags | 1))  # SIOCSIFFLAGS
    finally:
        s.close()


def _harden_proc_sys(proc: str | None, sysfs: str | None) -> None:
    """runc's defaults on the fresh /proc (mounted at host path ``proc``) and /sys (``sysfs``,
    None when there is none): READONLY_PATHS re-bound read-only, MASKED_PATHS covered
    (/dev/null over files, an empty read-only tmpfs over directories). Paths this kernel
    does not have are skipped; failing to protect one that exists raises OSError."""
    def host(rel: str) -> str | None:
        top, _, rest = rel.lstrip("/").partition("/")
        base = proc if top == "proc" else sysfs
        return os.path.join(base, rest) if base else None

    ro = MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC
    for rel in READONLY_PATHS:
        path = host(rel)
        if path is None or not os.path.lexists(path):
            continue
        mount(path, path, None, MS_BIND | MS_REC)
        mount(path, path, None, ro)
    for rel in MASKED_PATHS:
        path = host(rel)
        if path is None or not os.path.lexists(path):
            continue
        if os.path.isdir(path):
            mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0")
        else:
            mount("/dev/null", path, None, MS_BIND)


def _setup_mounts(spec: RunSpec, secrets: dict[str, bytes]) -> None:
    root = spec.root
    proc = _inside(root, "/proc", want_dir=True) if spec.proc else None
    if proc is not None:
        mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    sysfs = _inside(root, "/sys", want_dir=True)
    try:
        mount("sysfs", sysfs, "sysfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
        sys_ok = True
    except OSError:
        sys_ok = False  # sysfs is optional for builds: an empty /sys rather than the host's
    _harden_proc_sys(proc, sysfs if sys_ok else None)
    dev = _inside(root, "/dev", want_dir=True)
    mount("tmpfs", dev, "tmpfs", MS_NOSUID, "mode=755,size=65536k")
    for name in DEV_NODES:
        target = os.path.join(dev, name)
        open(target, "w").close()
        mount(f"/dev/{name}", target, None, MS_BIND)
    for sub in ("pts", "shm"):
        os.mkdir(os.path.join(dev, sub))
    mount("tmpfs", os.path.join(dev, "shm"), "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=65536k")
    try:
        mount("devpts", os.path.join(dev, "pts"), "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
        os.symlink("pts/ptmx", os.path.join(dev, "ptmx"))
    except OSError:
        pass
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, os.path.join(dev, link))
    for b in spec.binds:
        if b.kind == "tmpfs":
            target = _inside(root, b.target, want_dir=True)
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, b.options or None)
        elif b.kind == "secret":
            _mount_secret(root, b, secrets[b.target])
        else:
            target = _inside(root, b.target, want_dir=os.path.isdir(b.source))
            mount(b.source, target, None, MS_BIND | MS_REC)
            if b.readonly:
                mount(b.source, target, None, MS_BIND | MS_REC | MS_REMOUNT | MS_RDONLY | _locked_flags(target))


def _read_secrets(spec: RunSpec) -> dict[str, bytes]:
    """The bytes of each secret bind (target -> content), read from the executor's memfds
    before any namespace is entered (a process in a new user namespace may not open
    another's /proc/PID/fd)."""
    out = {}
    for b in spec.binds:
        if b.kind == "secret":
            with open(b.source, "rb") as f:
                out[b.target] = f.read()
    return out


def _mount_secret(root: str, b: Bind, data: bytes) -> None:
    """A secret held in a memfd of the executor (``b.source``, a /proc/PID/fd path, read as
    ``data`` by :func:`_read_secrets`): mount a
    tmpfs on the executor's empty holder directory (``b.options`` = ``holder:uid:gid:mode``;
    the mount exists only in this namespace), write the secret there, bind it read-only at
    ``b.target``. No byte of it reaches a disk."""
    holder, uid, gid, mode = b.options.rsplit(":", 3)
    mount("tmpfs", holder, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"mode=0700,size={max(len(data), 1) + 4096}")
    path = os.path.join(holder, "secret")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
        os.fchown(fd, int(uid), int(gid))
        os.fchmod(fd, int(mode, 8))
    finally:
        os.close(fd)
    target = _inside(root, b.target, want_dir=False)
    mount(path, target, None, MS_BIND)
    mount(path, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _enter_root(spec: RunSpec) -> bool:
    """Make the stage root this process's root. Namespace mode: bind it onto itself, then
    ``pivot_root(".", ".")`` and lazily unmount the old root stacked on top (pivot_root(2),
    NOTES), so no path leads back to the host. Returns True when the command may keep
    CAP_SYS_CHROOT (pivot_root done), False when a plain chroot was used (chroot mode, or
    pivot_root refused because the executor itself runs in a chroot)."""
    root = spec.root
    if spec.mode != "chroot":
        os.chdir(root)
        try:
            pivot_root(".", ".")
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
        else:
            umount2(".", MNT_DETACH)
            os.chdir("/")
            return True
    os.chroot(root)
    os.chdir("/")
    return False


def _close_inherited_fds() -> None:
    """Close every descriptor above stderr (no directory or socket fd may lead outside the root)."""
    os.closerange(3, max(os.sysconf("SC_OPEN_MAX"), 1024))  # close_range(2) where the kernel has it


def _enter(spec: RunSpec) -> None:
    """Enter the root, chdir, reduce capabilities, drop to the user, exec; never returns."""
    keep_chroot = _enter_root(spec)
    try:
        os.chdir(spec.cwd)
    except OSError:
        os.chdir("/")
    mask = caps_mask("namespace" if keep_chroot else "chroot")
    drop_capabilities(mask)
    os.setgroups(spec.groups)
    os.setgid(spec.gid)
    os.setuid(spec.uid)
    if spec.mode != "chroot":
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # again: a credential change cleared it (prctl(2))
    _close_inherited_fds()
    env = dict(e.split("=", 1) for e in spec.env if "=" in e)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execvpe(spec.argv[0], spec.argv, env)
    except FileNotFoundError:
        sys.stderr.write(f"executor: {spec.argv[0]}: command not found in the image\n")
        os._exit(127)
    except PermissionError as e:
        sys.stderr.write(f"executor: cannot execute {spec.argv[0]}: {e.strerror}\n")
        os._exit(126)
    except OSError as e:  # E2BIG (argument list too long), ENOEXEC, ...
        size = sum(len(a) + 1 for a in spec.argv) + sum(len(k) + len(v) + 2 for k, v in env.items())
        sys.stderr.write(f"executor: cannot execute {spec.argv[0]}: {e.strerror} "
                         f"(command and environment: {size} bytes)\n")
        os._exit(126)


def child_main(spec: RunSpec) -> int:
    """Set up the isolation for ``spec`` and exec its command; returns only on setup errors
    (or, in namespace mode, with the exit status of the namespace's pid 1).

    The file mode creation mask is set to 0022 first, as Docker and BuildKit start a RUN:
    the umask the executor was started under must not change the modes of the files the
    command creates (so not the image), nor of what is set up here (/dev, mount points)."""
    os.umask(RUN_UMASK)
    if spec.mode == "chroot":
        if spec.network == "none":  # RUN --network=none: a fresh, empty network namespace or fail
            unshare(CLONE_NEWNET)
            _loopback_up()
        _enter(spec)
        return 126
    # The runner may itself be killed (SIGKILL, OOM): then this parent dies, and pid 1 with it.
    runner = os.getppid()
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != runner:
        return 137  # the runner died before the line above
    secrets = _read_secrets(spec)
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if spec.network == "none":
        flags |= CLONE_NEWNET
    if spec.mode == "userns":  # the same namespaces, owned by a new user namespace (see .userns)
        from .userns import enter_user_namespace
        enter_user_namespace(flags)
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # kept across the credential change; be sure
        if os.getppid() != runner:
            return 137
    else:
        unshare(flags)  # all or nothing: the hostname below is only ever set in the new UTS namespace
    sethostname(HOSTNAME)
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    if spec.network == "none":
        _loopback_up()
    alive_r, alive_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(alive_w)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            os.set_blocking(alive_r, False)
            try:
                if os.read(alive_r, 1) == b"":  # EOF: the parent died before PDEATHSIG was armed
                    os._exit(137)
            except BlockingIOError:
                pass
            os.close(alive_r)
            os.setsid()  # its own session: "kill 0" / "kill -STOP $PPID" (PPID 0) reach only the RUN
            mount(spec.root, spec.root, None, MS_BIND | MS_REC)
            mount(None, spec.root, None, MS_REC | MS_PRIVATE)
            _setup_mounts(spec, secrets)
            _enter(spec)
        except OSError as e:
            sys.stderr.write(f"executor: RUN setup failed: {e}\n")
        except BaseException:  # pragma: no cover - never let a traceback out of pid 1
            pass
        os._exit(126)
    os.close(alive_r)
    # The parent only waits: a terminal's SIGINT is the runner's to handle (it kills us).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main(spec_path: str) -> None:
    """The sandbox process's entry point (:func:`executor.engine.runroot.child_argv`): run the RunSpec file at
    ``spec_path`` and exit with the command's status (126 when the set-up failed)."""
    try:
        spec = load_spec(spec_path)
        sys.exit(child_main(spec))
    except OSError as e:
        sys.stderr.write(f"executor: RUN setup failed: {e}\n")
        sys.exit(126)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover - ``python -m executor.engine.sandbox SPEC``, as before
    main(sys.argv[1])
