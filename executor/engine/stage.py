"""Build one stage: its base state, then each instruction's step through the cache, then its image.

Per-build services (:class:`BuildServices`) are shared by concurrently running stages; each
stage has its own :class:`StageState` (root directory, image, ARGs). A stage's root is
*lazy* while every step so far came from the cache (only descriptors exist); it is filled
(downloaded and unpacked) the first time a step or another stage needs its files.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ..context import Context
from ..dockerfile.instructions import FileCopy, Instruction, Run, Workdir, load_dockerfile
from ..errors import BuildError, DockerfileError, RegistryError
from ..interrupts import check_interrupted
from ..oci.image import Image, Layer
from ..options import BuildOptions
from ..registry.client import RegistryClient
from .cached import StepCache
from .expand import Expand, expander, line_error
from .images import BlobStore, ImageSource, apply_verified_layer
from .stagemounts import StageMounts, clear_stale
from .plan import BuildPlan, StageNode
from .state import StageState
from .step import BuildRecord, CacheUse, Prepared, StepRecord, shorten
from .steps import step_for

if TYPE_CHECKING:
    from ..fs.snapshot import ChangeSet, FsIndex
    from .isolation import Isolation

log = logging.getLogger("executor.engine")

SNAPSHOT_EXCLUDE = ("proc", "sys", "dev")
@dataclass
class BuildServices:
    """What every stage of one build shares. Thread-safe where stages meet (sources, records,
    image roots, build-arg bookkeeping)."""

    opts: BuildOptions
    client: RegistryClient
    plans: dict[str, BuildPlan]
    work: Path
    store: BlobStore
    context: Context
    cache: StepCache | None
    record: BuildRecord
    epoch: int | None
    stdout: TextIO | None = None
    stderr: TextIO | None = None
    states: dict[tuple[str, int], StageState] = field(default_factory=dict)
    units: dict[tuple[str, int], str] = field(default_factory=dict)   # (platform, stage) -> unit key
    readers: dict[tuple[str, int], int] = field(default_factory=dict)  # unit -> stages reading it
    used_build_args: set[str] = field(default_factory=set)
    local_cache: Any = None
    isolation: Isolation | None = None
    run_network_none: bool = True  # some RUN asks --network=none (chroot mode then probes for it)
    uploads: Any = None  # the push-while-building UploadPool (executor.registry.uploads), or None
    mounts: StageMounts | None = None  # overlay stage roots (made in __post_init__)
    indexes: Any = None  # lazyfs.LayerIndexes with --cache: layers' path indexes by diff_id
    _sources: dict[str, ImageSource] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _seq: int = 0

    def source(self, platform: str) -> ImageSource:
        """The image source resolving for ``platform`` (indexes select that platform's manifest)."""
        with self._lock:
            if platform not in self._sources:
                self._sources[platform] = ImageSource(client=self.client, store=self.store, platform=platform,
                                                      local_cache=self.local_cache)
            return self._sources[platform]

    def unique(self, prefix: str) -> Path:
        """A fresh path in the work directory (not created)."""
        with self._lock:
            self._seq += 1
            return self.work / f"{prefix}-{self._seq}"

    def created(self) -> str:
        """RFC 3339 UTC time for config/history: now, or SOURCE_DATE_EPOCH with --reproducible."""
        if self.epoch is not None:
            return _dt.datetime.fromtimestamp(self.epoch, _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def history(self, created_by: str) -> dict:
        return {"created": self.created(), "created_by": created_by, "comment": "executor"}

    def note_build_arg(self, name: str) -> None:
        with self._lock:
            self.used_build_args.add(name)

    def unit(self, platform: str, index: int) -> tuple[str, int]:
        """The unit that builds stage ``index`` for ``platform``: ("shared", i) for a stage built
        once for every platform, else (platform, i)."""
        return self.units.get((platform, index), platform), index

    def state_for(self, platform: str, index: int) -> StageState:
        return self.states[self.unit(platform, index)]

    @property
    def escape(self) -> str:
        return next(iter(self.plans.values())).dockerfile.escape

    def image_root(self, ref_text: str, platform: str) -> Path:
        """An image's files unpacked once per build (for ``COPY --from=<image>`` and mounts)."""
        key = (ref_text + "_" + platform).replace("/", "_").replace(":", "_").replace("@", "_")
        root = self.work / "images" / key
        with self._lock:
            if not root.exists():
                tmp = root.with_name(key + ".partial")
                if tmp.exists():
                    shutil.rmtree(tmp)
                tmp.mkdir(parents=True)
                src = self.source(platform)
                src.unpack(src.image(ref_text), tmp)
                os.rename(tmp, root)
        return root

    def detect_isolation(self, needs_network_probe: bool = False) -> Isolation:
        """Choose the RUN isolation once (``--run-isolation``, probed when auto) and log it."""
        from .isolation import Isolation
        with self._lock:
            if self.isolation is None:
                self.isolation = Isolation.detect(self.opts.run_isolation, needs_network_probe)
            return self.isolation

    def isolation_for(self) -> Isolation:
        """The build's RUN isolation, detected when the first RUN executes: a build whose RUN
        steps are all cache hits forks no probe child (~20 ms of a no-change rebuild) and logs no
        isolation line. The probe children only call unshare/mount and exit, so forking them
        while other stages' threads run is safe."""
        return self.isolation or self.detect_isolation(self.run_network_none)

    def context_digest(self, rel: str) -> str:
        """Digest of the build-context path ``rel`` ('' = all of it; .dockerignore applied)."""
        from ..cache.keys import tree_digest
        host = self.opts.context / rel if rel else self.opts.context
        try:
            return "context:" + rel + ":" + tree_digest(host, rel_in_context=rel, excluded=self.context.excluded,
                                                        descend=self.context.descend)
        except OSError:
            return "context:" + rel + ":missing"

    def abort(self) -> None:
        """Stop running RUN steps: SIGKILL the process group of every child of this process
        (each RUN's sandbox leads its own session), so stage threads return promptly."""
        me = str(os.getpid())
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[1] == me:
                try:
                    os.killpg(int(entry), 9)
                except (ProcessLookupError, PermissionError):
                    pass

    def snapshot_exclude(self) -> list[str]:
        return list(SNAPSHOT_EXCLUDE) + [p.strip("/") for p in self.opts.ignore_paths]

    def __post_init__(self) -> None:
        if self.mounts is None:
            self.mounts = StageMounts(self.work)

    def close(self) -> None:
        self.mounts.release()
        for src in self._sources.values():
            src.close()


@dataclass
class SourceTree:
    """A tree another stage or an image provides (``--from``, ``--mount from=``): ``cache_id``
    names its content for cache keys; :meth:`root` fills and returns its directory."""

    cache_id: str
    _root: Any  # Callable[[], Path]

    def root(self) -> Path:
        return self._root()


@dataclass
class StepContext:
    """What a step's ``prepare`` may use: the stage (state, node), the instruction, word
    expansion with the stage's variables, and the build's services."""

    build: BuildServices
    plan: BuildPlan
    node: StageNode
    state: StageState
    ins: Instruction
    expand: Expand
    stage_builder: "StageBuilder"

    @property
    def opts(self) -> BuildOptions:
        return self.build.opts

    def err(self, message: str) -> DockerfileError:
        return line_error(self.ins, message)

    def where(self) -> str:
        return f"{self.ins.location}: {self.ins.keyword}"

    def ensure_root(self) -> Path:
        """The stage root, filled if it was lazy."""
        self.stage_builder.materialize(self.state)
        return self.state.root

    def fs_index(self) -> FsIndex:
        """The current stage root's index (scanned once, then kept up to date by steps)."""
        from ..fs.snapshot import FsIndex
        st = self.state
        if st.fs_index is None:
            st.fs_index = FsIndex.scan(st.root, exclude=self.build.snapshot_exclude())
        return st.fs_index

    def tree(self, word: str) -> SourceTree:
        """The stage (by name or index, defined earlier) or image ``word`` names."""
        from ..cache.keys import image_source, stage_source
        plan = self.plan
        ref = plan.stage_ref(word, self.node.index)
        if ref is not None:
            other = self.build.state_for(plan.platform, ref)
            return SourceTree(stage_source(other.key), lambda: self.stage_builder.materialize(other) or other.root)
        if word.lower() in plan.names:
            raise self.err(f"--from={word}: stage {word!r} is defined after this one")
        if word.isdigit() and int(word) < len(plan.dockerfile.stages):
            which = "this stage" if int(word) == self.node.index else "defined after this one"
            raise self.err(f"--from={word}: stage {word} is {which}; a stage copies from an earlier one")
        platform = self.node.platform
        src = self.build.source(platform)
        try:
            digest = src.resolve(word)[0].digest
        except RegistryError as e:
            raise self.err(f"--from={word}: {not_a_stage(word, plan.names)}{e}") from None
        return SourceTree(image_source(digest), lambda: self.build.image_root(word, platform))

    def scratch(self) -> Path:
        """A fresh scratch directory in the work dir (removed with it)."""
        p = self.build.unique("scratch")
        p.mkdir(parents=True)
        return p


def not_a_stage(word: str, names: dict[str, int]) -> str:
    """The start of the error for a ``--from`` word that names no stage and whose image failed
    ('' for a word that is plainly an image reference, with a registry, tag or digest):
    BuildKit's rule makes such a word an image reference, so a mistyped stage name would
    otherwise read as a registry failure."""
    if any(c in word for c in "/:@"):
        return ""  # plainly an image reference
    if word.isdigit():
        return f"no stage {word} (stages are numbered from 0), so it names an image, and "
    import difflib
    close = difflib.get_close_matches(word.lower(), list(names), n=1)
    hint = f" (did you mean stage {close[0]!r}?)" if close else ""
    return f"no stage is named {word!r}{hint}, so it names an image, and "


class StageBuilder:
    """Builds the stage ``node`` of ``plan`` into ``build.states[unit]`` (``unit`` from
    :meth:`BuildServices.unit`); ``exported``: an output image holds this stage's layers."""

    def __init__(self, build: BuildServices, plan: BuildPlan, node: StageNode, exported: bool):
        self.build = build
        self.plan = plan
        self.node = node
        self.unit = build.unit(plan.platform, node.index)
        self.exported = exported
        self.single = False  # --single-snapshot in effect for this stage
        self._materialize_lock = threading.Lock()

    # ------------------------------------------------------------------ base
    def _stage_dir(self) -> Path:
        """``<work>/stages/<index>`` (``<index>-<platform>`` for one platform of several)."""
        key, index = self.unit
        many = len(self.build.plans) > 1
        return self.build.work / "stages" / (f"{index}-{key.replace('/', '-')}" if many else str(index))

    def _new_root(self) -> Path:
        root = self._stage_dir() / "rootfs"
        if root.exists():
            clear_stale(self._stage_dir())
            shutil.rmtree(root)
        root.mkdir(parents=True)
        os.chmod(root, 0o755)
        return root

    def base_state(self) -> StageState:
        b, node = self.build, self.node
        if node.parent is not None:
            parent = b.state_for(self.plan.platform, node.parent)
            image = parent.image.copy()
            if parent.lazy:  # parent never unpacked: stay lazy too
                root = self._new_root()
                st = StageState(index=node.index, name=node.stage.name, root=root, image=image, platform=node.platform, lazy=True)
            elif parent.overlay is not None:  # stack on the parent's layers instead of copying
                root = self._stage_dir() / "rootfs"
                clear_stale(self._stage_dir())
                with parent.lock:
                    mount = b.mounts.stack(parent.overlay, root, self._stage_dir() / "ov")
                st = StageState(index=node.index, name=node.stage.name, root=root, image=image, platform=node.platform)
                st.overlay = mount
            else:
                root = self._stage_dir() / "rootfs"
                root.parent.mkdir(parents=True, exist_ok=True)
                if b.readers.get(b.unit(self.plan.platform, node.parent)) == 1:  # the only reader: take it over
                    with parent.lock:
                        os.rename(parent.root, root)
                        parent.root = root
                else:
                    shutil.copytree(parent.root, root, symlinks=True, copy_function=shutil.copy2)
                st = StageState(index=node.index, name=node.stage.name, root=root, image=image, platform=node.platform)
            st.key = self._root_key(parent_key=parent.key)
            return st
        root = self._new_root()
        if node.base.lower() == "scratch":
            os_name, arch, *rest = node.platform.split("/")
            image = Image.empty(os_name, arch, rest[0] if rest else None)
            digest = "scratch"
        else:
            log.info("pulling base image %s", node.base)
            src = b.source(node.platform)
            image = src.image(node.base)
            digest = src.resolve(node.base)[0].digest
        st = StageState(index=node.index, name=node.stage.name, root=root, image=image, platform=node.platform, lazy=bool(image.layers))
        if b.opts.compression == "zstd" and not image.oci:
            log.info("--compression=zstd: writing an OCI manifest (Docker schema 2 has no zstd layer type); "
                     "the base layers are kept and relabelled with their OCI media types")
            image.oci = True
        for key in ("container", "container_config", "docker_version", "comment"):
            image.config.pop(key, None)
        st.key = self._root_key(base_digest=digest)
        if b.cache is None and st.lazy:
            self.materialize(st)
        return st

    def _root_key(self, *, parent_key: str | None = None, base_digest: str | None = None) -> str:
        from ..cache.keys import root_key, stage_source
        origin = stage_source(parent_key or "") if parent_key is not None else base_digest or "scratch"
        return root_key(origin, self.node.platform, compression=self.build.opts.compression, epoch=self.build.epoch)

    def materialize(self, state: StageState) -> None:
        """Fill a lazy ``state.root`` with every layer of its image so far (download + extract), once."""
        with state.lock:
            if not state.lazy:
                return
            t0 = time.monotonic()
            source = self.build.source(state.platform)
            state.overlay = self.build.mounts.mount_layers(state.root, self._stage_dir() / "ov", state.image.layers,
                                                           source, str(state.name or state.index))
            stacked = state.overlay is not None
            if not stacked:
                source.unpack(state.image, state.root)
            if self.build.indexes is not None:  # the lazy filesystem of later builds (in the background)
                self.build.indexes.publish_scans(state.image.layers, source.fetch)
            state.lazy = False
            state.fs_index = None
            log.info("stage %s: %s %d layers in %.2fs", state.name or state.index,
                     "stacked" if stacked else "unpacked", len(state.image.layers), time.monotonic() - t0)

    def apply_layer(self, state: StageState, layer: Layer) -> None:
        """Extract a cached layer onto a filled root (diff_id verified)."""
        path = self.build.source(self.node.platform).fetch(layer)
        with open(path, "rb") as f:
            apply_verified_layer(f, state.root, layer)
        state.fs_index = None

    # ------------------------------------------------------------------ steps
    def run(self) -> StageState:
        b, node = self.build, self.node
        log.info("stage %d%s: FROM %s", node.index, f" AS {node.stage.name}" if node.stage.name else "", node.base)
        state = self.base_state()
        state.meta = self.plan.meta
        state.platform = node.platform
        b.states[self.unit] = state
        if b.cache is not None:
            b.cache.stage_started(self, state)  # the root key, for cache-miss explanations
        instructions = list(node.stage.instructions)
        triggers = state.config.pop("OnBuild", None) or []
        if triggers:
            onbuild = load_dockerfile("FROM scratch\n" + "\n".join(triggers) + "\n", f"{node.base} (ONBUILD)")
            instructions = list(onbuild.stages[0].instructions) + instructions
        single = self._single_snapshot_start(state, instructions)
        for ins in instructions:
            self.run_step(state, ins)
        if single is not None:
            self._single_snapshot_end(state, single)
        if state.overlay is not None:  # what readers and stacked stages see is fixed from now on
            with state.lock:
                state.overlay.seal()
        return state

    # ------------------------------------------------------------------ --single-snapshot
    def _single_snapshot_start(self, state: StageState, instructions: list[Instruction]) -> FsIndex | None:
        """With ``--single-snapshot`` (Kaniko): the stage's steps write no layers of their own;
        one layer with everything they changed is taken at the end. The layer cache is not used
        for such a stage (its steps have no layers to store). Returns the index to diff against."""
        if not self.build.opts.single_snapshot or not any(isinstance(i, (Run, FileCopy, Workdir))
                                                          for i in instructions):
            return None
        self.materialize(state)
        self.single = True
        if self.build.cache is not None:
            log.info("--single-snapshot: the layer cache is not used for this stage's steps")
        from ..fs.snapshot import FsIndex
        return FsIndex.scan(state.root, exclude=self.build.snapshot_exclude())

    def _single_snapshot_end(self, state: StageState, before: FsIndex) -> None:
        from ..fs.snapshot import FsIndex, diff
        after = FsIndex.scan(state.root, exclude=self.build.snapshot_exclude())
        self.commit(state, diff(before, after), f"executor --single-snapshot of stage {self.node.label}",
                    keep_layer=self.exported)

    def run_step(self, state: StageState, ins: Instruction) -> None:
        """Prepare ``ins``'s step, run it through the cache, record what happened."""
        b = self.build
        check_interrupted()
        log.info("%s", shorten(ins.text))
        rec = StepRecord(stage=self.node.label, location=str(ins.location), keyword=ins.keyword,
                         text=shorten(ins.text), started=time.time())
        t0 = time.monotonic()
        try:
            ctx = StepContext(build=b, plan=self.plan, node=self.node, state=state, ins=ins,
                              expand=expander(ins, state.expansion_env(), b.escape),
                              stage_builder=self)
            prepared = step_for(ins).prepare(ctx)
            self._run_prepared(state, ins, prepared, rec)
        except OSError as e:
            # an OS error below the instruction level (e.g. WORKDIR through a dangling symlink):
            # name the line and the path inside the image, not a traceback
            where = str(e.filename) if e.filename else ""
            root = str(state.root)
            if where == root or where.startswith(root + os.sep):
                where = "/" + os.path.relpath(where, root).lstrip(".").lstrip("/")
            raise BuildError(f"{ins.location}: {ins.keyword}: {e.strerror or e}"
                             + (f": {where}" if where else "")) from e
        except BuildError as e:
            if str(e).startswith(f"{ins.location.filename}:"):
                raise
            raise BuildError(f"{ins.location}: {ins.keyword}: {e}") from e
        finally:
            rec.seconds = time.monotonic() - t0
            b.record.add(rec)

    def _run_prepared(self, state: StageState, ins: Instruction, p: Prepared, rec: StepRecord) -> None:
        b = self.build
        if p.execute is None:  # config only: no layer, no cache entry; the chain goes on
            state.apply_config(p.config)
            state.image.add_history(b.history(p.created_by))
            if b.cache is not None:
                comps = p.components() or {}
                state.key = b.cache.chain(state.key, comps)
                rec.key, rec.components = state.key, comps
                b.cache.note_step(state, rec)
            return
        if self.single:  # --single-snapshot: run now, one layer for the whole stage at its end
            self.materialize(state)
            p.execute()
            state.apply_config(p.config)
            state.image.add_history(b.history(p.created_by))
            return
        if b.cache is not None:
            b.cache.run(self, state, p, rec)
            return
        layer = self.execute(state, p, keep_layer=self.exported)
        rec.layer_digest = layer.digest if layer else None

    def execute(self, state: StageState, p: Prepared, *, keep_layer: bool) -> Layer | None:
        """Run ``p`` on the filled root, then snapshot its changes into a layer.

        ``keep_layer`` False (a stage whose layers nobody pushes, caches or exports): the
        change stays in the root and the image gets a history entry, but no blob is written.
        """
        assert p.execute is not None
        if state.lazy and keep_layer and p.lazy_paths is not None:
            from .lazyfs import FALLBACK, execute_lazily
            layer = execute_lazily(self, state, p)
            if layer is not FALLBACK:
                return layer
        self.materialize(state)
        check_interrupted()  # SIGINT/SIGTERM during a long unpack: no RUN starts after it
        changes = p.execute()
        state.apply_config(p.config)
        return self.commit(state, changes, p.created_by, keep_layer=keep_layer)

    def commit(self, state: StageState, changes: ChangeSet, created_by: str, *, keep_layer: bool,
               root: Path | None = None) -> Layer | None:
        """Write ``changes`` (paths of ``root``, default the stage root) as a layer (or an
        empty_layer history entry when nothing changed)."""
        b = self.build
        if changes.is_empty():
            state.image.add_history(b.history(created_by))
            return None
        if not keep_layer:
            state.image.add_history(b.history(created_by))
            log.info("%d paths changed, %d deleted (no layer written: nothing exports this stage)",
                     len(changes.changed), len(changes.deleted))
            return None
        from ..layers.pathindex import IndexRecorder
        from ..layers.writer import write_layer
        tmp = b.store.tmp_path(f"layer-{os.getpid()}-{time.monotonic_ns()}-{threading.get_ident()}")
        recorder = IndexRecorder() if b.indexes is not None else None
        res = write_layer(root or state.root, changes, tmp, compression=b.opts.compression,
                          level=b.opts.compression_level, oci=state.image.oci, mtime=b.epoch, index=recorder)
        if recorder is not None and not recorder.overflow and b.indexes is not None:
            b.indexes.put(res.diff_id, recorder.index(res.diff_id))
        path = b.store.adopt(tmp, res.digest)
        desc = {"mediaType": res.media_type, "digest": res.digest, "size": res.size}
        layer = Layer(descriptor=desc, diff_id=res.diff_id, path=path)
        state.image.add_layer(layer, b.history(created_by))
        log.info("layer %s: %d paths changed, %d deleted, %d bytes", res.digest[7:19], len(changes.changed),
                 len(changes.deleted), res.size)
        if b.uploads is not None and self.exported:  # push while building (issue 12)
            # the new layer and, with the first one, the layers under it (base, cache hits; each
            # digest is submitted once): a build whose every step hit submits nothing, so a
            # no-change rebuild stays one manifest HEAD at the push
            b.uploads.submit_layers(state.image.layers, self.build.source(state.platform).fetch)
        return layer


__all__ = ["BuildServices", "StageBuilder", "StepContext", "SourceTree", "shorten", "CacheUse"]
