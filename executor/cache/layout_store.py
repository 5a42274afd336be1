"""The on-disk layer cache: ``--cache-repo oci:/path`` (Kaniko's OCI-layout cache repository).

The directory is an OCI image layout (OCI image-spec ``image-layout.md``)::

    /path/oci-layout            {"imageLayoutVersion": "1.0.0"}
    /path/index.json            OCI image index; one manifest descriptor per cache entry
    /path/blobs/sha256/<hex>    layer, config and manifest blobs (content-addressed)

Each cache entry is the same single-layer OCI image the registry cache pushes as
``<cache-repo>:<key>`` (:func:`executor.cache.entry.entry_documents`: manifest annotations
``dev.executor.cache.kind|diff-id|created-by`` and ``org.opencontainers.image.created`` for
``--cache-ttl``), and its ``index.json`` descriptor carries
``org.opencontainers.image.ref.name = <key>`` (the 64-hex chain key), so other tools read an
entry as ``oci:/path:<key>`` (``skopeo inspect oci:/path:<key>``, ``umoci unpack --image /path:<key>``).

Writes are crash- and concurrency-safe: every blob is written to a unique temp file and
renamed into place (a blob is content-addressed, so two writers of the same digest write the
same bytes), and ``index.json`` is rewritten last, as a whole (temp file + rename), while
holding an exclusive ``flock`` on the layout directory (:mod:`executor.oci.layout`); the read-modify-write of two builds
sharing the directory therefore never loses an entry, and a reader (no lock needed) sees
either the old or the new index, never a descriptor whose blobs are missing.

A hit's :class:`~executor.oci.image.Layer` has ``path`` = the blob file in the layout and no
``source``: nothing is downloaded, a step that needs the filesystem extracts it from there,
and the final push uploads it from that file (``ImageSource.fetch`` returns ``layer.path``).
Entries are written on a background thread pool like registry pushes (:meth:`store`,
:meth:`wait`); a failed write is a warning, never a build failure.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from ..oci import mediatypes as mt
from ..oci.image import Layer, file_digest, sha256_digest
from ..oci.layout import (LAYOUT_VERSION, REF_NAME, add_index_entry, blob_path as _blob_path, put_blob,
                          read_index, tmp_name as _tmp_name)
from .background import BackgroundWriter
from .entry import (ANN_CREATED, ANN_KIND, CacheHit, entry_documents, expired, index_entry_documents, index_name,
                    parse_entry, parse_index_entry, parse_rfc3339)
from .explain import ANN_RECORD, ANN_TRAIL, parse_record, parse_trail

log = logging.getLogger("executor.cache")



def parse_layout_repo(repo: str) -> Path:
    """The directory of ``--cache-repo oci:<path>`` (relative paths are made absolute).

    Raises UserError when no path follows ``oci:``.
    """
    path = repo[len("oci:"):] if repo.startswith("oci:") else repo
    if not path:
        raise UserError("--cache-repo=oci: needs a directory, e.g. --cache-repo=oci:/cache/layers")
    return Path(path).absolute()


@dataclass
class LayoutLayerCache:
    """The layer cache as an OCI image layout at ``root`` (same interface as ``LayerCache``).

    ``ttl_seconds``: entries older than this (manifest ``org.opencontainers.image.created``)
    are misses. ``push``: False for ``--no-push-cache`` (lookups only). ``platform`` goes into
    entry configs. ``repo`` is what log lines call it (``oci:/path``).
    """

    root: Path
    ttl_seconds: int
    push: bool = True
    platform: str = "linux/amd64"
    _bg: BackgroundWriter = field(default_factory=lambda: BackgroundWriter("write"))

    def __post_init__(self) -> None:
        if not self.push:
            return
        try:
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            layout = self.root / "oci-layout"
            if not layout.is_file():
                tmp = _tmp_name(layout)
                tmp.write_text(json.dumps(LAYOUT_VERSION))
                os.replace(tmp, layout)
        except OSError as e:
            hint = " (read-only? pass --no-push-cache to only read it)" if e.errno in (errno.EROFS, errno.EACCES) else ""
            raise UserError(f"--cache-repo=oci:{self.root}: cannot create the cache layout: "
                            f"{e.strerror or e}{hint}") from None

    @property
    def repo(self) -> str:
        return f"oci:{self.root}"

    def _manifest(self, key: str) -> tuple[dict, str] | None:
        """(manifest, digest) of the index entry named ``key`` (the last one if several), else None."""
        for desc in reversed(read_index(self.root).get("manifests") or []):
            if (desc.get("annotations") or {}).get(REF_NAME) != key:
                continue
            try:
                data = _blob_path(self.root, desc.get("digest", "")).read_bytes()
            except (OSError, ValueError):
                log.warning("cache %s: entry %s has no manifest blob; ignoring it", self.repo, key[:12])
                return None
            if sha256_digest(data) != desc.get("digest"):
                log.warning("cache %s: manifest of entry %s is corrupt; ignoring it", self.repo, key[:12])
                return None
            try:
                doc = json.loads(data)
            except ValueError:
                return None
            return (doc, desc["digest"]) if isinstance(doc, dict) else None
        return None

    def lookup(self, key: str) -> CacheHit | None:
        """The entry for ``key``, or None (absent, expired, blob missing: all misses). No network."""
        found = self._manifest(key)
        if found is None:
            return None
        hit = parse_entry(found[0], "", self.ttl_seconds, time.time())
        if hit is None or hit.layer is None:
            return hit
        try:
            path = _blob_path(self.root, hit.layer.digest)
            size = path.stat().st_size
        except (OSError, ValueError):
            log.warning("cache %s: layer blob %s of entry %s is missing; a miss", self.repo,
                        hit.layer.digest[:19], key[:12])
            return None
        if size != hit.layer.size:
            log.warning("cache %s: layer blob %s has %d bytes, the entry says %d; a miss", self.repo,
                        hit.layer.digest[:19], size, hit.layer.size)
            return None
        if file_digest(path) != hit.layer.digest:
            log.warning("cache %s: layer blob %s of entry %s is corrupt (its bytes do not match the digest); "
                        "a miss", self.repo, hit.layer.digest[:19], key[:12])
            return None
        layer = Layer(descriptor=hit.layer.descriptor, diff_id=hit.layer.diff_id, path=path, source=None)
        return CacheHit(layer=layer, created_by=hit.created_by)

    def lookup_config(self, key: str) -> dict | None:
        """The image config stored under final-config ``key`` (within TTL), or None."""
        found = self._manifest(key)
        if found is None:
            return None
        doc = found[0]
        ann = doc.get("annotations") or {}
        if ann.get(ANN_KIND) != "config" or expired(parse_rfc3339(ann.get(ANN_CREATED, "")), self.ttl_seconds,
                                                     time.time()):
            return None
        try:
            digest = doc["config"]["digest"]
            data = _blob_path(self.root, digest).read_bytes()
            if sha256_digest(data) != digest:
                return None
            cfg = json.loads(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return cfg if isinstance(cfg, dict) else None

    def lookup_record(self, key: str) -> dict | None:
        """The key record of entry ``key`` (:func:`executor.cache.explain.parse_record`), or None."""
        found = self._manifest(key)
        return parse_record((found[0].get("annotations") or {}).get(ANN_RECORD)) if found else None

    def read_trail(self, name: str) -> dict | None:
        """The trail entry named ``name`` (:func:`executor.cache.explain.parse_trail`), or None."""
        found = self._manifest(name)
        return parse_trail((found[0].get("annotations") or {}).get(ANN_TRAIL)) if found else None

    def write_trail(self, name: str, trail: str) -> None:
        """Write the trail JSON text ``trail`` as entry ``name`` in the background (no-op with
        ``push=False``); it replaces the earlier one of that name."""
        if self.push:
            self._bg.submit(name, self._write_entry, name, None, "build trail", None, None, trail)

    def lookup_index(self, diff_id: str) -> bytes | None:
        """The serialized path index of layer ``diff_id`` (untrusted bytes, digest verified), or None."""
        found = self._manifest(index_name(diff_id))
        desc = parse_index_entry(found[0], diff_id) if found else None
        if desc is None:
            return None
        try:
            data = _blob_path(self.root, desc["digest"]).read_bytes()
        except (OSError, ValueError):
            return None
        return data if sha256_digest(data) == desc["digest"] else None

    def store_index(self, diff_id: str, data) -> None:
        """Write the path index of layer ``diff_id`` in the background (``data``: bytes, or a
        callable producing them or None, called only when no index is stored yet)."""
        if self.push:
            self._bg.submit(index_name(diff_id), self._write_index, diff_id, data)

    def _write_index(self, diff_id: str, data) -> None:
        if callable(data):
            if self._manifest(index_name(diff_id)) is not None:
                return
            data = data()
            if data is None:
                return
        cfg_bytes, man = index_entry_documents(diff_id, data, self.platform, time.time())
        put_blob(self.root, sha256_digest(data), data=data)
        put_blob(self.root, sha256_digest(cfg_bytes), data=cfg_bytes)
        digest = sha256_digest(man)
        put_blob(self.root, digest, data=man)
        ann = json.loads(man)["annotations"]
        add_index_entry(self.root, {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(man),
                                    "annotations": {REF_NAME: index_name(diff_id), ANN_KIND: "pathindex",
                                                    ANN_CREATED: ann[ANN_CREATED]}})

    def store(self, key: str, layer: Layer | None, created_by: str, config: dict | None = None,
              record: str | None = None) -> None:
        """Write the entry for ``key`` in the background (no-op with ``push=False``); ``record``:
        the JSON text of its key record.

        ``layer.path`` must stay on disk until :meth:`wait` returns.
        """
        if not self.push:
            return
        self._bg.submit(key, self._write_entry, key, layer, created_by, config, record)

    def _write_entry(self, key: str, layer: Layer | None, created_by: str, config: dict | None,
                     record: str | None = None, trail: str | None = None) -> None:
        now = time.time()
        cfg_bytes, man = entry_documents(key, layer, created_by, self.platform, now, config, record=record,
                                         trail=trail)
        if layer is not None:
            if layer.path is None or not layer.path.is_file():
                raise OSError(f"layer {layer.digest} has no local blob to store")
            put_blob(self.root, layer.digest, src=layer.path)
        put_blob(self.root, sha256_digest(cfg_bytes), data=cfg_bytes)
        digest = sha256_digest(man)
        put_blob(self.root, digest, data=man)
        ann = json.loads(man)["annotations"]
        add_index_entry(self.root, {"mediaType": mt.OCI_MANIFEST, "digest": digest, "size": len(man),
                                    "annotations": {REF_NAME: key, ANN_KIND: ann[ANN_KIND],
                                                    ANN_CREATED: ann[ANN_CREATED]}})

    def wait(self) -> tuple[int, int]:
        """Wait for every background write; returns (written, failed). Failures are warnings."""
        return self._bg.wait(self.repo)

    def close(self) -> None:
        """Wait for pending writes and stop the pool."""
        self._bg.close(self.repo)
