"""Pure parts of the registry client: platform selection, endpoints, retry policy."""

from __future__ import annotations

import httpx
import pytest

from executor.errors import RegistryError
from executor.reference import parse_reference
from executor.registry.client import RegistryClient, RegistryOptions, parse_platform, select_platform
from executor.registry.options import endpoint_for, is_loopback
from executor.registry.transport import (
    MAX_RETRY_AFTER_S,
    TransientError,
    backoff_delay,
    is_retryable,
    parse_retry_after,
    with_retries,
)

INDEX = {"manifests": [
    {"digest": "sha256:att", "platform": {"os": "unknown", "architecture": "unknown"}},
    {"digest": "sha256:amd", "platform": {"os": "linux", "architecture": "amd64"}},
    {"digest": "sha256:v6", "platform": {"os": "linux", "architecture": "arm", "variant": "v6"}},
    {"digest": "sha256:v7", "platform": {"os": "linux", "architecture": "arm", "variant": "v7"}},
    {"digest": "sha256:a64", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    {"digest": "sha256:win", "platform": {"os": "windows", "architecture": "amd64"}},
]}


@pytest.mark.parametrize("plat,digest", [
    ("linux/amd64", "sha256:amd"), ("linux/x86_64", "sha256:amd"), ("linux/arm/v7", "sha256:v7"),
    ("linux/arm", "sha256:v6"), ("linux/arm64", "sha256:a64"), ("linux/arm64/v8", "sha256:a64"),
    ("windows/amd64", "sha256:win"),
])
def test_select_platform(plat, digest):
    assert select_platform(INDEX, plat)["digest"] == digest


def test_select_platform_missing_lists_available():
    with pytest.raises(RegistryError) as ei:
        select_platform(INDEX, "linux/riscv64")
    assert "linux/arm/v7" in str(ei.value) and "linux/riscv64" in str(ei.value)
    with pytest.raises(RegistryError, match="OS/ARCH"):
        parse_platform("amd64")


def test_endpoint_selection():
    o = RegistryOptions(insecure_registries=frozenset({"a:5000"}), insecure_pull=True,
                        skip_tls_verify_registries=frozenset({"b.io"}), registry_certificates={"c.io": "/ca.pem"},
                        registry_client_certs={"c.io": ("/c.pem", "/k.pem")})
    c = RegistryClient(o)
    assert c._endpoint("a:5000", pull=False).base == "http://a:5000"
    assert c._endpoint("z.io", pull=True).base == "http://z.io"
    assert c._endpoint("z.io", pull=False).base == "https://z.io"
    assert c._endpoint("docker.io", pull=False).base == "https://registry-1.docker.io"
    assert c._endpoint("b.io", pull=False).verify is False
    ep = c._endpoint("c.io", pull=False)
    assert ep.verify == "/ca.pem" and ep.cert == ("/c.pem", "/k.pem")
    c.close()


@pytest.mark.parametrize("registry,loopback", [
    ("localhost", True), ("localhost:5000", True), ("LOCALHOST:5000", True), ("127.0.0.1", True),
    ("127.0.0.1:5000", True), ("127.1.2.3:443", True), ("[::1]:5000", True), ("::1", True),
    ("localhost.example.com:5000", False), ("my.localhost:5000", False), ("10.0.0.1:5000", False),
    ("192.168.1.10:5000", False), ("registry:5000", False), ("[::2]:5000", False), ("docker.io", False),
    ("128.0.0.1:5000", False),
])
def test_is_loopback(registry, loopback):
    assert is_loopback(registry) is loopback


def test_loopback_endpoint_may_fall_back_unless_told_otherwise():
    def ep(registry, **kw):
        return endpoint_for(RegistryOptions(**kw), registry, False)

    assert ep("localhost:5000").http_fallback and ep("localhost:5000").base == "https://localhost:5000"
    assert ep("127.0.0.1:5000", skip_tls_verify=True).http_fallback   # Kaniko catalog tests pass it
    assert ep("[::1]:5000", skip_tls_verify_registries=frozenset({"[::1]:5000"})).http_fallback
    assert not ep("registry:5000").http_fallback
    assert not ep("10.1.2.3:5000").http_fallback
    assert not ep("localhost:5000", loopback_plain_http=False).http_fallback
    assert not ep("localhost:5000", registry_certificates={"localhost:5000": "/ca.pem"}).http_fallback
    assert not ep("localhost:5000", registry_client_certs={"localhost": ("/c", "/k")}).http_fallback
    plain = ep("localhost:5000", insecure_registries=frozenset({"localhost:5000"}))
    assert plain.base == "http://localhost:5000" and not plain.http_fallback
    assert ep("localhost:5000", insecure=True).base == "http://localhost:5000"


class _FakeClient:
    def __init__(self, exc):
        self.exc = exc
        self.gets: list[str] = []

    def get(self, url, **kw):
        self.gets.append(url)
        if self.exc:
            raise self.exc
        return httpx.Response(200)


@pytest.mark.parametrize("exc,scheme,cached", [
    (None, "https", True),
    (httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"), "http", True),
    (httpx.ConnectError("[SSL] record layer failure (_ssl.c:1000)"), "http", True),
    (httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"), "https", True),
    (httpx.ReadError("[SSL: TLSV13_ALERT_CERTIFICATE_REQUIRED] tlsv13 alert certificate required"), "https", True),
    (httpx.ConnectError("[Errno 111] Connection refused"), "https", False),
    (httpx.ConnectTimeout("timed out"), "https", False),
])
def test_scheme_probe(monkeypatch, exc, scheme, cached):
    """HTTPS first; plain HTTP only when the answer to the TLS handshake was not TLS; an
    inconclusive probe (nothing listening) keeps HTTPS and is repeated on the next request."""
    c = RegistryClient(RegistryOptions())
    fake = _FakeClient(exc)
    monkeypatch.setattr(c._transport, "client", lambda ep: fake)
    assert c._endpoint("localhost:5000", pull=False).base == f"{scheme}://localhost:5000"
    c._endpoint("localhost:5000", pull=True)
    assert fake.gets == ["https://localhost:5000/v2/"] * (1 if cached else 2)
    c.close()


def test_no_probe_for_remote_registries(monkeypatch):
    c = RegistryClient(RegistryOptions())
    monkeypatch.setattr(c._transport, "probe_scheme", lambda ep: pytest.fail("probed a remote registry"))
    assert c._endpoint("registry.example.com:5000", pull=False).base == "https://registry.example.com:5000"
    c.close()


def test_retry_after_parsing_and_backoff():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after("9999") == MAX_RETRY_AFTER_S
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after(None) is None
    assert backoff_delay(3, 1.5) == 1.5
    for attempt in range(1, 10):
        assert 0 < backoff_delay(attempt, None) <= 8.0


def test_with_retries_counts_and_reraises():
    calls, sleeps = [], []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("503", retry_after=0.5, status=503)
        return "ok"

    assert with_retries(flaky, 5, "op", sleep=sleeps.append) == "ok"
    assert len(calls) == 3 and sleeps == [0.5, 0.5]

    def always():
        calls.append(1)
        raise httpx.ConnectError("refused")

    calls.clear()
    with pytest.raises(httpx.ConnectError):
        with_retries(always, 4, "op", sleep=lambda s: None)
    assert len(calls) == 4

    def not_transient():
        calls.append(1)
        raise RegistryError("nope")

    calls.clear()
    with pytest.raises(RegistryError):
        with_retries(not_transient, 4, "op", sleep=lambda s: None)
    assert len(calls) == 1


def test_tls_config_errors_are_not_retried():
    assert not is_retryable(httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"))
    assert is_retryable(httpx.ReadError("connection reset by peer"))


def test_bearer_flow_with_mock_transport(monkeypatch):
    """Focused check of the 401 -> token -> retry dance and token caching (mocked HTTP)."""
    seen = {"token": 0}

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/token":
            seen["token"] += 1
            assert req.url.params.get_list("scope") == ["repository:a/b:pull"]
            return httpx.Response(200, json={"token": f"T{seen['token']}", "expires_in": 300})
        if req.headers.get("Authorization") != "Bearer T1":
            return httpx.Response(401, headers={"WWW-Authenticate":
                                                'Bearer realm="https://r.io/token",service="r.io",scope="repository:a/b:pull"'})
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "unknown"}]})

    c = RegistryClient(RegistryOptions())
    mock = httpx.Client(transport=httpx.MockTransport(handler))
    monkeypatch.setattr(c._transport, "client", lambda ep: mock)
    ref = parse_reference("r.io/a/b:t")
    assert c.head_manifest(ref) is None
    assert c.head_manifest(ref) is None
    assert seen["token"] == 1
