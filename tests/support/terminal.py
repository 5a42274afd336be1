"""Run a command on a pseudo-terminal, as a user at a terminal would (``--progress auto|tty``)."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

#: ANSI control sequences (cursor moves, colours, hyperlinks) a live view writes
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_pty(cmd: list[str], env: dict[str, str], cwd: Path | None = None,
               timeout: float = 120) -> tuple[int, str]:
    """Run ``cmd`` with stdout and stderr on a pseudo-terminal (stdin: /dev/null); return its
    exit code and everything it wrote, ANSI sequences removed. A command still running after
    ``timeout`` seconds is killed (and the assertion on its code fails)."""
    master, slave = pty.openpty()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=cwd, env=env)
    os.close(slave)
    out, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif p.poll() is not None:
                break
        code = p.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    return code, ANSI.sub("", out.decode(errors="replace"))
