"""``--progress=tty``: a live view of a build or push on the terminal, fed by the log lines.

:class:`ProgressHandler` is a :class:`logging.Handler` on the ``executor`` logger in place of
the plain line handler. It reads the records the engine, the outputs and the registry client
already log (no engine change) and keeps one row per thing going on:

* ``stage LABEL`` -- from ``stage N[ AS NAME]: FROM BASE`` to the end of the build; shows the
  current instruction, how many steps ran, layer bytes written (``layer D: ... N bytes``);
* ``pull REPO`` -- from ``pulling base image REF`` to ``stage S: unpacked|stacked N layers in T``;
  bytes downloaded when :func:`watch_client` wraps the registry client;
* ``push REPO`` -- blob uploads (``uploaded blob D (N bytes) to REPO``, ``pushed blobs to
  ...``) until the manifest is put (``pushed REF@DIGEST``);
* ``done`` -- the closing ``done in Ts: DIGEST`` / ``done: DIGEST`` line.

Each row shows bytes, the average rate and the elapsed time; finished rows say ``done`` (a row
busy again after it finished -- a later platform's push, cache entries written after the image
-- is finished again; on a narrow terminal the names and details are shortened, not the status).
Records of level WARNING and above are printed as lines above the view (the same format as
``--log-format=text``). The view is drawn with rich's :class:`~rich.progress.Progress` on
stderr; :func:`stop` draws the final state and ends it (the CLI calls it before printing an
error, and at exit). RUN output is printed above the view too (:func:`active_line_printer`).
"""

from __future__ import annotations

import atexit
import logging
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .progress_view import ProgressHandler

MODES = ("auto", "tty", "plain")


def resolve_mode(mode: str, log_format: str, stderr_isatty: bool) -> str:
    """``tty`` or ``plain`` for ``--progress=mode``: ``auto`` is tty when stderr is a terminal and
    the log format is not json. Raises ValueError for an unknown mode."""
    if mode not in MODES:
        raise ValueError(f"--progress={mode}: use auto, tty or plain")
    if mode == "auto":
        return "tty" if stderr_isatty and log_format != "json" else "plain"
    return mode


_active: ProgressHandler | None = None


def install(handler: ProgressHandler) -> None:
    """Make ``handler`` the active view (stopping an earlier one); stopped at exit."""
    global _active
    stop()
    _active = handler


def stop() -> None:
    """End the active live view, if any (its final state stays on the terminal)."""
    global _active
    h, _active = _active, None
    if h is not None:
        h.stop()


atexit.register(stop)


class _CountingWriter:
    """A file object that counts what is written into it on the active view's row ``key``."""

    def __init__(self, dest: Any, key: str, description: str):
        self._dest, self._key, self._description = dest, key, description

    def write(self, data: bytes) -> int:
        n = self._dest.write(data)
        h = _active
        if h is not None:
            h.add_bytes(self._key, self._description, len(data))
        return n

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dest, name)


def watch_client(client: Any) -> None:
    """Count blob download bytes of ``client`` (a RegistryClient) on the live view's ``pull``
    rows. Does nothing unless a view is active; the client behaves exactly as before."""
    if _active is None or getattr(client, "_progress_watched", False):
        return
    fetch = client.fetch_blob

    def fetch_blob(ref, digest, dest):
        name = f"{ref.registry}/{ref.repository}"
        return fetch(ref, digest, _CountingWriter(dest, f"pull:{name}", f"pull {name}"))

    client.fetch_blob = fetch_blob
    client._progress_watched = True


def active_line_printer() -> "Callable[[str], None] | None":
    """While a live view is on: a function printing one line above it (RUN output must go
    through it, or the next redraw paints over it); else None."""
    h = _active
    return h.print_text if h is not None else None


def make_handler(line_formatter: logging.Formatter) -> "ProgressHandler":
    """A new active view on stderr whose warning lines use ``line_formatter`` (loads rich)."""
    from rich.console import Console

    from .progress_view import ProgressHandler
    handler = ProgressHandler(Console(stderr=True, force_terminal=True), line_formatter)
    install(handler)
    return handler


def __getattr__(name: str) -> Any:
    if name == "ProgressHandler":  # the view class, loaded on first use
        from .progress_view import ProgressHandler
        return ProgressHandler
    raise AttributeError(name)


__all__ = ["MODES", "ProgressHandler", "install", "make_handler", "resolve_mode", "stop", "watch_client"]
