"""Manifest verification rules (mocked HTTP): which digest is checked and when it is skipped."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from executor.errors import RegistryError
from executor.reference import parse_reference
from executor.registry.client import RegistryClient, RegistryOptions

BODY = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}'
SHA256 = "sha256:" + hashlib.sha256(BODY).hexdigest()
SHA512 = "sha512:" + hashlib.sha512(BODY).hexdigest()


def serving(monkeypatch, header: str | None, body: bytes = BODY):
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/v2/":
            return httpx.Response(200)
        calls.append(req.url.path)
        headers = {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}
        if header is not None:
            headers["Docker-Content-Digest"] = header
        return httpx.Response(200, content=body, headers=headers)

    monkeypatch.setattr("executor.registry.retry.backoff_delay", lambda *a, **k: 0.0)
    c = RegistryClient(RegistryOptions())
    mock = httpx.Client(transport=httpx.MockTransport(handler))
    monkeypatch.setattr(c._transport, "client", lambda ep: mock)
    return c, calls


@pytest.mark.parametrize("header", [None, SHA256, f" {SHA256} ", SHA512, "md5:abcdef"])
def test_tag_fetch_accepts_matching_absent_or_unverifiable_header(monkeypatch, header):
    c, calls = serving(monkeypatch, header)
    assert c.get_manifest(parse_reference("r.io/a/b:t"))[2] == SHA256
    assert len(calls) == 1


@pytest.mark.parametrize("header", ["sha256:" + "0" * 64, "sha512:" + "0" * 128])
def test_tag_fetch_with_wrong_header_is_retried_then_refused(monkeypatch, header):
    c, calls = serving(monkeypatch, header)
    with pytest.raises(RegistryError, match="failed after 4 attempts, the data corrupt every time") as ei:
        c.get_manifest(parse_reference("r.io/a/b:t"))
    assert header in str(ei.value) and len(calls) == 4


def test_digest_fetch_checks_the_reference_digest_not_the_header(monkeypatch):
    c, calls = serving(monkeypatch, "sha256:" + "0" * 64)       # a wrong header is ignored ...
    assert c.get_manifest(parse_reference(f"r.io/a/b@{SHA256}"))[0] == BODY
    c, calls = serving(monkeypatch, SHA256, body=BODY + b" ")    # ... the bytes are what counts
    with pytest.raises(RegistryError, match="corrupt every time"):
        c.get_manifest(parse_reference(f"r.io/a/b@{SHA256}"))
