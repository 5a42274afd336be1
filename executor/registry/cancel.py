"""Cancelling registry transfers from another thread, e.g. a SIGTERM handler.

Kubernetes sends SIGTERM and kills the pod 30 s later; a push must not keep uploading
(nor start a request, nor tag an image) after it was asked to stop. Each
:class:`~executor.registry.client.RegistryClient` owns a :class:`CancelToken`:

* every connection its transport opens is recorded through httpx's ``trace`` request
  extension (httpcore's ``connection.connect_tcp`` / ``connection.start_tls`` events);
* :meth:`CancelToken.cancel` sets an Event and ``shutdown(SHUT_RDWR)``\\ s those sockets,
  which wakes a thread blocked in ``send``/``recv``/``poll`` on them at once (``close``
  from another thread would not);
* the client checks the token before every request, between body pieces and download
  chunks, and instead of sleeping between retries; once cancelled, every operation
  raises :class:`Cancelled` and no new request starts.

:func:`cancel_all` cancels every live client; the CLI's signal handler calls it.
Cancelling is safe from a signal handler: it takes no lock and never blocks.
"""

from __future__ import annotations

import signal
import socket
import threading
import weakref

from executor.errors import RegistryError

#: httpcore trace events whose ``return_value`` is a new network stream (plain, then TLS).
_NEW_STREAM_EVENTS = frozenset({"connection.connect_tcp.complete", "connection.start_tls.complete"})


class Cancelled(RegistryError):
    """A registry operation stopped because its client was cancelled (SIGTERM/SIGINT in the
    CLI, or :meth:`~executor.registry.client.RegistryClient.cancel`). ``signum`` is the
    signal that caused it, if any; ``exit_code`` is then 128 + signum (143 for SIGTERM)."""

    def __init__(self, message: str, signum: int | None = None):
        super().__init__(message)
        self.signum = signum
        if signum:
            self.exit_code = 128 + signum


class CancelToken:
    """Cancellation state shared by a client and its transport (see the module docstring).

    Thread-safe; :meth:`cancel` may be called from a signal handler.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._socks: list[weakref.ref] = []   # rebound, never mutated in place: readers copy without a lock
        self.signum: int | None = None
        _register(self)

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def cancel(self, signum: int | None = None) -> None:
        """Stop everything: refuse new requests and abort the ones in flight (idempotent).
        ``signum``: the signal that asked for it (kept for the exit status)."""
        if self.signum is None and signum is not None:
            self.signum = signum
        self._event.set()
        for ref in tuple(self._socks):
            sock = ref()
            if sock is not None:
                _shutdown(sock)

    def error(self, what: str) -> Cancelled:
        """The exception for ``what`` (e.g. ``"uploading blob ..."``) having been cancelled."""
        why = f" ({signal.Signals(self.signum).name})" if self.signum else ""
        return Cancelled(f"{what} cancelled{why}", self.signum)

    def check(self, what: str) -> None:
        """Raise :class:`Cancelled` if cancelled."""
        if self._event.is_set():
            raise self.error(what)

    def sleep(self, seconds: float, what: str = "waiting to retry") -> None:
        """Sleep ``seconds``, waking (with :class:`Cancelled`) as soon as the token is cancelled."""
        if self._event.wait(max(0.0, seconds)):
            raise self.error(what)

    def trace(self, event: str, info: dict) -> None:
        """httpx/httpcore ``trace`` extension: remember each new connection's socket (and
        shut it down at once if already cancelled, closing the race with :meth:`cancel`)."""
        if event not in _NEW_STREAM_EVENTS:
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._socks = [r for r in self._socks if r() is not None] + [weakref.ref(sock)]
        if self._event.is_set():
            _shutdown(sock)

    @property
    def extensions(self) -> dict:
        """httpx request ``extensions`` that make a request's connection cancellable."""
        return {"trace": self.trace}


def _shutdown(sock: socket.socket) -> None:
    # socket.socket.shutdown even for an SSLSocket: its override would also drop the SSL
    # object under the feet of the thread using it. A closed socket has fd -1: nothing happens.
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


_live: list[weakref.ref] = []          # rebound under _live_lock; cancel_all reads it without the lock
_live_lock = threading.Lock()


def _register(token: CancelToken) -> None:
    global _live
    with _live_lock:
        _live = [r for r in _live if r() is not None] + [weakref.ref(token)]


def cancel_all(signum: int | None = None) -> int:
    """Cancel every live token (every RegistryClient of this process); returns how many.
    Safe to call from a signal handler."""
    n = 0
    for ref in tuple(_live):
        tok = ref()
        if tok is not None:
            tok.cancel(signum)
            n += 1
    return n
