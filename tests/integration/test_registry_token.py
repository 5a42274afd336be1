"""Bearer token auth against a real docker-registry configured with ``auth: token``.

The realm is tests/support/token_server.py, which signs ES256 JWTs whose x5c
certificate is the registry's rootcertbundle, so scopes are enforced by the registry.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import time

import pytest

from executor.errors import RegistryError
from executor.reference import parse_reference
from executor.registry.auth import Keychain
from executor.registry.client import RegistryClient, RegistryOptions
from tests.support.registry_server import start_custom_registry
from tests.support.tls import make_ca
from tests.support.token_server import TokenServer

pytestmark = pytest.mark.integration

PASSWORD = "tok-Pa55-word"
REFRESH = "refresh-token-value-123"


def sha(b: bytes) -> str:
    return "sha256:" + hashlib.sha256(b).hexdigest()


@pytest.fixture(scope="module")
def token_env(tools_present, tmp_path_factory):
    d = tmp_path_factory.mktemp("tokenreg")
    signer = make_ca(d / "pki", "token-signer")
    ts = TokenServer(signer=signer, users={"alice": PASSWORD}, refresh_tokens={REFRESH: "alice"}).start()
    reg = start_custom_registry(d / "reg", auth=ts.registry_auth_config())
    yield reg, ts
    reg.stop()
    ts.stop()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr("executor.registry.retry.backoff_delay", lambda *a, **k: 0.01)


def keychain(tmp_path, host: str, **entry) -> Keychain:
    d = tmp_path / "docker"
    d.mkdir(exist_ok=True)
    (d / "config.json").write_text(json.dumps({"auths": {host: entry}}))
    return Keychain.from_environment({"DOCKER_CONFIG": str(d), "HOME": str(tmp_path)})


def alice(tmp_path, host: str, password: str = PASSWORD) -> Keychain:
    return keychain(tmp_path, host, auth=base64.b64encode(f"alice:{password}".encode()).decode())


def opts(host: str) -> RegistryOptions:
    return RegistryOptions(insecure_registries=frozenset({host}))


def test_push_pull_with_scoped_tokens_and_cache(token_env, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    reg, ts = token_env
    ts.requests.clear()
    ref = parse_reference(f"{reg.host}/tok/app:v1")
    blobs = [f"blob {i}".encode() for i in range(3)]
    with RegistryClient(opts(reg.host), alice(tmp_path, reg.host)) as c:
        for b in blobs:
            c.upload_blob(ref, b, sha(b), len(b))
        for b in blobs:
            assert c.blob_exists(ref, sha(b))
        n_push = len(ts.requests)
        buf = io.BytesIO()
        c.fetch_blob(ref, sha(blobs[0]), buf)
        c.fetch_blob(ref, sha(blobs[1]), io.BytesIO())
        assert buf.getvalue() == blobs[0]
    assert n_push == 1, ts.requests          # one token for pull,push, cached for all 3 uploads + HEADs
    assert len(ts.requests) == 2             # plus one pull token
    assert ts.requests[0].user == "alice" and ts.requests[0].scopes == ["repository:tok/app:pull,push"]
    assert ts.requests[1].scopes == ["repository:tok/app:pull"]
    assert PASSWORD not in caplog.text


def test_cross_repo_mount_asks_for_both_scopes(token_env, tmp_path):
    reg, ts = token_env
    src = parse_reference(f"{reg.host}/tok/src:v1")
    dst = parse_reference(f"{reg.host}/tok/dst:v1")
    data = b"mount me"
    with RegistryClient(opts(reg.host), alice(tmp_path, reg.host)) as c:
        c.upload_blob(src, data, sha(data), len(data))
        ts.requests.clear()
        assert c.mount_blob(dst, sha(data), src.repository)
        assert c.blob_exists(dst, sha(data))
    assert sorted(ts.requests[0].scopes) == ["repository:tok/dst:pull,push", "repository:tok/src:pull"]


def test_anonymous_pull_allowed_push_refused(token_env, tmp_path):
    reg, ts = token_env
    pub = parse_reference(f"{reg.host}/public/base:v1")
    data = b"public data"
    with RegistryClient(opts(reg.host), alice(tmp_path, reg.host)) as c:
        c.upload_blob(pub, data, sha(data), len(data))
    with RegistryClient(opts(reg.host), Keychain.anonymous()) as c:
        buf = io.BytesIO()
        assert c.fetch_blob(pub, sha(data), buf) == len(data)
        with pytest.raises(RegistryError) as ei:
            c.upload_blob(pub, b"x", sha(b"x"), 1)
        msg = str(ei.value)
        assert reg.host in msg and "public/base" in msg and "401" in msg and "credentials" in msg
        with pytest.raises(RegistryError, match="401"):
            c.fetch_blob(parse_reference(f"{reg.host}/private/x:v1"), sha(data), io.BytesIO())


def test_wrong_password_is_refused_by_token_server(token_env, tmp_path):
    reg, ts = token_env
    with RegistryClient(opts(reg.host), alice(tmp_path, reg.host, "nope-WRONG")) as c:
        with pytest.raises(RegistryError) as ei:
            c.blob_exists(parse_reference(f"{reg.host}/tok/app:v1"), sha(b"a"))
    msg = str(ei.value)
    assert "refused a token with the configured credentials" in msg and "nope-WRONG" not in msg
    with RegistryClient(opts(reg.host), alice(tmp_path, reg.host, "nope-WRONG")) as c:
        with pytest.raises(RegistryError, match="credentials"):
            c.ping(reg.host)


def test_identity_token_uses_refresh_grant(token_env, tmp_path):
    reg, ts = token_env
    ts.requests.clear()
    ref = parse_reference(f"{reg.host}/tok/ident:v1")
    with RegistryClient(opts(reg.host), keychain(tmp_path, reg.host, identitytoken=REFRESH)) as c:
        c.upload_blob(ref, b"idt", sha(b"idt"), 3)
    assert ts.requests and all(r.method == "POST" and r.grant_type == "refresh_token" and r.user == "alice"
                               for r in ts.requests)


def test_token_expiry_refetches(token_env, tmp_path):
    reg, ts = token_env
    ts.requests.clear()
    ts.expires_in = 11           # client keeps 10 s slack -> cached ~1 s
    try:
        ref = parse_reference(f"{reg.host}/tok/exp:v1")
        with RegistryClient(opts(reg.host), alice(tmp_path, reg.host)) as c:
            c.blob_exists(ref, sha(b"a"))
            c.blob_exists(ref, sha(b"a"))
            assert len(ts.requests) == 1
            time.sleep(1.2)
            c.blob_exists(ref, sha(b"a"))
            assert len(ts.requests) == 2
    finally:
        ts.expires_in = 300
