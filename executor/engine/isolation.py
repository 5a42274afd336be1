"""RUN isolation mode: chosen once per build, before stages run concurrently.

``namespace``: pivot_root into private mount/PID/UTS/IPC namespaces (needs CAP_SYS_ADMIN).
``chroot``: plain chroot for pods with the default capabilities. See :mod:`.sandbox`.
Detection forks probe children, so it runs in the main thread before any stage thread starts.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from .sandbox import can_unshare_network, detect_mode

log = logging.getLogger("executor.engine")


class IsolationMode(enum.StrEnum):
    NAMESPACE = "namespace"
    CHROOT = "chroot"


@dataclass(frozen=True)
class Isolation:
    """The build's RUN isolation: ``mode`` and whether a network namespace can be made
    (``RUN --network=none`` in chroot mode needs it)."""

    mode: IsolationMode
    can_unshare_network: bool

    @classmethod
    def detect(cls, wanted: str, needs_network_probe: bool) -> "Isolation":
        """Probe this process's privileges (``wanted``: auto | namespace | chroot) and log the choice."""
        mode = IsolationMode(detect_mode() if wanted == "auto" else wanted)
        if mode == IsolationMode.NAMESPACE:
            log.info("RUN isolation: pivot_root into private mount/PID/UTS namespaces "
                     "(/proc, /sys, /dev, resolv.conf, hosts mounted)")
        else:
            log.info("RUN isolation: plain chroot (no CAP_SYS_ADMIN to mount; basic /dev nodes created and removed)")
        net = can_unshare_network() if (needs_network_probe and mode == IsolationMode.CHROOT) else True
        return cls(mode=mode, can_unshare_network=net)
