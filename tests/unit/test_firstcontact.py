"""The CLI's first contact with a registry (executor.registry.firstcontact): the response head
parser, the base URL splitter, and GET /v2/ against scripted servers, hostile ones included.
A real registry is in tests/integration/test_first_contact.py."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from executor.registry.endpoints import Endpoint, handshake_verdict
from executor.registry.firstcontact import (MAX_HEAD_BYTES, ContactFailed, FirstContact, get_v2, parse_head,
                                            split_base)
from executor.registry.options import RegistryOptions, endpoint_for
from executor.registry.transport import Transport
from executor.registry.auth import Keychain
from tests.support.httphead import read_head


class Scripted:
    """A one-shot TCP server on 127.0.0.1: reads the request head, then sends ``answer``
    (bytes, or a callable taking the connection), and records the request."""

    def __init__(self, answer):
        self.answer = answer
        self.requests: list[bytes] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self.requests.append(read_head(conn)[0])
                if callable(self.answer):
                    self.answer(conn)
                else:
                    conn.sendall(self.answer)

    def endpoint(self) -> Endpoint:
        return Endpoint(f"127.0.0.1:{self.port}", f"http://127.0.0.1:{self.port}")

    def close(self):
        self.sock.close()


def test_parse_head_ok_and_challenges():
    assert parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2") == (200, "")
    status, ch = parse_head(b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="https://t/x"\r\n'
                            b'www-authenticate: Basic realm="r"\r\nDocker-Distribution-Api-Version: registry/2.0')
    assert status == 401 and ch == 'Bearer realm="https://t/x", Basic realm="r"'


def test_parse_head_hands_on_the_pings_transient_failures():
    """429/5xx: the client's ping counts them as its first failed attempt (its retry budget)."""
    assert parse_head(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3") == (503, "")
    assert parse_head(b"HTTP/1.1 429 Too Many Requests") == (429, "")


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 404 Not Found",                     # not an answer worth keeping: the client pings
    b"HTTP/1.1 408 Request Timeout",               # (not retried by the ping either)
    b"SSH-2.0-OpenSSH_9.2",                        # not HTTP at all
    b"HTTP/1.1 2000 OK",
    b"HTTP/2 200",
    b"HTTP/1.1 200 OK\r\nno colon here",
    b"HTTP/1.1 200 OK\r\n bad: folded",
    b"\x16\x03\x01\x02\x00",                       # a TLS record
])
def test_parse_head_rejects(head):
    with pytest.raises(ContactFailed):
        parse_head(head)


def test_split_base():
    assert split_base("http://127.0.0.1:5000") == ("127.0.0.1", 5000, "127.0.0.1:5000")
    assert split_base("https://registry.example") == ("registry.example", 443, "registry.example")
    assert split_base("http://localhost") == ("localhost", 80, "localhost")
    assert split_base("https://[::1]:5443") == ("::1", 5443, "[::1]:5443")
    for bad in ("ftp://x", "http://", "http://h:0", "http://h:99999", "http://h:x", "https://h/path", "h:5000"):
        with pytest.raises(ValueError):
            split_base(bad)


def test_handshake_verdict():
    assert handshake_verdict("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)") == "plain"
    assert handshake_verdict("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed") == "tls"
    assert handshake_verdict("[Errno 111] Connection refused") is None


def test_get_v2_sends_a_plain_get_and_reads_the_answer():
    s = Scripted(b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm="r"\r\nContent-Length: 0\r\n\r\n')
    try:
        assert get_v2(s.endpoint(), None, "executor/test", 2.0) == (401, 'Basic realm="r"')
        req = s.requests[0].decode()
        assert req.startswith("GET /v2/ HTTP/1.1\r\n") and f"Host: 127.0.0.1:{s.port}\r\n" in req
        assert "User-Agent: executor/test\r\n" in req and "Authorization" not in req
    finally:
        s.close()


@pytest.mark.parametrize("answer", [
    b"",                                                   # closed at once
    b"HTTP/1.1 200 OK\r\nX: y\r\n",                        # closed before the head ended
    b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * (MAX_HEAD_BYTES + 10),  # a head without end
    b"garbage\r\n\r\n",
])
def test_get_v2_hostile_answers_teach_nothing(answer):
    s = Scripted(answer)
    try:
        with pytest.raises(ContactFailed):
            get_v2(s.endpoint(), None, "executor/test", 2.0)
    finally:
        s.close()


def test_results_wait_is_bounded_and_late_answers_are_dropped():
    def slow(conn):
        time.sleep(0.6)
        conn.sendall(b"HTTP/1.1 200 OK\r\n\r\n")
    s = Scripted(slow)
    try:
        fc = FirstContact([s.endpoint()], "executor/test", timeout=2.0).start()
        t0 = time.monotonic()
        assert fc.results(0.1) == {}
        assert time.monotonic() - t0 < 0.5
        time.sleep(0.8)  # the answer arrives now, and is not taken
        assert fc.results(0.0) == {}
    finally:
        s.close()


def test_refused_connection_teaches_nothing():
    s = Scripted(b"")
    ep = s.endpoint()
    s.close()  # nothing listens on the port now
    assert FirstContact([ep], "executor/test", timeout=1.0).start().results(2.0) == {}


def test_seeded_transport_sends_no_ping(monkeypatch):
    """A 200 seeds the ping (no GET /v2/ of the client's own); a 401 seeds the challenge."""
    s = Scripted(b'HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm="http://127.0.0.1:1/token",'
                 b'service="svc"\r\n\r\n')
    try:
        ep = s.endpoint()
        answers = FirstContact([ep], "executor/test").start().results(2.0)
        assert answers[ep].status == 401 and answers[ep].endpoint == ep
        opts = RegistryOptions(insecure=True)
        assert endpoint_for(opts, ep.registry, False) == ep  # the key the client looks the seed up by
        t = Transport(Keychain.anonymous(), lambda r, pull: endpoint_for(opts, r, pull), "ua")
        t.seed(ep, answers[ep])
        sess = t.auth_session(ep.registry)
        assert sess.pinged and sess.ping_status == 401
        assert sess.challenge.scheme == "bearer" and sess.challenge.params["service"] == "svc"
        before = len(s.requests)
        t.ensure_challenge(ep)  # known: no request
        assert len(s.requests) == before
    finally:
        s.close()


@pytest.mark.parametrize("value", [
    'Bearer realm="https://auth.example/t\u00f6ken",service="Soci\u00e9t\u00e9 registry"'.encode(),  # UTF-8
    b'Bearer realm="https://auth.example/token",service="caf\xe9"',  # not UTF-8: Latin-1
])
def test_challenge_is_decoded_as_the_client_decodes_it(value):
    """The seeded challenge is the one the client would have read from the same answer (httpx
    decodes header bytes as UTF-8 when they are, else Latin-1): the token request then names
    the same realm and service."""
    import httpx
    _, seeded = parse_head(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: " + value + b"\r\nContent-Length: 0")
    assert seeded == httpx.Response(401, headers=[(b"WWW-Authenticate", value)]).headers["WWW-Authenticate"]
