"""RUN output when stages run together: each line prefixed with ``[stage]``, as BuildKit's plain
progress does, so interleaved output stays readable. A single stage keeps the raw streams."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import BinaryIO


def _pump(fd: int, prefix: bytes, out: BinaryIO) -> None:
    with os.fdopen(fd, "rb", buffering=0) as src:
        pending = b""
        while chunk := src.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if lines:
                out.write(b"".join(prefix + line + b"\n" for line in lines))
                out.flush()
        if pending:
            out.write(prefix + pending + b"\n")
            out.flush()


@contextlib.contextmanager
def prefixed_streams(label: str, stdout=None, stderr=None) -> Iterator[tuple[object, object]]:
    """``(stdout, stderr)`` to hand a RUN's process: the given streams when ``label`` is empty
    or a stream was given, else pipes whose lines reach this process's stdout/stderr prefixed
    ``[label] ``. The pipes are drained and closed when the block ends."""
    if not label or stdout is not None or stderr is not None:
        yield stdout, stderr
        return
    prefix = f"[{label}] ".encode()
    threads, write_ends = [], []
    for target in (sys.stdout, sys.stderr):
        r, w = os.pipe()
        sink = getattr(target, "buffer", None) or os.fdopen(os.dup(target.fileno()), "wb")
        t = threading.Thread(target=_pump, args=(r, prefix, sink), daemon=True, name=f"out-{label}")
        t.start()
        threads.append(t)
        write_ends.append(w)
    try:
        yield write_ends[0], write_ends[1]
    finally:
        for w in write_ends:
            os.close(w)
        for t in threads:
            t.join(timeout=10)
