"""Outputs of a build: push to registries, docker tarball, OCI layout, digest files.

Order matters for "nothing half-written": every blob is uploaded (or confirmed present)
before any manifest is put, and digest files are written only after the push succeeded.
Sources: OCI distribution-spec (push), Kaniko's digest-file formats.
"""

from __future__ import annotations

import logging
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from pathlib import Path

from .errors import ImmutableTagError, RegistryError, UserError
from .oci.image import manifest_bytes, sha256_digest
from .reference import Reference, parse_reference
from .registry.client import RegistryClient
from .registry.uploads import BlobToPush, UploadPool, push_blob

if TYPE_CHECKING:  # the engine is not loaded by commands that only write outputs (executor index)
    from .engine.build import BuildResult

log = logging.getLogger("executor.push")

UNSET_DESTINATION = "docker.io/unset-repo/unset-image-name:latest"


IGNORE_IMMUTABLE_FLAG = "--push-ignore-immutable-tag-errors"


@dataclass(frozen=True)
class PushedImage:
    """What was pushed: ``digest`` of the manifest and every destination reference; ``kept``:
    the destinations whose existing immutable tag the registry refused to move (skipped with
    ``--push-ignore-immutable-tag-errors``; the image is not tagged there)."""

    digest: str
    references: list[Reference]
    kept: tuple[Reference, ...] = ()

    def landed(self) -> list[str]:
        """The destinations in a repository that now holds the manifest (through one of its tags,
        or already did): where attestations may refer to it."""
        repos = {(r.registry, r.repository) for r in self.references if r not in self.kept}
        return [str(r) for r in self.references if (r.registry, r.repository) in repos]


def put_tag(client: RegistryClient, ref: Reference, manifest: bytes, media_type: str, digest: str,
            ignore_immutable: bool) -> bool:
    """PUT ``manifest`` at the tag of ``ref``; True when it was put. A refusal to move an existing
    immutable tag (:class:`~executor.errors.ImmutableTagError`) is, with ``ignore_immutable``,
    one warning naming the destination and what its tag keeps (False is returned, as Kaniko's
    ``--push-ignore-immutable-tag-errors`` carries on); without it, an error naming that flag."""
    try:
        client.put_manifest(ref, manifest, media_type)
        return True
    except ImmutableTagError as e:
        if not ignore_immutable:
            raise ImmutableTagError(f"--destination {ref}: {e} (or pass {IGNORE_IMMUTABLE_FLAG} to warn and carry "
                                    "on)", status=e.status, reference=e.reference, detail=e.detail) from None
        try:
            found = client.head_manifest(ref)
        except RegistryError:
            found = None
        keeps = f"still names {found[0]}" if found else "was left as it was"
        log.warning("--destination %s: the registry refused to move this immutable tag (%s); the tag %s, the built "
                    "image %s is not tagged there (%s)", ref, e.detail, keeps, digest, IGNORE_IMMUTABLE_FLAG)
        return False


def local_blob_paths(result: BuildResult) -> list[Path]:
    """Local blob files of every layer, downloading base layers we never needed to extract."""
    return [result.source.fetch(layer) for layer in result.image.layers]


def _layer_blob(result: BuildResult, layer) -> BlobToPush:
    return BlobToPush(layer.digest, layer.size, lambda: result.source.fetch(layer), layer.source)


def push_manifest(client: RegistryClient, manifest: bytes, media_type: str, layers: list[BlobToPush],
                  config: BlobToPush, destinations: list[str], early: UploadPool | None = None,
                  ignore_immutable: bool = False) -> PushedImage:
    """Push ``manifest`` (sent byte for byte) with its blobs to every destination.

    Blobs first, per repository (HEAD, then cross-repository mount, then upload; the config
    last of them), manifests last. In the repository of ``early`` (the build's upload pool:
    :mod:`executor.registry.uploads`) each layer is taken from the pool: its upload started
    while the build ran is awaited, a layer never started is pushed here. A repository after
    the first one of the same registry mounts the layers from that first one instead of
    uploading them again. Raises RegistryError (naming the registry) on failure; no manifest
    is put then. A tag the registry keeps immutable: see :func:`put_tag` (``ignore_immutable``:
    ``--push-ignore-immutable-tag-errors``)."""
    digest = sha256_digest(manifest)
    refs = [parse_reference(d) for d in destinations]
    current = [ref for ref in refs if _already_there(client, ref, digest)]
    seen_repos: set[tuple[str, str]] = {(r.registry, r.repository) for r in current}  # its blobs are there
    done: list[Reference] = []  # repositories that now hold every layer
    with ThreadPoolExecutor(max_workers=4) as pool:
        for ref in refs:
            key = (ref.registry, ref.repository)
            if key in seen_repos:
                continue
            seen_repos.add(key)
            if early is not None and early.serves(ref):
                outcomes = list(pool.map(early.take, layers))
            else:
                blobs = _mountable_from(layers, ref, done)
                outcomes = list(pool.map(lambda blob, r=ref: push_blob(client, r, blob), blobs))
            client.upload_blob(ref, config.fetch(), config.digest, config.size)
            done.append(ref)
            log.info("pushed blobs to %s/%s: %s", ref.registry, ref.repository,
                     ", ".join(f"{outcomes.count(k)} {k}" for k in ("uploaded", "mounted", "exists") if outcomes.count(k)))
    kept = []
    for ref in refs:
        if ref in current:
            log.info("%s is already %s: nothing to push", ref, digest)
            continue
        if put_tag(client, ref, manifest, media_type, digest, ignore_immutable):
            log.info("pushed %s@%s", ref, digest)
        else:
            kept.append(ref)
    return PushedImage(digest=digest, references=refs, kept=tuple(kept))


