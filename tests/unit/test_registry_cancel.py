"""CancelToken: socket shutdown from another thread, no locks in cancel(), with_retries stops."""

from __future__ import annotations

import gc
import signal
import socket
import threading
import time

import httpx
import pytest

from executor.registry.cancel import Cancelled, CancelToken, cancel_all
from executor.registry.retry import TransientError, with_retries


class FakeStream:
    """What httpcore hands the trace hook: a network stream with get_extra_info("socket")."""

    def __init__(self, sock):
        self.sock = sock

    def get_extra_info(self, name):
        return self.sock if name == "socket" else None


def test_cancel_wakes_a_thread_blocked_in_recv():
    a, b = socket.socketpair()
    tok = CancelToken()
    tok.trace("connection.connect_tcp.complete", {"return_value": FakeStream(a)})
    got = []
    t = threading.Thread(target=lambda: got.append(a.recv(10)))
    t.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    tok.cancel()
    t.join(2)
    assert not t.is_alive() and got == [b""] and time.monotonic() - t0 < 0.5
    a.close()
    b.close()


def test_connection_opened_after_cancel_is_shut_down_at_once():
    a, b = socket.socketpair()
    tok = CancelToken()
    tok.cancel()
    tok.trace("connection.start_tls.complete", {"return_value": FakeStream(a)})
    assert a.recv(10) == b""
    a.close()
    b.close()


def test_other_trace_events_and_dead_sockets_are_ignored():
    tok = CancelToken()
    tok.trace("connection.connect_tcp.started", {})
    tok.trace("http11.send_request_headers.complete", {"return_value": None})
    s = socket.socket()
    tok.trace("connection.connect_tcp.complete", {"return_value": FakeStream(s)})
    s.close()                                   # closed: shutdown must not touch a reused fd
    del s
    gc.collect()
    tok.cancel()


def test_check_sleep_and_error():
    tok = CancelToken()
    tok.check("x")
    t0 = time.monotonic()
    tok.sleep(0.05)
    assert time.monotonic() - t0 >= 0.05
    threading.Timer(0.1, tok.cancel, args=(signal.SIGTERM,)).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled, match=r"waiting to retry cancelled \(SIGTERM\)") as ei:
        tok.sleep(30)
    assert time.monotonic() - t0 < 1 and ei.value.exit_code == 143 and ei.value.signum == signal.SIGTERM
    with pytest.raises(Cancelled, match="^pushing cancelled"):
        tok.check("pushing")


def test_with_retries_stops_retrying_once_cancelled():
    tok = CancelToken()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) == 2:
            tok.cancel()
        raise httpx.ReadError("reset")

    with pytest.raises(httpx.ReadError):
        with_retries(flaky, 10, "op", cancel=tok)
    assert len(calls) == 2

    calls.clear()
    tok2 = CancelToken()
    threading.Timer(0.1, tok2.cancel).start()
    t0 = time.monotonic()
    with pytest.raises(Cancelled):
        with_retries(lambda: (_ for _ in ()).throw(TransientError("503", retry_after=20.0)), 5, "op", cancel=tok2)
    assert time.monotonic() - t0 < 1


def test_cancel_all_reaches_every_live_token_and_forgets_dead_ones():
    toks = [CancelToken() for _ in range(3)]
    assert cancel_all() >= 3
    assert all(t.cancelled for t in toks)
    del toks
    gc.collect()
    fresh = CancelToken()
    assert not fresh.cancelled
    assert cancel_all(signal.SIGTERM) >= 1 and fresh.signum == signal.SIGTERM


def test_cancelled_client_sends_nothing_and_does_not_fall_back_to_other_mirrors(monkeypatch, caplog):
    from executor.reference import parse_reference
    from executor.registry.client import RegistryClient, RegistryOptions

    sent = []
    c = RegistryClient(RegistryOptions(registry_mirrors=("mirror.example",)))
    mock = httpx.Client(transport=httpx.MockTransport(lambda req: sent.append(req) or httpx.Response(200)))
    monkeypatch.setattr(c._transport, "client", lambda ep: mock)
    c.cancel()
    with caplog.at_level("WARNING", logger="executor.registry"), pytest.raises(Cancelled):
        c.get_manifest(parse_reference("busybox"))
    assert sent == [] and not [r for r in caplog.records if "trying" in r.getMessage()]
