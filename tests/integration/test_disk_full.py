"""A full disk while a base image is downloaded or unpacked: one error line naming the
directory and the space needed, never a traceback; no partial blob left behind.

Real parts: a loopback docker-registry, a base image packed by hand (incompressible or
all-zero layer) and pushed with skopeo, a small tmpfs (mount(8), needs root) as the place
that fills up.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest

from executor.engine.images import BlobStore, ImageSource
from executor.registry.client import RegistryClient, RegistryOptions
from tests.support.tools import run, run_executor

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")]

MiB = 1024 * 1024


@pytest.fixture
def small_fs(tmp_path):
    """A 1 MiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _blob(layout: Path, data: bytes) -> dict:
    d = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / d).write_bytes(data)
    return {"digest": f"sha256:{d}", "size": len(data)}


def push_base(registry, where: Path, content: bytes, name: str) -> tuple[str, int]:
    """Push a one-layer image whose layer holds ``/big`` = ``content``; returns (ref, blob size)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("big")
        info.size = len(content)
        t.addfile(info, io.BytesIO(content))
    gz = gzip.compress(raw.getvalue(), compresslevel=1, mtime=0)
    layout = where / f"layout-{name}"
    layout.mkdir(parents=True)
    layer = dict(_blob(layout, gz), mediaType="application/vnd.oci.image.layer.v1.tar+gzip")
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]}}
    cfg = dict(_blob(layout, json.dumps(config).encode()), mediaType="application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg, "layers": [layer]}
    man = dict(_blob(layout, json.dumps(manifest).encode()), mediaType=manifest["mediaType"],
               annotations={"org.opencontainers.image.ref.name": "latest"})
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [man]}))
    ref = f"{registry.host}/diskfull/{name}-{uuid.uuid4().hex[:6]}:latest"
    run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{ref}"])
    return ref, len(gz)


def _source(registry, store: Path) -> ImageSource:
    client = RegistryClient(RegistryOptions(insecure_registries=frozenset({registry.host})))
    return ImageSource(client=client, store=BlobStore(store))


def test_download_into_a_full_disk_is_one_clear_error(registry, tmp_path, small_fs):
    from executor.engine.images import DiskFull
    ref, size = push_base(registry, tmp_path, os.urandom(3 * MiB), "random")
    src = _source(registry, small_fs / "blobs")
    root = tmp_path / "root"
    root.mkdir()
    try:
        with pytest.raises(DiskFull) as e:
            src.unpack(src.image(ref), root)
    finally:
        src.close()
        src.client.close()
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"no space left on device in {small_fs / 'blobs'}:"), msg
    assert e.value.needed == size and "3.0 MiB" in msg, msg
    assert "free of 1.0 MiB" in msg and "--kaniko-dir" in msg, msg
    leftovers = [p for p in (small_fs / "blobs").rglob("*") if p.is_file()]
    assert leftovers == []  # the partial download is gone


def test_unpacking_onto_a_full_disk_names_the_root_and_the_layer_size(registry, tmp_path, small_fs):
    from executor.engine.images import DiskFull
    ref, size = push_base(registry, tmp_path, bytes(3 * MiB), "zeros")  # compresses to a few KiB
    assert size < 256 * 1024
    src = _source(registry, tmp_path / "blobs")
    root = small_fs / "root"
    root.mkdir()
    try:
        with pytest.raises(DiskFull) as e:
            src.unpack(src.image(ref), root)
    finally:
        src.close()
        src.client.close()
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"no space left on device in {root}: unpacking layer sha256:"), msg
    assert e.value.needed >= 3 * MiB and "3.0 MiB" in msg, msg


def test_cli_base_bigger_than_the_work_dir_fails_with_one_line(registry, tmp_path, small_fs):
    ref, _ = push_base(registry, tmp_path, os.urandom(3 * MiB), "cli")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f'FROM {ref}\nRUN ["/big"]\n')
    work = small_fs / "work"
    p = run_executor(["--context", str(ctx), "--no-push", "--kaniko-dir", str(work),
                      "--insecure-registry", registry.host, "--log-format", "text"], check=False)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, p.stderr
    assert "no space left on device" in errors[0] and str(work) in errors[0], p.stderr
    assert "MiB" in errors[0], p.stderr
