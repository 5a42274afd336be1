"""Image indexes: one manifest per platform, listed with their platforms.

Sources: OCI image-spec image-index.md (``application/vnd.oci.image.index.v1+json``) and Docker's
manifest list v2 schema 2 (``application/vnd.docker.distribution.manifest.list.v2+json``), used
when every listed manifest is a Docker schema 2 manifest, as Docker and BuildKit do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from . import mediatypes as mt


@dataclass(frozen=True)
class IndexEntry:
    """One manifest of an index: its descriptor fields and its OCI platform object (``os``,
    ``architecture`` and, when set, ``variant``, ``os.version``, ``os.features``)."""

    media_type: str
    digest: str
    size: int
    platform: dict

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, "platform": self.platform}

    @property
    def platform_text(self) -> str:
        """``os/arch[/variant]``."""
        p = self.platform
        return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def platform_of(config: dict) -> dict:
    """The OCI platform object of an image config (image-spec config.md fields)."""
    platform: dict = {"architecture": str(config.get("architecture") or ""), "os": str(config.get("os") or "linux")}
    if isinstance(config.get("variant"), str) and config["variant"]:
        platform["variant"] = config["variant"]
    if isinstance(config.get("os.version"), str) and config["os.version"]:
        platform["os.version"] = config["os.version"]
    if isinstance(config.get("os.features"), list) and config["os.features"]:
        platform["os.features"] = [str(f) for f in config["os.features"]]
    return platform


def entry_from_config(media_type: str, manifest_bytes: bytes, digest: str, config: dict) -> IndexEntry:
    """The index entry of a manifest (``manifest_bytes``, ``digest``) whose image config is ``config``."""
    return IndexEntry(media_type=media_type, digest=digest, size=len(manifest_bytes), platform=platform_of(config))


def _platform_key(p: dict) -> tuple:
    """Equality of platforms: arm64 without a variant is arm64/v8."""
    variant = p.get("variant") or None
    if p.get("architecture") == "arm64" and variant == "v8":
        variant = None
    return p.get("os"), p.get("architecture"), variant, p.get("os.version") or None


def index_bytes(entries: list[IndexEntry], annotations: dict[str, str] | None = None) -> tuple[bytes, str]:
    """(serialised index, media type) listing ``entries`` in order; a Docker manifest list when
    every entry is Docker schema 2, else an OCI image index. Raises ValueError naming the two
    entries of one platform."""
    seen: dict[tuple, IndexEntry] = {}
    for e in entries:
        key = _platform_key(e.platform)
        if key in seen:
            raise ValueError(f"{seen[key].digest} and {e.digest} are both {e.platform_text}; an index holds one "
                             "image per platform")
        seen[key] = e
    docker = all(e.media_type == mt.DOCKER_MANIFEST for e in entries)
    media_type = mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX
    doc: dict = {"schemaVersion": 2, "mediaType": media_type, "manifests": [e.descriptor() for e in entries]}
    if annotations and not docker:
        doc["annotations"] = dict(annotations)
    return json.dumps(doc, separators=(",", ":")).encode(), media_type
