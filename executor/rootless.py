"""Rootless builds: an unprivileged user's ``executor`` becomes root of its own user namespace.

When the executor is started by a non-root user who has subordinate id ranges (subuid(5),
subgid(5): ``/etc/subuid`` and ``/etc/subgid``, as ``useradd`` creates them) and the setuid
helpers ``newuidmap``/``newgidmap`` (Debian package ``uidmap``) are installed, the build
process, before anything else, unshares a user namespace (user_namespaces(7)) whose maps a
helper child sets with those tools:

    inside 0          -> the user's own uid / gid     (1 id)
    inside 1 .. N     -> the first subordinate range  (N ids, usually 65536)

Inside, the process is uid 0 with every capability *of that namespace*, so the normal
machinery applies unchanged: detection picks ``namespace`` RUN isolation (it may create mount,
PID, IPC and UTS namespaces owned by its user namespace), layers are unpacked with their owners
(0 -> the user, 1000 -> subuid+999 on disk) and RUN steps run as in a root build; the image
equals the one root builds. Nothing else on the host gains anything: the ids are the user's
own and its delegated ranges. Work and cache directories are under the user's cache home
(``$XDG_CACHE_HOME`` or ``~/.cache``, see :mod:`executor.workdir`).

Without ranges or helpers, nothing happens here: a build without RUN still works (owners are
recorded, :mod:`executor.fs.owners`); a RUN fails with one line saying what is missing. With
them but refused (seccomp refusing unshare, no privilege escalation for the helpers), the
process stays as it was and the build log gets one ``rootless: no user namespace (...)`` line
(:func:`enter_or_fall_back`).
The process must still be single-threaded (unshare(2): EINVAL otherwise), so this runs first.
"""

from __future__ import annotations

import errno
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

SUBUID = Path("/etc/subuid")
SUBGID = Path("/etc/subgid")


class RootlessError(UserError):
    """The user namespace of a rootless build could not be set up; the message says why."""


@dataclass(frozen=True)
class IdRange:
    """A subordinate id range: ``count`` ids from ``start`` (subuid(5) line ``user:start:count``)."""

    start: int
    count: int


@dataclass(frozen=True)
class RootlessPlan:
    """What :func:`enter` maps: the user's own ids and their first subordinate ranges."""

    user: str
    uid: int
    gid: int
    subuid: IdRange
    subgid: IdRange
    newuidmap: str
    newgidmap: str

    def uid_args(self) -> list[str]:
        """newuidmap(1) mapping arguments: ``0 UID 1 1 START COUNT``."""
        return ["0", str(self.uid), "1", "1", str(self.subuid.start), str(self.subuid.count)]

    def gid_args(self) -> list[str]:
        return ["0", str(self.gid), "1", "1", str(self.subgid.start), str(self.subgid.count)]


def subordinate_range(path: Path, user: str, uid: int) -> IdRange | None:
    """The first range of ``user`` (by name or numeric id) in a subuid(5)/subgid(5) file."""
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)):
            try:
                start, count = int(parts[1]), int(parts[2])
            except ValueError:
                continue
            if count > 0:
                return IdRange(start, count)
    return None


def _helpers_blocked() -> str:
    """Why newuidmap/newgidmap cannot gain their privileges in this process ('' if they can):
    no_new_privs set (allowPrivilegeEscalation: false), or CAP_SETUID/CAP_SETGID not in the
    capability bounding set (proc(5) /proc/self/status NoNewPrivs, CapBnd)."""
    try:
        status = dict(line.split(":\t", 1) for line in Path("/proc/self/status").read_text().splitlines()
                      if ":\t" in line)
        if status.get("NoNewPrivs", "0").strip() == "1":
            return "no_new_privs is set (allowPrivilegeEscalation: false)"
        if int(status.get("CapBnd", "ffffffff").strip(), 16) & 0xC0 != 0xC0:  # CAP_SETGID 6, CAP_SETUID 7
            return "CAP_SETUID/CAP_SETGID are not in the capability bounding set"
    except (OSError, ValueError):
        pass
    return ""


def plan(environ: dict[str, str] | None = None) -> RootlessPlan | None:
    """The rootless plan for this process, or None: already root (also of a user namespace),
    no subordinate ranges, newuidmap/newgidmap missing or unable to gain their privileges."""
    if os.geteuid() == 0 or _helpers_blocked():
        return None
    uid, gid = os.getuid(), os.getgid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    subuid, subgid = subordinate_range(SUBUID, user, uid), subordinate_range(SUBGID, user, uid)
    tools = shutil.which("newuidmap"), shutil.which("newgidmap")
    if subuid is None or subgid is None or None in tools:
        return None
    return RootlessPlan(user=user, uid=uid, gid=gid, subuid=subuid, subgid=subgid,
                        newuidmap=tools[0], newgidmap=tools[1])


