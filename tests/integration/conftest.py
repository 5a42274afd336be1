"""Integration fixtures shared by several modules."""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.tools import REPO, run_executor, umoci_unpack


@dataclass(frozen=True)
class DebianExample:
    """One build of examples/debian-python, pushed to the session registry, with its SBOM
    (SPDX) and provenance attached and written as files, then copied back with skopeo into the
    OCI layout ``layout`` (tag ``img``) and unpacked with umoci into ``bundle``."""

    dest: str
    digest: str
    stderr: str
    seconds: float
    sbom: Path
    provenance: Path
    layout: Path
    bundle: Path
    context: Path


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
                      "--sbom", "--provenance", "--sbom-path", str(work / "sbom.spdx.json"),
                      "--provenance-path", str(work / "provenance.json"), "--digest-file", str(work / "digest")],
                     timeout=900)
    seconds = time.monotonic() - t0
    bundle = umoci_unpack(dest, work / "u")
    return DebianExample(dest=dest, digest=(work / "digest").read_text(), stderr=p.stderr, seconds=seconds,
                         sbom=work / "sbom.spdx.json", provenance=work / "provenance.json",
                         layout=work / "u" / "layout", bundle=bundle, context=ctx)
