"""The layer cache as a wrapper around prepared steps (``--cache``).

The wrapper sees a step only through :class:`~executor.engine.step.Prepared`: its named key
components, its config changes and its ``execute``. Keys chain from the stage's root key
(base image digest, or the parent stage's key) through every step
(:func:`executor.cache.keys.chain_key`); a hit takes the stored layer by descriptor (the blob
is only downloaded if a later step needs the files), a miss runs the step and stores its
layer in the background. A cache must never break a build: a stored layer that cannot be
fetched is a miss, with a warning.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..cache.entry import CacheHit, default_cache_repo, strip_created
from ..cache.keys import chain_key, short
from ..cache.store import LayerStore
from ..errors import LayerError, RegistryError
from ..options import BuildOptions
from ..reference import parse_reference
from ..registry.client import RegistryClient
from .state import StageState
from .step import CacheUse, Prepared, StepRecord

if TYPE_CHECKING:
    from .stage import StageBuilder

log = logging.getLogger("executor.cache")


def image_config_key(stage_key: str, labels: dict[str, str]) -> str:
    """Key of the final-config entry: the target stage's chain key plus the ``--label`` values."""
    return chain_key(stage_key, {"image-config": "", **{f"label {k}": v for k, v in sorted(labels.items())}})


@dataclass
class StepCache:
    """``store`` plus the policy of ``--cache-run-layers`` / ``--cache-copy-layers``; counts hits."""

    store: LayerStore
    run_layers: bool = True
    copy_layers: bool = True
    hits: int = 0
    misses: int = 0

    def chain(self, prev: str, components: dict[str, str]) -> str:
        return chain_key(prev, components)

    def _enabled(self, cache_class: str) -> bool:
        if cache_class == "run":
            return self.run_layers
        if cache_class == "copy":
            return self.copy_layers
        return True

    def run(self, sb: "StageBuilder", state: StageState, p: Prepared, rec: StepRecord) -> None:
        """Run prepared step ``p`` of ``state`` through the cache; updates ``state.key`` and ``rec``."""
        prev = state.key
        components = p.components()
        if components is None:
            rec.cache = CacheUse.SKIPPED
            log.info("cache skipped: a remote source without --checksum cannot be keyed")
            state.all_hit = False
            layer = sb.execute(state, p, keep_layer=True)
            state.key = chain_key(prev, {"result": layer.diff_id if layer else "empty"})
            rec.key, rec.layer_digest = state.key, layer.digest if layer else None
            return
        key = chain_key(prev, components)
        rec.key, rec.components = key, components
        enabled = self._enabled(p.cache_class)
        if enabled:
            hit = self.store.lookup(key)
            if hit is not None and self._use(sb, state, p, hit):
                rec.cache = CacheUse.HIT
                rec.layer_digest = hit.layer.digest if hit.layer else None
                state.key = key
                self.hits += 1
                log.info("cache hit %s: %s", short(key), rec.text)
                return
            rec.cache = CacheUse.MISS
            self.misses += 1
            log.info("cache miss %s: %s", short(key), rec.text)
        else:
            rec.cache = CacheUse.SKIPPED
            log.info("cache skipped (--cache-%s-layers off)", p.cache_class or "?")
        state.all_hit = False
        layer = sb.execute(state, p, keep_layer=enabled or sb.exported)
        rec.layer_digest = layer.digest if layer else None
        if enabled:
            history = (state.image.config.get("history") or [{}])[-1]
            self.store.store(key, layer, history.get("created_by", p.created_by))
        state.key = key

    def _use(self, sb: "StageBuilder", state: StageState, p: Prepared, hit: CacheHit) -> bool:
        """Apply a hit to ``state``; False (a miss) when its layer cannot be fetched."""
        if hit.layer is not None and not state.lazy:
            try:
                sb.build.source(sb.node.platform).fetch(hit.layer)
            except (RegistryError, LayerError, OSError) as e:
                log.warning("cache entry layer %s cannot be fetched (%s); running the step instead",
                            hit.layer.digest[:19], e)
                return False
            sb.apply_layer(state, hit.layer)
        for k, v in p.config.items():
            if v is None:
                state.config.pop(k, None)
            else:
                state.config[k] = v
        if hit.layer is None:
            state.image.add_history(sb.build.history(hit.created_by))
        else:
            state.image.add_layer(hit.layer, sb.build.history(hit.created_by))
        return True

    def finalize(self, target: StageState, labels: dict[str, str]) -> None:
        """Reuse the stored final config on a full hit (same digest), else store it (background)."""
        image = target.image
        key = image_config_key(target.key, labels)
        if target.all_hit:
            cached = self.store.lookup_config(key)
            if cached is not None and strip_created(cached) == strip_created(image.config):
                image.config = cached
                log.info("cache: every step hit; reusing the image config %s (same image as before)", short(key))
                return
        self.store.store(key, None, "image config", config=copy.deepcopy(image.config))

    def close(self) -> None:
        """Wait for the background cache writes (warnings only)."""
        log.info("cache: %d hits, %d misses", self.hits, self.misses)
        self.store.close()


def open_step_cache(opts: BuildOptions, client: RegistryClient) -> StepCache | None:
    """The StepCache for ``opts``, or None without ``--cache``.

    ``--cache-repo oci:/path`` selects the on-disk OCI-layout store; anything else is a
    registry repository (default ``<first destination>/cache``, as Kaniko).
    """
    if not opts.cache:
        return None
    repo = opts.cache_repo or default_cache_repo(opts.destinations)
    store: LayerStore
    if repo.startswith("oci:"):
        from ..cache.layout_store import LayoutLayerCache, parse_layout_repo
        store = LayoutLayerCache(parse_layout_repo(repo), opts.cache_ttl_seconds, push=not opts.no_push_cache,
                                 platform=opts.platform)
    else:
        from ..cache.registry_store import LayerCache
        name = parse_reference(repo).name  # validates; drops a tag if one was given
        store = LayerCache(client, name, opts.cache_ttl_seconds, push=not opts.no_push_cache,
                           platform=opts.platform)
    return StepCache(store, run_layers=opts.cache_run_layers, copy_layers=opts.cache_copy_layers)
