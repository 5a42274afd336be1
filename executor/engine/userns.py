"""User namespaces for RUN: the ``userns`` isolation mode and the probes that choose a mode.

``userns`` is ``namespace`` mode inside a new user namespace (user_namespaces(7)): where the
executor lacks CAP_SYS_ADMIN (a pod with the default capabilities, ``hostUsers: false``) but
may create a user namespace, the sandbox unshares CLONE_NEWUSER together with the mount, PID,
IPC and UTS namespaces; it is then "root" of a namespace it owns and can mount a fresh /proc,
pivot_root and mask paths exactly as in ``namespace`` mode.

Id mapping. The map is the identity over every id this process itself has (each line
``first first count`` of ``/proc/self/uid_map`` / ``gid_map`` read as in-namespace ids), so
a file owned by 0 or 1000 in the stage root is 0 or 1000 for the command too and the layer
records the in-image owners. The map is written by a helper child that stays in the
executor's user namespace (a process cannot write a multi-line map of its own namespace);
``setgroups`` stays ``allow`` (the writer has CAP_SETGID), so a RUN may still call
setgroups(2) (apt's privilege drop to ``_apt`` does).

Probes (:func:`namespace_refusal`, :func:`userns_refusal`) run in forked children so the
executor's own namespaces never change; each returns ``None`` when the mode works or one
short reason naming what refused (for the single log line of :mod:`.isolation`).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Callable
from pathlib import Path

from .sandbox import (CLONE_NEWIPC, CLONE_NEWNS, CLONE_NEWPID, CLONE_NEWUTS, MS_NODEV, MS_NOEXEC, MS_NOSUID,
                      MS_PRIVATE, MS_REC, mount, unshare)

CLONE_NEWUSER = 0x10000000
CAP_SYS_ADMIN = 21
MAX_USER_NAMESPACES = Path("/proc/sys/user/max_user_namespaces")


class UsernsError(OSError):
    """Entering a user namespace failed; ``strerror`` names the step (unshare, uid_map, ...)."""


@dataclass(frozen=True)
class IdRange:
    """One line of a uid_map/gid_map (user_namespaces(7)): ``count`` ids from ``inside`` (in the
    namespace) map to ``outside`` (in its parent)."""

    inside: int
    outside: int
    count: int


def read_id_map(path: str | Path) -> tuple[IdRange, ...]:
    """Parse ``/proc/PID/uid_map`` or ``gid_map``; raises OSError / ValueError."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            a, b, c = (int(x) for x in line.split())
            out.append(IdRange(a, b, c))
    return tuple(out)


def identity_map(own: tuple[IdRange, ...]) -> str:
    """The map text for a child namespace that keeps every id this process has: one
    ``inside inside count`` line per range of ``own`` (at most 340 lines, the kernel's limit)."""
    return "".join(f"{r.inside} {r.inside} {r.count}\n" for r in own[:340])


def write_identity_maps(pid: int) -> None:
    """Write ``/proc/PID/uid_map`` and ``gid_map`` (identity over this process's own ranges).
    Needs CAP_SETUID/CAP_SETGID in this user namespace; raises UsernsError naming the file."""
    for kind in ("uid", "gid"):
        text = identity_map(read_id_map(f"/proc/self/{kind}_map"))
        try:
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write(text)
        except OSError as e:
            raise UsernsError(e.errno, f"writing {kind}_map refused: {errno.errorcode.get(e.errno, e.errno)}") from None


class MapError(Exception):
    """The helper that writes a new user namespace's uid_map/gid_map failed (its message)."""


def unshare_mapped(flags: int, write_maps: Callable[[int], str]) -> None:
    """unshare(CLONE_NEWUSER | ``flags``) in this (single-threaded) process while a helper child,
    still in the parent user namespace, runs ``write_maps(pid of this process)``, which returns ''
    or why the maps could not be written; returns once the maps are in place. Raises OSError
    (unshare refused; ``errno`` set) or :class:`MapError` (the writer's message)."""
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - helper child
        code = 1
        try:
            os.close(go_w)
            os.close(res_r)
            if os.read(go_r, 1) == b"u":
                why = write_maps(parent)
                if why:
                    os.write(res_w, why.encode()[:500])
                else:
                    code = 0
        except BaseException as e:
            os.write(res_w, str(getattr(e, "strerror", None) or e).encode()[:500])
        finally:
            os._exit(code)
    os.close(go_r)
    os.close(res_w)
    refused = None
    try:
        unshare(CLONE_NEWUSER | flags)
        os.write(go_w, b"u")
    except OSError as e:
        refused = e
    os.close(go_w)
    why = _read_all(res_r)
    _, status = os.waitpid(pid, 0)
    if refused is not None:
        raise refused
    if os.waitstatus_to_exitcode(status) != 0:
        raise MapError(why)


