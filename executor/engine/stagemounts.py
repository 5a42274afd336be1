"""The overlay stage roots of one build: the choice (probed once), the layer store, the mounts.

See :mod:`.overlayroot` for one stage's mount and :mod:`.layerstore` for the store. One
:class:`StageMounts` per build (``BuildServices.mounts``); thread-safe.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LayerError
from ..workdir import UnsafeDirectory

if TYPE_CHECKING:
    from ..oci.image import Layer
    from .images import ImageSource
    from .layerstore import LayerStore
    from .overlayroot import OverlayChoice, OverlayRoot

log = logging.getLogger("executor.engine")


def default_store() -> Path:
    """``$EXECUTOR_LAYER_STORE``, else ``<cache home>/executor/layers`` (``work``: see choice)."""
    from ..workdir import cache_home
    from .overlayroot import STORE_ENV
    return Path(os.environ.get(STORE_ENV) or cache_home() / "executor" / "layers")


@dataclass
class StageMounts:
    """``work``: the build's work directory (upper directories and probes go there)."""

    work: Path
    choice: OverlayChoice | None = None
    store: LayerStore | None = None
    _mounts: list[OverlayRoot] = field(default_factory=list)
    _released: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def enabled(self) -> bool:
        """Stage roots as overlay mounts? Probed once (a real mount), logged in one line."""
        with self._lock:
            if self.choice is None:
                from .layerstore import LayerStore
                from .overlayroot import OverlayChoice, probe
                where = default_store()
                store = self.work / "layers" if str(where) == "work" else where
                choice = probe(self.work, store)
                if choice.enabled:
                    try:
                        self.store = LayerStore(store, choice.flavor)
                    except UnsafeDirectory as e:
                        choice = OverlayChoice(None, str(e))
                    except OSError as e:
                        choice = OverlayChoice(None, f"layer store {store}: {e.strerror or e}")
                if choice.enabled:
                    log.info("stage roots: overlayfs over layers unpacked once into %s (%s)", store, choice.reason)
                else:
                    log.info("stage roots: unpacked and copied directories (no overlayfs: %s)", choice.reason)
                self.choice = choice
            return self.choice.enabled

    def mount_layers(self, root: Path, base: Path, layers: list[Layer], source: ImageSource,
                     label: str) -> OverlayRoot | None:
        """Mount ``root`` as an overlay of ``layers`` from the store (unpacked there first when
        missing), its upper and work directories under ``base``; None when roots are plain
        directories here or these layers cannot be stacked (logged): the caller unpacks.
        LayerError, RegistryError and DiskFull of the unpack propagate."""
        if not self.enabled():
            return None
        assert self.store is not None
        from ..layers.extract import NotStackable
        from .layerstore import make_fixup_layer, stack_fixups
        from .overlayroot import OverlayRoot
        try:
            dirs = self.store.get_all(layers, source)
            fixups = stack_fixups(dirs)
            lowers = [d.fs for d in reversed(dirs)]
            if fixups:
                make_fixup_layer(base / "fix", fixups, top=dirs[-1].fs)
                lowers.insert(0, base / "fix")
            if not lowers:  # no layers: one empty lower
                (base / "empty").mkdir(parents=True, exist_ok=True)
                os.chmod(base / "empty", 0o755)
                lowers = [base / "empty"]
            mount = OverlayRoot(root=root, base=base, lowers=lowers, flavor=self.store.flavor)
            mount.mount()
        except (NotStackable, LayerError, OSError) as e:
            # the plain root applies every layer by the reference rules (and reports a corrupt
            # one the same way); the stacked root is only ever a faster way to the same tree
            log.info("stage %s: not stacking its layers (%s); unpacking them into a plain root", label, e)
            return None
        self.track(mount)
        return mount

    def stack(self, parent: OverlayRoot, root: Path, base: Path) -> OverlayRoot:
        """A new mount at ``root`` over ``parent``'s content (instead of a copy)."""
        mount = parent.stacked(root, base)
        self.track(mount)
        return mount

    def track(self, mount: OverlayRoot) -> None:
        """Remember ``mount`` for :meth:`release` (unmounted at once after it ran)."""
        with self._lock:
            if not self._released:
                self._mounts.append(mount)
                return
        mount.close()

    def release(self) -> None:
        """Unmount every stage root of this build (latest first) and release the store's
        entries; idempotent. Called when the build ends, however it ends."""
        with self._lock:
            mounts, self._mounts, self._released = self._mounts, [], True
        for m in reversed(mounts):
            try:
                m.close()
            except OSError as e:
                log.warning("could not unmount %s: %s", m.root, e.strerror or e)
        if self.store is not None:
            self.store.close()


def clear_stale(stage_dir: Path) -> None:
    """Unmount what a killed earlier run left mounted in a reused work directory (``--kaniko-dir``)
    and remove its overlay directories, so the stage starts from nothing."""
    from ..fs.overlay import unmount_below
    if unmount_below(stage_dir):
        log.info("unmounted stale mounts of an earlier run in %s", stage_dir)
    shutil.rmtree(stage_dir / "ov", ignore_errors=True)


__all__ = ["StageMounts", "clear_stale", "default_store"]
