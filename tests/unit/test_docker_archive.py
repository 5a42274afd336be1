"""``--tar-path`` docker-archive: layers are named after the compression they really have.

A zstd layer (``--compression zstd``) used to be stored as ``<hex>.tar.gz``; tools that go by
the name (and people) then treat zstd data as gzip.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from executor.oci import mediatypes as mt
from executor.oci.docker_archive import write_docker_archive
from executor.oci.image import Image, Layer


def _layer_tar(name: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        data = f"content of {name}\n".encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _blob(dir_: Path, raw: bytes, compression: str, media_type: str) -> tuple[Layer, Path]:
    body = {"gzip": lambda b: gzip.compress(b, mtime=0),
            "zstd": lambda b: zstandard.ZstdCompressor().compress(b),
            "none": lambda b: b}[compression](raw)
    digest = "sha256:" + hashlib.sha256(body).hexdigest()
    path = dir_ / digest.split(":")[1]
    path.write_bytes(body)
    layer = Layer(descriptor={"mediaType": media_type, "digest": digest, "size": len(body)},
                  diff_id="sha256:" + hashlib.sha256(raw).hexdigest(), path=path)
    return layer, path


def _image(tmp: Path, specs: list[tuple[str, str]]) -> tuple[Image, list[Path]]:
    img = Image.empty()
    paths = []
    for i, (compression, media_type) in enumerate(specs):
        layer, path = _blob(tmp, _layer_tar(f"f{i}"), compression, media_type)
        img.add_layer(layer, {"created_by": f"layer {i}"})
        paths.append(path)
    return img, paths


def _members(archive: Path) -> tuple[dict, dict[str, bytes]]:
    with tarfile.open(archive) as t:
        files = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
    return json.loads(files["manifest.json"])[0], files


def test_zstd_layers_are_named_tar_zst_not_tar_gz(tmp_path):
    img, paths = _image(tmp_path, [("zstd", mt.OCI_LAYER_ZSTD), ("zstd", mt.OCI_LAYER_ZSTD)])
    out = tmp_path / "image.tar"
    write_docker_archive(out, img, paths, ["registry.example/app:v1"])
    manifest, files = _members(out)
    assert manifest["Layers"] == [lay.digest.split(":")[1] + ".tar.zst" for lay in img.layers]
    for name in manifest["Layers"]:
        assert files[name].startswith(b"\x28\xb5\x2f\xfd")
    assert not [n for n in files if n.endswith(".tar.gz")]


def test_each_layer_named_by_its_own_compression(tmp_path):
    """Mixed layers (a gzip base under zstd layers, an uncompressed one, a zstd blob labelled
    gzip): every name says what its bytes are."""
    img, paths = _image(tmp_path, [("gzip", mt.DOCKER_LAYER_GZIP), ("zstd", mt.OCI_LAYER_ZSTD),
                                   ("none", mt.OCI_LAYER), ("zstd", mt.OCI_LAYER_GZIP)])
    out = tmp_path / "image.tar"
    write_docker_archive(out, img, paths, ["registry.example/app:v1"])
    manifest, files = _members(out)
    hexes = [lay.digest.split(":")[1] for lay in img.layers]
    assert manifest["Layers"] == [hexes[0] + ".tar.gz", hexes[1] + ".tar.zst", hexes[2] + ".tar",
                                  hexes[3] + ".tar.zst"]
    repos = json.loads(files["repositories"])
    assert repos == {"registry.example/app": {"v1": hexes[3]}}
    assert files[manifest["Layers"][2]] == _layer_tar("f2")


@pytest.mark.parametrize("compression,media_type,want", [
    ("gzip", mt.OCI_LAYER_GZIP, "gzip"), ("zstd", mt.OCI_LAYER_ZSTD, "zstd"), ("none", mt.OCI_LAYER, "none"),
    ("zstd", mt.DOCKER_LAYER_GZIP, "zstd"), ("gzip", mt.OCI_LAYER_ZSTD, "gzip"),
])
def test_blob_compression_reads_the_content(tmp_path, compression, media_type, want):
    from executor.oci.docker_archive import blob_compression
    _, path = _blob(tmp_path, _layer_tar("x"), compression, media_type)
    assert blob_compression(media_type, path) == want


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo missing")
def test_skopeo_reads_a_zstd_docker_archive(tmp_path):
    img, paths = _image(tmp_path, [("gzip", mt.OCI_LAYER_GZIP), ("zstd", mt.OCI_LAYER_ZSTD)])
    out = tmp_path / "image.tar"
    write_docker_archive(out, img, paths, ["registry.example/app:v1"])
    r = subprocess.run(["skopeo", "inspect", "--raw", f"docker-archive:{out}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["layers"]) == 2
