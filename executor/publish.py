"""Push a multi-platform build: every platform's image by digest, then one index per tag.

Order (nothing half-written): for each destination repository, every platform's blobs, then
its manifest by digest; only when all are in place is the index put at each ``--destination``
tag. Sources: OCI distribution-spec (pushing manifests by digest), OCI image-spec
image-index.md.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from .engine.build import BuildResult
from .oci.image import manifest_bytes, sha256_digest
from .oci.index import entry_from_config, index_bytes
from .outputs import PushedImage, _push_layer
from .reference import parse_reference
from .registry.client import RegistryClient

log = logging.getLogger("executor.push")


def image_index(results: list[BuildResult]) -> tuple[bytes, str, list[tuple[BuildResult, bytes, str]]]:
    """(index bytes, index media type, [(result, manifest bytes, manifest digest)]) of ``results``."""
    manifests = []
    entries = []
    for r in results:
        cfg = r.image.config_bytes()
        man = manifest_bytes(r.image.manifest(cfg))
        digest = sha256_digest(man)
        manifests.append((r, man, digest))
        entries.append(entry_from_config(r.image.manifest_media_type(), man, digest, r.image.config))
    data, media_type = index_bytes(entries)
    return data, media_type, manifests


def push_index(client: RegistryClient, results: list[BuildResult], destinations: list[str]) -> PushedImage:
    """Push every result's image by digest to each destination repository, then the index to
    every destination; returns the index digest. Raises RegistryError naming the registry."""
    data, media_type, manifests = image_index(results)
    refs = [parse_reference(d) for d in destinations]
    repos = {(r.registry, r.repository): r for r in refs}
    with ThreadPoolExecutor(max_workers=4) as pool:
        for ref in repos.values():
            for result, man, digest in manifests:
                outcomes = list(pool.map(lambda layer, r=ref, res=result: _push_layer(client, res, r, layer),
                                         result.image.layers))
                cfg = result.image.config_bytes()
                client.upload_blob(ref, cfg, sha256_digest(cfg), len(cfg))
                # by digest only: no tag points at a single platform's image, not even for a moment
                client.put_manifest(replace(ref, tag=None, digest=digest), man, result.image.manifest_media_type())
                log.info("pushed %s image to %s/%s@%s (%s)", result.platform, ref.registry, ref.repository, digest,
                         ", ".join(f"{outcomes.count(k)} {k}" for k in ("uploaded", "mounted", "exists")
                                   if outcomes.count(k)))
    digest = sha256_digest(data)
    for ref in refs:
        client.put_manifest(ref, data, media_type)
        log.info("pushed %s@%s (index of %s)", ref, digest, ", ".join(r.platform for r, _, _ in manifests))
    return PushedImage(digest=digest, references=refs)
