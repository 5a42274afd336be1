"""The lazy filesystem: COPY/ADD/WORKDIR on a stage whose layers were never unpacked.

After cache hits a stage is *lazy*: its image's layers are descriptors only. When a step that
only writes at known destinations misses (COPY, ADD of context files, heredocs, ``--from``
sources and checksummed URLs; WORKDIR), its layer is computed without the layers' files:

1. the stage's layers' path indexes (:mod:`executor.layers.pathindex`; kept per build in
   :class:`LayerIndexes`, read from the cache store by diff_id) are stacked into the visible
   tree;
2. a *skeleton* root is made in a scratch directory holding only the entries met while
   resolving the step's destination paths (:attr:`Prepared.lazy_paths`): directories and
   symlinks on the way with their recorded mode, owner, mtime and xattrs, an empty stand-in
   for an existing non-directory at the destination;
3. the step's own ``execute`` runs with the skeleton as the stage root, and the layer is
   written from the paths it wrote, exactly as on a filled root.

The stage stays lazy (its image gains the layer; a later RUN unpacks everything, this layer
too). Whenever the result cannot be proven the same as the eager one -- an index missing or
malformed, implicit directories, a non-directory with xattrs below a copied directory, the
step failing in the skeleton -- :func:`execute_lazily` returns :data:`FALLBACK` and the caller
takes the eager path (materialize + execute). ``EXECUTOR_LAZY_FS=0`` in the environment turns
the lazy filesystem off: no path index is made, stored or used (an internal switch, for tests
comparing both paths or counting cache entries; not a user flag).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ..errors import BuildError, LayerError, RegistryError
from ..fs.owners import PRIVATE_XATTRS, can_chown, record_owner
from ..oci.image import Layer
from .state import StageState
from .step import Prepared

if TYPE_CHECKING:
    from ..layers.pathindex import IndexEntry, MergedTree, PathIndex
    from .stage import StageBuilder

log = logging.getLogger("executor.lazyfs")

#: What :func:`execute_lazily` returns when the step must take the eager path.
FALLBACK = object()


def lazy_enabled() -> bool:
    """False when ``EXECUTOR_LAZY_FS=0`` (the internal switch tests use to compare both paths)."""
    return os.environ.get("EXECUTOR_LAZY_FS", "1") != "0"


@dataclass
class LayerIndexes:
    """The path indexes of one build's layers by diff_id: made here (layers the build writes),
    else read from ``store`` (the cache store, :meth:`lookup_index`; untrusted, validated).
    Thread-safe."""

    store: Any = None
    _mem: dict[str, PathIndex] = field(default_factory=dict)
    _absent: set[str] = field(default_factory=set)
    _trees: dict[int, tuple[object, tuple[str, ...], MergedTree]] = field(default_factory=dict)
    _published: set[str] = field(default_factory=set)  # diff_ids whose index was handed to the store
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, diff_id: str, index: PathIndex) -> None:
        with self._lock:
            self._mem[diff_id] = index
            self._absent.discard(diff_id)

    def get(self, diff_id: str) -> PathIndex | None:
        """The index of layer ``diff_id``, or None (none stored, or unusable: a warning)."""
        from ..layers.pathindex import PathIndex, PathIndexError
        with self._lock:
            if diff_id in self._mem:
                return self._mem[diff_id]
            if diff_id in self._absent:
                return None
        lookup = getattr(self.store, "lookup_index", None)
        data = lookup(diff_id) if lookup is not None else None
        index = None
        if data is not None:
            try:
                index = PathIndex.decode(data, diff_id)
            except PathIndexError as e:
                log.warning("the path index of layer %s is unusable (%s); unpacking the layers instead",
                            diff_id[:19], e)
        with self._lock:
            if index is None:
                self._absent.add(diff_id)
            else:
                self._mem[diff_id] = index
        return index

    def tree(self, layers: list[Layer], owner: object | None = None) -> MergedTree | None:
        """The merged tree of ``layers`` (bottom first), or None when an index is missing.
        Raises Unprovable. ``owner`` (a stage state, whose steps run one after another): its
        last tree is kept and extended by the layers added since, instead of merged anew."""
        from ..layers.pathindex import MergedTree
        key = tuple(layer.diff_id for layer in layers)
        with self._lock:
            kept = self._trees.pop(id(owner), None) if owner is not None else None
        if kept is not None and kept[0] is owner and key[:len(kept[1])] == kept[1]:
            tree, rest = kept[2], layers[len(kept[1]):]
        else:
            tree, rest = MergedTree(), layers
        with self._lock:
            missing = [layer.diff_id for layer in rest if layer.diff_id not in self._mem
                       and layer.diff_id not in self._absent]
        if len(missing) > 1:  # fetch them side by side (two requests each)
            from concurrent.futures import ThreadPoolExecutor
            with ThreadPoolExecutor(max_workers=min(4, len(missing))) as pool:
                list(pool.map(self.get, missing))
        for layer in rest:  # on any failure the partly merged tree is dropped (not put back)
            index = self.get(layer.diff_id)
            if index is None:
                log.info("lazy: no path index for layer %s; unpacking the layers", layer.diff_id[:19])
                return None
            tree.apply(index)
        if owner is not None:
            with self._lock:
                self._trees[id(owner)] = (owner, key, tree)
        return tree

    def publish(self, diff_id: str) -> None:
        """Store the index of a layer this build made next to its cache entry (background,
        serialized there)."""
        store_index = getattr(self.store, "store_index", None)
        with self._lock:
            index = self._mem.get(diff_id)
            if index is None or store_index is None or diff_id in self._published:
                return
            self._published.add(diff_id)
        store_index(diff_id, index.encode)

    def publish_scans(self, layers: list[Layer], fetch: Callable[[Layer], Path] | None = None) -> None:
        """For every layer not indexed in this build (base layers, cached layers of older
        executors): store its index in the background, scanned from the blob's tar headers
        only when the store has none yet. A blob on disk was verified by its extraction; one
        that is not (a layer the overlay layer store already held) is fetched with ``fetch``
        in the background and its diff_id verified while it is scanned."""
        store_index = getattr(self.store, "store_index", None)
        if store_index is None:
            return
        from ..layers.pathindex import PathIndexError, scan_layer_file
        for layer in layers:
            local = layer.path is not None and layer.path.exists()
            with self._lock:
                # indexed in this build, or already handed to the store (a base two stages share)
                if layer.diff_id in self._mem or layer.diff_id in self._published or (not local and fetch is None):
                    continue
                self._published.add(layer.diff_id)

            def produce(layer: Layer = layer, local: bool = local) -> bytes | None:
                t0 = time.monotonic()
                try:
                    path = layer.path if local else fetch(layer)
                    # a blob just extracted had its diff_id verified: not hashed again
                    index = scan_layer_file(path, layer.media_type, layer.diff_id, verify=not local)
                except (LayerError, RegistryError, OSError, PathIndexError) as e:
                    log.debug("path index of layer %s not made: %s", layer.diff_id[:19], e)
                    return None
                log.debug("path index of layer %s: %d entries in %.2fs", layer.diff_id[:19], len(index.entries),
                          time.monotonic() - t0)
                self.put(layer.diff_id, index)
                return index.encode()

            store_index(layer.diff_id, produce)


# -- the skeleton --------------------------------------------------------------------------

def _owner(path: str, e: IndexEntry) -> None:
    """The owner of a skeleton entry, as extraction gives it (chown as root, else recorded)."""
    if can_chown():
        os.chown(path, e.uid, e.gid, follow_symlinks=False)
    elif (e.uid, e.gid) != (0, 0):
        record_owner(path, e.uid, e.gid, strict=False)


def _xattrs(path: str, e: IndexEntry) -> None:
    for name, value in e.xattrs:
        if name.startswith(PRIVATE_XATTRS):
            continue
        try:
            os.setxattr(path, name, value, follow_symlinks=False)
        except OSError:
            pass  # as extraction: refused attributes are ignored


def build_skeleton(tree: MergedTree, skel: Path, probes: list[str], copied_dirs: bool) -> None:
    """Fill the empty directory ``skel`` with the entries met resolving each in-image path of
    ``probes`` in ``tree``. ``copied_dirs``: the step copies directory trees onto the
    destination (existing directories below it then keep their xattrs on the eager path: any
    such xattr is Unprovable). Raises Unprovable."""
    from ..layers.pathindex import DIRECTORY, SYMLINK, Unprovable
    made: dict[str, IndexEntry] = {}
    for probe in probes:
        for rel, e in tree.trace(probe.strip("/")):
            if rel not in made:
                made[rel] = e
        if copied_dirs:
            real = tree.trace(probe.strip("/"))
            top = real[-1][0] if real and real[-1][1].kind == DIRECTORY else None
            if top is not None:
                for rel, e in tree.subtree(top):
                    if e.kind == DIRECTORY and any(not n.startswith(PRIVATE_XATTRS) for n, _ in e.xattrs):
                        raise Unprovable(f"{rel} has extended attributes")
    root = os.path.realpath(skel)
    dirs: list[tuple[str, IndexEntry]] = []
    for rel in sorted(made, key=lambda p: p.split("/")):
        e = made[rel]
        path = os.path.join(root, rel)
        parent = os.path.dirname(path)
        if os.path.realpath(parent) != parent:  # never through a symlink of our own making
            raise Unprovable(f"{rel}: its parent is not a plain directory in the skeleton")
        if e.kind == DIRECTORY:
            os.mkdir(path, 0o700)
            _owner(path, e)
            _xattrs(path, e)
            dirs.append((path, e))
        elif e.kind == SYMLINK:
            os.symlink(e.link, path)
            _owner(path, e)
            ns = e.mtime_ns
            os.utime(path, ns=(ns, ns), follow_symlinks=False)
        else:  # an existing non-directory the step will replace: an empty stand-in
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            try:
                _owner(path, e)
                os.fchmod(fd, e.mode)
                os.utime(fd, ns=(e.mtime_ns, e.mtime_ns))
            finally:
                os.close(fd)
    for path, e in sorted(dirs, key=lambda d: d[0].count("/"), reverse=True):
        os.chmod(path, e.mode)
        os.utime(path, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)


def _rmtree(path: Path) -> None:
    def onerror(func, p, exc):
        if isinstance(exc, PermissionError):
            try:
                os.chmod(os.path.dirname(p), stat.S_IRWXU)
                func(p)
                return
            except OSError:
                pass
    shutil.rmtree(path, onerror=lambda f, p, ei: onerror(f, p, ei[1]))


def execute_lazily(sb: "StageBuilder", state: StageState, p: Prepared) -> Any:
    """Run ``p`` on a skeleton of lazy ``state`` and commit its layer (see the module docstring).
    Returns the Layer (None: nothing changed), or :data:`FALLBACK`."""
    from ..layers.pathindex import Unprovable
    b = sb.build
    indexes: LayerIndexes | None = getattr(b, "indexes", None)
    if indexes is None or p.lazy_paths is None:
        return FALLBACK
    t0 = time.monotonic()
    try:
        probes = p.lazy_paths()
        if probes is None:
            log.info("lazy: this step needs the files of the image; unpacking the layers")
            return FALLBACK
        tree = indexes.tree(state.image.layers, owner=state)
        if tree is None:
            return FALLBACK
        t_tree = time.monotonic()
        skel = b.unique("lazy")
        skel.mkdir(parents=True)
        os.chmod(skel, 0o755)
    except Unprovable as e:
        log.info("lazy: %s; unpacking the layers", e)
        return FALLBACK
    try:
        try:
            build_skeleton(tree, skel, probes, copied_dirs=p.cache_class == "copy")
            t_skel = time.monotonic()
        except (Unprovable, OSError) as e:
            log.info("lazy: %s; unpacking the layers", e)
            return FALLBACK
        with state.lock:
            if not state.lazy:
                return FALLBACK
            orig = state.root
            state.root = skel
            try:
                changes = p.execute()
            except (BuildError, OSError, LayerError) as e:
                log.info("lazy: the step failed on the skeleton (%s); running it on the unpacked layers", e)
                return FALLBACK
            finally:
                state.root = orig
            state.apply_config(p.config)
            layer = sb.commit(state, changes, p.created_by, keep_layer=True, root=skel)
        t1 = time.monotonic()
        log.info("lazy: %s computed from path indexes in %.2fs (%d layers not unpacked)",
                 "layer" if layer else "step", t1 - t0, len(state.image.layers) - (1 if layer else 0))
        log.debug("lazy: indexes %.3fs, skeleton %.3fs, step + layer %.3fs", t_tree - t0, t_skel - t_tree,
                  t1 - t_skel)
        return layer
    finally:
        _rmtree(skel)
