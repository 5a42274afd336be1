"""Write an OCI image layout directory (``--oci-layout-path``).

Source: OCI image-spec, image-layout.md (oci-layout, index.json, blobs/<alg>/<hex>).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from . import mediatypes as mt
from .image import Image, manifest_bytes, sha256_digest


def _put_blob(blobs: Path, digest: str, src: Path | None = None, data: bytes | None = None) -> None:
    alg, hexd = digest.split(":", 1)
    dest = blobs / alg / hexd
    if dest.exists():
        return
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(hexd + ".tmp")
    if data is not None:
        tmp.write_bytes(data)
    else:
        assert src is not None
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    os.replace(tmp, dest)


def write_oci_layout(path: Path, image: Image, blob_paths: list[Path], ref_name: str | None = None) -> str:
    """Write ``image`` into an OCI image layout at ``path``; returns the manifest digest.

    ``blob_paths[i]`` is the local compressed blob of ``image.layers[i]``. Blobs are
    written first and index.json last, so a reader never sees a manifest whose blobs
    are missing. An existing layout gains the manifest (index.json entries are merged).
    """
    path.mkdir(parents=True, exist_ok=True)
    blobs = path / "blobs"
    for layer, src in zip(image.layers, blob_paths, strict=True):
        _put_blob(blobs, layer.digest, src=src)
    cfg = image.config_bytes()
    _put_blob(blobs, sha256_digest(cfg), data=cfg)
    man = manifest_bytes(image.manifest(cfg))
    digest = sha256_digest(man)
    _put_blob(blobs, digest, data=man)
    (path / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    index_path = path / "index.json"
    index = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    if index_path.exists():
        index = json.loads(index_path.read_text())
    desc: dict = {"mediaType": image.manifest_media_type(), "digest": digest, "size": len(man)}
    if ref_name:
        desc["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
        index["manifests"] = [m for m in index.get("manifests", [])
                              if m.get("annotations", {}).get("org.opencontainers.image.ref.name") != ref_name]
    index.setdefault("manifests", []).append(desc)
    tmp = index_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(index))
    os.replace(tmp, index_path)
    return digest
