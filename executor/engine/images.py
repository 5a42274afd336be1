"""Base images: resolve a reference, download its layer blobs, unpack them into a root.

Blobs land in a content-addressed store (``blobs/sha256/<hex>``) and are verified by
the registry client as they stream in (digest) and here (size against the descriptor).
Downloads run on a thread pool while layers are applied in order, so extraction of layer N
overlaps the download of N+1. Each layer's uncompressed content is hashed while it is
applied and must equal the config's ``rootfs.diff_ids`` entry, whose count must equal the
layer count: a base image that lies about its layers fails the build.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import stat
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LayerError, RegistryError, UserError
from ..oci import mediatypes as mt
from ..oci.image import Image, Layer
from ..reference import Reference, parse_reference
from ..registry.client import RegistryClient, ResolvedImage

if TYPE_CHECKING:
    from ..layers.decompress import ChunkStream
    from .inflight import DownloadFile

log = logging.getLogger("executor.images")


#: errno values meaning "the filesystem is full" (no space or no inodes left; quota exhausted).
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


def human_size(n: int) -> str:
    """``n`` bytes as a short IEC size: ``512 B``, ``3.0 MiB``, ``1.2 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - unreachable


def free_space(path: Path) -> tuple[int, int] | None:
    """(free bytes, filesystem size in bytes) of the filesystem holding ``path`` (or its nearest
    existing parent), as statvfs(3) reports them: blocks available to this user (root may also
    use the reserved ones). None when nothing can be asked."""
    p = Path(path)
    while True:
        try:
            st = os.statvfs(p)
            break
        except OSError:
            if p.parent == p:
                return None
            p = p.parent
    avail = st.f_bfree if os.geteuid() == 0 else st.f_bavail
    return avail * st.f_frsize, st.f_blocks * st.f_frsize


def disk_full_cause(exc: BaseException) -> OSError | None:
    """The OSError with errno ENOSPC or EDQUOT that ``exc`` is or was raised from (following
    ``__cause__`` and ``__context__``; a layer extractor re-raises it as LayerError), else None."""
    seen = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in DISK_FULL_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


