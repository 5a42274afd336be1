"""Write a ``docker save``-style tarball (``--tar-path``) that ``docker load``/``podman load`` accept.

Source: Docker image specification v1.2 "Combined Image JSON + Filesystem Changeset Format"
(manifest.json with Config, RepoTags, Layers; a legacy ``repositories`` file).
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from .image import Image, sha256_digest


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # RFC 8878 section 3.1.1 (frame magic number, little-endian 0xFD2FB528)

#: File name suffix of a layer in the tarball by compression: what it really holds.
LAYER_SUFFIX = {"gzip": ".tar.gz", "zstd": ".tar.zst", "none": ".tar"}


def blob_compression(media_type: str, blob: Path) -> str:
    """Compression of a layer blob: ``gzip``, ``zstd`` or ``none``.

    Read from the blob's first bytes (gzip RFC 1952 ID1 ID2, zstd RFC 8878 magic number), so a
    mislabelled layer is still named after its content; the media type (``+gzip``/``+zstd``
    suffix, Docker's ``.tar.gzip``) decides only for a blob too short to tell. Raises OSError
    when the blob cannot be read."""
    with open(blob, "rb") as f:
        head = f.read(4)
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC):
        return "zstd"
    if len(head) >= 4:
        return "none"
    if media_type.endswith("zstd"):
        return "zstd"
    return "gzip" if "gzip" in media_type else "none"


def layer_file_name(digest: str, media_type: str, blob: Path) -> str:
    """``<hex of digest><suffix>``: the name of a layer in the tarball, its suffix naming the
    compression it really has (``.tar.gz``, ``.tar.zst`` or ``.tar``)."""
    return digest.split(":", 1)[1] + LAYER_SUFFIX[blob_compression(media_type, blob)]


def write_docker_archive(path: Path, image: Image, blob_paths: list[Path], tags: list[str]) -> None:
    """Write ``image`` as a docker-save tarball at ``path`` tagged with every entry of ``tags``.

    ``tags`` are full references ``registry/repo:tag``. Layers are stored compressed as
    pushed (``docker load`` decompresses them), each named after its digest and its actual
    compression (:func:`layer_file_name`: ``.tar.gz``, ``.tar.zst``, ``.tar``). Streams blobs;
    never loads a layer in memory.
    """
    cfg = image.config_bytes()
    cfg_name = sha256_digest(cfg).split(":", 1)[1] + ".json"
    layer_names = []
    tmp = path.with_name(path.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, cfg_name, cfg)
        for layer, src in zip(image.layers, blob_paths, strict=True):
            name = layer_file_name(layer.digest, layer.media_type, src)
            layer_names.append(name)
            tar.add(str(src), arcname=name, recursive=False)
        manifest = [{"Config": cfg_name, "RepoTags": tags, "Layers": layer_names}]
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        repos: dict[str, dict[str, str]] = {}
        last = image.layers[-1].digest.split(":", 1)[1] if image.layers else ""
        for t in tags:
            repo, _, tag = t.rpartition(":")
            repos.setdefault(repo, {})[tag] = last
        _add_bytes(tar, "repositories", json.dumps(repos).encode())
    tmp.replace(path)
