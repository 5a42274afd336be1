"""Integration fixtures shared by several modules."""

from __future__ import annotations

import http.server
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.tools import REPO, run_executor, umoci_unpack


@dataclass(frozen=True)
class DebianExample:
    """One build of examples/debian-python, pushed to the session registry, with its SBOM
    (SPDX) and provenance attached and written as files, then copied back with skopeo into the
    OCI layout ``layout`` (tag ``img``) and unpacked with umoci into ``bundle``. Its layer cache
    (an OCI layout) is ``cache``."""

    dest: str
    digest: str
    stderr: str
    seconds: float
    sbom: Path
    provenance: Path
    layout: Path
    bundle: Path
    context: Path
    cache: Path


@pytest.fixture(scope="session")
def debian_example(registry, debian_base, tmp_path_factory) -> DebianExample:
    """The Debian example (apt-get install jq, pip install six) built once for the session:
    tests/integration/test_debian_example.py runs it, test_supply_chain_debian.py reads its
    supply-chain documents."""
    work = tmp_path_factory.mktemp("debian-example")
    ctx = work / "ctx"
    shutil.copytree(REPO / "examples" / "debian-python", ctx)
    dest = f"{registry.host}/examples/debian-python:{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    p = run_executor(["--context", str(ctx), "--build-arg", f"BASE={debian_base}", "--destination", dest,
                      "--insecure-registry", registry.host, "--log-format", "text",
                      "--cache", "--cache-repo", f"oci:{work / 'cache'}",
                      "--sbom", "--provenance", "--sbom-path", str(work / "sbom.spdx.json"),
                      "--provenance-path", str(work / "provenance.json"), "--digest-file", str(work / "digest")],
                     timeout=900)
    seconds = time.monotonic() - t0
    bundle = umoci_unpack(dest, work / "u")
    return DebianExample(dest=dest, digest=(work / "digest").read_text(), stderr=p.stderr, seconds=seconds,
                         sbom=work / "sbom.spdx.json", provenance=work / "provenance.json",
                         layout=work / "u" / "layout", bundle=bundle, context=ctx, cache=work / "cache")


@pytest.fixture(scope="module")
def proxy(registry):
    """A pass-through proxy in front of the session registry, one per test module;
    ``proxy.log`` lists every request. (Fault tests define their own, one per test.)"""
    host, port = registry.host.rsplit(":", 1)
    p = FaultProxy(upstream=(host, int(port))).start()
    yield p
    p.stop()


@pytest.fixture
def http_files(tmp_path):
    """A local http.server on 127.0.0.1 serving tmp_path/www (Last-Modified from each file's mtime)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(www), **kw)

        def log_message(self, *a):
            pass
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield www, f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()
