"""The layer cache as a wrapper around prepared steps (``--cache``).

The wrapper sees a step only through :class:`~executor.engine.step.Prepared`: its named key
components, its config changes and its ``execute``. Keys chain from the stage's root key
(base image digest, or the parent stage's key) through every step
(:func:`executor.cache.keys.chain_key`); a hit takes the stored layer by descriptor (the blob
is only downloaded if a later step needs the files), a miss runs the step and stores its
layer in the background. A cache must never break a build: a stored layer that cannot be
fetched is a miss, with a warning.

``--cache-from`` sources (read-only, :class:`executor.cache.chain.StoreChain`) are asked after
the ``--cache-repo`` store, in order; a hit from one logs
``cache hit <key>: <instruction> (from --cache-from <source>)`` and sets
``StepRecord.cache_source``. Entries and trails are written to the ``--cache-repo`` store only.

A miss explains itself (:mod:`executor.cache.explain`): every entry records its named key
components (secret-free) and the previous key; a successful build stores a *trail* (each
step's position -> key) for its destination, target and platform, read back once when the
next build starts. A miss logs one more line after ``cache miss <key>: <instruction>``::

    cache miss at <instruction> (<file>:<line>): <reason>

where ``<reason>`` names the step's changed components (``app.txt content changed``,
``build arg VERSION changed (1.2 -> 1.3)``, ``instruction changed``), or says the chain
changed before it (``the previous step missed (its result changed)``, with ``; it follows
from <first changed step>`` when the first change is further back), or ``no earlier build of
this step recorded``. Components are fetched only on a miss (one request per miss).

Lookups ahead: the trail is read on a thread of its own while the stages resolve their bases,
and the entries it names (the previous build's keys of RUN/COPY/ADD/WORKDIR steps, and its
final config) are looked up concurrently as soon as it arrives. A step whose key is one of
them takes that result instead of asking the store again, so a no-change rebuild makes its
lookups in a few concurrent rounds instead of one request after another. The results are
those of ``store.lookup``/``lookup_config`` (absent, expired, a missing layer blob: a miss
with its warning; ``--cache-from`` order): only their timing changes. A key no step asks for
(the build changed) costs one wasted lookup; at most :data:`MAX_LOOKUPS_AHEAD` are made.
"""

from __future__ import annotations

import copy
import logging
import re
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..cache import explain as ex
from ..cache.chain import StoreChain
from ..cache.entry import CacheHit, default_cache_repo, strip_created
from ..cache.keys import chain_key, short
from ..cache.store import LayerStore
from ..errors import LayerError, RegistryError, UserError
from ..options import BuildOptions
from ..reference import parse_reference
from ..registry.cancel import Cancelled
from ..registry.client import RegistryClient
from .plan import _PUBLIC_NAME, _SECRET_NAME
from .state import StageState
from .step import CacheUse, Prepared, StepRecord

if TYPE_CHECKING:
    from .stage import StageBuilder

log = logging.getLogger("executor.cache")


#: most entries looked up ahead from the previous build's trail (a bound on wasted requests)
MAX_LOOKUPS_AHEAD = 64
#: concurrent lookups ahead
LOOKUP_THREADS = 8
#: step keywords whose keys are looked up in the store (config-only steps are never stored)
_STORED = {"RUN": "run", "COPY": "copy", "ADD": "copy", "WORKDIR": ""}
_KEY = re.compile(r"[0-9a-f]{64}")


def secret_name(name: str) -> bool:
    """True for an ARG/ENV name that looks like a credential (the build's secret-name warning rule)."""
    return bool(_SECRET_NAME.search(name)) and not _PUBLIC_NAME.search(name)


