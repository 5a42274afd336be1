"""The registry layer cache (``--cache``) and the local base-image cache (``--cache-dir``).

Remote layer cache
------------------
Every cacheable instruction result is stored as a single-layer OCI image
``<cache-repo>:<key>`` where ``key`` is the 64-hex chain key of :mod:`.cachekey`:

* manifest: OCI image manifest; ``layers`` holds the one layer blob (the very blob the
  build made, same digest), or is empty when the instruction changed no file;
* config: an OCI image config with ``created`` (RFC 3339, for ``--cache-ttl``), the layer's
  ``diff_id`` and a one-entry ``history`` (its ``created_by``);
* manifest annotations repeat what a hit needs (``dev.executor.cache.diff-id``,
  ``dev.executor.cache.created-by``, ``org.opencontainers.image.created``) so a lookup is a
  single ``GET /v2/<cache-repo>/manifests/<key>``; the config blob is never downloaded.

A hit returns a :class:`~executor.oci.image.Layer` whose ``source`` is the cache repository:
the blob is only downloaded if a later step needs the filesystem, and the final push HEADs
it in the destination or mounts it from the cache repository. Entries are pushed on a
background thread pool (:meth:`LayerCache.store`); :meth:`LayerCache.wait` collects them
before the process exits, and a failed push is only a warning.

A final-config entry ``<cache-repo>:<image key>`` (same format, no layer) records the whole
image config of the target stage. When every instruction of the target stage hit, and the
stored config equals the new one in everything except ``created`` timestamps, the stored
one is reused, so a no-change rebuild gives the byte-identical image (same digest).

On-disk layer cache
-------------------
``--cache-repo oci:/path`` keeps the same entries as images in an OCI image layout at
``/path`` (``org.opencontainers.image.ref.name`` = key); see :mod:`.layout_cache`.

Local base-image cache
----------------------
``executor warm`` writes an OCI image layout (image-spec image-layout.md) in ``--cache-dir``;
:class:`LocalImageCache` is its read side (``ImageSource.local_cache``). See executor.warm.
"""

from __future__ import annotations

import calendar
import copy
import io
import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import RegistryError, UserError
from ..oci import mediatypes as mt
from ..oci.image import Layer, canonical_json, manifest_bytes, sha256_digest
from ..oci.layout import read_index
from ..reference import Reference, parse_reference
from ..registry.client import RegistryClient, ResolvedImage

if TYPE_CHECKING:
    from .layout_cache import LayoutLayerCache

log = logging.getLogger("executor.cache")

ANN_KEY = "dev.executor.cache.key"
ANN_DIFF_ID = "dev.executor.cache.diff-id"
ANN_CREATED_BY = "dev.executor.cache.created-by"
ANN_KIND = "dev.executor.cache.kind"          # "layer" | "empty" | "config"
ANN_CREATED = "org.opencontainers.image.created"
ANN_REF = "dev.executor.ref"
ANN_PLATFORM = "dev.executor.platform"
ANN_INDEX_DIGEST = "dev.executor.index-digest"
ANN_CACHED_AT = "dev.executor.cached-at"


def default_cache_repo(destinations: list[str]) -> str:
    """Kaniko's default ``--cache-repo``: ``<first destination repository>/cache``.

    Raises UserError when there is no destination to derive it from.
    """
    if not destinations:
        raise UserError("--cache needs a cache repository: pass --cache-repo REGISTRY/REPO "
                        "(or a --destination, whose repository + '/cache' is then used)")
    return parse_reference(destinations[0]).name + "/cache"