def _mountable_from(layers: list[BlobToPush], ref: Reference, done: list[Reference]) -> list[BlobToPush]:
    """``layers`` for ``ref``, each without a source in ``ref``'s registry given the first
    repository of that registry already pushed (in ``done``) as its source, to mount from."""
    first = next((d for d in done if d.registry == ref.registry), None)
    if first is None:
        return layers
    out = []
    for blob in layers:
        src = parse_reference(blob.source) if blob.source else None
        if src is None or src.registry != ref.registry:
            blob = replace(blob, source=f"{first.registry}/{first.repository}")
        out.append(blob)
    return out


def _already_there(client: RegistryClient, ref: Reference, digest: str) -> bool:
    """True when ``ref`` (a tag) already names exactly the manifest ``digest``: one HEAD instead
    of a HEAD per blob and a PUT (a registry keeps every blob a stored manifest references). Any
    doubt -- no tag, an error, another digest -- means False, and the image is pushed as usual."""
    if not ref.tag or ref.digest:
        return False
    try:
        found = client.head_manifest(ref)
    except RegistryError:
        return False
    return found is not None and found[0] == digest


def image_parts(result: BuildResult) -> tuple[bytes, list[BlobToPush], BlobToPush]:
    """(manifest bytes, layer blobs, config blob) of a built image, as push_manifest takes them."""
    image = result.image
    cfg = image.config_bytes()
    layers = [_layer_blob(result, layer) for layer in image.layers]
    return manifest_bytes(image.manifest(cfg)), layers, BlobToPush(sha256_digest(cfg), len(cfg), lambda: cfg)


def push(client: RegistryClient, result: BuildResult, destinations: list[str],
         early: UploadPool | None = None, ignore_immutable: bool = False) -> PushedImage:
    """Push the built image to every destination; returns the manifest digest (see push_manifest;
    ``early``: the build's upload pool)."""
    manifest, layers, config = image_parts(result)
    return push_manifest(client, manifest, result.image.manifest_media_type(), layers, config, destinations, early,
                         ignore_immutable)


def image_digest(result: BuildResult) -> str:
    """Digest of the manifest the image would be pushed with."""
    return sha256_digest(manifest_bytes(result.image.manifest(result.image.config_bytes())))


def write_layout_referrer(root: Path, document: bytes, artifact_type: str, subject: dict,
                          annotations: dict[str, str] | None = None) -> str:
    """Put ``document`` into the OCI layout at ``root`` as an artifact referring to ``subject``
    (an image already in that layout); returns the artifact manifest digest.

    The same artifact manifest as a registry gets (:func:`executor.referrers.artifact_manifest`:
    empty config, one layer, ``subject``); its blobs first, then its descriptor (``mediaType``,
    ``digest``, ``size``, ``artifactType``, the annotations; no ``ref.name``) in ``index.json``,
    replacing an entry of the same digest. Image-layout.md makes ``index.json`` the entry point
    for every manifest of a layout; referrer-aware readers (ORAS's OCI store, regclient's
    ocidir) find the artifacts there by their ``subject``.
    """
    from .oci.layout import add_index_entry, put_blob
    from .referrers import EMPTY_DESCRIPTOR, EMPTY_JSON, artifact_manifest
    manifest = artifact_manifest(document, artifact_type, subject, annotations)
    digest = sha256_digest(manifest)
    put_blob(root, EMPTY_DESCRIPTOR["digest"], data=EMPTY_JSON)
    put_blob(root, sha256_digest(document), data=document)
    put_blob(root, digest, data=manifest)
    desc: dict = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest, "size": len(manifest),
                  "artifactType": artifact_type}
    if annotations:
        desc["annotations"] = dict(annotations)
    add_index_entry(root, desc, replaces=lambda m: m.get("digest") == digest)
    return digest


