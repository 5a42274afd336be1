"""RUN output when stages run together: each line prefixed with ``[stage]``, as BuildKit's plain
progress does, so interleaved output stays readable. A single stage keeps the raw streams,
unless the ``--progress=tty`` live view is on: then every line is printed above the view."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import BinaryIO

from ..progress import active_line_printer


def _pump(fd: int, prefix: bytes, out: BinaryIO | None, printer: Callable[[str], None] | None = None) -> None:
    """Copy lines from ``fd`` to ``out`` (or to ``printer``), each with ``prefix``."""
    def emit(lines: list[bytes]) -> None:
        if printer is not None:
            for line in lines:
                printer((prefix + line).decode(errors="replace"))
        elif out is not None:
            out.write(b"".join(prefix + line + b"\n" for line in lines))
            out.flush()

    with os.fdopen(fd, "rb", buffering=0) as src:
        pending = b""
        while chunk := src.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if lines:
                emit(lines)
        if pending:
            emit([pending])


@contextlib.contextmanager
def prefixed_streams(label: str, stdout=None, stderr=None) -> Iterator[tuple[object, object]]:
    """``(stdout, stderr)`` to hand a RUN's process: the given streams when ``label`` is empty
    or a stream was given, else pipes whose lines reach this process's stdout/stderr prefixed
    ``[label] ``. The pipes are drained and closed when the block ends."""
    printer = active_line_printer()
    if stdout is not None or stderr is not None or (not label and printer is None):
        yield stdout, stderr
        return
    prefix = f"[{label}] ".encode() if label else b""
    threads, write_ends = [], []
    for target in (sys.stdout, sys.stderr):
        r, w = os.pipe()
        sink = None if printer is not None else getattr(target, "buffer", None) or os.fdopen(os.dup(target.fileno()), "wb")
        t = threading.Thread(target=_pump, args=(r, prefix, sink, printer), daemon=True, name=f"out-{label}")
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