class DiskFull(UserError):
    """The filesystem of ``directory`` filled up (ENOSPC, EDQUOT) while the base image was being
    downloaded or unpacked; ``needed`` is the number of bytes the operation needs there (a
    lower bound). The message is one line naming the directory, the space needed and free."""

    def __init__(self, directory: Path, needed: int, doing: str, reason: int = errno.ENOSPC):
        self.directory = Path(directory)
        self.needed = needed
        self.doing = doing
        space = free_space(self.directory)
        free = f"{human_size(space[0])} free of {human_size(space[1])}" if space else "free space unknown"
        what = "disk quota exceeded" if reason == errno.EDQUOT else "no space left on device"
        super().__init__(f"{what} in {self.directory}: {doing} needs {human_size(needed)} there ({free}); "
                         "free some space or point --kaniko-dir at a larger filesystem")


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
    #: digest -> (temporary file, its DownloadFile) of the downloads in progress
    _inflight: dict[str, tuple[str, DownloadFile]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def resolve(self, ref_text: str) -> tuple[ResolvedImage, Reference]:
        """Resolve ``ref_text`` to the platform manifest and config (cached)."""
        if ref_text not in self._resolved:
            ref = parse_reference(ref_text)
            resolved = None
            if self.local_cache is not None:
                resolved = self.local_cache.lookup(ref, self.platform)
            if resolved is None:
                resolved = self.client.resolve_image(ref, self.platform)
            _check_platform(ref_text, resolved, self.platform)
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
        from .inflight import DownloadFile
        tmp = None
        try:
            tmp = self.store.tmp_path(layer.digest.replace(":", "-") + f".{os.getpid()}.{id(layer)}")
            with open(tmp, "wb") as f:
                dl = DownloadFile(f)
                with self._lock:
                    self._inflight[layer.digest] = (str(tmp), dl)
                try:
                    n = self.client.fetch_blob(ref, layer.digest, dl)
                finally:
                    with self._lock:
                        self._inflight.pop(layer.digest, None)
            _check_size(layer, n, "downloaded")
            layer.path = self.store.adopt(tmp, layer.digest)
        except BaseException as e:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            full = disk_full_cause(e) if isinstance(e, Exception) else None
            if full is None:
                raise
            raise DiskFull(self.store.root, layer.size, f"downloading layer {layer.digest} of {layer.source}",
                           full.errno) from None
        return layer.path

    def fetch_all(self, layers: list[Layer]) -> list[Future]:
        """Start downloading every layer; futures resolve to local paths, in order."""
        return [self._pool.submit(self.fetch, layer) for layer in layers]

    def unpack(self, image: Image, root: Path) -> None:
        """Apply every layer of ``image`` onto ``root`` in order (downloads overlap extraction).

        When the disk fills up (download or extraction) the other downloads are cancelled or
        awaited (their partial files removed) and :class:`DiskFull` is raised; for a download it
        names the blob directory and the total size of the image's blobs still missing there."""
        missing = [layer for layer in image.layers if not self._local(layer)]
        # the first layer onto an empty root is unpacked while it downloads (a restarted download
        # is redone from the verified file); later ones overlap the download of the next
        follow = bool(missing) and missing[0] is image.layers[0] and not any(os.scandir(root))
        futures = self.fetch_all(image.layers)
        try:
            for i, (layer, fut) in enumerate(zip(image.layers, futures, strict=True)):
                if i == 0 and follow:
                    stats = self._apply_following(layer, fut, root)
                else:
                    with open(fut.result(), "rb") as f:
                        stats = apply_verified_layer(f, root, layer)
                if stats.skipped:
                    log.debug("layer %s: skipped %d entries (e.g. %s)", layer.digest[:19], len(stats.skipped),
                              stats.skipped[0])
        except DiskFull as e:
            for fut in futures:
                fut.cancel()
            wait(futures)  # the running downloads end (and clean up) before the space is measured
            if e.directory != self.store.root or not missing:
                raise
            total = sum(layer.size for layer in missing)
            sources = sorted({layer.source or "?" for layer in missing})
            raise DiskFull(self.store.root, total, f"downloading {len(missing)} layer blob(s) of "
                           f"{', '.join(sources)} (then unpacking them)") from None

    def _apply_following(self, layer: Layer, fut: Future, root: Path):
        """Apply ``layer`` onto the empty ``root`` while ``fut`` downloads it (see inflight)."""
        from .inflight import POLL_S, GrowingReader, Restarted
        entry = None
        while entry is None and not fut.done():
            with self._lock:
                entry = self._inflight.get(layer.digest)
            if entry is None:
                time.sleep(POLL_S)
        reader = None
        if entry is not None:
            try:
                reader = GrowingReader(entry[0], entry[1], fut)
            except FileNotFoundError:  # finished and moved under its digest meanwhile
                reader = None
        if reader is not None:
            dl = entry[1]
            try:
                with reader:
                    stats = apply_verified_layer(reader, root, layer)
                fut.result()
                if dl.generation == 0:
                    return stats
            except Restarted:
                pass
            except LayerError:
                # corrupt bytes of a download that then failed, or started over, are not the layer's
                failed = fut.exception()
                if failed is not None:
                    raise failed from None
                if dl.generation == 0:
                    raise
            log.debug("layer %s: the download started over; unpacking it again from the verified blob",
                      layer.digest[:19])
            _empty_dir(root)
        with open(fut.result(), "rb") as f:
            return apply_verified_layer(f, root, layer)

    def _local(self, layer: Layer) -> bool:
        """True when ``layer``'s blob needs no download (already local or in the store)."""
        if layer.path is not None and layer.path.exists():
            return True
        return self.store.has(layer.digest)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _empty_dir(root: Path) -> None:
    """Remove everything inside ``root`` (never following symlinks; read-only directories made
    writable first)."""
    def onerror(func, p, exc):
        if isinstance(exc, PermissionError):
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
            return
        raise exc

    for e in os.scandir(root):
        if e.is_dir(follow_symlinks=False):
            os.chmod(e.path, stat.S_IRWXU)
            shutil.rmtree(e.path, onerror=lambda f, p, ei: onerror(f, p, ei[1]))
        else:
            os.unlink(e.path)


def _check_platform(ref_text: str, resolved: ResolvedImage, platform: str) -> None:
    """A base image must be of the requested platform (os and architecture): a single-platform
    image of another architecture is an error, not a warning (its binaries would not run, and
    the result would be labelled wrongly)."""
    config = resolved.config if isinstance(resolved.config, dict) else {}
    got_os, got_arch = config.get("os"), config.get("architecture")
    want = platform.split("/")
    if got_os and got_arch and (got_os, got_arch) != (want[0], want[1] if len(want) > 1 else ""):
        raise RegistryError(f"image {ref_text} is {got_os}/{got_arch}, not the requested {platform}, and it is not an "
                            f"index with a {platform} image; use a base image for {platform} (or a multi-platform "
                            f"one), or set --custom-platform / FROM --platform to {got_os}/{got_arch}")


def _check_size(layer: Layer, actual: int, how: str) -> None:
    if actual != layer.size:
        where = f" of {layer.source}" if layer.source else ""
        raise RegistryError(f"layer {layer.digest}{where}: the {how} blob is {actual} bytes but the image manifest "
                            f"says {layer.size}; the manifest is corrupt, re-push the image")


def apply_verified_layer(blob, root: Path, layer: Layer, overlay: str | None = None):
    """apply_layer of ``blob`` (a layer's compressed bytes) onto ``root``, checking that the
    uncompressed content hashes to ``layer.diff_id`` (OCI image-spec config.md, rootfs.diff_ids).

    One background thread reads, decompresses and hashes the blob while this one parses the tar
    and writes the files (:class:`~executor.layers.decompress.ChunkStream`), so the content is
    read once. A mismatch raises LayerError after the layer was applied; the build stops, so
    the root is never used. ``overlay``: see :func:`~executor.layers.extract.apply_tar_chunks`.
    """
    from ..layers.compression import sniff
    from ..layers.decompress import ChunkStream
    from ..layers.extract import apply_tar_chunks
    where = f" of {layer.source}" if layer.source else ""
    hasher = hashlib.sha256()
    with ChunkStream(blob, layer.media_type, hasher=hasher) as chunks:
        head = [chunks.next_chunk()]
        if sniff(head[0][:4]) != "none":
            raise LayerError(f"layer {layer.digest}{where}: its uncompressed content is compressed again "
                             "(not a tar archive); the image is corrupt")

        def next_chunk() -> bytes:
            return head.pop() if head else chunks.next_chunk()

        try:
            stats = apply_tar_chunks(next_chunk, root, overlay=overlay)
        except (OSError, LayerError) as e:
            full = disk_full_cause(e)
            if full is None:
                raise
            raise DiskFull(root, _uncompressed_size(chunks),
                           f"unpacking layer {layer.digest}{where} (its uncompressed size)", full.errno) from None
        chunks.drain()  # end-of-archive padding and anything after it are part of the diff_id
    actual = "sha256:" + hasher.hexdigest()
    if actual != layer.diff_id:
        raise LayerError(f"layer {layer.digest}{where}: its uncompressed content has {actual} but the image "
                         f"config says diff_id {layer.diff_id}; the image is corrupt, re-push it")
    return stats


def _uncompressed_size(chunks: ChunkStream) -> int:
    """Bytes of the uncompressed layer: what was consumed plus the rest, read to the end (only
    after a failure: the size the layer needs on disk, metadata aside)."""
    try:
        return chunks.drain()
    except Exception:  # a corrupt tail: what was read is still a lower bound
        return chunks.passed
