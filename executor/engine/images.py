"""Base images: resolve a reference, download its layer blobs, unpack them into a root.

Blobs land in a content-addressed store (``blobs/sha256/<hex>``) and are verified by
the registry client as they stream in (digest) and here (size against the descriptor).
Downloads run on a thread pool while layers are applied in order, so extraction of layer N
overlaps the download of N+1. Each layer's uncompressed content is hashed while it is
applied and must equal the config's ``rootfs.diff_ids`` entry, whose count must equal the
layer count: a base image that lies about its layers fails the build.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LayerError, RegistryError
from ..layers.compress import open_decompressed, sniff
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
        descriptors = resolved.manifest.get("layers") or []
        rootfs = resolved.config.get("rootfs") if isinstance(resolved.config, dict) else None
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(descriptors, list) or not isinstance(diff_ids, (list, type(None))):
            raise RegistryError(f"image {ref_text}: malformed manifest or config (layers / rootfs.diff_ids "
                                "are not lists)")
        diff_ids = diff_ids or []
        if len(descriptors) != len(diff_ids):
            raise RegistryError(f"image {ref_text} is inconsistent: its manifest lists {len(descriptors)} layer(s) "
                                f"but its config has {len(diff_ids)} rootfs.diff_ids; the image is corrupt, "
                                "re-push it")
        for i, (d, diff_id) in enumerate(zip(descriptors, diff_ids)):
            size = d.get("size") if isinstance(d, dict) else None
            if (not isinstance(d, dict) or not isinstance(d.get("digest"), str)
                    or not isinstance(d.get("mediaType"), str) or not isinstance(size, int)
                    or isinstance(size, bool) or size < 0 or not isinstance(diff_id, str)
                    or not diff_id.startswith("sha256:")):
                raise RegistryError(f"image {ref_text}: layer {i + 1} has a malformed descriptor or diff_id "
                                    f"({d!r}, {diff_id!r})")
        layers = [Layer(descriptor=dict(d), diff_id=diff_id, path=None, source=src)
                  for d, diff_id in zip(descriptors, diff_ids, strict=True)]
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
                _check_size(layer, cached.stat().st_size, "cached")
                layer.path = cached
                return cached
        assert layer.source, f"layer {layer.digest} has no source repository"
        ref = parse_reference(layer.source)
        tmp = self.store.tmp_path(layer.digest.replace(":", "-") + f".{os.getpid()}.{id(layer)}")
        try:
            with open(tmp, "wb") as f:
                n = self.client.fetch_blob(ref, layer.digest, f)
            _check_size(layer, n, "downloaded")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
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
                stats = apply_verified_layer(f, root, layer)
            if stats.skipped:
                log.debug("layer %s: skipped %d entries (e.g. %s)", layer.digest[:19], len(stats.skipped),
                          stats.skipped[0])

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _check_size(layer: Layer, actual: int, how: str) -> None:
    if actual != layer.size:
        where = f" of {layer.source}" if layer.source else ""
        raise RegistryError(f"layer {layer.digest}{where}: the {how} blob is {actual} bytes but the image manifest "
                            f"says {layer.size}; the manifest is corrupt, re-push the image")


class _DiffIdReader(io.RawIOBase):
    """Reads an uncompressed layer stream, hashing every byte that passes (the layer's diff_id)."""

    def __init__(self, inner):
        super().__init__()
        self._inner = inner
        self._head = b""
        self.hasher = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def peek_head(self, n: int) -> bytes:
        """The first ``n`` bytes, kept to be read again."""
        while len(self._head) < n:
            chunk = self._inner.read(n - len(self._head))
            if not chunk:
                break
            self.hasher.update(chunk)
            self._head += chunk
        return self._head[:n]

    def readinto(self, b) -> int:
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._inner.read(len(b))
        n = len(data)
        if n:
            b[:n] = data
            self.hasher.update(data)
        return n

    def drain(self) -> None:
        """Hash what the tar reader left unread (end-of-archive padding, trailing bytes)."""
        self._head = b""
        while True:
            chunk = self._inner.read(1 << 20)
            if not chunk:
                return
            self.hasher.update(chunk)


_PREFETCH = "prefetch" in inspect.signature(open_decompressed).parameters


def apply_verified_layer(blob, root: Path, layer: Layer):
    """apply_layer of ``blob`` (a layer's compressed bytes) onto ``root``, checking that the
    uncompressed content hashes to ``layer.diff_id`` (OCI image-spec config.md, rootfs.diff_ids).

    The blob is decompressed here and apply_layer reads the plain tar through a hashing reader,
    so the content is read once. A mismatch raises LayerError after the layer was applied; the
    build stops, so the root is never used.
    """
    data = open_decompressed(blob, layer.media_type, **({"prefetch": True} if _PREFETCH else {}))
    where = f" of {layer.source}" if layer.source else ""
    try:
        reader = _DiffIdReader(data)
        if sniff(reader.peek_head(4)) != "none":
            raise LayerError(f"layer {layer.digest}{where}: its uncompressed content is compressed again "
                             "(not a tar archive); the image is corrupt")
        stats = apply_layer(reader, root, media_type=None)
        reader.drain()
    finally:
        data.close()
    actual = "sha256:" + reader.hasher.hexdigest()
    if actual != layer.diff_id:
        raise LayerError(f"layer {layer.digest}{where}: its uncompressed content has {actual} but the image "
                         f"config says diff_id {layer.diff_id}; the image is corrupt, re-push it")
    return stats