def rfc3339(ts: float) -> str:
    """``2024-01-02T03:04:05Z`` for a POSIX timestamp (whole seconds, UTC)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def parse_rfc3339(text: str) -> float | None:
    """POSIX seconds of an RFC 3339 UTC time (fractional seconds ignored); None if malformed."""
    try:
        base = text.split(".")[0].rstrip("Z")
        return float(calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S")))
    except (ValueError, AttributeError):
        return None


def expired(created: float | None, ttl_seconds: int, now: float) -> bool:
    """True when an entry made at ``created`` is older than ``ttl_seconds`` (no time -> expired)."""
    return created is None or now - created > ttl_seconds


@dataclass(frozen=True)
class CacheHit:
    """A found cache entry: ``layer`` (None = the instruction changed no file) and its history text."""

    layer: Layer | None
    created_by: str


def entry_documents(key: str, layer: Layer | None, created_by: str, platform: str, now: float,
                    config: dict | None = None) -> tuple[bytes, bytes]:
    """(config bytes, manifest bytes) of the cache entry for ``key``.

    ``layer``: the layer to store (its descriptor is copied, media type made OCI) or None for
    an empty result. ``config``: a whole image config to store instead (final-config entry).
    """
    os_name, _, rest = platform.partition("/")
    arch = rest.split("/")[0] or "amd64"
    created = rfc3339(now)
    if config is None:
        cfg = {"architecture": arch, "os": os_name, "created": created, "config": {},
               "rootfs": {"type": "layers", "diff_ids": [layer.diff_id] if layer else []},
               "history": [{"created": created, "created_by": created_by, "comment": "executor cache",
                            **({} if layer else {"empty_layer": True})}]}
    else:
        cfg = config
    cfg_bytes = canonical_json(cfg)
    ann = {ANN_KEY: key, ANN_CREATED: created, ANN_CREATED_BY: created_by,
           ANN_KIND: "config" if config is not None else ("layer" if layer else "empty")}
    layers = []
    if layer is not None:
        d = dict(layer.descriptor)
        d["mediaType"] = mt.convert_layer_type(d["mediaType"], True)
        d.pop("annotations", None)
        layers.append(d)
        ann[ANN_DIFF_ID] = layer.diff_id
    man = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
           "config": {"mediaType": mt.OCI_CONFIG, "digest": sha256_digest(cfg_bytes), "size": len(cfg_bytes)},
           "layers": layers, "annotations": ann}
    return cfg_bytes, manifest_bytes(man)


def parse_entry(manifest: dict, source: str, ttl_seconds: int, now: float) -> CacheHit | None:
    """The hit described by a cache-entry manifest, or None when expired or not ours.

    ``source``: the cache repository name (``registry/repo``) the layer blob lives in.
    """
    ann = manifest.get("annotations") or {}
    kind = ann.get(ANN_KIND)
    if kind not in ("layer", "empty"):
        return None
    if expired(parse_rfc3339(ann.get(ANN_CREATED, "")), ttl_seconds, now):
        return None
    layers = manifest.get("layers") or []
    if kind == "empty":
        return CacheHit(layer=None, created_by=ann.get(ANN_CREATED_BY, "")) if not layers else None
    if len(layers) != 1 or not ann.get(ANN_DIFF_ID):
        return None
    return CacheHit(layer=Layer(descriptor=dict(layers[0]), diff_id=ann[ANN_DIFF_ID], source=source),
                    created_by=ann.get(ANN_CREATED_BY, ""))


def strip_created(config: dict) -> dict:
    """``config`` without its ``created`` timestamps (top level and history), for comparison."""
    c = copy.deepcopy(config)
    c.pop("created", None)
    for h in c.get("history") or []:
        h.pop("created", None)
    return c


@dataclass
class BackgroundWriter:
    """Cache entries written on a small thread pool, awaited once before the build exits.

    ``verb`` ("push", "write") is what log lines say. A failed entry is a warning, never a
    build failure (a cache must not break a build).
    """

    verb: str
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=3,
                                                                                 thread_name_prefix="cache"))
    _futures: list[tuple[str, Future]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, key: str, fn, *args) -> None:
        """Run ``fn(*args)`` in the background as the entry for ``key``."""
        fut = self._pool.submit(fn, *args)
        with self._lock:
            self._futures.append((key, fut))

    def wait(self, repo: str) -> tuple[int, int]:
        """Wait for every pending entry; returns (done, failed)."""
        with self._lock:
            futures, self._futures = self._futures, []
        ok = failed = 0
        for key, fut in futures:
            try:
                fut.result()
                ok += 1
            except Exception as e:  # noqa: BLE001 - a cache entry must never fail the build
                failed += 1
                log.warning("could not %s cache entry %s:%s: %s", self.verb, repo, key[:12], e)
        if futures:
            past = {"push": "pushed", "write": "wrote"}.get(self.verb, self.verb)
            log.info("%s %d cache entries to %s%s", past, ok, repo, f" ({failed} failed)" if failed else "")
        return ok, failed

    def close(self, repo: str) -> None:
        """Wait for pending entries and stop the pool."""
        self.wait(repo)
        self._pool.shutdown(wait=True)


@dataclass
class LayerCache:
    """The registry layer cache in ``repo`` (``registry/repository``) through ``client``.

    ``ttl_seconds``: entries older than this are misses. ``push``: False for
    ``--no-push-cache`` (lookups only). ``platform`` goes into entry configs.
    """

    client: RegistryClient
    repo: str
    ttl_seconds: int
    push: bool = True
    platform: str = "linux/amd64"
    _bg: BackgroundWriter = field(default_factory=lambda: BackgroundWriter("push"))
    _warned: bool = False

    def _ref(self, key: str) -> Reference:
        return parse_reference(f"{self.repo}:{key}")

    def _get(self, key: str) -> dict | None:
        try:
            data, _, _ = self.client.get_manifest(self._ref(key), accept=(mt.OCI_MANIFEST,))
        except RegistryError as e:
            # TODO(registry): a get_manifest variant returning None on 404 would avoid matching text.
            if "404" not in str(e) and not self._warned:
                self._warned = True
                log.warning("layer cache %s unavailable, building without it: %s", self.repo, e)
            return None
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def lookup(self, key: str) -> CacheHit | None:
        """The entry for ``key``, or None (absent, expired, unreadable: all are misses). One request."""
        doc = self._get(key)
        return parse_entry(doc, self.repo, self.ttl_seconds, time.time()) if doc else None

    def lookup_config(self, key: str) -> dict | None:
        """The image config stored under final-config ``key`` (within TTL), or None. Two requests."""
        doc = self._get(key)
        if not doc:
            return None
        ann = doc.get("annotations") or {}
        if ann.get(ANN_KIND) != "config" or expired(parse_rfc3339(ann.get(ANN_CREATED, "")), self.ttl_seconds,
                                                     time.time()):
            return None
        buf = io.BytesIO()
        try:
            self.client.fetch_blob(self._ref(key), doc["config"]["digest"], buf)
            cfg = json.loads(buf.getvalue())
        except (RegistryError, ValueError, KeyError, TypeError):
            return None
        return cfg if isinstance(cfg, dict) else None

    def store(self, key: str, layer: Layer | None, created_by: str, config: dict | None = None) -> None:
        """Push the entry for ``key`` in the background (no-op with ``push=False``).

        ``layer.path`` must stay on disk until :meth:`wait` returns.
        """
        if self.push:
            self._bg.submit(key, self._push_entry, key, layer, created_by, config)

    def _push_entry(self, key: str, layer: Layer | None, created_by: str, config: dict | None) -> None:
        ref = self._ref(key)
        cfg_bytes, man = entry_documents(key, layer, created_by, self.platform, time.time(), config)
        if layer is not None:
            if layer.path is None:
                raise RegistryError(f"layer {layer.digest} has no local blob to push")
            self.client.upload_blob(ref, layer.path, layer.digest, layer.size)
        self.client.upload_blob(ref, cfg_bytes, sha256_digest(cfg_bytes), len(cfg_bytes))
        self.client.put_manifest(ref, man, mt.OCI_MANIFEST)

    def wait(self) -> tuple[int, int]:
        """Wait for every background push; returns (pushed, failed). Failures are logged as warnings."""
        return self._bg.wait(self.repo)

    def close(self) -> None:
        """Wait for pending pushes and stop the pool."""
        self._bg.close(self.repo)


# --------------------------------------------------------------------------- local base images
def ref_key(ref: Reference) -> str:
    """``registry/repo:tag`` (or ``@digest``) as recorded in a local cache entry."""
    return str(ref)


@dataclass
class LocalImageCache:
    """Read side of the ``--cache-dir`` OCI layout that ``executor warm`` writes.

    ``lookup(ref, platform)`` matches a digest reference by manifest or index digest and a
    tag reference by name and tag while the entry is younger than ``ttl_seconds`` (the
    registry is then not asked at all, so builds work with it down). ``blob(digest)`` is the
    file of a cached blob. Nothing here writes.
    """

    root: Path
    ttl_seconds: int = 336 * 3600

    def _entries(self) -> list[dict]:
        return read_index(self.root).get("manifests") or []

    def blob(self, digest: str) -> Path | None:
        alg, _, hexd = digest.partition(":")
        p = self.root / "blobs" / alg / hexd
        return p if hexd and p.is_file() else None

    def lookup(self, ref: Reference, platform: str) -> ResolvedImage | None:
        now = time.time()
        for e in reversed(self._entries()):
            ann = e.get("annotations") or {}
            if ann.get(ANN_PLATFORM) != platform:
                continue
            cached = parse_reference(ann.get(ANN_REF, "")) if ann.get(ANN_REF) else None
            if cached is None or cached.name != ref.name:
                continue
            if ref.digest:
                if ref.digest not in (e.get("digest"), ann.get(ANN_INDEX_DIGEST)):
                    continue
            else:
                if cached.tag != ref.tag:
                    continue
                try:
                    at = float(ann.get(ANN_CACHED_AT, "0"))
                except ValueError:
                    at = 0.0
                if expired(at, self.ttl_seconds, now):
                    log.info("local cache entry for %s is older than --cache-ttl; asking the registry", ref)
                    continue
            resolved = self._load(ref, e)
            if resolved is not None:
                log.info("base image %s from the local cache %s", ref, self.root)
                return resolved
        return None

    def _load(self, ref: Reference, entry: dict) -> ResolvedImage | None:
        mpath = self.blob(entry.get("digest", ""))
        if mpath is None:
            return None
        man_bytes = mpath.read_bytes()
        if sha256_digest(man_bytes) != entry["digest"]:
            log.warning("local cache %s: manifest %s is corrupt; ignoring it", self.root, entry["digest"])
            return None
        man = json.loads(man_bytes)
        cpath = self.blob(man.get("config", {}).get("digest", ""))
        if cpath is None or any(self.blob(d.get("digest", "")) is None for d in man.get("layers") or []):
            return None
        cfg_bytes = cpath.read_bytes()
        return ResolvedImage(reference=ref.with_digest(entry["digest"]), manifest=man, manifest_bytes=man_bytes,
                             media_type=entry.get("mediaType") or man.get("mediaType") or mt.OCI_MANIFEST,
                             digest=entry["digest"], config=json.loads(cfg_bytes), config_bytes=cfg_bytes)


def open_local_cache(path: Path | None, ttl_seconds: int) -> LocalImageCache | None:
    """The local cache at ``path`` when it is an OCI layout made by ``executor warm``, else None."""
    if path is None:
        return None
    if not (path / "index.json").is_file():
        log.info("--cache-dir %s holds no cached images (fill it with `executor warm`)", path)
        return None
    return LocalImageCache(path, ttl_seconds)


# --------------------------------------------------------------------------- build integration
def image_config_key(stage_key: str, labels: dict[str, str]) -> str:
    """Key of the final-config entry: the target stage's chain key plus the ``--label`` values."""
    from .cachekey import step_key
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
        from .cachekey import root_key, short, stage_source
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
        from .cachekey import arg_step_key, short, step_key
        from .commands import metadata
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
        from .fsutil import clean_abs
        return clean_abs(b._expand(ins, state.expansion_env())(ins.args[0]), state.workdir).rstrip("/") or "/"

    # -- keys ---------------------------------------------------------------------------
    def layer_key(self, b, state, ins, prev: str) -> str | None:
        """Chain key after layer instruction ``ins``; None when its inputs cannot be known up front."""
        from .cachekey import step_key
        name = ins.name
        expand = b._expand(ins, state.expansion_env())
        if name == "WORKDIR":
            return step_key(prev, name, [self._workdir(b, state, ins)], extra={"user": state.user})
        if name == "RUN":
            return self._run_key(b, state, ins, prev, expand)
        return self._copy_key(b, state, ins, prev, expand)

    def _stage_or_image(self, b, state, word: str) -> str:
        from .cachekey import image_source, stage_source
        ref = b._stage_ref(word, state.index)
        if ref is not None:
            return stage_source(self.keys[ref])
        return image_source(b.source.resolve(word)[0].digest)

    def _run_key(self, b, state, ins, prev: str, expand) -> str:
        from .cachekey import step_key
        from .commands.run import build_run_command
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
        from .cachekey import tree_digest
        try:
            from .commands.mounts import parse_mount
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
        from .cachekey import step_key, tree_digest
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
        from .cachekey import short
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
    (:class:`executor.build.layout_cache.LayoutLayerCache`); anything else is a registry repository.
    """
    if not opts.cache:
        return None
    repo = opts.cache_repo or default_cache_repo(opts.destinations)
    cache: LayerCache | LayoutLayerCache
    if repo.startswith("oci:"):
        from .layout_cache import LayoutLayerCache, parse_layout_repo
        cache = LayoutLayerCache(parse_layout_repo(repo), opts.cache_ttl_seconds, push=not opts.no_push_cache,
                                 platform=opts.platform)
    else:
        name = parse_reference(repo).name  # validates; drops a tag if one was given
        cache = LayerCache(client, name, opts.cache_ttl_seconds, push=not opts.no_push_cache, platform=opts.platform)
    return CacheDriver(cache, run_layers=opts.cache_run_layers, copy_layers=opts.cache_copy_layers)
