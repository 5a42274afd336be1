"""``executor index``: join already pushed single-platform images into one multi-platform image.

::

    executor index --destination REG/APP:1.2 [--destination ...] [--digest-file F] SRC_REF...

Each ``SRC_REF`` names one single-platform image (tag or digest) that is already in a
registry, e.g. the ``IMAGE_DIGEST`` of one Tekton build per architecture. Its platform is read
from its image config (``os``, ``architecture``, ``variant``, ``os.version``, ``os.features``),
never guessed from the name.

What is pushed (specs followed):

* a **Docker manifest list** (``application/vnd.docker.distribution.manifest.list.v2+json``,
  Docker "Image Manifest V2, Schema 2", manifest list section) when every source manifest is a
  Docker schema 2 manifest, else an **OCI image index** (``application/vnd.oci.image.index.v1+json``,
  OCI image-spec ``image-index.md``): ``schemaVersion`` 2, ``mediaType``, and one descriptor per
  source, in the order given, ``{mediaType, size, digest, platform: {architecture, os[, variant]
  [, os.version][, os.features]}}``;
* an index may only name manifests of its own repository (distribution-spec: a manifest PUT
  is refused with ``MANIFEST_BLOB_UNKNOWN`` / ``MANIFEST_UNKNOWN`` when a referenced manifest
  is missing), so a source in another repository is first copied there **by digest**: its
  layers and config are mounted (``POST ...?mount=&from=``) when both repositories are on the
  same registry, else downloaded and uploaded; blobs already there are skipped, and nothing is
  copied for a source already in the destination repository;
* the index itself is put **last**, after every source manifest exists in every destination
  repository, so a tag never names an index whose children are missing.

Errors (one line, :class:`~executor.errors.UserError`): a source that is itself an index or
manifest list; two sources with the same platform; a source whose config has no ``os`` or
``architecture``; no source or no destination. Registry failures raise
:class:`~executor.errors.RegistryError` naming the registry and the operation.

Registration in :mod:`executor.cli` (the same pattern as ``warm``)::

    if args and args[0] == "index": return run(args[1:])   # run = executor.index.run
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import typer

from .errors import UserError
from .oci.index import IndexEntry, index_bytes, platform_of
from .outputs import write_digest_files
from .reference import Reference, parse_reference
from .registry.mediatypes import (
    IMAGE_MANIFEST_TYPES,
    INDEX_TYPES,
    MAX_CONFIG_BYTES,
)

log = logging.getLogger("executor.index")

#: Layer media types that must not be copied between registries (their ``urls`` say where they live).
_NON_DISTRIBUTABLE = ("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                      "application/vnd.oci.image.layer.nondistributable.v1.tar",
                      "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
                      "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd")


@dataclass(frozen=True)
class SourceImage:
    """One single-platform image to put in the index.

    ``ref`` is the reference as given (normalised); ``manifest_bytes`` exactly what the registry
    served, ``media_type`` its media type, ``digest`` its ``sha256:`` digest; ``platform`` the
    OCI platform object built from the config (``os``, ``architecture`` and, when set,
    ``variant``, ``os.version``, ``os.features``).
    """

    ref: Reference
    manifest_bytes: bytes
    media_type: str
    digest: str
    manifest: dict
    platform: dict

    @property
    def platform_text(self) -> str:
        """``os/arch[/variant]``."""
        p = self.platform
        return "/".join(x for x in (p["os"], p["architecture"], p.get("variant")) if x)

    def blobs(self) -> list[dict]:
        """Descriptors of the config and every distributable layer."""
        layers = [d for d in self.manifest.get("layers") or []
                  if isinstance(d, dict) and d.get("mediaType") not in _NON_DISTRIBUTABLE]
        return [self.manifest["config"], *layers]


def read_source(client, text: str) -> SourceImage:
    """Fetch manifest and config of the single-platform image ``text``.

    Raises UserError for an index / manifest list, a manifest of an unknown media type, or a
    config without ``os``/``architecture``; RegistryError (NotFound on 404) from the client.
    """
    ref = parse_reference(text)
    data, media_type, digest = client.get_manifest(ref)
    if media_type in INDEX_TYPES:
        raise UserError(f"executor index: source {text} is an image index / manifest list ({media_type}), not a "
                        "single-platform image; give each platform's image (e.g. REPO@sha256:...) instead")
    if media_type not in IMAGE_MANIFEST_TYPES:
        raise UserError(f"executor index: source {text} has manifest media type {media_type!r}; only OCI and "
                        "Docker schema 2 image manifests can be put in an index")
    try:
        manifest = json.loads(data)
        cfg_desc = manifest["config"]
        cfg_digest, cfg_size = cfg_desc["digest"], int(cfg_desc.get("size", 0))
    except (ValueError, KeyError, TypeError):
        raise UserError(f"executor index: source {text}: its manifest has no valid config descriptor") from None
    if cfg_size > MAX_CONFIG_BYTES:
        raise UserError(f"executor index: source {text}: config blob of {cfg_size} bytes is larger than "
                        f"{MAX_CONFIG_BYTES}; refusing it")
    buf = io.BytesIO()
    client.fetch_blob(ref, cfg_digest, buf)
    try:
        config = json.loads(buf.getvalue())
    except ValueError:
        raise UserError(f"executor index: source {text}: its config blob {cfg_digest} is not JSON") from None
    os_, arch = config.get("os"), config.get("architecture")
    if not isinstance(os_, str) or not os_ or not isinstance(arch, str) or not arch:
        raise UserError(f"executor index: source {text}: its config names no os/architecture, so its platform "
                        "is unknown; rebuild it with a platform (e.g. --custom-platform linux/amd64)")
    platform = platform_of(config)
    return SourceImage(ref=ref, manifest_bytes=data, media_type=media_type, digest=digest, manifest=manifest,
                       platform=platform)


def index_document(sources: list[SourceImage]) -> tuple[bytes, str]:
    """The index bytes and media type (:func:`executor.oci.index.index_bytes`: a Docker manifest
    list when every source is Docker schema 2, else an OCI image index). Raises UserError when
    two sources share a platform."""
    entries = [IndexEntry(media_type=s.media_type, digest=s.digest, size=len(s.manifest_bytes), platform=s.platform)
               for s in sources]
    try:
        return index_bytes(entries)
    except ValueError as e:
        by_digest = {s.digest: str(s.ref) for s in sources}
        text = str(e)
        for digest, ref in by_digest.items():
            text = text.replace(digest, ref)
        raise UserError(f"executor index: {text}") from None


def _copy_blob(client, src: Reference, dest: Reference, desc: dict) -> str:
    """Make blob ``desc`` of ``src``'s repository exist in ``dest``'s: ``exists``, ``mounted`` or ``copied``."""
    digest, size = desc["digest"], int(desc.get("size", 0))
    if client.blob_exists(dest, digest):
        return "exists"
    if src.registry == dest.registry and client.mount_blob(dest, digest, src.repository):
        return "mounted"
    with tempfile.TemporaryDirectory(prefix="executor-index-") as tmp:
        path = Path(tmp) / "blob"
        with open(path, "wb") as f:
            client.fetch_blob(src, digest, f)
        client.upload_blob(dest, path, digest, os.path.getsize(path) if size <= 0 else size)
    return "copied"


def _ensure_in_repository(client, source: SourceImage, dest: Reference) -> None:
    """Put ``source``'s manifest (by digest) and its blobs into ``dest``'s repository unless there."""
    if (source.ref.registry, source.ref.repository) == (dest.registry, dest.repository):
        return
    target = Reference(registry=dest.registry, repository=dest.repository, digest=source.digest)
    if client.head_manifest(target) is not None:
        log.info("%s already in %s", source.digest[:19], dest.name)
        return
    outcomes = [_copy_blob(client, source.ref, dest, d) for d in source.blobs()]
    client.put_manifest(target, source.manifest_bytes, source.media_type)
    log.info("copied %s (%s) into %s: %s", source.ref, source.platform_text, dest.name,
             ", ".join(f"{outcomes.count(k)} {k}" for k in ("copied", "mounted", "exists") if outcomes.count(k)))


def assemble_index(client, sources: list[str], destinations: list[str]) -> str:
    """Push an index of the single-platform images ``sources`` to every reference in ``destinations``.

    ``client`` is a :class:`~executor.registry.client.RegistryClient`. Returns the index digest
    (``sha256:...``). Sources are read first (all errors before any write), then each source
    manifest is made to exist in each destination repository (blobs mounted or copied), then
    the index is put to every destination. See the module docstring for formats and errors.
    """
    if not sources:
        raise UserError("executor index: no source image given; pass the single-platform images, e.g. "
                        "REG/APP@sha256:... (one per platform)")
    if not destinations:
        raise UserError("executor index: no --destination given; pass --destination REGISTRY/REPO:TAG")
    dests = [parse_reference(d) for d in destinations]
    images = [read_source(client, s) for s in sources]
    data, media_type = index_document(images)
    from .registry.manifests import sha256_digest
    digest = sha256_digest(data)
    repos: dict[tuple[str, str], Reference] = {}
    for d in dests:
        repos.setdefault((d.registry, d.repository), d)
    for dest in repos.values():
        for img in images:
            _ensure_in_repository(client, img, dest)
    for dest in dests:
        if dest.digest and not dest.tag and dest.digest != digest:
            raise UserError(f"executor index: --destination {dest} names digest {dest.digest}, but the index is "
                            f"{digest}")
        client.put_manifest(Reference(registry=dest.registry, repository=dest.repository, tag=dest.tag,
                                      digest=None if dest.tag else digest), data, media_type)
        log.info("pushed index %s@%s (%s)", dest, digest,
                 ", ".join(i.platform_text for i in images))
    return digest


# ------------------------------------------------------------------------------------ command
index_app = typer.Typer(add_completion=False, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


@index_app.command()
def index_command(
    sources: List[str] = typer.Argument(..., metavar="SRC_REF", help="Single-platform images already pushed (tag or digest), one per platform."),
    destination: List[str] = typer.Option([], "--destination", "-d", metavar="REF", help="Reference to push the index to (repeatable)."),
    digest_file: Optional[Path] = typer.Option(None, "--digest-file", metavar="FILE", help="Write the index digest (sha256:...) here."),
    image_name_with_digest_file: Optional[Path] = typer.Option(None, "--image-name-with-digest-file", metavar="FILE", help="Write repo@digest lines here."),
    image_name_tag_with_digest_file: Optional[Path] = typer.Option(None, "--image-name-tag-with-digest-file", metavar="FILE", help="Write repo:tag@digest lines here."),
    insecure: bool = typer.Option(False, "--insecure", help="Use plain HTTP for every registry."),
    insecure_registry: List[str] = typer.Option([], "--insecure-registry", metavar="HOST", help="Registry to use over plain HTTP (repeatable)."),
    skip_tls_verify: bool = typer.Option(False, "--skip-tls-verify", help="Do not verify TLS certificates."),
    skip_tls_verify_registry: List[str] = typer.Option([], "--skip-tls-verify-registry", metavar="HOST", help="Registry whose TLS certificate is not verified (repeatable)."),
    registry_certificate: List[str] = typer.Option([], "--registry-certificate", metavar="REGISTRY=FILE", help="REGISTRY=CA.crt (repeatable)."),
    registry_client_cert: List[str] = typer.Option([], "--registry-client-cert", metavar="REGISTRY=CERT,KEY", help="REGISTRY=CERT,KEY (repeatable)."),
    push_retry: int = typer.Option(0, "--push-retry", metavar="N", help="Extra attempts for each push request, beyond the 3 built-in retries."),
    image_download_retry: int = typer.Option(0, "--image-download-retry", metavar="N", help="Extra attempts for each pull request."),
    verbosity: str = typer.Option("info", "--verbosity", "-v", metavar="LEVEL", help="Log level."),
    log_format: str = typer.Option("color", "--log-format", metavar="FORMAT", help="color, text or json."),
    log_timestamp: bool = typer.Option(False, "--log-timestamp", help="Prefix log lines with the time."),
) -> None:
    """Push an image index (multi-platform image) made of already pushed single-platform images."""
    from .buildcmd import registry_options as _registry_options
    from .logs import setup_logging
    from .registry.auth import Keychain
    from .registry.client import RegistryClient

    try:
        setup_logging(verbosity, log_format, log_timestamp)
    except ValueError as e:
        raise UserError(str(e)) from None
    for flag, value in (("--push-retry", push_retry), ("--image-download-retry", image_download_retry)):
        if value < 0:
            raise UserError(f"{flag}={value}: must be 0 or more (extra attempts)")
    ropts = _registry_options(insecure, False, insecure_registry, skip_tls_verify, False, skip_tls_verify_registry,
                              registry_certificate, registry_client_cert, [], [], False, push_retry,
                              image_download_retry)
    with RegistryClient(ropts, Keychain.from_environment()) as client:
        digest = assemble_index(client, list(sources), list(destination))
    write_digest_files(digest, list(destination), digest_file, image_name_with_digest_file,
                        image_name_tag_with_digest_file)
    print(digest)


def run(argv: list[str]) -> None:
    """Run ``executor index ARGV`` as the CLI does (one-line errors, exit codes)."""
    from .cli import _run_app, normalise_argv
    _run_app(index_app, normalise_argv(argv), "executor index")


if __name__ == "__main__":  # python -m executor.index ... (until `executor index` is registered)
    run(sys.argv[1:])
