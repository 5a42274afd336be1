"""SIGINT/SIGTERM during a build: one interruption raised, registry transfers aborted, and a
check that no code path pushes or tags after it (Kubernetes kills a pod 30 s after SIGTERM)."""

from __future__ import annotations

from .errors import Interrupted
from .registry.cancel import cancel_all as cancel_registry_transfers

_interrupted: list[int] = []  # signals received by main()'s handlers (first one counts)


def check_interrupted() -> None:
    """Raise Interrupted if SIGINT/SIGTERM arrived (even when some code swallowed the exception)."""
    if _interrupted:
        raise Interrupted(_interrupted[0])


def _on_signal(signum: int, frame) -> None:
    """SIGINT/SIGTERM: raise Interrupted once; later signals are ignored so the clean-up
    (killing the RUN's processes, removing secrets and placed files) runs to the end.
    Registry transfers in flight on any thread are aborted first and no new request starts
    (Kubernetes kills the pod 30 s after SIGTERM; a push must not go on, nor tag)."""
    if _interrupted:
        return
    _interrupted.append(signum)
    cancel_registry_transfers(signum)
    raise Interrupted(signum)
