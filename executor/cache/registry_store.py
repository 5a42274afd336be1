"""The registry layer-cache store: one single-layer OCI image per entry, ``<cache-repo>:<key>``.

Entry format: :mod:`executor.cache.entry`.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..errors import RegistryError
from ..registry.cancel import Cancelled
from ..oci import mediatypes as mt
from ..oci.image import Layer, sha256_digest
from ..reference import Reference, parse_reference
from ..registry.client import RegistryClient
from .background import BackgroundWriter
from .entry import (ANN_CREATED, ANN_KIND, CacheHit, entry_documents, expired, index_entry_documents, index_name,
                    parse_entry, parse_index_entry, parse_rfc3339)
from .explain import ANN_RECORD, ANN_TRAIL, parse_record, parse_trail

log = logging.getLogger("executor.cache")


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
    _blob_checks: dict[str, Future] = field(default_factory=dict)  # layer digest -> HEAD made by this build
    _blob_lock: threading.Lock = field(default_factory=threading.Lock)

    def _ref(self, key: str) -> Reference:
        return parse_reference(f"{self.repo}:{key}")

    def _get(self, key: str) -> dict | None:
        try:
            got = self.client.get_manifest_or_none(self._ref(key), accept=(mt.OCI_MANIFEST,))
        except Cancelled:
            raise
        except RegistryError as e:
            if not self._warned:
                self._warned = True
                log.warning("layer cache %s unavailable, building without it: %s", self.repo, e)
            return None
        if got is None:  # no entry for this key: a plain miss
            return None
        data = got[0]
        try:
            doc = json.loads(data)
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def lookup(self, key: str) -> CacheHit | None:
        """The entry for ``key``, or None (absent, expired, unreadable, layer blob gone: all are misses).
        Two requests: the entry manifest, and a HEAD of its layer blob (not repeated for a blob
        this build already found there: entries of identical layers share one)."""
        doc = self._get(key)
        hit = parse_entry(doc, self.repo, self.ttl_seconds, time.time()) if doc else None
        if hit is not None and hit.layer is not None and not self._blob_present(key, hit.layer.digest):
            log.warning("cache %s: layer blob %s of entry %s is missing; a miss", self.repo,
                        hit.layer.digest[:19], key[:12])
            return None
        return hit

    def _blob_present(self, key: str, digest: str) -> bool:
        """HEAD of layer blob ``digest`` in the repository (False, with a warning, when it cannot be
        checked). One HEAD per digest and build: a lookup meeting a HEAD of the same blob by another
        lookup (concurrent or earlier) takes its answer when it was found, else checks itself."""
        with self._blob_lock:
            check = self._blob_checks.get(digest)
            own = check is None
            if own:
                check = self._blob_checks[digest] = Future()
        if not own and check.result():
            return True
        present = False
        try:
            present = self.client.blob_exists(self._ref(key), digest)
        except Cancelled:
            raise
        except RegistryError as e:
            log.warning("cache %s: cannot check layer blob %s (%s)", self.repo, digest[:19], e)
        finally:
            if own:
                check.set_result(present)
        return present

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

    def lookup_record(self, key: str) -> dict | None:
        """The key record of entry ``key`` (:func:`executor.cache.explain.parse_record`), or None
        (absent, unreadable, written before records existed). One request, any age."""
        doc = self._get(key)
        return parse_record((doc.get("annotations") or {}).get(ANN_RECORD)) if doc else None

    def read_trail(self, name: str) -> dict | None:
        """The trail stored as ``<repo>:<name>`` (:func:`executor.cache.explain.parse_trail`), or
        None. One request."""
        doc = self._get(name)
        return parse_trail((doc.get("annotations") or {}).get(ANN_TRAIL)) if doc else None

    def write_trail(self, name: str, trail: str) -> None:
        """Push the trail JSON text ``trail`` as ``<repo>:<name>`` in the background (no-op with
        ``push=False``)."""
        if self.push:
            self._bg.submit(name, self._push_entry, name, None, "build trail", None, None, trail)

    def lookup_index(self, diff_id: str) -> bytes | None:
        """The serialized path index of layer ``diff_id`` (untrusted bytes, digest verified), or
        None when absent or unreadable. Two requests (entry manifest, index blob)."""
        doc = self._get(index_name(diff_id))
        desc = parse_index_entry(doc, diff_id) if doc else None
        if desc is None:
            return None
        buf = io.BytesIO()
        try:
            self.client.fetch_blob(self._ref(index_name(diff_id)), desc["digest"], buf)
        except Cancelled:
            raise
        except RegistryError:
            return None
        data = buf.getvalue()
        return data if sha256_digest(data) == desc["digest"] else None

    def store_index(self, diff_id: str, data) -> None:
        """Store the path index of layer ``diff_id`` in the background: ``data`` is the serialized
        index, or a callable producing it (run in the background, after checking that no index
        is stored yet; None = nothing to store). No-op with ``push=False``."""
        if self.push:
            self._bg.submit(index_name(diff_id), self._push_index, diff_id, data)

    def _push_index(self, diff_id: str, data) -> None:
        if callable(data):
            if self._get(index_name(diff_id)) is not None:
                return
            data = data()
            if data is None:
                return
        ref = self._ref(index_name(diff_id))
        cfg_bytes, man = index_entry_documents(diff_id, data, self.platform, time.time())
        self.client.upload_blob(ref, data, sha256_digest(data), len(data))
        self.client.upload_blob(ref, cfg_bytes, sha256_digest(cfg_bytes), len(cfg_bytes))
        self.client.put_manifest(ref, man, mt.OCI_MANIFEST)

    def store(self, key: str, layer: Layer | None, created_by: str, config: dict | None = None,
              record: str | None = None) -> None:
        """Push the entry for ``key`` in the background (no-op with ``push=False``); ``record``:
        the JSON text of its key record.

        ``layer.path`` must stay on disk until :meth:`wait` returns.
        """
        if self.push:
            self._bg.submit(key, self._push_entry, key, layer, created_by, config, record)

    def _push_entry(self, key: str, layer: Layer | None, created_by: str, config: dict | None,
                    record: str | None = None, trail: str | None = None) -> None:
        ref = self._ref(key)
        cfg_bytes, man = entry_documents(key, layer, created_by, self.platform, time.time(), config,
                                         record=record, trail=trail)
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