@dataclass
class _Stage:
    """What the cache saw of one stage state: its label, FROM word, root key and steps in order."""

    label: str
    base: str
    parent: str | None
    root: str
    steps: list[StepRecord] = field(default_factory=list)


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
    hits_from: int = 0        # of which from a --cache-from source
    misses: int = 0
    destination: str = ""     # first --destination repository (or the cache repo): names trails
    target: str = ""
    trails: dict[str, dict | None] = field(default_factory=dict)  # platform -> previous build's trail
    _stages: dict[int, _Stage] = field(default_factory=dict)      # id(StageState) -> what was seen
    _services: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _pool: ThreadPoolExecutor | None = None
    _trails_read: Future | None = None
    _ahead: dict[tuple[str, str], Future] = field(default_factory=dict)  # ("entry"|"config", key) -> lookup

    def chain(self, prev: str, components: dict[str, str]) -> str:
        return chain_key(prev, components)

    # ------------------------------------------------------------------ trail
    def read_trails(self, destination: str, target: str, platforms: list[str],
                    labels: dict[str, str] | None = None, target_labels: dict[str, str] | None = None) -> None:
        """Start reading the previous build's trail of each platform (one request each; absent =
        None) on a thread, then looking up the entries it names (module doc). ``labels``: the
        ``--label`` values (part of the final-config key); ``target_labels``: platform -> label
        of its target stage (whose last key names the final config; none: not looked up ahead).
        Returns at once."""
        self.destination, self.target = destination, target
        self._pool = ThreadPoolExecutor(max_workers=LOOKUP_THREADS, thread_name_prefix="cache-lookup")
        self._trails_read = self._pool.submit(self._read_trails, platforms, dict(labels or {}),
                                              dict(target_labels or {}))

    def _read_trails(self, platforms: list[str], labels: dict[str, str], target_labels: dict[str, str]) -> None:
        for p in platforms:
            trail = self.store.read_trail(ex.trail_name(self.destination, self.target, p))
            self.trails[p] = trail
            if trail is not None:
                try:
                    self._look_ahead(trail, labels, target_labels.get(p))
                except Exception as e:  # noqa: BLE001 - an optimisation: never a reason to fail
                    log.debug("cache: no lookups ahead (%s)", e)

    def _look_ahead(self, trail: dict, labels: dict[str, str], target_label: str | None) -> None:
        """Submit the lookups of the entries ``trail`` names (module doc). The trail is registry
        data: only 64-hex keys are looked up."""
        steps = {pos: k for pos, k in (trail.get("steps") or {}).items()
                 if isinstance(pos, str) and isinstance(k, str) and _KEY.fullmatch(k)}
        roots = {label: k for label, k in (trail.get("roots") or {}).items()
                 if isinstance(label, str) and isinstance(k, str) and _KEY.fullmatch(k)}
        wanted: list[tuple[str, str]] = []
        own: list[tuple[int, str]] = []  # (index, key) of the target stage's steps
        for pos, key in steps.items():
            keyword = pos.rpartition(" ")[2]
            if keyword in _STORED and self._enabled(_STORED[keyword]):
                wanted.append(("entry", key))
            parsed = ex.parse_position(pos)
            if parsed is not None and parsed[0] == target_label:
                own.append((parsed[1], key))
        if target_label is not None and target_label in roots:  # the target stage's last key names the final config
            wanted.append(("config", image_config_key(max(own)[1] if own else roots[target_label], labels)))
        with self._lock:
            for kind, key in wanted:
                if len(self._ahead) >= MAX_LOOKUPS_AHEAD or (kind, key) in self._ahead or self._pool is None:
                    continue
                lookup = self.store.lookup if kind == "entry" else self.store.lookup_config
                self._ahead[(kind, key)] = self._pool.submit(lookup, key)

    def _await_trails(self) -> None:
        """Wait for the trails (re-raises a cancellation met reading them)."""
        if self._trails_read is not None:
            self._trails_read.result()

    def _lookup(self, kind: str, key: str):
        """``store.lookup(key)`` ("entry") or ``store.lookup_config(key)`` ("config"): the
        lookup made ahead when there is one, else a request now."""
        with self._lock:
            ahead = self._ahead.pop((kind, key), None)
        if ahead is not None:
            return ahead.result()
        return self.store.lookup(key) if kind == "entry" else self.store.lookup_config(key)

    def stage_started(self, sb: "StageBuilder", state: StageState) -> None:
        """Note a stage's root key (call before its first step)."""
        node = sb.node
        parent = sb.plan.nodes[node.parent].label if node.parent is not None else None
        with self._lock:
            self._services = sb.build
            self._stages[id(state)] = _Stage(node.label, node.base, parent, state.key)

    def note_step(self, state: StageState, rec: StepRecord) -> None:
        """Note a step of ``state`` (config-only steps; :meth:`run` notes its own)."""
        seen = self._stages.get(id(state))
        if seen is not None and not any(r is rec for r in seen.steps):
            seen.steps.append(rec)

    def _trail_for(self, sb: "StageBuilder") -> dict | None:
        self._await_trails()
        unit = getattr(sb, "unit", None)
        if unit and unit[0] in self.trails:
            return self.trails[unit[0]]
        return next((t for t in self.trails.values() if t is not None), None)

    def _explain(self, sb: "StageBuilder", state: StageState, prev: str, components: dict[str, str],
                 rec: StepRecord, unusable: bool) -> None:
        """Log why the step of ``rec`` missed (one line); at most one request (its earlier entry)."""
        seen = self._stages.get(id(state))
        if seen is None:
            return
        try:
            reason = self._reason(sb, state, seen, prev, components, rec, unusable)
        except Cancelled:
            raise
        except Exception as e:  # noqa: BLE001 - an explanation must never break a build
            reason = f"cannot tell ({e})"
        log.info("cache miss at %s (%s): %s", rec.text, rec.location, reason)

    def _reason(self, sb: "StageBuilder", state: StageState, seen: _Stage, prev: str, components: dict[str, str],
                rec: StepRecord, unusable: bool) -> str:
        trail = self._trail_for(sb)
        n = next(i for i, r in enumerate(seen.steps) if r is rec)
        old_key = (trail or {}).get("steps", {}).get(ex.position(seen.label, n, rec.keyword))
        if not old_key:
            return "no earlier build of this step recorded"
        if old_key == rec.key:
            if unusable:
                return "its cached layer could not be used"
            return "the earlier build's entry for this step is gone or older than --cache-ttl"
        env_names = frozenset(state.env())
        old = self.store.lookup_record(old_key)
        new = ex.record(prev, components, secret_name)
        if old is not None and "components" in old and "components" in new:
            changes = ex.explain_components(old["components"], new["components"], env_names=env_names,
                                            secret=secret_name)
            if changes:
                return changes
        old_prev = old["prev"] if old else self._trail_prev(trail, seen, n)
        if old_prev is not None and old_prev != prev:
            return self._chain_reason(trail, seen, n)
        if old is None:
            return "the earlier build's entry for this step is gone (expired or deleted) or records no key components"
        hidden = ex.hidden_names(old.get("components") or {}, new.get("components") or {})
        if hidden:
            return ex.explain_hidden(hidden, env_names)
        return "its key changed for a reason the cache does not record (another executor version?)"

    @staticmethod
    def _trail_prev(trail: dict, seen: _Stage, n: int) -> str | None:
        if n == 0:
            return trail["roots"].get(seen.label)
        return trail["steps"].get(ex.position(seen.label, n - 1, seen.steps[n - 1].keyword))

    @staticmethod
    def _chain_reason(trail: dict, seen: _Stage, n: int) -> str:
        """The chain before step ``n`` changed: say how, naming the first changed step."""
        def ref(i: int) -> str:
            r = seen.steps[i]
            return f"{r.text} ({r.location})" if r.cache in (CacheUse.HIT, CacheUse.MISS) else f"{r.keyword} ({r.location})"

        origin = (f"the stage it is built on ({seen.parent}) changed" if seen.parent
                  else f"the base image changed (FROM {seen.base})")
        if n == 0:
            return origin
        first = -1 if trail["roots"].get(seen.label) != seen.root else next(
            (i for i in range(n) if trail["steps"].get(ex.position(seen.label, i, seen.steps[i].keyword))
             != seen.steps[i].key), n - 1)
        last = seen.steps[n - 1]
        if first == n - 1 or first >= 0 and last.cache == CacheUse.MISS:
            lead = {CacheUse.MISS: "the previous step missed (its result changed)",
                    CacheUse.HIT: "the previous step's key changed (it hit an older cache entry)"}.get(
                last.cache, f"the previous instruction changed: {last.keyword} ({last.location})")
            return lead if first == n - 1 else f"{lead}; it follows from {ref(first)}"
        if first < 0:
            return f"an earlier step changed: {origin}"
        what = {CacheUse.MISS: "an earlier step missed (its result changed)",
                CacheUse.HIT: "an earlier step's key changed (it hit an older cache entry)"}.get(
            seen.steps[first].cache, "an earlier instruction changed")
        return f"{what}: {ref(first)}"

    def save_trail(self, target: StageState) -> None:
        """Store this build's trail for ``target``'s platform (background; skipped when it equals
        the one read at the start, so a no-change rebuild writes nothing)."""
        b = self._services
        if b is None or not getattr(self.store, "push", True):
            return
        platform = next((p for p, pl in b.plans.items() if b.state_for(p, pl.target) is target), None)
        if platform is None:
            return
        plan = b.plans[platform]
        roots: dict[str, str] = {}
        steps: list[tuple[str, str]] = []
        for i in plan.order:
            seen = self._stages.get(id(b.state_for(platform, i)))
            if seen is None:
                continue
            roots[seen.label] = seen.root
            steps += [(ex.position(seen.label, n, r.keyword), r.key) for n, r in enumerate(seen.steps) if r.key]
        doc = ex.trail_document(self.destination, self.target, platform, roots, steps)
        self._await_trails()
        old = self.trails.get(platform)
        if old is not None and not old.get("source") and old.get("roots") == doc["roots"] and old.get("steps") == doc["steps"]:
            return
        text = ex.encode(doc)
        if len(text) > ex.MAX_TRAIL:
            log.info("cache: the build trail is %d bytes, more than %d; not stored", len(text), ex.MAX_TRAIL)
            return
        self.store.write_trail(ex.trail_name(self.destination, self.target, platform), text)

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
            self.note_step(state, rec)
            return
        key = chain_key(prev, components)
        rec.key, rec.components = key, components
        self.note_step(state, rec)
        enabled = self._enabled(p.cache_class)
        if enabled:
            hit = self._lookup("entry", key)
            if hit is not None and self._use(sb, state, p, hit):
                rec.cache = CacheUse.HIT
                rec.cache_source = hit.origin
                rec.layer_digest = hit.layer.digest if hit.layer else None
                state.key = key
                self.hits += 1
                if hit.origin:
                    self.hits_from += 1
                    log.info("cache hit %s: %s (from --cache-from %s)", short(key), rec.text, hit.origin)
                else:
                    log.info("cache hit %s: %s", short(key), rec.text)
                return
            rec.cache = CacheUse.MISS
            self.misses += 1
            log.info("cache miss %s: %s", short(key), rec.text)
            self._explain(sb, state, prev, components, rec, unusable=hit is not None)
        else:
            rec.cache = CacheUse.SKIPPED
            log.info("cache skipped (--cache-%s-layers off)", p.cache_class or "?")
        state.all_hit = False
        layer = sb.execute(state, p, keep_layer=enabled or sb.exported)
        rec.layer_digest = layer.digest if layer else None
        if enabled:
            history = (state.image.config.get("history") or [{}])[-1]
            self.store.store(key, layer, history.get("created_by", p.created_by),
                             record=ex.encode(ex.record(prev, components, secret_name)))
            indexes = getattr(sb.build, "indexes", None)
            if layer is not None and indexes is not None:
                indexes.publish(layer.diff_id)  # the lazy filesystem of later builds
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
        state.apply_config(p.config)
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
            cached = self._lookup("config", key)
            if cached is not None and strip_created(cached) == strip_created(image.config):
                image.config = cached
                log.info("cache: every step hit; reusing the image config %s (same image as before)", short(key))
                self.save_trail(target)
                return
        self.store.store(key, None, "image config", config=copy.deepcopy(image.config))
        self.save_trail(target)

    def close(self) -> None:
        """Wait for the background cache writes (warnings only)."""
        sources = f" ({self.hits_from} from --cache-from)" if self.hits_from else ""
        log.info("cache: %d hits%s, %d misses", self.hits, sources, self.misses)
        if self._pool is not None:  # lookups ahead nobody asked for: not waited for
            with self._lock:
                pool, self._pool = self._pool, None
                self._ahead.clear()
            pool.shutdown(wait=False, cancel_futures=True)
        self.store.close()