def _write_output(flag: str, path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot write it: {e.strerror or e}") from None


def write_digest_files(digest: str, destinations: list[str], digest_file: Path | None,
                       name_file: Path | None, name_tag_file: Path | None) -> None:
    """Kaniko's formats: the bare digest; ``repo@digest`` lines; ``repo:tag@digest`` lines."""
    if digest_file:
        _write_output("--digest-file", digest_file, digest)
    refs = [parse_reference(d) for d in destinations]
    if name_file:
        _write_output("--image-name-with-digest-file", name_file, "".join(f"{r.name}@{digest}\n" for r in refs))
    if name_tag_file:
        _write_output("--image-name-tag-with-digest-file", name_tag_file,
                      "".join(f"{r.name}:{r.tag or 'latest'}@{digest}\n" for r in refs))


# -- checks before the build -----------------------------------------------------------------

def _creatable(flag: str, path: Path) -> None:
    """``path`` (absent) could be created: its nearest existing ancestor is a writable directory."""
    anc = path.parent
    while not os.path.lexists(anc) and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise UserError(f"{flag} {path}: cannot be created: {anc} is not a directory")
    if not os.access(anc, os.W_OK | os.X_OK) or _read_only(anc):
        raise UserError(f"{flag} {path}: cannot be created: {anc} is not writable")


def _read_only(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_output_paths(opts) -> None:
    """Fail before building when an output could not be written after the push (Kaniko writes
    them last, so a typo would otherwise cost a whole build and leave a pushed tag behind).

    File outputs must not be directories and must be creatable; ``--oci-layout-path`` must be
    a directory or creatable. Raises UserError naming the flag.
    """
    files = [("--digest-file", opts.digest_file), ("--image-name-with-digest-file", opts.image_name_with_digest_file),
             ("--image-name-tag-with-digest-file", opts.image_name_tag_with_digest_file),
             ("--tar-path", opts.tar_path)]
    for flag, path in files:
        if path is None:
            continue
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:/", str(path)):
            shown = re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)", r"\1://", str(path))  # Path() folded the //
            raise UserError(f"{flag} {shown}: a URL; outputs are written to local files only (Kaniko's upload to a "
                            "pre-signed URL is not supported): write a file and upload it in a later step")
        path = Path(path)
        if str(path) in ("", "."):
            raise UserError(f"{flag}: empty path")
        if path.is_dir():
            raise UserError(f"{flag} {path}: is a directory; give a file path (e.g. {path}/{_example(flag)})")
        if os.path.lexists(path):
            if not os.access(path, os.W_OK) or _read_only(path.parent):
                raise UserError(f"{flag} {path}: exists and is not writable")
        else:
            _creatable(flag, path)
    layout = opts.oci_layout_path
    if layout is not None:
        layout = Path(layout)
        if os.path.lexists(layout):
            if not layout.is_dir():
                raise UserError(f"--oci-layout-path {layout}: exists and is not a directory")
            if not os.access(layout, os.W_OK | os.X_OK) or _read_only(layout):
                raise UserError(f"--oci-layout-path {layout}: is not writable")
        else:
            _creatable("--oci-layout-path", layout)


def _example(flag: str) -> str:
    return {"--tar-path": "image.tar"}.get(flag, "digest")


def check_destinations(client: RegistryClient, destinations: list[str]) -> None:
    """Kaniko's push-permission preflight, cheaply: ``GET /v2/`` of every destination registry
    (with credentials exercised when it asks for them), so an unreachable or refusing registry
    fails in seconds instead of after the build. Raises RegistryError naming the registry."""
    seen: set[str] = set()
    for dest in destinations:
        registry = parse_reference(dest).registry
        if registry in seen:
            continue
        seen.add(registry)
        log.debug("checking destination registry %s before the build", registry)
        try:
            client.ping(registry)
        except RegistryError as e:
            msg = str(e)
            hint = getattr(client, "_credentials_hint", None)
            if "refused our credentials" in msg and hint is not None:
                # the same words as a 401 during the push would use
                msg = f"registry {registry} answered 401 unauthorized on GET /v2/: {hint(registry)}"
            # skipping the check helps only where the check itself is refused (some registries
            # answer GET /v2/ with 401/403 yet take the push); not for an unreachable registry
            skip = "; --skip-push-permission-check skips this check" if e.status in (401, 403) else ""
            raise RegistryError(f"--destination {dest}: {msg} (checked before building{skip})",
                                status=e.status) from None


def tar_tags(destinations: list[str]) -> list[str]:
    """Tags for ``--tar-path``: every destination, or Kaniko's placeholder when there are none."""
    out = []
    for d in destinations or [UNSET_DESTINATION]:
        r = parse_reference(d)
        out.append(f"{r.name}:{r.tag or 'latest'}")
    return out
