"""A blob pull that falls back from a mirror to the next candidate starts writing at the
position the caller gave, not after the bytes the failed mirror left behind."""

from __future__ import annotations

import hashlib
import io

import pytest

from executor.errors import RegistryError
from executor.reference import parse_reference
from executor.registry.client import RegistryClient, RegistryOptions


def test_fallback_after_a_partial_mirror_download_rewinds(monkeypatch):
    blob = b"the real blob content\n"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    c = RegistryClient(RegistryOptions(registry_mirrors=("mirror.example",)))
    tried = []

    def direct(ref, dig, dest):
        tried.append(ref.registry)
        if len(tried) == 1:  # the mirror: half a blob, then the connection is gone for good
            dest.write(b"partial junk")
            raise RegistryError("mirror.example: connection broken")
        dest.write(blob)
        return len(blob)
    monkeypatch.setattr(c, "_fetch_blob_direct", direct)
    dest = io.BytesIO(b"HEAD")
    dest.seek(4)
    assert c.fetch_blob(parse_reference("busybox"), digest, dest) == len(blob)
    assert tried[0] == "mirror.example" and len(tried) == 2
    assert dest.getvalue() == b"HEAD" + blob


def test_every_candidate_failing_raises_the_last_error(monkeypatch):
    c = RegistryClient(RegistryOptions(registry_mirrors=("mirror.example",)))

    def direct(ref, dig, dest):
        raise RegistryError(f"{ref.registry}: refused")
    monkeypatch.setattr(c, "_fetch_blob_direct", direct)
    with pytest.raises(RegistryError, match="refused"):
        c.fetch_blob(parse_reference("busybox"), "sha256:" + "0" * 64, io.BytesIO())
