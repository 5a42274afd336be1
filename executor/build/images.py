"""Base images: resolve a reference, download its layer blobs, unpack them into a root.

Blobs land in a content-addressed store (``blobs/sha256/<hex>``) and are verified by
the registry client as they stream in. Downloads run on a thread pool while layers
are applied in order, so extraction of layer N overlaps the download of N+1.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..layers.extract import apply_layer
from ..oci import mediatypes as mt
from ..oci.image import Image, Layer
from ..reference import Reference, parse_reference
from ..registry.client import RegistryClient, ResolvedImage

log = logging.getLogger("executor.images")


@dataclass
class BlobStore:
    """Content-addressed blob files under ``root`` (``sha256/<hex>``)."""

    root: Path

    def path(self, digest: str) -> Path:
        alg, hexd = digest.split(":", 1)
        return self.root / alg / hexd

    def has(self, digest: str) -> bool:
        return self.path(digest).exists()

    def tmp_path(self, name: str) -> Path:
        d = self.root / "tmp"
        d.mkdir(parents=True, exist_ok=True)
        return d / name

    def adopt(self, tmp: Path, digest: str) -> Path:
        """Move a finished temp file into place under its digest; returns the final path."""
        dest = self.path(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, dest)
        return dest


@dataclass
class ImageSource:
    """Pulls images through a RegistryClient into a BlobStore; caches resolutions per reference.

    ``local_cache`` (``--cache-dir`` filled by ``executor warm``) is consulted first.
    """

    client: RegistryClient
    store: BlobStore
    platform: str = "linux/amd64"
    local_cache: "object | None" = None
    _resolved: dict[str, tuple[ResolvedImage, Reference]] = field(default_factory=dict)
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=4))

    def resolve(self, ref_text: str) -> tuple[ResolvedImage, Reference]:
        """Resolve ``ref_text`` to the platform manifest and config (cached)."""
        if ref_text not in self._resolved:
            ref = parse_reference(ref_text)
            resolved = None
            if self.local_cache is not None:
                resolved = self.local_cache.lookup(ref, self.platform)
            if resolved is None:
                resolved = self.client.resolve_image(ref, self.platform)
            self._resolved[ref_text] = (resolved, ref)
        return self._resolved[ref_text]

    def image(self, ref_text: str) -> Image:
        """The image named ``ref_text`` as an Image whose layers point at their source repository."""
        resolved, ref = self.resolve(ref_text)
        src = resolved.reference.name
        layers = [Layer(descriptor=dict(d), diff_id=diff_id, path=None, source=src)
                  for d, diff_id in zip(resolved.manifest.get("layers", []),
                                        resolved.config.get("rootfs", {}).get("diff_ids", []), strict=False)]
        import copy
        return Image(config=copy.deepcopy(resolved.config), layers=layers,
                     oci=mt.is_oci(resolved.media_type))

    def fetch(self, layer: Layer) -> Path:
        """Local path of ``layer``'s blob, downloading (verified) when absent."""
        if layer.path is not None and layer.path.exists():
            return layer.path
        dest = self.store.path(layer.digest)
        if dest.exists():
            layer.path = dest
            return dest
        if self.local_cache is not None:
            cached = self.local_cache.blob(layer.digest)
            if cached is not None:
                layer.path = cached
                return cached
        assert layer.source, f"layer {layer.digest} has no source repository"
        ref = parse_reference(layer.source)
        tmp = self.store.tmp_path(layer.digest.replace(":", "-") + f".{os.getpid()}.{id(layer)}")
        with open(tmp, "wb") as f:
            self.client.fetch_blob(ref, layer.digest, f)
        layer.path = self.store.adopt(tmp, layer.digest)
        return layer.path

    def fetch_all(self, layers: list[Layer]) -> list[Future]:
        """Start downloading every layer; futures resolve to local paths, in order."""
        return [self._pool.submit(self.fetch, layer) for layer in layers]

    def unpack(self, image: Image, root: Path) -> None:
        """Apply every layer of ``image`` onto ``root`` in order (downloads overlap extraction)."""
        futures = self.fetch_all(image.layers)
        for layer, fut in zip(image.layers, futures, strict=True):
            path = fut.result()
            with open(path, "rb") as f:
                stats = apply_layer(f, root, media_type=layer.media_type)
            if stats.skipped:
                log.debug("layer %s: skipped %d entries (e.g. %s)", layer.digest[:19], len(stats.skipped),
                          stats.skipped[0])

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
