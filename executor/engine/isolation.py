"""RUN isolation mode: chosen once per build, when its first RUN executes.

``namespace``: pivot_root into private mount/PID/UTS/IPC namespaces (needs CAP_SYS_ADMIN).
``userns``: the same inside a new user namespace (no CAP_SYS_ADMIN, user namespaces allowed;
see :mod:`.userns`). ``chroot``: plain chroot for pods where neither works. See :mod:`.sandbox`.
Detection tries them strongest first in forked probe children (which only call unshare/mount
and exit, so other stages' threads do not matter) and logs one line: the mode and why each
stronger one was impossible. A build whose RUN steps are all cache hits never probes.
"""

from __future__ import annotations

import enum
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from .sandbox import can_unshare_network
from .userns import namespace_refusal, proc_refusal, root_outside, userns_refusal

log = logging.getLogger("executor.engine")


class IsolationMode(enum.StrEnum):
    NAMESPACE = "namespace"
    USERNS = "userns"
    CHROOT = "chroot"

    @property
    def mounts(self) -> bool:
        """True when the RUN runs in its own mount namespace (RUN --mount as real mounts)."""
        return self != IsolationMode.CHROOT


DESCRIPTION = {
    IsolationMode.NAMESPACE: "pivot_root into private mount/PID/IPC/UTS namespaces",
    IsolationMode.USERNS: "pivot_root into private user/mount/PID/IPC/UTS namespaces (ids mapped 1:1)",
    IsolationMode.CHROOT: "plain chroot in the executor's PID namespace; a RUN can see and signal "
                          "the executor's processes",
}


@dataclass(frozen=True)
class Isolation:
    """The build's RUN isolation: ``mode``, whether a network namespace can be made
    (``RUN --network=none`` in chroot mode needs it), ``reason``, why stronger modes were
    impossible ('' when the strongest was chosen or the mode was forced), and ``fresh_proc``:
    False when a userns-mode RUN (or a namespace-mode one in a user namespace) cannot mount its
    own /proc (masked /proc in a pod) and gets an empty one, as in chroot mode."""

    mode: IsolationMode
    can_unshare_network: bool
    reason: str = ""
    fresh_proc: bool = True

    @classmethod
    def detect(cls, wanted: str, needs_network_probe: bool) -> "Isolation":
        """Probe this process's privileges (``wanted``: auto | namespace | userns | chroot) and
        log the choice in one line. A forced mode is not probed (it fails at the first RUN)."""
        if os.geteuid() != 0:  # no rootless user namespace was entered (executor.rootless)
            from ..rootless import missing_for_run
            raise UserError(missing_for_run())
        if wanted == "auto":
            mode, reason = choose()
        else:
            mode, reason = IsolationMode(wanted), "forced with --run-isolation"
        fresh_proc = True
        # namespace mode counts too when this process is itself in a user namespace (a rootless
        # build, executor.rootless; hostUsers: false): the kernel refuses its fresh /proc the same way
        if (mode == IsolationMode.USERNS or (mode == IsolationMode.NAMESPACE and _in_user_namespace())) \
                and (why_proc := proc_refusal()) is not None:
            fresh_proc = False
            reason = "; ".join(filter(None, [reason, f"{why_proc}: RUN gets an empty /proc"]))
        outside = root_outside()
        if outside:  # a rootless build (executor.rootless) or a pod with hostUsers: false
            reason = "; ".join(filter(None, [f"in a user namespace: uid 0 = uid {outside} outside", reason]))
        log.info("RUN isolation: %s (%s)%s", mode, DESCRIPTION[mode], f"; {reason}" if reason else "")
        net = can_unshare_network() if (needs_network_probe and mode == IsolationMode.CHROOT) else True
        return cls(mode=mode, can_unshare_network=net, reason=reason, fresh_proc=fresh_proc)


def _in_user_namespace() -> bool:
    """True unless this process is in the initial user namespace (user_namespaces(7): its
    /proc/self/uid_map is the single identity line ``0 0 4294967295``)."""
    try:
        return Path("/proc/self/uid_map").read_text().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def choose() -> tuple[IsolationMode, str]:
    """The strongest mode available: namespace > userns > chroot, with the reasons the stronger
    ones were refused (``"namespace: no CAP_SYS_ADMIN; userns: ..."``)."""
    why_ns = namespace_refusal()
    if why_ns is None:
        return IsolationMode.NAMESPACE, ""
    why_user = userns_refusal()
    if why_user is None:
        return IsolationMode.USERNS, f"not namespace: {why_ns}"
    return IsolationMode.CHROOT, f"not namespace: {why_ns}; not userns: {why_user}"
