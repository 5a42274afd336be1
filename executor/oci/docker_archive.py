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


def write_docker_archive(path: Path, image: Image, blob_paths: list[Path], tags: list[str]) -> None:
    """Write ``image`` as a docker-save tarball at ``path`` tagged with every entry of ``tags``.

    ``tags`` are full references ``registry/repo:tag``. Layers are stored compressed as
    pushed (``docker load`` decompresses them). Streams blobs; never loads a layer in memory.
    """
    cfg = image.config_bytes()
    cfg_name = sha256_digest(cfg).split(":", 1)[1] + ".json"
    layer_names = []
    tmp = path.with_name(path.name + ".partial")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, cfg_name, cfg)
        for layer, src in zip(image.layers, blob_paths, strict=True):
            name = layer.digest.split(":", 1)[1] + ".tar.gz"
            layer_names.append(name)
            tar.add(str(src), arcname=name, recursive=False)
        manifest = [{"Config": cfg_name, "RepoTags": tags, "Layers": layer_names}]
        _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
        repos: dict[str, dict[str, str]] = {}
        last = layer_names[-1].split(".")[0] if layer_names else ""
        for t in tags:
            repo, _, tag = t.rpartition(":")
            repos.setdefault(repo, {})[tag] = last
        _add_bytes(tar, "repositories", json.dumps(repos).encode())
    tmp.replace(path)
