"""Stage roots as overlayfs mounts: the choice (probed once per build) and one stage's mount.

A stage root is an overlay of read-only lower directories (the image's layers from the
:class:`~executor.engine.layerstore.LayerStore`, top first, under a small fix-up layer when
needed) and one upper directory in the stage's work directory. Before each RUN the upper is
*sealed*: when it holds anything (what COPY, ADD, WORKDIR or the previous RUN wrote), the
root is unmounted, the upper becomes the top lower, and the root is mounted again over a
fresh upper. After the RUN, the upper holds exactly the RUN's changes
(:func:`~executor.fs.upperdiff.upper_changes`). A stage built on another one, or read by
several, stacks on that stage's lowers (sealed when it finished) instead of copying its root.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..fs.overlay import MAX_LOWERS, OverlayFlavor, is_opaque, mount_overlay, unmount
from ..fs.snapshot import ChangeSet
from ..fs.upperdiff import upper_changes

log = logging.getLogger("executor.engine")

#: the internal switch: ``off`` forces today's unpack-and-copy roots (tests, troubleshooting)
SWITCH_ENV = "EXECUTOR_OVERLAY"
#: where the layer store lives (default: ``<cache home>/executor/layers``; ``work``: in the
#: build's work directory, removed with it)
STORE_ENV = "EXECUTOR_LAYER_STORE"


@dataclass(frozen=True)
class OverlayChoice:
    """Whether stage roots are overlay mounts (``flavor`` set) or plain directories
    (``flavor`` None), and ``reason``: why not, or how (one line for the log)."""

    flavor: OverlayFlavor | None
    reason: str

    @property
    def enabled(self) -> bool:
        return self.flavor is not None


def _in_user_namespace() -> bool:
    try:
        return Path("/proc/self/uid_map").read_text().split() != ["0", "0", "4294967295"]
    except OSError:
        return False


def probe(work: Path, store: Path, environ: dict[str, str] | None = None) -> OverlayChoice:
    """Try a real overlay mount with a whiteout and an opaque directory in a lower under
    ``store`` and the upper in ``work``; the flavor that works, or why none does. Never
    raises. ``environ[SWITCH_ENV] == "off"`` skips the probe."""
    env = os.environ if environ is None else environ
    if env.get(SWITCH_ENV, "auto") == "off":
        return OverlayChoice(None, f"overlayfs turned off ({SWITCH_ENV}=off)")
    flavors = [OverlayFlavor(True)] if _in_user_namespace() else [OverlayFlavor(False), OverlayFlavor(True)]
    reasons = []
    for flavor in flavors:
        why = _try(work, store, flavor)
        if why is None:
            return OverlayChoice(flavor, f"{flavor.name}.overlay.* markers")
        reasons.append(f"{flavor.name}: {why}")
    return OverlayChoice(None, "; ".join(reasons))


def _try(work: Path, store: Path, flavor: OverlayFlavor) -> str | None:
    try:
        from ..workdir import make_private_dirs
        make_private_dirs(store)
        lower = Path(tempfile.mkdtemp(prefix="probe-", dir=store))
        top = Path(tempfile.mkdtemp(prefix="probe-", dir=work))
    except OSError as e:
        return f"cannot create probe directories: {e.strerror}"
    mnt = top / "m"
    mounted = False
    try:
        (lower / "d").mkdir()
        (lower / "d" / "x").write_text("x")
        (lower / "f").write_text("f")
        (lower / "o").mkdir()
        os.setxattr(lower / "o", flavor.prefix + "opaque", b"y")
        (top / "l").mkdir()
        (top / "l" / "o").mkdir()
        (top / "l" / "o" / "y").write_text("y")
        os.mknod(top / "l" / "f", stat.S_IFCHR | 0o600, 0)
        for d in ("u", "w", "m"):
            (top / d).mkdir()
        os.setxattr(top / "l" / "o", flavor.prefix + "opaque", b"y")
        mount_overlay(mnt, [top / "l", lower], top / "u", top / "w", flavor)
        mounted = True
        (mnt / "d" / "new").write_text("n")
        os.unlink(mnt / "d" / "x")
        if (mnt / "f").exists() or os.listdir(mnt / "o") != ["y"]:
            return "whiteouts or opaque directories are not honoured"
        if not stat.S_ISCHR(os.lstat(top / "u" / "d" / "x").st_mode):
            return "the upper directory got no whiteout"
        return None
    except OSError as e:
        return f"{e.strerror or e}" + (" (the work directory's filesystem cannot be an upper layer?)"
                                       if e.errno in (22, 95) else "")
    finally:
        if mounted:
            try:
                unmount(mnt)
            except OSError:
                pass
        shutil.rmtree(top, ignore_errors=True)
        shutil.rmtree(lower, ignore_errors=True)


@dataclass
class OverlayRoot:
    """One stage root mounted at ``root``: ``lowers`` (top first), the current upper and work
    directories ``<base>/u<n>``, ``<base>/w<n>``. Not thread-safe: the stage's lock guards it."""

    root: Path
    base: Path
    lowers: list[Path]
    flavor: OverlayFlavor
    _seq: int = 0
    upper: Path | None = None
    mounted: bool = False
    _uppers: list[Path] = field(default_factory=list)

    def mount(self) -> None:
        """Mount over a fresh upper (root directory metadata of the top lower)."""
        self._seq += 1
        self.base.mkdir(parents=True, exist_ok=True)
        upper, work = self.base / f"u{self._seq}", self.base / f"w{self._seq}"
        upper.mkdir()
        work.mkdir()
        top = os.lstat(self.lowers[0])
        os.chown(upper, top.st_uid, top.st_gid)
        os.chmod(upper, stat.S_IMODE(top.st_mode))
        self.root.mkdir(parents=True, exist_ok=True)
        mount_overlay(self.root, self.lowers, upper, work, self.flavor)
        os.utime(upper, ns=(top.st_atime_ns, top.st_mtime_ns))
        self.upper, self.mounted = upper, True
        self._uppers.append(upper)

    def upper_empty(self) -> bool:
        if self.upper is None:
            return True
        with os.scandir(self.upper) as it:
            return next(it, None) is None and not is_opaque(str(self.upper), self.flavor)

    def seal(self) -> bool:
        """Make what was written so far a lower layer and mount over a fresh upper; True when
        the upper is now empty (False: too many layers to stack another, the upper stays)."""
        if self.upper_empty():
            return True
        if len(self.lowers) + 1 >= MAX_LOWERS:
            return False
        unmount(self.root)
        self.mounted = False
        shutil.rmtree(self.base / f"w{self._seq}", ignore_errors=True)
        assert self.upper is not None
        self.lowers.insert(0, self.upper)
        self.mount()
        return True

    def changes(self, exclude: list[str]) -> ChangeSet:
        """What was written since the last :meth:`seal`."""
        assert self.upper is not None
        return upper_changes(self.upper, self.lowers, self.flavor, exclude)

    def stacked(self, root: Path, base: Path) -> "OverlayRoot":
        """A new mount at ``root`` over this one's content (sealed first; ``base`` for its
        upper and work directories)."""
        if not self.seal():
            raise OSError(f"too many layers to stack on {self.root}")
        child = OverlayRoot(root=root, base=base, lowers=list(self.lowers), flavor=self.flavor)
        child.mount()
        return child

    def close(self) -> None:
        """Unmount (lazily when busy); the directories go with the work directory."""
        if self.mounted:
            unmount(self.root)
            self.mounted = False


__all__ = ["OverlayChoice", "OverlayRoot", "probe", "SWITCH_ENV", "STORE_ENV"]
