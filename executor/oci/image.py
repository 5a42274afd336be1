"""In-memory model of an image: config plus layers, and manifest/config serialisation.

Sources: OCI image-spec manifest.md, config.md, descriptor.md; Docker image manifest v2 schema 2.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import mediatypes as mt


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data`` (OCI image-spec, descriptor.md "Digests")."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path: str | Path) -> str:
    """``sha256:<hex>`` of the file at ``path``, read in 1 MiB chunks (OSError if unreadable)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def canonical_json(obj: Any) -> bytes:
    """Compact, key-sorted JSON bytes: the same object always gives the same digest."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Layer:
    """One layer of an image.

    ``descriptor``: OCI descriptor dict (mediaType, digest, size[, annotations]).
    ``diff_id``: sha256 of the uncompressed tar (config rootfs.diff_ids entry).
    ``path``: local blob file when we have it (built here or downloaded), else None.
    ``source``: repository name ("registry/repo") that holds the blob, for pulls and
    cross-repository mounts; None for layers built locally.
    """

    descriptor: dict
    diff_id: str
    path: Path | None = None
    source: str | None = None

    @property
    def digest(self) -> str:
        return self.descriptor["digest"]

    @property
    def size(self) -> int:
        return int(self.descriptor["size"])

    @property
    def media_type(self) -> str:
        return self.descriptor["mediaType"]


@dataclass
class Image:
    """An image being built: ``config`` is the full image config JSON object (config.md).

    ``oci``: OCI manifest (True) or Docker v2 schema 2 (False). ``annotations``: the
    manifest's ``annotations`` (OCI manifest.md; left out when empty and always for Docker
    manifests, whose schema has no such field)."""

    config: dict
    layers: list[Layer] = field(default_factory=list)
    oci: bool = True
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def empty(cls, os_name: str = "linux", architecture: str = "amd64", variant: str | None = None) -> "Image":
        """The image ``FROM scratch`` starts from."""
        config: dict = {
            "architecture": architecture,
            "os": os_name,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        }
        if variant:
            config["variant"] = variant
        return cls(config=config)

    def copy(self) -> "Image":
        return Image(config=copy.deepcopy(self.config), layers=list(self.layers), oci=self.oci,
                     annotations=dict(self.annotations))

    @property
    def container_config(self) -> dict:
        """The ``config`` member (Env, Cmd, Entrypoint, ...), created when missing."""
        c = self.config.get("config")
        if c is None:
            c = self.config["config"] = {}
        return c

    def add_layer(self, layer: Layer, history: dict) -> None:
        """Append a layer with its history entry (diff_ids kept in step)."""
        self.layers.append(layer)
        self.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})["diff_ids"].append(layer.diff_id)
        self.config.setdefault("history", []).append(history)

    def add_history(self, history: dict) -> None:
        """Append an ``empty_layer`` history entry (metadata-only instruction)."""
        h = dict(history)
        h["empty_layer"] = True
        self.config.setdefault("history", []).append(h)

    def config_bytes(self) -> bytes:
        return canonical_json(self.config)

    def manifest_media_type(self) -> str:
        return mt.OCI_MANIFEST if self.oci else mt.DOCKER_MANIFEST

    def manifest(self, config_bytes: bytes | None = None) -> dict:
        """The image manifest dict for this image (layers converted to the manifest's vocabulary)."""
        cb = config_bytes if config_bytes is not None else self.config_bytes()
        layers = []
        for layer in self.layers:
            d = dict(layer.descriptor)
            d["mediaType"] = mt.convert_layer_type(d["mediaType"], self.oci)
            layers.append(d)
        man = {
            "schemaVersion": 2,
            "mediaType": self.manifest_media_type(),
            "config": {"mediaType": mt.config_type_for(self.manifest_media_type()),
                       "digest": sha256_digest(cb), "size": len(cb)},
            "layers": layers,
        }
        if self.annotations and self.oci:
            man["annotations"] = dict(sorted(self.annotations.items()))
        return man


def manifest_bytes(manifest: dict) -> bytes:
    """Serialise a manifest (stable key order; what gets pushed and digested)."""
    return json.dumps(manifest, indent=None, separators=(",", ":")).encode()
