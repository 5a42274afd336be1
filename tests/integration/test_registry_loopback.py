"""Loopback registries without ``--insecure-registry`` (project issue 15, item 1).

go-containerregistry -- and so Kaniko -- reaches ``localhost``/127.0.0.1/``::1`` registries over
plain HTTP when they do not speak TLS (``name.Registry.Scheme()`` + ``transport.ping``: HTTPS
first, then HTTP). The Kaniko catalog's tests push to a plain-HTTP ``localhost:5000`` sidecar
with no flag but ``--skip-tls-verify``. These tests run the real docker-registry of
tests/support/registry.py (plain HTTP on 127.0.0.1) with no insecure option at all; the TLS
side (a loopback registry that speaks TLS is never downgraded) is in test_registry_tls.py.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import uuid

import pytest

from executor.errors import RegistryError
from executor.reference import parse_reference
from executor.registry.client import OCI_MANIFEST, RegistryClient, RegistryOptions
from tests.support.tls import make_ca
from tests.support.tools import executor_cmd, skopeo_inspect

pytestmark = pytest.mark.integration


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr("executor.registry.retry.backoff_delay", lambda *a, **k: 0.01)


def localhost_alias(host: str) -> str:
    """``127.0.0.1:PORT`` -> ``localhost:PORT`` (the same registry under its other loopback name)."""
    return "localhost:" + host.rsplit(":", 1)[1]


@pytest.mark.parametrize("name", ["ip", "localhost"])
def test_client_pulls_and_pushes_over_plain_http_without_options(registry, busybox, name):
    host = registry.host if name == "ip" else localhost_alias(registry.host)
    src = parse_reference(busybox.replace(registry.host, host, 1))
    with RegistryClient(RegistryOptions()) as c:
        img = c.resolve_image(src)
        assert c._endpoint(host, pull=True).base == f"http://{host}"
        assert c._endpoint(host, pull=False).base == f"http://{host}"
        dst = parse_reference(f"{host}/loopback/{name}:v1")
        for desc in [img.manifest["config"], *img.manifest["layers"]]:
            buf = io.BytesIO()
            c.fetch_blob(src, desc["digest"], buf)
            c.upload_blob(dst, buf.getvalue(), desc["digest"], desc["size"])
        digest = c.put_manifest(dst, img.manifest_bytes, OCI_MANIFEST)
    assert digest == img.digest
    assert skopeo_inspect(f"{registry.host}/loopback/{name}:v1")["Digest"] == img.digest


def test_build_pushes_to_loopback_registry_without_insecure_registry(registry, busybox, tmp_path):
    """The CLI as the Kaniko catalog test uses it: FROM and --destination on a plain-HTTP loopback
    registry, no --insecure*, and --skip-tls-verify (which must not stop the fallback)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox}\nCOPY hello.txt /hello.txt\n")
    (ctx / "hello.txt").write_text(f"hello {uuid.uuid4().hex}\n")
    digest_file = tmp_path / "digest"
    for i, extra in enumerate([[], ["--skip-tls-verify"]]):
        dest = f"{localhost_alias(registry.host)}/loopback/build:{i}"
        p = subprocess.run(executor_cmd() + ["--log-format", "text", "--context", str(ctx), "--destination", dest,
                                             "--digest-file", str(digest_file), *extra],
                           capture_output=True, text=True, timeout=180)
        assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
        pushed = skopeo_inspect(f"{registry.host}/loopback/build:{i}")
        assert pushed["Digest"] == digest_file.read_text().strip()
        assert len(pushed["Layers"]) == len(skopeo_inspect(busybox)["Layers"]) + 1


def test_opt_out_keeps_https_only(registry):
    """``loopback_plain_http=False``: HTTPS only, and the error says which flag gives plain HTTP."""
    with RegistryClient(RegistryOptions(loopback_plain_http=False)) as c:
        with pytest.raises(RegistryError) as ei:
            c.ping(registry.host)
    msg = str(ei.value)
    assert "does not speak HTTPS" in msg and f"--insecure-registry {registry.host}" in msg


def test_registry_certificate_means_tls_only(registry, tmp_path):
    """An explicit --registry-certificate for a loopback registry asks for TLS: no plain-HTTP fallback."""
    ca = make_ca(tmp_path, "unused-ca")
    with RegistryClient(RegistryOptions(registry_certificates={registry.host: str(ca.cert)})) as c:
        with pytest.raises(RegistryError, match="does not speak HTTPS"):
            c.ping(registry.host)


def test_explicit_insecure_registry_still_plain_http_without_probe(registry, monkeypatch):
    """--insecure-registry goes straight to HTTP (no HTTPS probe first)."""
    with RegistryClient(RegistryOptions(insecure_registries=frozenset({registry.host}))) as c:
        monkeypatch.setattr(c._transport, "probe_scheme", lambda ep: pytest.fail("probed an explicit registry"))
        c.ping(registry.host)
        assert c._endpoint(registry.host, pull=False).base == f"http://{registry.host}"


def test_probe_happens_once_per_client(registry, busybox):
    with RegistryClient(RegistryOptions()) as c:
        calls = []
        orig = c._transport.probe_scheme

        def probe(ep):
            calls.append(ep.base)
            return orig(ep)

        c._transport.probe_scheme = probe
        ref = parse_reference(busybox)
        c.resolve_image(ref)
        c.head_manifest(ref)
        assert calls == [f"https://{registry.host}"]
        assert json.loads(c.get_manifest(ref)[0])["schemaVersion"] == 2
