"""The layer store: each image layer unpacked once into a directory of its own, for overlayfs.

Layout (``root`` is private, 0700)::

    root/<flavor>/<diff_id hex>/fs          the layer's files, whiteouts in overlayfs form
    root/<flavor>/<diff_id hex>/meta.json   {"diff_id", "implicit_dirs", "bytes", "stackable", "reason"}
    root/tmp/                               unpacks in progress (removed when found stale)

``<flavor>`` is ``trusted`` or ``user`` (:class:`~executor.fs.overlay.OverlayFlavor`: the xattr
namespace of the opaque markers). An entry is keyed by the layer's diff_id, checked while the
blob is unpacked (:func:`~executor.engine.images.apply_verified_layer`), and appears atomically:
unpacked into ``tmp/`` and renamed into place; a concurrent build that lost the race drops its
copy. The unpack applies the usual rules for untrusted layers (no entry escapes the layer's
directory) and refuses what only lower layers could resolve (:class:`NotStackable`); such a
layer is remembered as not stackable (``fs`` absent) so later builds fall back at once.

A build holds a shared ``flock(2)`` on the ``meta.json`` of every entry it stacks until it
ends; :meth:`LayerStore.prune` (run when a build that stored new entries ends: only unpacks make
the store grow, and the prune reads every entry's ``meta.json``, ~0.3 s for a thousand) removes
least recently used entries whose lock it can take until the store is at most ``max_bytes``
(default :data:`DEFAULT_MAX_BYTES`; ``rm -rf`` of the directory is always safe between builds).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LayerError
from ..fs.overlay import OverlayFlavor, is_whiteout
from ..layers.extract import NotStackable
from ..oci.image import Layer
from .images import ImageSource, apply_verified_layer

log = logging.getLogger("executor.engine")

#: the store's default size bound: 10 GiB of unpacked layers
DEFAULT_MAX_BYTES = 10 << 30


@dataclass(frozen=True)
class LayerDir:
    """One stored layer: ``fs`` its directory (an overlayfs lower layer), ``implicit_dirs``
    the relative paths of directories it holds only as parents of its entries."""

    diff_id: str
    fs: Path
    implicit_dirs: tuple[str, ...]


def _rmtree(path: Path) -> None:
    def fix(func, p, exc):
        try:
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
        except OSError:
            pass
    shutil.rmtree(path, onerror=lambda f, p, e: fix(f, p, e))


@dataclass
class LayerStore:
    """Unpacked layers under ``root`` (see the module docstring) for one ``flavor``."""

    root: Path
    flavor: OverlayFlavor
    max_bytes: int = DEFAULT_MAX_BYTES
    _held: dict[str, int] = field(default_factory=dict)      # diff_id -> fd holding the shared lock
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _unpacking: dict[str, threading.Lock] = field(default_factory=dict)
    grew: bool = False  # this build stored an entry: :meth:`close` prunes

    def __post_init__(self) -> None:
        """Create the store (0700); raises UnsafeDirectory when it is someone else's or writable
        by others (whoever can write it decides what builds stack), OSError when impossible."""
        from ..workdir import check_private_dir, make_private_dirs
        self.root = Path(self.root)
        make_private_dirs(self.root)
        check_private_dir(self.root, "layer store")
        (self.root / "tmp").mkdir(exist_ok=True, mode=0o700)
        (self.root / self.flavor.name).mkdir(exist_ok=True, mode=0o700)

    def entry(self, diff_id: str) -> Path:
        return self.root / self.flavor.name / diff_id.split(":", 1)[-1]

    def get(self, layer: Layer, source: ImageSource) -> LayerDir:
        """``layer``'s directory, unpacked now (blob fetched through ``source``, diff_id
        verified) unless already stored. Raises NotStackable, LayerError, RegistryError."""
        with self._lock:
            lk = self._unpacking.setdefault(layer.diff_id, threading.Lock())
        with lk:
            found = self._open(layer.diff_id)
            if found is not None and self.has(layer):
                return found
            # absent, or stored from another blob: this blob's content is verified against the
            # diff_id (by unpacking it) before the entry stands for it -- the pushed image names
            # this blob, so what RUN steps see must be what it holds
            if self._unpack(layer, source):
                self._mark(layer)
            found = self._open(layer.diff_id)
            if found is None:  # pruned by another build in between: vanishingly rare
                raise LayerError(f"layer {layer.diff_id} vanished from the layer store {self.root}")
            if not self.has(layer):
                raise NotStackable(f"layer blob {layer.digest[:19]} was not verified against the stored layer")
            return found

    def _marker(self, layer: Layer) -> Path:
        return self.entry(layer.diff_id) / "blobs" / layer.digest.split(":", 1)[-1]

    def has(self, layer: Layer) -> bool:
        """Stored, and ``layer``'s blob (by digest) verified to hold that diff_id."""
        try:
            return stat.S_ISREG(os.lstat(self._marker(layer)).st_mode)
        except OSError:
            return False

    def _mark(self, layer: Layer) -> None:
        marker = self._marker(layer)
        try:
            marker.parent.mkdir(mode=0o700, exist_ok=True)
            marker.touch(mode=0o600, exist_ok=True)
        except OSError as e:
            log.debug("layer store: cannot mark blob %s verified: %s", layer.digest[:19], e)

    def get_all(self, layers: list[Layer], source: ImageSource) -> list[LayerDir]:
        """:meth:`get` of every layer, in order: the missing blobs download together and the
        layers unpack two at a time (each into its own directory, so in any order)."""
        from concurrent.futures import ThreadPoolExecutor
        absent = [x for x in layers if not self.has(x)]
        missing = dict(zip([x.diff_id for x in absent], source.fetch_all(absent), strict=True))

        def one(layer: Layer) -> LayerDir:
            fut = missing.get(layer.diff_id)
            if fut is not None:
                fut.result()
            return self.get(layer, source)

        if len(layers) <= 1:
            return [one(x) for x in layers]
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(one, layers))

    def _open(self, diff_id: str) -> LayerDir | None:
        """The stored entry with its shared lock taken (held until :meth:`close`), else None."""
        d = self.entry(diff_id)
        for path in (d, d / "fs"):  # the store's own directories, never a symlink elsewhere
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                if path == d:
                    return None
                break  # no fs: a not-stackable entry (its meta says why)
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise NotStackable(f"layer store entry {path} is not a private directory of this user")
        with self._lock:
            fd = self._held.get(diff_id)
        if fd is None:
            try:
                fd = os.open(d / "meta.json", os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except FileNotFoundError:
                return None
            fcntl.flock(fd, fcntl.LOCK_SH)
            if not os.path.exists(d / "meta.json"):  # removed by a prune before we locked it
                os.close(fd)
                return None
            with self._lock:
                self._held[diff_id] = fd
            os.utime(d / "meta.json")  # last use, for the LRU prune
        try:
            with os.fdopen(os.dup(fd)) as f:
                f.seek(0)
                meta = json.load(f)
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as e:  # a torn or damaged entry: not used
            raise NotStackable(f"layer store entry {d} is damaged ({e}); remove it") from None
        if not meta.get("stackable", False):
            raise NotStackable(meta.get("reason") or "not stackable")
        return LayerDir(diff_id=diff_id, fs=d / "fs", implicit_dirs=tuple(meta.get("implicit_dirs") or ()))

    def _unpack(self, layer: Layer, source: ImageSource) -> bool:
        """Unpack ``layer`` into the store (kept unless another build stored it first); True
        when its blob was read to the end with its diff_id verified."""
        path = source.fetch(layer)
        hexd = layer.diff_id.split(":", 1)[-1]
        tmp = self.root / "tmp" / f"{hexd}.{os.getpid()}.{threading.get_ident()}"
        if tmp.exists():
            _rmtree(tmp)
        (tmp / "fs").mkdir(parents=True)
        os.chmod(tmp, 0o700)
        os.chmod(tmp / "fs", 0o755)
        t0 = time.monotonic()
        meta: dict = {"diff_id": layer.diff_id}
        try:
            with open(path, "rb") as f:
                stats = apply_verified_layer(f, tmp / "fs", layer, overlay=self.flavor.prefix)
            meta.update(stackable=True, implicit_dirs=stats.implicit_dirs, bytes=stats.disk_bytes)
        except NotStackable as e:
            _rmtree(tmp / "fs")
            meta.update(stackable=False, reason=str(e), bytes=0)
        except BaseException:
            _rmtree(tmp)
            raise
        with open(tmp / "meta.json", "w") as f:
            f.write(json.dumps(meta))
            f.flush()
            os.fsync(f.fileno())  # never a torn meta.json after a crash
        if meta["stackable"]:
            (tmp / "blobs").mkdir(mode=0o700)
            (tmp / "blobs" / layer.digest.split(":", 1)[-1]).touch(mode=0o600)
        try:
            os.rename(tmp, self.entry(layer.diff_id))
            self.grew = True
        except OSError:  # another build stored it first
            _rmtree(tmp)
        log.info("layer %s: unpacked into the layer store in %.2fs%s", layer.diff_id[7:19], time.monotonic() - t0,
                 "" if meta["stackable"] else f" (not stackable: {meta['reason']})")
        return bool(meta["stackable"])

    def prune(self) -> list[str]:
        """Remove least recently used entries no build holds until the store is at most
        ``max_bytes``; also unpacks of dead runs in ``tmp/`` older than a day. Returns the
        removed diff_ids."""
        now = time.time()
        for e in os.scandir(self.root / "tmp"):
            try:
                if now - e.stat(follow_symlinks=False).st_mtime > 86400:
                    _rmtree(Path(e.path))
            except OSError:
                pass
        entries = []
        total = 0
        for e in os.scandir(self.root / self.flavor.name):
            try:
                st = os.stat(os.path.join(e.path, "meta.json"))
                meta = json.loads(Path(e.path, "meta.json").read_text())
            except (OSError, ValueError):
                continue
            size = meta.get("bytes") if isinstance(meta, dict) else None
            if not isinstance(size, int):  # a damaged entry: skipped
                continue
            entries.append((st.st_mtime, e.path, size))
            total += size
        removed = []
        for _, path, size in sorted(entries):
            if total <= self.max_bytes:
                break
            try:
                fd = os.open(os.path.join(path, "meta.json"), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue  # in use by a running build
            try:
                gone = self.root / "tmp" / f"pruned.{os.path.basename(path)}.{os.getpid()}"
                os.rename(path, gone)
            except OSError:
                os.close(fd)
                continue
            os.close(fd)
            _rmtree(gone)
            total -= size
            removed.append("sha256:" + os.path.basename(path))
        if removed:
            log.info("layer store %s: removed %d least recently used layers (bound %d MiB)", self.root,
                     len(removed), self.max_bytes >> 20)
        return removed

    def close(self) -> None:
        """Prune when this build stored new entries (those it holds stay: their locks are still
        taken), then release the shared locks of the entries this build used."""
        try:
            if self.grew:
                self.grew = False
                try:
                    self.prune()
                except OSError as e:
                    log.warning("layer store %s: could not prune: %s", self.root, e.strerror or e)
        finally:
            with self._lock:
                fds = list(self._held.values())
                self._held.clear()
            for fd in fds:
                os.close(fd)


def stack_fixups(layers: list[LayerDir]) -> dict[str, os.stat_result]:
    """What stacking ``layers`` (bottom first) needs so the merged tree equals the layers
    applied onto one root: for each directory some layer holds only as a parent (and its
    ancestors), the stat of the top-most layer naming it, whose mode and owner a small layer
    on top must give it. Raises NotStackable where applying would differ otherwise (such a
    path is a non-directory, a whiteout or a symlink in some layer)."""
    paths: set[str] = set()
    for i, ld in enumerate(layers):
        if i == 0:
            continue  # the bottom layer's parents are made the same way in a plain root
        for p in ld.implicit_dirs:
            parts = p.split("/")
            paths.update("/".join(parts[:k]) for k in range(1, len(parts) + 1))
    for i, ld in enumerate(layers):
        for p in ld.implicit_dirs:
            if _only_whiteouts(ld.fs / p) and not any(os.path.isdir(low.fs / p) and not os.path.islink(low.fs / p)
                                                       for low in layers[:i]):
                # applied to a root, a whiteout in a directory no layer has does nothing;
                # stacked, the directory made to hold it would appear
                raise NotStackable(f"/{p} exists only to hold whiteouts of a layer")
    out: dict[str, os.stat_result] = {}
    for p in sorted(paths):
        chosen = None
        for ld in reversed(layers):
            try:
                s = os.lstat(ld.fs / p)
            except (FileNotFoundError, NotADirectoryError):
                continue
            if not stat.S_ISDIR(s.st_mode):
                raise NotStackable(f"/{p} is a directory in one layer and not in another")
            if chosen is None and p not in ld.implicit_dirs:
                chosen = s
        if chosen is not None:
            out[p] = chosen
    return out


def _only_whiteouts(path: Path) -> bool:
    """True when the directory ``path`` holds nothing but overlayfs whiteouts (0/0 character
    devices), at any depth."""
    try:
        with os.scandir(path) as it:
            for e in it:
                st = e.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if not _only_whiteouts(Path(e.path)):
                        return False
                elif not is_whiteout(st):
                    return False
    except OSError:
        return False
    return True


def make_fixup_layer(path: Path, fixups: dict[str, os.stat_result], top: Path) -> None:
    """Create ``path`` holding the directories of ``fixups`` with their mode and owner, its own
    root with those of ``top`` (the top layer's root)."""
    path.mkdir(parents=True)
    fixups = dict(fixups)
    fixups[""] = os.lstat(top)
    for p in sorted(fixups, key=lambda x: x.count("/")):
        if p:
            (path / p).mkdir(exist_ok=True)
    for p, s in sorted(fixups.items(), key=lambda kv: -kv[0].count("/") - bool(kv[0])):
        d = path / p if p else path
        os.chown(d, s.st_uid, s.st_gid, follow_symlinks=False)
        os.chmod(d, stat.S_IMODE(s.st_mode))
        os.utime(d, ns=(s.st_atime_ns, s.st_mtime_ns), follow_symlinks=False)


__all__ = ["LayerStore", "LayerDir", "stack_fixups", "make_fixup_layer", "DEFAULT_MAX_BYTES"]
