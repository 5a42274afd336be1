"""A hostile base image from a registry: layer entries that try to leave the build root.
The image is packed by hand (tarfile + OCI layout JSON) and pushed with skopeo."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.support.tools import run, run_executor

pytestmark = pytest.mark.integration


def _blob(layout: Path, data: bytes) -> dict:
    d = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / d).write_bytes(data)
    return {"digest": f"sha256:{d}", "size": len(data)}


def _hostile_layer(entries: list[tarfile.TarInfo]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for info in entries:
            data = b"pwned\n" if info.isreg() else None
            if data is not None:
                info.size = len(data)
            t.addfile(info, io.BytesIO(data) if data is not None else None)
    return raw.getvalue()


def push_hostile_image(registry, busybox_layout_dir: Path, entries: list[tarfile.TarInfo], name: str) -> str:
    layout = busybox_layout_dir
    layout.mkdir(parents=True)
    raw = _hostile_layer(entries)
    gz = gzip.compress(raw)
    layer = dict(_blob(layout, gz), mediaType="application/vnd.oci.image.layer.v1.tar+gzip")
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]}}
    cfg = dict(_blob(layout, json.dumps(config).encode()), mediaType="application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": cfg, "layers": [layer]}
    man = dict(_blob(layout, json.dumps(manifest).encode()), mediaType=manifest["mediaType"],
               annotations={"org.opencontainers.image.ref.name": "latest"})
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [man]}))
    ref = f"{registry.host}/hostile/{name}:latest"
    run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:latest", f"docker://{ref}"])
    return ref


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.mode = 0o644 if kind == tarfile.REGTYPE else 0o777
    return info


@pytest.mark.parametrize("case", ["dotdot", "symlink-parent", "hardlink-outside", "absolute"])
def test_hostile_base_layer_cannot_escape_root(registry, tmp_path, case):
    token = uuid.uuid4().hex[:12]
    outside = tmp_path / "outside"
    outside.mkdir()
    sentinel = outside / "sentinel"
    sentinel.write_text("original\n")
    entries = {
        "dotdot": [_entry(f"../../../../../../../../{outside.relative_to('/')}/pwned-{token}")],
        "symlink-parent": [_entry("evil", tarfile.SYMTYPE, str(outside)), _entry(f"evil/pwned-{token}")],
        "hardlink-outside": [_entry("hl", tarfile.LNKTYPE, f"../../../../../../../..{sentinel}"),
                             _entry("hl2", tarfile.LNKTYPE, str(sentinel))],
        "absolute": [_entry(f"{outside}/pwned-{token}")],
    }[case]
    base = push_hostile_image(registry, tmp_path / "layout", entries, f"{case}-{token}")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nLABEL case={case}\n")  # no shell in the image: unpack only
    p = run_executor(["--context", str(ctx), "--no-push", "--insecure-registry", registry.host,
                      "--kaniko-dir", str(tmp_path / "work")], check=False)
    assert "Traceback" not in p.stderr
    assert sorted(x.name for x in outside.iterdir()) == ["sentinel"], p.stderr
    assert sentinel.read_text() == "original\n"
    if p.returncode != 0:
        assert "escape" in p.stderr.lower() or "outside" in p.stderr.lower(), p.stderr
