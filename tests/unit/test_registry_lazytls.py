"""LazyTLSTransport: a plain-HTTP registry never pays for loading the CA bundle; https still
verifies (tests/integration/test_registry_tls.py covers the TLS registries end to end)."""

from __future__ import annotations

import http.server
import ssl
import threading

import httpx
import pytest

from executor.registry.transport import LazyTLSTransport


@pytest.fixture
def plain_server():
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_plain_http_makes_no_verifying_tls_context(plain_server, monkeypatch):
    loads = []
    real = ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", lambda self, *a, **k: (loads.append(a), real(self, *a, **k)))
    t = LazyTLSTransport(True)
    with httpx.Client(transport=t) as c:
        assert c.get(plain_server + "/v2/").text == "ok"
        assert c.get(plain_server + "/v2/again").text == "ok"  # the pooled connection is reused
        assert t._by_scheme["http"]._pool._ssl_context is None and "https" not in t._by_scheme
    assert loads == []


def test_https_request_uses_a_verifying_transport(plain_server):
    t = LazyTLSTransport(True)
    with httpx.Client(transport=t) as c:
        with pytest.raises(httpx.ConnectError):
            c.get(plain_server.replace("http://", "https://") + "/v2/")  # not TLS: the handshake fails
        ctx = t._by_scheme["https"]._pool._ssl_context
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


def test_scheme_probe_of_a_plain_http_loopback_registry_loads_no_ca_bundle(plain_server, monkeypatch):
    from executor.registry.client import RegistryClient, RegistryOptions
    loads = []
    real = ssl.SSLContext.load_verify_locations
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", lambda self, *a, **k: (loads.append(a), real(self, *a, **k)))
    host = plain_server.removeprefix("http://")
    with RegistryClient(RegistryOptions()) as c:
        assert c._endpoint(host, pull=False).base == plain_server  # HTTPS answered with plain HTTP
        c.ping(host)
    assert loads == []