def _open_store(repo: str, opts: BuildOptions, client: RegistryClient, push: bool, flag: str) -> tuple[str, LayerStore]:
    """(name, store) of one cache location: ``oci:/path`` (an OCI layout) or a registry repository."""
    if repo.startswith("oci:"):
        from ..cache.layout_store import LayoutLayerCache, parse_layout_repo
        root = parse_layout_repo(repo)
        if not push and not (root / "index.json").is_file():
            log.warning("%s %s: no OCI image layout there (no index.json); nothing to read from it", flag, repo)
        return f"oci:{root}", LayoutLayerCache(root, opts.cache_ttl_seconds, push=push, platform=opts.platform)
    from ..cache.registry_store import LayerCache
    try:
        name = parse_reference(repo).name  # validates; drops a tag if one was given
    except UserError as e:
        raise UserError(f"{flag} {repo}: {e}") from None
    return name, LayerCache(client, name, opts.cache_ttl_seconds, push=push, platform=opts.platform)


def open_step_cache(opts: BuildOptions, client: RegistryClient,
                    target_labels: dict[str, str] | None = None) -> StepCache | None:
    """The StepCache for ``opts``, or None without ``--cache`` and ``--cache-from``.

    ``--cache-repo oci:/path`` selects the on-disk OCI-layout store; anything else is a
    registry repository (default ``<first destination>/cache``, as Kaniko). Each
    ``--cache-from`` (same two forms) is a read-only source asked after it, in order
    (:class:`executor.cache.chain.StoreChain`); ``--cache-from`` without ``--cache`` reads
    those sources and writes nothing. ``target_labels``: platform -> label of its target stage
    (for the lookups ahead, :meth:`StepCache.read_trails`).
    """
    if not opts.cache and not opts.cache_from:
        return None
    primary: LayerStore | None = None
    repo = ""
    if opts.cache:
        repo, primary = _open_store(opts.cache_repo or default_cache_repo(opts.destinations), opts, client,
                                    push=not opts.no_push_cache, flag="--cache-repo")
    sources: list[tuple[str, LayerStore]] = []
    for ref in opts.cache_from:
        name, source = _open_store(ref, opts, client, push=False, flag="--cache-from")
        if name != repo and name not in (n for n, _ in sources):
            sources.append((name, source))
    store: LayerStore = primary if primary is not None and not sources else StoreChain(primary, sources)
    if sources:
        log.info("cache: reading %s after %s (read-only)", ", ".join(n for n, _ in sources),
                 repo or "no --cache-repo (--cache-from alone: nothing is stored)")
    cache = StepCache(store, run_layers=opts.cache_run_layers, copy_layers=opts.cache_copy_layers)
    destination = parse_reference(opts.destinations[0]).name if opts.destinations else (repo or sources[0][0])
    cache.read_trails(destination, opts.target or "", list(dict.fromkeys(opts.platforms or [opts.platform])),
                      opts.labels, target_labels)
    return cache