def enter_user_namespace(flags: int) -> None:
    """:func:`unshare_mapped` with the identity maps (:func:`write_identity_maps`). Afterwards
    this process is uid/gid 0 of the new namespace with every capability in it (and in the
    namespaces of ``flags``, which it owns). Raises UsernsError (unshare refused, map not written)."""
    def identity(pid: int) -> str:
        write_identity_maps(pid)
        return ""
    try:
        unshare_mapped(flags, identity)
    except MapError as e:
        raise UsernsError(errno.EPERM, str(e) or "the uid_map/gid_map writer failed") from None
    except OSError as e:
        raise UsernsError(e.errno, f"unshare(CLONE_NEWUSER) refused: {errno.errorcode.get(e.errno, e.errno)}"
                          + (" (seccomp, or user namespaces disabled?)" if e.errno == errno.EPERM else "")) from None


def _read_all(fd: int) -> str:
    """Read ``fd`` to EOF and close it."""
    chunks = []
    while chunk := os.read(fd, 512):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode(errors="replace")


def root_outside() -> int:
    """The uid that this namespace's uid 0 is in the parent namespace (0 for the host's root;
    a rootless build's user otherwise); 0 when unknown."""
    try:
        for r in read_id_map("/proc/self/uid_map"):
            if r.inside <= 0 < r.inside + r.count:
                return r.outside - r.inside
    except (OSError, ValueError):
        pass
    return 0


def _has_cap(bit: int) -> bool:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) & (1 << bit))
    except (OSError, ValueError):
        pass
    return False


def _in_child(probe) -> str | None:
    """Run ``probe()`` in a forked child; None when it returned, else the reason it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        try:
            probe()
            code = 0
        except BaseException as e:
            os.write(w, str(getattr(e, "strerror", None) or e).encode()[:500])
            code = 1
        os._exit(code)
    os.close(w)
    why = _read_all(r)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) == 0:
        return None
    return why or f"probe exited {os.waitstatus_to_exitcode(status)}"


def _named(what: str, e: OSError) -> OSError:
    return OSError(e.errno, f"{what} refused: {errno.errorcode.get(e.errno, e.errno)}")


def _mount_namespace_probe() -> None:  # pragma: no cover - runs in a probe child
    try:
        unshare(CLONE_NEWNS)
    except OSError as e:
        raise _named("unshare(CLONE_NEWNS)", e) from None
    try:
        mount("none", "/", None, MS_REC | MS_PRIVATE)
        if os.path.isdir("/mnt"):
            mount("tmpfs", "/mnt", "tmpfs", 0, "size=4k")
    except OSError as e:
        raise _named("mount", e) from None


def namespace_refusal() -> str | None:
    """Why ``namespace`` mode is impossible here (None: possible): no CAP_SYS_ADMIN, or the
    probe's unshare/mount was refused."""
    if not _has_cap(CAP_SYS_ADMIN):
        return "no CAP_SYS_ADMIN"
    return _in_child(_mount_namespace_probe)


def _userns_probe() -> None:  # pragma: no cover - runs in a probe child
    enter_user_namespace(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS)
    mount("none", "/", None, MS_REC | MS_PRIVATE)


def _proc_probe() -> None:  # pragma: no cover - runs in a probe child
    _userns_probe()
    pid = os.fork()  # the first child is pid 1 of the new PID namespace: it mounts the fresh /proc
    if pid == 0:
        try:
            mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
            os._exit(0)
        except OSError as e:
            os._exit(10 + (e.errno or 0) % 200)
        except BaseException:
            os._exit(9)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        err = code - 10 if code >= 10 else errno.EPERM
        raise OSError(err, f"a fresh /proc in a user namespace refused: {errno.errorcode.get(err, err)} "
                           "(this container's /proc has masked paths: procMount Default)")


def proc_refusal() -> str | None:
    """Why a ``userns`` RUN cannot have a fresh /proc (None: it can). The kernel refuses a new
    procfs in a user namespace unless an unmasked /proc is already visible (mount_namespaces(7);
    a Kubernetes pod's /proc has masked paths unless ``procMount: Unmasked``)."""
    return _in_child(_proc_probe)


def userns_refusal() -> str | None:
    """Why ``userns`` mode is impossible here (None: possible): user namespaces disabled by
    sysctl, unshare(CLONE_NEWUSER) refused (seccomp), the id maps not writable (probed for real
    in a forked child)."""
    try:
        if int(MAX_USER_NAMESPACES.read_text()) == 0:
            return f"user namespaces disabled: {MAX_USER_NAMESPACES} is 0"
    except (OSError, ValueError):
        pass
    return _in_child(_userns_probe)
