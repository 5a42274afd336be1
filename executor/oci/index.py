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
    """One manifest of an index: its descriptor fields and its platform (from its config)."""

    media_type: str
    digest: str
    size: int
    os: str
    architecture: str
    variant: str | None = None

    def descriptor(self) -> dict:
        platform = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            platform["variant"] = self.variant
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, "platform": platform}


def entry_from_config(media_type: str, manifest_bytes: bytes, digest: str, config: dict) -> IndexEntry:
    """The index entry of a manifest (``manifest_bytes``, ``digest``) whose image config is ``config``."""
    return IndexEntry(media_type=media_type, digest=digest, size=len(manifest_bytes),
                      os=str(config.get("os") or "linux"), architecture=str(config.get("architecture") or ""),
                      variant=config.get("variant") or None)


def index_bytes(entries: list[IndexEntry], annotations: dict[str, str] | None = None) -> tuple[bytes, str]:
    """(serialised index, media type) listing ``entries`` in order; a Docker manifest list when
    every entry is Docker schema 2, else an OCI image index. Raises ValueError for two entries
    of the same platform."""
    seen: set[tuple] = set()
    for e in entries:
        key = (e.os, e.architecture, e.variant)
        if key in seen:
            raise ValueError(f"two manifests for platform {'/'.join(x for x in key if x)}")
        seen.add(key)
    docker = all(e.media_type == mt.DOCKER_MANIFEST for e in entries)
    media_type = mt.DOCKER_MANIFEST_LIST if docker else mt.OCI_INDEX
    doc: dict = {"schemaVersion": 2, "mediaType": media_type, "manifests": [e.descriptor() for e in entries]}
    if annotations and not docker:
        doc["annotations"] = dict(annotations)
    return json.dumps(doc, separators=(",", ":")).encode(), media_type
