"""Start Debian's docker-registry with a custom configuration (TLS, mTLS, htpasswd, token auth).

The plain-HTTP session registry lives in ``registry.py``; this helper is for tests
that need a registry of their own. Loopback only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class CustomRegistry:
    """A running registry: ``host`` is ``127.0.0.1:PORT``."""

    host: str
    state: Path
    proc: subprocess.Popen

    def stop(self) -> None:
        """Terminate the registry and wait for it (idempotent)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return (self.state / "registry.log").read_text(errors="replace")

    def __enter__(self) -> "CustomRegistry":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_custom_registry(state: Path, http_extra: dict | None = None, auth: dict | None = None,
                          timeout: float = 15.0, storage_extra: dict | None = None) -> CustomRegistry:
    """Start ``docker-registry serve`` on a free loopback port with ``http_extra`` merged into
    the ``http`` section (e.g. ``{"tls": {...}}``), ``storage_extra`` into the ``storage``
    section (e.g. ``{"maintenance": {"readonly": {"enabled": True}}}``) and ``auth`` as the
    ``auth`` section.
    Waits until the port accepts connections; raises RuntimeError with the log otherwise."""
    state.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cfg: dict = {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(state / "data")}, "delete": {"enabled": True},
                    **(storage_extra or {})},
        "http": {"addr": f"127.0.0.1:{port}", **(http_extra or {})},
    }
    if auth:
        cfg["auth"] = auth
    (state / "config.yml").write_text(yaml.safe_dump(cfg))
    logf = open(state / "registry.log", "wb")
    proc = subprocess.Popen(["docker-registry", "serve", str(state / "config.yml")],
                            stdout=logf, stderr=subprocess.STDOUT, env={**os.environ})
    logf.close()
    reg = CustomRegistry(f"127.0.0.1:{port}", state, proc)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited {proc.returncode}:\n{reg.log()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return reg
        except OSError:
            time.sleep(0.05)
    reg.stop()
    raise RuntimeError(f"docker-registry did not listen on {port}:\n{reg.log()}")
