"""TLS, --registry-certificate, skip-verify, htpasswd basic auth and mTLS against a real docker-registry."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging

import pytest

from executor.errors import RegistryError
from executor.reference import parse_reference
from executor.registry.auth import Keychain
from executor.registry.client import RegistryClient, RegistryOptions
from tests.support.registry_server import start_custom_registry
from tests.support.tls import issue_cert, make_ca
from tests.support.tools import have, run

pytestmark = pytest.mark.integration

PASSWORD = "s3cret-Pa55word"


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d, "server-ca")
    client_ca = make_ca(d, "client-ca")
    return {"dir": d, "ca": ca, "server": issue_cert(ca, d, "server"),
            "client_ca": client_ca, "client": issue_cert(client_ca, d, "client", client=True),
            "stranger": issue_cert(make_ca(d, "other-ca"), d, "stranger", client=True)}


@pytest.fixture(scope="module")
def tls_registry(tools_present, pki, tmp_path_factory):
    """HTTPS + htpasswd basic auth."""
    if have("htpasswd"):
        pytest.skip("htpasswd (apache2-utils) missing")
    state = tmp_path_factory.mktemp("tlsreg")
    pw = run(["htpasswd", "-Bbn", "alice", PASSWORD]).stdout
    (state / "htpasswd").write_text(pw)
    reg = start_custom_registry(
        state, http_extra={"tls": {"certificate": str(pki["server"].cert), "key": str(pki["server"].key)}},
        auth={"htpasswd": {"realm": "test-realm", "path": str(state / "htpasswd")}})
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def mtls_registry(tools_present, pki, tmp_path_factory):
    """HTTPS requiring a client certificate from client-ca; no other auth."""
    state = tmp_path_factory.mktemp("mtlsreg")
    reg = start_custom_registry(
        state, http_extra={"tls": {"certificate": str(pki["server"].cert), "key": str(pki["server"].key),
                                   "clientcas": [str(pki["client_ca"].cert)]}})
    yield reg
    reg.stop()


def keychain_for(tmp_path, host: str, user: str, password: str) -> Keychain:
    d = tmp_path / "docker"
    d.mkdir(exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return Keychain.from_environment({"DOCKER_CONFIG": str(d), "HOME": str(tmp_path)})


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr("executor.registry.retry.backoff_delay", lambda *a, **k: 0.01)


def test_untrusted_certificate_is_explained(tls_registry):
    with RegistryClient(RegistryOptions()) as c:
        with pytest.raises(RegistryError) as ei:
            c.ping(tls_registry.host)
    msg = str(ei.value)
    assert "not trusted" in msg and f"--registry-certificate {tls_registry.host}=" in msg


def test_basic_auth_with_registry_certificate(tls_registry, pki, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    host = tls_registry.host
    opts = RegistryOptions(registry_certificates={host: str(pki["ca"].cert)})
    kc = keychain_for(tmp_path, host, "alice", PASSWORD)
    ref = parse_reference(f"{host}/secure/app:v1")
    data = b"tls blob"
    with RegistryClient(opts, kc) as c:
        c.ping(host)
        c.upload_blob(ref, data, sha(data), len(data))
        buf = io.BytesIO()
        assert c.fetch_blob(ref, sha(data), buf) == len(data) and buf.getvalue() == data
    assert PASSWORD not in caplog.text
    # The registry really requires auth: anonymous is refused with a useful message.
    with RegistryClient(opts) as c:
        with pytest.raises(RegistryError) as ei:
            c.blob_exists(ref, sha(data))
    assert "401" in str(ei.value) and host in str(ei.value) and "credentials" in str(ei.value)


def test_wrong_password_is_refused_without_leaking(tls_registry, pki, tmp_path):
    host = tls_registry.host
    kc = keychain_for(tmp_path, host, "alice", "wrong-pass-XYZ")
    with RegistryClient(RegistryOptions(registry_certificates={host: str(pki["ca"].cert)}), kc) as c:
        with pytest.raises(RegistryError) as ei:
            c.ping(host)
        msg = str(ei.value)
        assert "credentials" in msg and "wrong-pass-XYZ" not in msg
        with pytest.raises(RegistryError) as ei:
            c.upload_blob(parse_reference(f"{host}/secure/x:y"), b"q", sha(b"q"), 1)
        assert "401" in str(ei.value) and "wrong-pass-XYZ" not in str(ei.value)


def test_skip_tls_verify_registry(tls_registry, tmp_path):
    host = tls_registry.host
    kc = keychain_for(tmp_path, host, "alice", PASSWORD)
    with RegistryClient(RegistryOptions(skip_tls_verify_registries=frozenset({host})), kc) as c:
        c.ping(host)
    with RegistryClient(RegistryOptions(skip_tls_verify_pull=True), kc) as c:
        assert c.head_manifest(parse_reference(f"{host}/secure/none:v1")) is None   # pull-side op
        with pytest.raises(RegistryError, match="not trusted"):
            c.blob_exists(parse_reference(f"{host}/secure/none:v1"), sha(b"z"))     # push-side op


def test_mtls(mtls_registry, pki):
    host = mtls_registry.host
    ca = str(pki["ca"].cert)
    ref = parse_reference(f"{host}/mtls/app:v1")
    with RegistryClient(RegistryOptions(registry_certificates={host: ca})) as c:
        with pytest.raises(RegistryError) as ei:
            c.ping(host)
        assert f"--registry-client-cert {host}=" in str(ei.value)
    with RegistryClient(RegistryOptions(registry_certificates={host: ca},
                                        registry_client_certs={host: (str(pki["stranger"].cert), str(pki["stranger"].key))})) as c:
        with pytest.raises(RegistryError, match="rejected our TLS client certificate"):
            c.ping(host)
    with RegistryClient(RegistryOptions(registry_certificates={host: ca},
                                        registry_client_certs={host: (str(pki["client"].cert), str(pki["client"].key))})) as c:
        c.ping(host)
        c.upload_blob(ref, b"mtls", sha(b"mtls"), 4)
        assert c.blob_exists(ref, sha(b"mtls"))


def test_loopback_tls_registry_is_never_downgraded(tls_registry, mtls_registry, tmp_path):
    """A loopback registry that speaks TLS stays on HTTPS without any option: the HTTPS probe of the
    loopback fallback (test_registry_loopback.py) sees TLS -- a certificate it does not trust, or a
    missing client certificate -- and reports that instead of trying plain HTTP."""
    host = tls_registry.host
    with RegistryClient(RegistryOptions(skip_tls_verify_registries=frozenset({host})),
                        keychain_for(tmp_path, host, "alice", PASSWORD)) as c:
        c.ping(host)
        assert c._endpoint(host, pull=False).base == f"https://{host}"
    with RegistryClient(RegistryOptions()) as c:
        with pytest.raises(RegistryError, match="not trusted"):
            c.ping(host)
        assert c._endpoint(host, pull=False).base == f"https://{host}"
    mhost = mtls_registry.host
    with RegistryClient(RegistryOptions(skip_tls_verify_registries=frozenset({mhost}))) as c:
        with pytest.raises(RegistryError) as ei:
            c.ping(mhost)
        assert f"--registry-client-cert {mhost}=" in str(ei.value)
        assert c._endpoint(mhost, pull=False).base == f"https://{mhost}"
