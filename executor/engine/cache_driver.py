"""Wires the layer cache into the build (to be replaced by the step wrapper)."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field

from ..cache.entry import CacheHit, default_cache_repo, strip_created
from ..cache.registry_store import LayerCache
from ..oci.image import Layer
from ..reference import parse_reference
from ..registry.client import RegistryClient

log = logging.getLogger("executor.cache")


def image_config_key(stage_key: str, labels: dict[str, str]) -> str:
    """Key of the final-config entry: the target stage's chain key plus the ``--label`` values."""
    from ..cache.keys import step_key
    return step_key(stage_key, "IMAGE", [], extra={"labels": dict(sorted(labels.items()))})


LAYER_INSTRUCTIONS = ("RUN", "COPY", "ADD", "WORKDIR")


@dataclass
class CacheDriver:
    """Wires the layer cache (:class:`LayerCache`, or ``LayoutLayerCache`` for ``oci:``) and the
    key chain into the Builder (all state per build).

    ``keys``: stage index -> current chain key. ``lazy``: stages whose root directory has not
    been filled yet (their base and cached layers are only descriptors). ``all_hit``: stage
    index -> True while every layer instruction of the stage was a cache hit.
    The builder calls :meth:`start_stage` after making a stage's base state,
    :meth:`execute` for every instruction, :meth:`materialize` before reading another
    stage's root, :meth:`finalize` with the target image, and :meth:`close` at the end.
    """

    cache: "LayerCache | LayoutLayerCache"
    run_layers: bool = True
    copy_layers: bool = False
    keys: dict[int, str] = field(default_factory=dict)
    lazy: set[int] = field(default_factory=set)
    all_hit: dict[int, bool] = field(default_factory=dict)
    hits: int = 0
    misses: int = 0

    # -- stages ---------------------------------------------------------------------
    def start_stage(self, b, state, base: str, parent: int | None) -> None:
        """Start stage ``state``'s chain from its base (image digest, scratch or parent stage key)."""
        from ..cache.keys import root_key, short, stage_source
        if parent is not None:
            origin = stage_source(self.keys[parent])
        elif base.lower() == "scratch":
            origin = "scratch"
        else:
            origin = b.source.resolve(base)[0].digest
        self.keys[state.index] = root_key(origin, b.opts.platform, compression=b.opts.compression, epoch=b.epoch)
        self.all_hit[state.index] = True
        log.debug("cache: stage %d starts at key %s (%s)", state.index, short(self.keys[state.index]), origin)

    def materialize(self, b, state) -> None:
        """Fill ``state.root`` with every layer of its image so far (download + extract), once."""
        if state.index not in self.lazy:
            return
        t0 = time.monotonic()
        b.source.unpack(state.image, state.root)
        self.lazy.discard(state.index)
        state.fs_index = None
        log.info("stage %d: unpacked %d layers in %.2fs (a step needs the filesystem)", state.index,
                 len(state.image.layers), time.monotonic() - t0)

    def _apply(self, b, state, layer: Layer) -> None:
        """Extract a cached layer onto a stage root that is already filled (diff_id verified)."""
        from .images import apply_verified_layer
        path = b.source.fetch(layer)
        with open(path, "rb") as f:
            apply_verified_layer(f, state.root, layer)
        state.fs_index = None

    # -- instructions -----------------------------------------------------------------
    def _enabled(self, name: str) -> bool:
        if name == "RUN":
            return self.run_layers
        if name in ("COPY", "ADD"):
            return self.copy_layers
        return True  # WORKDIR: a directory entry, always cheap and safe to cache

    def execute(self, b, state, ins, run) -> None:
        """Run ``ins`` on ``state`` through the cache; ``run(state, ins)`` does the real work."""
        from ..cache.keys import arg_step_key, short, step_key
        from .steps import metadata
        idx, name, prev = state.index, ins.name, self.keys[state.index]
        text = ins.original.strip().splitlines()[0][:120]
        if name == "ARG" or name in metadata.HANDLERS:
            run(state, ins)
            if name == "ARG":
                self.keys[idx] = arg_step_key(prev, [n for n, _ in ins.arg_defaults])
            else:
                self.keys[idx] = step_key(prev, name, ins.args, flags=ins.flags, extra={"config": state.config})
            log.info("cache key %s (metadata, no layer): %s", short(self.keys[idx]), text)
            return
        if name not in LAYER_INSTRUCTIONS:
            self.materialize(b, state)
            run(state, ins)
            return
        key = self.layer_key(b, state, ins, prev)
        enabled = key is not None and self._enabled(name)
        if enabled:
            hit = self.cache.lookup(key)
            if hit is not None:
                self._use_hit(b, state, ins, hit)
                self.keys[idx] = key
                self.hits += 1
                log.info("cache hit %s: %s", short(key), text)
                return
            log.info("cache miss %s: %s", short(key), text)
            self.misses += 1
        else:
            why = "skipped: a remote source without --checksum cannot be keyed" if key is None else \
                f"skipped (--cache-{'run' if name == 'RUN' else 'copy'}-layers off)"
            log.info("cache %s %s: %s", why, short(key) if key else "-", text)
        self.all_hit[idx] = False
        self.materialize(b, state)
        n_layers = len(state.image.layers)
        run(state, ins)
        layer = state.image.layers[-1] if len(state.image.layers) > n_layers else None
        history = (state.image.config.get("history") or [{}])[-1]
        if key is None:  # chain on from what the step produced
            key = step_key(prev, name, ins.args, sources=[layer.diff_id if layer else "empty"])
        elif enabled:
            self.cache.store(key, layer, history.get("created_by", ""))
        self.keys[idx] = key

    def _use_hit(self, b, state, ins, hit: CacheHit) -> None:
        if ins.name == "WORKDIR":
            state.config["WorkingDir"] = self._workdir(b, state, ins)
        if hit.layer is None:
            state.image.add_history(b._history(hit.created_by))
            return
        if state.index not in self.lazy:
            self._apply(b, state, hit.layer)
        state.image.add_layer(hit.layer, b._history(hit.created_by))

    @staticmethod
    def _workdir(b, state, ins) -> str:
        from ..fs.paths import clean_abs
        return clean_abs(b._expand(ins, state.expansion_env())(ins.args[0]), state.workdir).rstrip("/") or "/"

    # -- keys ---------------------------------------------------------------------------
    def layer_key(self, b, state, ins, prev: str) -> str | None:
        """Chain key after layer instruction ``ins``; None when its inputs cannot be known up front."""
        from ..cache.keys import step_key
        name = ins.name
        expand = b._expand(ins, state.expansion_env())
        if name == "WORKDIR":
            return step_key(prev, name, [self._workdir(b, state, ins)], extra={"user": state.user})
        if name == "RUN":
            return self._run_key(b, state, ins, prev, expand)
        return self._copy_key(b, state, ins, prev, expand)

    def _stage_or_image(self, b, state, word: str) -> str:
        from ..cache.keys import image_source, stage_source
        ref = b._stage_ref(word, state.index)
        if ref is not None:
            return stage_source(self.keys[ref])
        return image_source(b.source.resolve(word)[0].digest)

    def _run_key(self, b, state, ins, prev: str, expand) -> str:
        from ..cache.keys import step_key
        from .steps.run import build_run_command
        cmd = build_run_command(state, ins)
        env = {k: v for k, v in state.args.items() if v is not None}
        env.update(state.env())
        flags = {k: [expand(v) for v in vs] for k, vs in ins.flags.items()}
        sources = []
        for m in ins.flags.get("mount", []):
            sources.append(self._mount_source(b, state, m, expand))
        words = list(cmd.argv) + ([cmd.script] if cmd.script is not None else [])
        return step_key(prev, "RUN", words, flags=flags, env=env, sources=sources,
                        extra={"user": state.user, "workdir": state.workdir})

    def _mount_source(self, b, state, value: str, expand) -> str:
        """What a RUN ``--mount`` reads: a stage key, an image digest or a context digest ('' if nothing)."""
        from ..cache.keys import tree_digest
        try:
            from .steps.mounts import parse_mount
            spec = parse_mount(value, state.workdir, expand)
        except Exception:  # noqa: BLE001 - the RUN itself reports a bad mount; the raw text is in the key
            return ""
        if spec.type != "bind":
            return ""  # cache, tmpfs, secret, ssh: contents are not inputs (as in Docker)
        if spec.from_:
            return self._stage_or_image(b, state, spec.from_)
        rel = spec.source.strip("/")
        host = b.opts.context / rel if rel else b.opts.context
        try:
            return "context:" + rel + ":" + tree_digest(host, rel_in_context=rel, excluded=b.context.excluded,
                                                        descend=b.context.descend)
        except OSError:
            return "context:" + rel + ":missing"

    def _copy_key(self, b, state, ins, prev: str, expand) -> str | None:
        import hashlib

        from ..context import match_sources
        from ..dockerfile.shell import expand_word
        from ..cache.keys import step_key, tree_digest
        flags = {k: [expand(v) for v in vs] for k, vs in ins.flags.items()}
        frm = (flags.get("from") or [""])[-1]
        heredocs = {h.name: h for h in ins.heredocs}
        words, sources = [], []
        what = f"{ins.filename}:{ins.start_line}: {ins.name}"
        if frm:
            sources.append(self._stage_or_image(b, state, frm))
        for raw in ins.args[:-1]:
            if raw.startswith("<<"):
                h = heredocs.get(raw.lstrip("<-").strip("'\""))
                body = "" if h is None else (expand_word(h.content, state.expansion_env())
                                             if h.expand and "$" in h.content else h.content)
                words.append(raw)
                sources.append("heredoc:" + hashlib.sha256(body.encode()).hexdigest())
                continue
            pattern = expand(raw)
            words.append(pattern)
            if ins.name == "ADD" and "://" in pattern:
                checksum = (flags.get("checksum") or [""])[-1]
                if not checksum:
                    return None
                sources.append(f"url:{pattern}@{checksum}")
                continue
            if frm:
                continue  # the source stage's key / image digest covers every path in it
            for m in match_sources(b.opts.context, pattern, b.context, what):
                sources.append(m.rel + ":" + tree_digest(m.path, rel_in_context=m.rel, excluded=b.context.excluded,
                                                         descend=b.context.descend))
        words.append(expand(ins.args[-1]) if ins.args else "")
        return step_key(prev, ins.name, words, flags=flags, sources=sources, extra={"workdir": state.workdir})

    # -- end ----------------------------------------------------------------------------
    def finalize(self, target: int, image, labels: dict[str, str]) -> None:
        """Reuse the stored final config on a full hit (same digest), else store it (background)."""
        from ..cache.keys import short
        key = image_config_key(self.keys[target], labels)
        if self.all_hit.get(target):
            cached = self.cache.lookup_config(key)
            if cached is not None and strip_created(cached) == strip_created(image.config):
                image.config = cached
                log.info("cache: every step hit; reusing the image config %s (same image as before)", short(key))
                return
        self.cache.store(key, None, "image config", config=copy.deepcopy(image.config))

    def close(self) -> None:
        """Wait for the background cache pushes (warnings only)."""
        log.info("cache: %d hits, %d misses", self.hits, self.misses)
        self.cache.close()


def make_driver(opts, client: RegistryClient) -> CacheDriver | None:
    """The CacheDriver for ``opts`` (a BuildOptions), or None without ``--cache``.

    ``--cache-repo oci:/path`` selects the on-disk OCI-layout cache
    (:class:`executor.cache.layout_store.LayoutLayerCache`); anything else is a registry repository.
    """
    if not opts.cache:
        return None
    repo = opts.cache_repo or default_cache_repo(opts.destinations)
    cache: LayerCache | LayoutLayerCache
    if repo.startswith("oci:"):
        from ..cache.layout_store import LayoutLayerCache, parse_layout_repo
        cache = LayoutLayerCache(parse_layout_repo(repo), opts.cache_ttl_seconds, push=not opts.no_push_cache,
                                 platform=opts.platform)
    else:
        name = parse_reference(repo).name  # validates; drops a tag if one was given
        cache = LayerCache(client, name, opts.cache_ttl_seconds, push=not opts.no_push_cache, platform=opts.platform)
    return CacheDriver(cache, run_layers=opts.cache_run_layers, copy_layers=opts.cache_copy_layers)
