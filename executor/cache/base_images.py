"""Read side of the ``--cache-dir`` OCI layout of base images that ``executor warm`` writes."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..oci import mediatypes as mt
from ..oci.image import sha256_digest
from ..reference import Reference, parse_reference
from ..registry.client import ResolvedImage
from .entry import ANN_CACHED_AT, ANN_INDEX_DIGEST, ANN_PLATFORM, ANN_REF, expired

log = logging.getLogger("executor.cache")


def ref_key(ref: Reference) -> str:
    """``registry/repo:tag`` (or ``@digest``) as recorded in a local cache entry."""
    return str(ref)


@dataclass
class LocalImageCache:
    """Read side of the ``--cache-dir`` OCI layout that ``executor warm`` writes.

    ``lookup(ref, platform)`` matches a digest reference by manifest or index digest and a
    tag reference by name and tag while the entry is younger than ``ttl_seconds`` (the
    registry is then not asked at all, so builds work with it down). ``blob(digest)`` is the
    file of a cached blob. Nothing here writes.
    """

    root: Path
    ttl_seconds: int = 336 * 3600

    def _entries(self) -> list[dict]:
        from ..oci.layout import read_index
        return read_index(self.root).get("manifests") or []

    def blob(self, digest: str) -> Path | None:
        alg, _, hexd = digest.partition(":")
        p = self.root / "blobs" / alg / hexd
        return p if hexd and p.is_file() else None

    def lookup(self, ref: Reference, platform: str) -> ResolvedImage | None:
        now = time.time()
        for e in reversed(self._entries()):
            ann = e.get("annotations") or {}
            if ann.get(ANN_PLATFORM) != platform:
                continue
            cached = parse_reference(ann.get(ANN_REF, "")) if ann.get(ANN_REF) else None
            if cached is None or cached.name != ref.name:
                continue
            if ref.digest:
                if ref.digest not in (e.get("digest"), ann.get(ANN_INDEX_DIGEST)):
                    continue
            else:
                if cached.tag != ref.tag:
                    continue
                try:
                    at = float(ann.get(ANN_CACHED_AT, "0"))
                except ValueError:
                    at = 0.0
                if expired(at, self.ttl_seconds, now):
                    log.info("local cache entry for %s is older than --cache-ttl; asking the registry", ref)
                    continue
            resolved = self._load(ref, e)
            if resolved is not None:
                log.info("base image %s from the local cache %s", ref, self.root)
                return resolved
        return None

    def _load(self, ref: Reference, entry: dict) -> ResolvedImage | None:
        mpath = self.blob(entry.get("digest", ""))
        if mpath is None:
            return None
        man_bytes = mpath.read_bytes()
        if sha256_digest(man_bytes) != entry["digest"]:
            log.warning("local cache %s: manifest %s is corrupt; ignoring it", self.root, entry["digest"])
            return None
        man = json.loads(man_bytes)
        cpath = self.blob(man.get("config", {}).get("digest", ""))
        if cpath is None or any(self.blob(d.get("digest", "")) is None for d in man.get("layers") or []):
            return None
        cfg_bytes = cpath.read_bytes()
        return ResolvedImage(reference=ref.with_digest(entry["digest"]), manifest=man, manifest_bytes=man_bytes,
                             media_type=entry.get("mediaType") or man.get("mediaType") or mt.OCI_MANIFEST,
                             digest=entry["digest"], config=json.loads(cfg_bytes), config_bytes=cfg_bytes)


def open_local_cache(path: Path | None, ttl_seconds: int) -> LocalImageCache | None:
    """The local cache at ``path`` when it is an OCI layout made by ``executor warm``, else None."""
    if path is None:
        return None
    if not (path / "index.json").is_file():
        log.info("--cache-dir %s holds no cached images (fill it with `executor warm`)", path)
        return None
    return LocalImageCache(path, ttl_seconds)