def missing_for_run() -> str:
    """One sentence saying why a non-root executor cannot run RUN steps here (for the error)."""
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    lacks = []
    if subordinate_range(SUBUID, user, uid) is None:
        lacks.append(f"no range for {user} in {SUBUID}")
    if subordinate_range(SUBGID, user, uid) is None:
        lacks.append(f"no range for {user} in {SUBGID}")
    for tool in ("newuidmap", "newgidmap"):
        if shutil.which(tool) is None:
            lacks.append(f"{tool} not installed (package uidmap)")
    if blocked := _helpers_blocked():
        lacks.append(f"newuidmap/newgidmap cannot work: {blocked}")
    why = "; ".join(lacks) or "the rootless user namespace could not be entered: see the 'rootless:' line above"
    return (f"RUN needs root or a rootless user namespace, and this executor runs as uid {uid} ({why}); "
            "run it as root, or as a user with subordinate ids (usermod --add-subuids/--add-subgids) who may use "
            "newuidmap/newgidmap, or build without RUN")


def enter_or_fall_back() -> str:
    """Enter the rootless user namespace when :func:`plan` finds one. Returns '' when entered or
    when nothing was meant to be entered (already root; no subordinate ranges or no map tools);
    otherwise, with this process left exactly as it was (uid, namespaces), one line for the build
    log saying why and what still works: unshare(CLONE_NEWUSER) refused (seccomp), the map tools
    refused (no privilege escalation, no CAP_SETUID/CAP_SETGID in the bounding set, setuid or
    file capabilities lost)."""
    if os.geteuid() == 0:
        return ""
    p = plan()
    if p is None:
        blocked = _helpers_blocked()
        if not blocked or not _has_ranges_and_tools():
            return ""
        why = f"newuidmap/newgidmap cannot work: {blocked}"
    else:
        try:
            enter(p)
            return ""
        except RootlessError as e:
            why = str(e).removeprefix("rootless build: ")
    return (f"rootless: no user namespace ({why}); continuing as uid {os.getuid()}: "
            "a Dockerfile without RUN builds, a RUN step fails")


def _has_ranges_and_tools() -> bool:
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = str(uid)
    return (subordinate_range(SUBUID, user, uid) is not None and subordinate_range(SUBGID, user, uid) is not None
            and shutil.which("newuidmap") is not None and shutil.which("newgidmap") is not None)


def _run_maps(p: RootlessPlan, pid: int) -> str:
    """Map ``pid``'s user namespace with newuidmap then newgidmap; '' or the failing tool's message."""
    for tool, args in ((p.newuidmap, p.uid_args()), (p.newgidmap, p.gid_args())):
        r = subprocess.run([tool, str(pid), *args], capture_output=True, text=True)
        if r.returncode != 0:
            return (r.stderr.strip() or f"{tool} exited {r.returncode}")[:500]
    return ""


def _unshare_error(e: OSError) -> RootlessError:
    hint = " (the process has threads)" if e.errno == errno.EINVAL else \
        " (user namespaces disabled, or refused by seccomp)" if e.errno in (errno.EPERM, errno.ENOSPC) else ""
    return RootlessError(f"rootless build: unshare(CLONE_NEWUSER) failed: {e.strerror}{hint}")


def _map_error(p: RootlessPlan, why: str) -> RootlessError:
    hint = (" (newuidmap/newgidmap need their file capabilities or setuid bit: not usable with "
            "no_new_privs / allowPrivilegeEscalation: false or an emptied capability bounding set)"
            if "Permission denied" in why or "Operation not permitted" in why else "")
    return RootlessError(f"rootless build: mapping ids {p.uid_args()} / {p.gid_args()} with newuidmap/newgidmap "
                         f"failed: {why}{hint}")


def _probe(p: RootlessPlan) -> None:
    """Map a throwaway child's new user namespace first: a refusal (unshare or a map tool) then
    leaves this process untouched, which an unmapped namespace of its own would not. Raises
    :class:`RootlessError`."""
    from .engine.sandbox import unshare
    from .engine.userns import CLONE_NEWUSER
    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - probe child
        code = 0
        try:
            os.close(ready_r)
            os.close(done_w)
            try:
                unshare(CLONE_NEWUSER)
                os.write(ready_w, b"u")
            except OSError as e:
                os.write(ready_w, str(e.errno or errno.EPERM).encode())
            os.read(done_r, 1)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(ready_w)
    os.close(done_r)
    try:
        got = os.read(ready_r, 32)
        if got != b"u":
            err = int(got) if got.isdigit() else errno.EPERM
            raise _unshare_error(OSError(err, os.strerror(err)))
        why = _run_maps(p, pid)
    finally:
        os.close(done_w)
        os.close(ready_r)
        os.waitpid(pid, 0)
    if why:
        raise _map_error(p, why)


def enter(p: RootlessPlan) -> None:
    """unshare(CLONE_NEWUSER) in this (single-threaded) process and have a helper child map it
    with newuidmap/newgidmap (:class:`RootlessPlan`); afterwards this process is uid/gid 0 of
    the new namespace with its full capability set. A probe child is mapped first
    (:func:`_probe`), so a refusal raises :class:`RootlessError` (naming the step that failed:
    unshare refused, a map tool's own message) with this process unchanged."""
    _probe(p)
    from .engine.userns import MapError, unshare_mapped
    try:
        unshare_mapped(0, lambda pid: _run_maps(p, pid))
    except MapError as e:
        raise _map_error(p, str(e)) from None
    except OSError as e:
        raise _unshare_error(OSError(e.errno, os.strerror(e.errno))) from None
    try:
        os.setgroups([])  # the user's other groups are unmapped (nogroup) inside
    except OSError:
        pass
