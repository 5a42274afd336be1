"""RegistryError.status and NotFound, set by the client from the HTTP answer (mocked HTTP)."""

from __future__ import annotations

import io
import pickle

import httpx
import pytest

from executor.errors import NotFound, RegistryError, UserError
from executor.reference import parse_reference
from executor.registry.client import RegistryClient, RegistryOptions

REF = parse_reference("r.io/team/app:v1")
BLOB = "sha256:" + "ab" * 32


def test_status_is_keyword_only_and_defaults_to_none():
    e = RegistryError("boom")
    assert e.status is None and str(e) == "boom" and e.exit_code == 1 and isinstance(e, UserError)
    assert RegistryError("x", status=503).status == 503
    with pytest.raises(TypeError):
        RegistryError("x", 503)  # type: ignore[misc]
    nf = NotFound("gone")
    assert nf.status == 404 and isinstance(nf, RegistryError) and str(nf) == "gone"
    assert pickle.loads(pickle.dumps(RegistryError("p"))).args == ("p",)


def client_answering(monkeypatch, handler) -> RegistryClient:
    """A client whose every HTTP request is answered by ``handler`` (no network, no backoff)."""
    monkeypatch.setattr("executor.registry.retry.backoff_delay", lambda *a, **k: 0.0)
    c = RegistryClient(RegistryOptions())
    mock = httpx.Client(transport=httpx.MockTransport(handler))
    monkeypatch.setattr(c._transport, "client", lambda ep: mock)
    return c


def answer(status: int, **kw):
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v2/":
            return httpx.Response(200)
        return httpx.Response(status, **kw)
    return handler


def test_manifest_404_is_not_found_with_the_old_message(monkeypatch):
    c = client_answering(monkeypatch, answer(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]}))
    with pytest.raises(NotFound) as ei:
        c.get_manifest(REF)
    assert ei.value.status == 404
    assert str(ei.value) == ("registry r.io: repository 'team/app' has no tag 'v1' (manifest not found, 404): "
                             "check the image name and tag")
    assert c.get_manifest_or_none(REF) is None
    assert c.head_manifest(REF) is None


def test_blob_404_is_not_found(monkeypatch):
    c = client_answering(monkeypatch, answer(404))
    with pytest.raises(NotFound, match="not found \\(404\\); the image is incomplete") as ei:
        c.fetch_blob(REF, BLOB, io.BytesIO())
    assert ei.value.status == 404
    assert c.blob_exists(REF, BLOB) is False


@pytest.mark.parametrize("status", [401, 403, 405])
def test_refusals_carry_their_status_and_are_not_not_found(monkeypatch, status):
    c = client_answering(monkeypatch, answer(status, json={"errors": [{"code": "DENIED", "message": "no"}]}))
    for call in (lambda: c.get_manifest(REF), lambda: c.get_manifest_or_none(REF),
                 lambda: c.fetch_blob(REF, BLOB, io.BytesIO()), lambda: c.blob_exists(REF, BLOB)):
        with pytest.raises(RegistryError) as ei:
            call()
        assert ei.value.status == status and not isinstance(ei.value, NotFound)
        assert "r.io" in str(ei.value) and str(status) in str(ei.value)


def test_retry_budget_exhausted_carries_the_last_status(monkeypatch):
    c = client_answering(monkeypatch, answer(503))
    with pytest.raises(RegistryError, match="failed after 4 attempts") as ei:
        c.get_manifest_or_none(REF)
    assert ei.value.status == 503


def test_connection_failure_has_no_status(monkeypatch):
    def handler(req):
        raise httpx.ConnectError("refused")
    c = client_answering(monkeypatch, handler)
    with pytest.raises(RegistryError, match="cannot reach registry r.io") as ei:
        c.get_manifest(REF)
    assert ei.value.status is None


def test_token_refusal_carries_status(monkeypatch):
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/token":
            return httpx.Response(403)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="https://r.io/token",service="r.io"'})
    c = client_answering(monkeypatch, handler)
    with pytest.raises(RegistryError, match="refused a token anonymously") as ei:
        c.get_manifest(REF)
    assert ei.value.status == 403


@pytest.mark.parametrize("text", ["[Errno -2] Name or service not known",
                                  "[Errno -3] Temporary failure in name resolution"])
def test_unknown_host_names_dns_not_plain_http(text):
    from executor.registry.retry import transport_error_message
    msg = transport_error_message("regsitry.example.com", httpx.ConnectError(text), 4, True, "checking the registry")
    assert "(its host name does not resolve)" in msg and msg.endswith("; check the registry's name (and the pod's DNS)")
    assert "--insecure-registry" not in msg


def test_refused_suggests_plain_http_only_off_loopback():
    from executor.registry.retry import transport_error_message
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    assert "use --insecure-registry registry.example.com:5000" in transport_error_message(
        "registry.example.com:5000", refused, 4, True)
    assert transport_error_message("localhost:5000", refused, 4, True).endswith("; is it running?")
