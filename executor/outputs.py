"""Outputs of a build: push to registries, docker tarball, OCI layout, digest files.

Order matters for "nothing half-written": every blob is uploaded (or confirmed present)
before any manifest is put, and digest files are written only after the push succeeded.
Sources: OCI distribution-spec (push), Kaniko's digest-file formats.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from .build.builder import BuildResult
from .oci.image import Layer, manifest_bytes, sha256_digest
from .reference import Reference, parse_reference
from .registry.client import RegistryClient

log = logging.getLogger("executor.push")

UNSET_DESTINATION = "docker.io/unset-repo/unset-image-name:latest"


@dataclass(frozen=True)
class PushedImage:
    """What was pushed: ``digest`` of the manifest and every destination reference."""

    digest: str
    references: list[Reference]


def local_blob_paths(result: BuildResult) -> list[Path]:
    """Local blob files of every layer, downloading base layers we never needed to extract."""
    return [result.source.fetch(layer) for layer in result.image.layers]


def _push_layer(client: RegistryClient, result: BuildResult, dest: Reference, layer: Layer) -> str:
    if client.blob_exists(dest, layer.digest):
        return "exists"
    if layer.source:
        src = parse_reference(layer.source)
        if src.registry == dest.registry and src.repository != dest.repository:
            if client.mount_blob(dest, layer.digest, src.repository):
                return "mounted"
    path = result.source.fetch(layer)
    client.upload_blob(dest, path, layer.digest, layer.size)
    return "uploaded"


def push(client: RegistryClient, result: BuildResult, destinations: list[str]) -> PushedImage:
    """Push the image to every destination; returns the manifest digest.

    Blobs first (HEAD, then cross-repository mount, then upload), config, manifest last.
    Raises RegistryError (naming the registry) on failure; no manifest is put then.
    """
    image = result.image
    cfg = image.config_bytes()
    manifest = manifest_bytes(image.manifest(cfg))
    digest = sha256_digest(manifest)
    refs = [parse_reference(d) for d in destinations]
    seen_repos: set[tuple[str, str]] = set()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for ref in refs:
            key = (ref.registry, ref.repository)
            if key in seen_repos:
                continue
            seen_repos.add(key)
            outcomes = list(pool.map(lambda layer, r=ref: _push_layer(client, result, r, layer), image.layers))
            client.upload_blob(ref, cfg, sha256_digest(cfg), len(cfg))
            log.info("pushed blobs to %s/%s: %s", ref.registry, ref.repository,
                     ", ".join(f"{outcomes.count(k)} {k}" for k in ("uploaded", "mounted", "exists") if outcomes.count(k)))
    for ref in refs:
        client.put_manifest(ref, manifest, image.manifest_media_type())
        log.info("pushed %s@%s", ref, digest)
    return PushedImage(digest=digest, references=refs)


def image_digest(result: BuildResult) -> str:
    """Digest of the manifest the image would be pushed with."""
    return sha256_digest(manifest_bytes(result.image.manifest(result.image.config_bytes())))


def write_digest_files(digest: str, destinations: list[str], digest_file: Path | None,
                       name_file: Path | None, name_tag_file: Path | None) -> None:
    """Kaniko's formats: the bare digest; ``repo@digest`` lines; ``repo:tag@digest`` lines."""
    if digest_file:
        digest_file.parent.mkdir(parents=True, exist_ok=True)
        digest_file.write_text(digest)
    refs = [parse_reference(d) for d in destinations]
    if name_file:
        name_file.parent.mkdir(parents=True, exist_ok=True)
        name_file.write_text("".join(f"{r.name}@{digest}\n" for r in refs))
    if name_tag_file:
        name_tag_file.parent.mkdir(parents=True, exist_ok=True)
        name_tag_file.write_text("".join(f"{r.name}:{r.tag or 'latest'}@{digest}\n" for r in refs))


def tar_tags(destinations: list[str]) -> list[str]:
    """Tags for ``--tar-path``: every destination, or Kaniko's placeholder when there are none."""
    out = []
    for d in destinations or [UNSET_DESTINATION]:
        r = parse_reference(d)
        out.append(f"{r.name}:{r.tag or 'latest'}")
    return out
