"""The registry layer cache (``--cache``) and the local base-image cache (``--cache-dir``).

Remote layer cache
------------------
Every cacheable instruction result is stored as a single-layer OCI image
``<cache-repo>:<key>`` where ``key`` is the 64-hex chain key of :mod:`.cachekey`:

* manifest: OCI image manifest; ``layers`` holds the one layer blob (the very blob the
  build made, same digest), or is empty when the instruction changed no file;
* config: an OCI image config with ``created`` (RFC 3339, for ``--cache-ttl``), the layer's
  ``diff_id`` and a one-entry ``history`` (its ``created_by``);
* ``dev.executor.cache.components``: what the key was made of (the named key components,
  shortened and secret-free, and the previous chain key; :mod:`.explain`), read only to
  explain a miss;
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

A path-index entry ``<cache-repo>:pathindex-<64 hex of a layer's diff_id>`` (kind
``pathindex``) holds, as its one "layer", the layer's path index (media type
:data:`executor.layers.pathindex.MEDIA_TYPE`; annotation ``dev.executor.cache.diff-id``):
the metadata of every entry of that layer, for the lazy filesystem (COPY/ADD/WORKDIR after
cache hits without downloading the layers). Content-addressed by diff_id, so base layers and
the executor's own layers share one scheme; the index is untrusted when read back.

A trail entry ``<cache-repo>:trail-<32 hex>`` (kind ``trail``, no layer) lists each step's
position -> key of the last successful build of one pipeline (annotation
``dev.executor.cache.trail``; :mod:`.explain`): a miss is compared with the same step's entry
of that build.

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
import time
from dataclasses import dataclass

from ..errors import UserError
from ..oci import mediatypes as mt
from ..oci.image import Layer, canonical_json, manifest_bytes, sha256_digest
from ..reference import parse_reference
from .explain import ANN_RECORD, ANN_TRAIL  # what a step's key was made of; the per-build trail

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
    """A found cache entry: ``layer`` (None = the instruction changed no file), its history text
    and ``origin``: the ``--cache-from`` source it came from ('' = the ``--cache-repo`` store)."""

    layer: Layer | None
    created_by: str
    origin: str = ""


def entry_documents(key: str, layer: Layer | None, created_by: str, platform: str, now: float,
                    config: dict | None = None, record: str | None = None,
                    trail: str | None = None) -> tuple[bytes, bytes]:
    """(config bytes, manifest bytes) of the cache entry for ``key``.

    ``layer``: the layer to store (its descriptor is copied, media type made OCI) or None for
    an empty result. ``config``: a whole image config to store instead (final-config entry).
    ``record``: the JSON text of the step's key record (annotation ``dev.executor.cache.components``,
    :func:`executor.cache.explain.record`). ``trail``: the JSON text of a build trail; the
    entry is then a trail entry (kind ``trail``, annotation ``dev.executor.cache.trail``).
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
    kind = "trail" if trail is not None else "config" if config is not None else ("layer" if layer else "empty")
    ann = {ANN_KEY: key, ANN_CREATED: created, ANN_CREATED_BY: created_by, ANN_KIND: kind}
    if record is not None:
        ann[ANN_RECORD] = record
    if trail is not None:
        ann[ANN_TRAIL] = trail
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


def index_name(diff_id: str) -> str:
    """The tag of the path-index entry of the layer ``diff_id`` (``pathindex-<64 hex>``)."""
    return "pathindex-" + diff_id.partition(":")[2]


def index_entry_documents(diff_id: str, data: bytes, platform: str, now: float) -> tuple[bytes, bytes]:
    """(config bytes, manifest bytes) of the path-index entry of layer ``diff_id`` whose
    serialized index is ``data`` (pushed as the entry's one blob)."""
    from ..layers.pathindex import MEDIA_TYPE
    os_name, _, rest = platform.partition("/")
    created = rfc3339(now)
    cfg = {"architecture": rest.split("/")[0] or "amd64", "os": os_name, "created": created, "config": {},
           "rootfs": {"type": "layers", "diff_ids": []}}
    cfg_bytes = canonical_json(cfg)
    man = {"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST,
           "config": {"mediaType": mt.OCI_CONFIG, "digest": sha256_digest(cfg_bytes), "size": len(cfg_bytes)},
           "layers": [{"mediaType": MEDIA_TYPE, "digest": sha256_digest(data), "size": len(data)}],
           "annotations": {ANN_KIND: "pathindex", ANN_DIFF_ID: diff_id, ANN_CREATED: created}}
    return cfg_bytes, manifest_bytes(man)


def parse_index_entry(manifest: dict, diff_id: str) -> dict | None:
    """The index blob descriptor of a path-index entry manifest for ``diff_id``, or None."""
    from ..layers.pathindex import MAX_COMPRESSED, MEDIA_TYPE
    ann = manifest.get("annotations") or {}
    layers = manifest.get("layers") or []
    if ann.get(ANN_KIND) != "pathindex" or ann.get(ANN_DIFF_ID) != diff_id or len(layers) != 1:
        return None
    d = layers[0]
    if (not isinstance(d, dict) or d.get("mediaType") != MEDIA_TYPE or not isinstance(d.get("digest"), str)
            or not isinstance(d.get("size"), int) or not 0 < d["size"] <= MAX_COMPRESSED):
        return None
    return d


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
