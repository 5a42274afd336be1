"""Registry client for the OCI distribution-spec (v1.1, spec.md) / Docker Registry HTTP API v2.

Pull: manifests (with OCI index / Docker manifest list platform selection),
config and layer blobs streamed to a file and digest-verified.
Push: blob existence check, cross-repository mount, monolithic or chunked
upload with resume, manifest PUT.

All failures a user can act on raise :class:`executor.errors.RegistryError`
whose message names the registry, the operation, the HTTP status and a fix.

:class:`RegistryClient` is assembled from one module per concept -- the shared core
(:mod:`~executor.registry.core`), manifests (:mod:`~executor.registry.manifests`), blob
downloads (:mod:`~executor.registry.blob_download`) and uploads
(:mod:`~executor.registry.blob_upload`); this module keeps the historical import path
for every public name (``RegistryOptions``, media types, ``select_platform``, ...).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from executor.errors import RegistryError
from executor.reference import Reference
from executor.registry.blob_download import READ_CHUNK as _READ_CHUNK
from executor.registry.blob_download import BlobDownloads, _tell
from executor.registry.blob_upload import BlobSource as _BlobSource
from executor.registry.blob_upload import BlobUploads, _with_digest
from executor.registry.cancel import Cancelled, cancel_all
from executor.registry.manifests import ManifestOps, _media_type, _parse_json, _read_limited, sha256_digest
from executor.registry.mediatypes import (
    ALL_MANIFEST_TYPES,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    DOCKER_SCHEMA1,
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    OCI_INDEX,
    OCI_MANIFEST,
)
from executor.registry.messages import STATUS_HINTS as _STATUS_HINTS
from executor.registry.messages import error_detail as _error_detail
from executor.registry.messages import status_text as _status_text
from executor.registry.options import RegistryOptions
from executor.registry.options import listed as _in
from executor.registry.options import lookup as _lookup
from executor.registry.platforms import parse_platform, platform_matches, select_platform

log = logging.getLogger("executor.registry")

__all__ = [
    "ALL_MANIFEST_TYPES", "DOCKER_MANIFEST", "DOCKER_MANIFEST_LIST", "DOCKER_SCHEMA1", "IMAGE_MANIFEST_TYPES",
    "INDEX_TYPES", "MAX_CONFIG_BYTES", "MAX_MANIFEST_BYTES", "OCI_INDEX", "OCI_MANIFEST",
    "Cancelled", "RegistryClient", "RegistryOptions", "ResolvedImage", "cancel_all", "parse_platform", "platform_matches",
    "select_platform", "sha256_digest",
    # private helpers kept importable for existing callers
    "_BlobSource", "_READ_CHUNK", "_STATUS_HINTS", "_error_detail", "_in", "_lookup", "_media_type",
    "_parse_json", "_read_limited", "_status_text", "_tell", "_with_digest",
]


@dataclass
class ResolvedImage:
    """A platform image fetched from a registry.

    ``reference`` is where it was fetched from (after mirror selection) with the
    platform manifest's ``digest`` set; ``manifest``/``config`` are parsed JSON;
    ``manifest_bytes``/``config_bytes`` are exactly what the registry served.
    """

    reference: Reference
    manifest: dict
    manifest_bytes: bytes
    media_type: str
    digest: str
    config: dict
    config_bytes: bytes


class RegistryClient(ManifestOps, BlobDownloads, BlobUploads):
    """Talks OCI distribution to any number of registries (see the module docstring).

    ``RegistryClient(options=RegistryOptions(), keychain=Keychain.anonymous())``; usable as
    a context manager; :meth:`close` releases connections. Thread-safe: a push uploads
    several blobs at once. Operations: :meth:`get_manifest`, :meth:`get_manifest_or_none`,
    :meth:`head_manifest`, :meth:`put_manifest`, :meth:`resolve_image`, :meth:`fetch_blob`,
    :meth:`blob_exists`, :meth:`mount_blob`, :meth:`upload_blob`, :meth:`ping`.
    Failures raise :class:`~executor.errors.RegistryError` (``status`` = the HTTP status
    that caused it, if any), :class:`~executor.errors.NotFound` for a 404 on a manifest or
    blob GET, :class:`~executor.registry.cancel.Cancelled` after :meth:`cancel`.
    """

    def resolve_image(self, ref: Reference, platform: str = "linux/amd64") -> ResolvedImage:
        """Fetch the image manifest for ``platform`` and its config blob.

        Follows an OCI index / Docker manifest list to the entry matching
        ``os/arch[/variant]`` (spec: OCI image-spec image-index.md). Raises
        RegistryError if there is no such platform or the manifest type is unknown.
        Mirrors are tried first; all requests of one resolution go to the same candidate.
        """
        def op(cand: Reference) -> ResolvedImage:
            data, mt, digest = self._get_manifest_direct(cand, ALL_MANIFEST_TYPES)
            doc = _parse_json(data, f"manifest of {cand}")
            if mt in INDEX_TYPES or (mt not in IMAGE_MANIFEST_TYPES and "manifests" in doc):
                desc = select_platform(doc, platform)
                cand = cand.with_digest(desc["digest"])
                data, mt, digest = self._get_manifest_direct(cand, IMAGE_MANIFEST_TYPES)
                doc = _parse_json(data, f"manifest of {cand}")
            if "config" not in doc or not isinstance(doc["config"], dict):
                raise RegistryError(f"{cand} has media type {mt} without a config; it is not a container image")
            cfg_desc = doc["config"]
            if int(cfg_desc.get("size", 0)) > MAX_CONFIG_BYTES:
                raise RegistryError(f"config blob of {cand} is {cfg_desc.get('size')} bytes; refusing more than {MAX_CONFIG_BYTES}")
            buf = io.BytesIO()
            self._fetch_blob_direct(cand, cfg_desc["digest"], buf)
            cfg_bytes = buf.getvalue()
            config = _parse_json(cfg_bytes, f"config of {cand}")
            got = f"{config.get('os', '?')}/{config.get('architecture', '?')}"
            want = parse_platform(platform)
            if config.get("os") and config.get("architecture") and (config["os"], config["architecture"]) != want[:2]:
                log.warning("image %s is %s, not the requested %s", cand, got, platform)
            return ResolvedImage(reference=cand if cand.digest == digest else cand.with_digest(digest),
                                 manifest=doc, manifest_bytes=data, media_type=mt, digest=digest,
                                 config=config, config_bytes=cfg_bytes)

        return self._with_mirrors(ref, op)
