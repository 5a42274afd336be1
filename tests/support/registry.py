"""A real registry (Debian's docker-registry) on a free loopback port, started by the tests."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from .tools import SCRIPTS, run


@dataclass
class Registry:
    """A running registry: ``host`` is ``127.0.0.1:PORT``; ``state`` holds config, data and log."""

    host: str
    state: Path
    pid: int

    def stop(self) -> None:
        """Stop the registry process (idempotent)."""
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def log(self) -> str:
        """The registry's log so far."""
        return (self.state / "registry.log").read_text(errors="replace")


def start_registry(state: Path) -> Registry:
    """Start ``docker-registry`` with plain HTTP under ``state``; wait until /v2/ answers."""
    host = run([str(SCRIPTS / "start-registry.sh"), str(state)]).stdout.strip()
    pid = int((state / "registry.pid").read_text())
    return Registry(host=host, state=state, pid=pid)


def seed_busybox(registry: Registry, name: str = "busybox:latest") -> str:
    """Make the busybox base image with umoci and push it with skopeo; return its reference."""
    return run([str(SCRIPTS / "make-busybox-image.sh"), registry.host, name]).stdout.strip().splitlines()[-1]
