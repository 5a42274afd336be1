"""Run one command inside a stage's root directory: the RUN instruction's isolation.

Two modes, chosen once per build by :func:`detect_mode`:

``namespace``
    The process may mount (CAP_SYS_ADMIN): a private mount + PID (+ network for
    ``--network=none``) namespace with /proc, /sys (read-only), a tmpfs /dev with the
    basic nodes, /etc/resolv.conf and /etc/hosts bind-mounted from copies, then chroot.
    Everything mounted disappears with the namespace, so nothing of it reaches a layer.
``chroot``
    A Kubernetes pod with default capabilities (root, CAP_SYS_CHROOT, CAP_MKNOD, no
    CAP_SYS_ADMIN): plain chroot; the parent creates the basic /dev nodes and a
    resolv.conf beforehand and removes them afterwards (see :mod:`executor.build.runroot`).

This module is also the child program: ``python -m executor.build.sandbox SPEC.json``
sets up the isolation and execs the command, so the command's exit status is the
process's. A failure before exec exits 127 (command not found) or 126 (setup failed).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import socket
import struct
import sys
from dataclasses import asdict, dataclass, field

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

DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


@dataclass
class Bind:
    """A mount made inside the namespace: ``kind`` bind|tmpfs; ``target`` is inside the root."""

    target: str
    source: str = ""
    kind: str = "bind"
    readonly: bool = False
    options: str = ""


@dataclass
class RunSpec:
    """Everything the child needs: the root, the command and its identity and environment."""

    root: str
    argv: list[str]
    env: list[str]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    mode: str = "namespace"
    network: str = "default"
    binds: list[Bind] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "RunSpec":
        d = json.loads(text)
        d["binds"] = [Bind(**b) for b in d.get("binds", [])]
        return cls(**d)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")


def unshare(flags: int) -> None:
    """unshare(2); raises OSError (EPERM without CAP_SYS_ADMIN)."""
    _check(_libc().unshare(flags), "unshare")


def mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """mount(2); raises OSError naming the target."""
    libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    rc = libc.mount(source.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                    data.encode() if data else None)
    _check(rc, f"mount {target}")


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
    """``namespace`` when this process may create a mount namespace and mount in it, else ``chroot``.

    Probes in a forked child so the parent's namespaces are never changed.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            unshare(CLONE_NEWNS)
            mount("none", "/", None, MS_REC | MS_PRIVATE)
            mount("tmpfs", "/mnt", "tmpfs", 0, "size=4k") if os.path.isdir("/mnt") else None
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    return "namespace" if os.waitstatus_to_exitcode(status) == 0 else "chroot"


def _inside(root: str, rel: str) -> str:
    """Absolute host path of ``rel`` (an absolute in-root path) with no symlinked component escaping root."""
    path = os.path.join(root, rel.lstrip("/"))
    real = os.path.realpath(path)
    rroot = os.path.realpath(root)
    if real != rroot and not real.startswith(rroot + os.sep):
        raise OSError(errno.EPERM, f"mount target {rel} resolves outside the root")
    return real


def _loopback_up() -> None:
    """Bring ``lo`` up in a fresh network namespace (SIOCSIFFLAGS, IFF_UP)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        ifr = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(s.fileno(), 0x8913, ifr))[1]  # SIOCGIFFLAGS
        fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH", b"lo", flags | 1))  # SIOCSIFFLAGS
    finally:
        s.close()


def _setup_mounts(spec: RunSpec) -> None:
    root = spec.root
    proc = _inside(root, "/proc")
    mount("proc", proc, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    sysfs = _inside(root, "/sys")
    try:
        mount("/sys", sysfs, None, MS_BIND | MS_REC)
        mount("/sys", sysfs, None, MS_BIND | MS_REC | MS_REMOUNT | MS_RDONLY)
    except OSError:
        pass  # sysfs is optional for builds
    dev = _inside(root, "/dev")
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
        target = _inside(root, b.target)
        if b.kind == "tmpfs":
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, b.options or None)
        else:
            mount(b.source, target, None, MS_BIND | MS_REC)
            if b.readonly:
                mount(b.source, target, None, MS_BIND | MS_REC | MS_REMOUNT | MS_RDONLY)


def _enter(spec: RunSpec) -> None:
    """chroot into the root, chdir, drop to the user, exec; never returns."""
    os.chroot(spec.root)
    try:
        os.chdir(spec.cwd)
    except OSError:
        os.chdir("/")
    os.setgroups(spec.groups)
    os.setgid(spec.gid)
    os.setuid(spec.uid)
    env = dict(e.split("=", 1) for e in spec.env if "=" in e)
    try:
        os.execvpe(spec.argv[0], spec.argv, env)
    except FileNotFoundError:
        sys.stderr.write(f"executor: {spec.argv[0]}: command not found in the image\n")
        os._exit(127)
    except PermissionError as e:
        sys.stderr.write(f"executor: cannot execute {spec.argv[0]}: {e.strerror}\n")
        os._exit(126)


def child_main(spec: RunSpec) -> int:
    """Set up the isolation for ``spec`` and exec its command; returns only on setup errors."""
    if spec.mode == "chroot":
        if spec.network == "none":  # RUN --network=none: a fresh, empty network namespace or fail
            unshare(CLONE_NEWNET)
            _loopback_up()
        _enter(spec)
        return 126
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC
    if spec.network == "none":
        flags |= CLONE_NEWNET
    unshare(flags)
    mount("none", "/", None, MS_REC | MS_PRIVATE)
    if spec.network == "none":
        _loopback_up()
    pid = os.fork()
    if pid == 0:
        try:
            _setup_mounts(spec)
            _enter(spec)
        except OSError as e:
            sys.stderr.write(f"executor: RUN setup failed: {e}\n")
        os._exit(126)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


if __name__ == "__main__":  # pragma: no cover - exercised through subprocess in tests
    with open(sys.argv[1]) as f:
        _spec = RunSpec.from_json(f.read())
    try:
        sys.exit(child_main(_spec))
    except OSError as _e:
        sys.stderr.write(f"executor: RUN setup failed: {_e}\n")
        sys.exit(126)
