"""Push a multi-platform build: every platform's image by digest, then one index per tag.

Order (nothing half-written): for each destination repository, every platform's blobs, then
its manifest by digest; only when all are in place is the index put at each ``--destination``
tag. Sources: OCI distribution-spec (pushing manifests by digest), OCI image-spec
image-index.md.
"""

from __future__ import annotations

import logging

from .engine.build import BuildResult
from .oci.image import sha256_digest
from .oci.index import entry_from_config, index_bytes
from .outputs import PushedImage, image_parts, push_manifest, put_tag
from .reference import parse_reference
from .registry.client import RegistryClient
from .registry.uploads import UploadPool

log = logging.getLogger("executor.push")


def image_index(results: list[BuildResult]) -> tuple[bytes, str, list[tuple[BuildResult, bytes, str]]]:
    """(index bytes, index media type, [(result, manifest bytes, manifest digest)]) of ``results``."""
    manifests = []
    entries = []
    for r in results:
        man = image_parts(r)[0]
        digest = sha256_digest(man)
        manifests.append((r, man, digest))
        entries.append(entry_from_config(r.image.manifest_media_type(), man, digest, r.image.config))
    data, media_type = index_bytes(entries)
    return data, media_type, manifests


def push_index(client: RegistryClient, results: list[BuildResult], destinations: list[str],
               early: UploadPool | None = None, ignore_immutable: bool = False) -> PushedImage:
    """Push every result's image by digest to each destination repository, then the index to
    every destination; returns the index digest (``early``: the build's upload pool, see
    push_manifest; ``ignore_immutable``: an immutable tag's refusal is a warning, see
    :func:`executor.outputs.put_tag`). Raises RegistryError naming the registry."""
    data, media_type, manifests = image_index(results)
    refs = [parse_reference(d) for d in destinations]
    repos = list(dict.fromkeys(r.name for r in refs))
    for result, _, digest in manifests:
        man, layers, config = image_parts(result)
        # by digest only: no tag points at a single platform's image, not even for a moment
        push_manifest(client, man, result.image.manifest_media_type(), layers, config,
                      [f"{repo}@{digest}" for repo in repos], early)
        log.info("pushed the %s image (%s)", result.platform, digest)
    digest = sha256_digest(data)
    kept = []
    for ref in refs:
        if put_tag(client, ref, data, media_type, digest, ignore_immutable):
            log.info("pushed %s@%s (index of %s)", ref, digest, ", ".join(r.platform for r, _, _ in manifests))
        else:
            kept.append(ref)
    return PushedImage(digest=digest, references=refs, kept=tuple(kept))
