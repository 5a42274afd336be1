"""``executor push``: push an image built earlier with ``--no-push --tar-path`` or ``--oci-layout-path``.

::

    executor push (--tar-path FILE | --oci-layout-path DIR) --destination REF [--destination ...]
                  [--digest-file F] [--image-name-with-digest-file F] [--image-name-tag-with-digest-file F]

Sources read:

* an **OCI image layout** (OCI image-spec ``image-layout.md``): the image manifest named by
  ``index.json`` (the only entry, or the one whose ``org.opencontainers.image.ref.name`` is
  ``--ref-name``) is pushed **byte for byte**, so its digest is the one the build reported;
* a **docker-archive** tarball (Docker image spec v1.2 "Combined Image JSON + Filesystem
  Changeset Format", as :mod:`executor.oci.docker_archive` writes it, or ``docker save``):
  when it also holds an OCI layout (``index.json`` + ``blobs/``, Docker 25+ saves) that is
  used as above; else the manifest is rebuilt from ``manifest.json``: the config file as
  stored, each layer's media type from its actual compression (gzip, zstd, none). A classic
  archive does not record the manifest format, so ``--image-format`` picks it: ``oci``
  (the default, what the build writes for ``FROM scratch`` and OCI bases) or ``docker``
  (the build's format for a Docker schema 2 base).

Order, as for a build's push (:func:`executor.outputs.push_manifest`): every blob (HEAD,
upload) in every destination repository first, the manifest last; digest files only after
the push succeeded. Prints the digest on stdout.

Errors (one line, :class:`~executor.errors.UserError`): neither or both sources; a missing or
malformed source; a layout or archive holding several images without a choice; an index where
an image manifest is expected; no ``--destination``. Registry failures raise
:class:`~executor.errors.RegistryError` naming the registry.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import typer

from .errors import UserError
from .logs import counted
from .oci import mediatypes as mt
from .oci.docker_archive import blob_compression
from .oci.image import file_digest, manifest_bytes, sha256_digest
from .outputs import BlobToPush, check_output_paths, push_manifest, write_digest_files

log = logging.getLogger("executor.push")

REF_NAME = "org.opencontainers.image.ref.name"
_MANIFEST_TYPES = (mt.OCI_MANIFEST, mt.DOCKER_MANIFEST)
_LAYER_TYPES = {  # (oci?, compression) -> layer media type
    (True, "gzip"): "application/vnd.oci.image.layer.v1.tar+gzip",
    (True, "zstd"): "application/vnd.oci.image.layer.v1.tar+zstd",
    (True, "none"): "application/vnd.oci.image.layer.v1.tar",
    (False, "gzip"): "application/vnd.docker.image.rootfs.diff.tar.gzip",
    (False, "none"): "application/vnd.docker.image.rootfs.diff.tar",
}


@dataclass(frozen=True)
class LocalImage:
    """An image on disk, ready to push: ``manifest`` exactly as it will be sent, its
    ``media_type``, the ``config`` blob and the ``layers`` (each with its local file)."""

    manifest: bytes
    media_type: str
    config: BlobToPush
    layers: list[BlobToPush]
    attachments: tuple["Attachment", ...] = ()

    @property
    def digest(self) -> str:
        return sha256_digest(self.manifest)


def _file_blob(path: Path, digest: str, size: int, what: str) -> BlobToPush:
    if not path.is_file():
        raise UserError(f"{what}: blob {digest} is missing ({path})")
    actual = path.stat().st_size
    if actual != size:
        raise UserError(f"{what}: blob {digest} is {actual} bytes, its descriptor says {size}")
    return BlobToPush(digest, size, lambda: path)


@dataclass(frozen=True)
class Attachment:
    """An artifact of a layout whose ``subject`` is the image pushed (an SBOM or provenance that
    ``--oci-layout-path`` wrote with ``--sbom``/``--provenance``): its ``artifact_type``, the
    ``document`` (the artifact's one layer) and its manifest's ``annotations``."""

    artifact_type: str
    document: bytes
    annotations: dict


def _attachments(root: Path, entries: list[dict], subject: str, what: str) -> tuple[Attachment, ...]:
    """The artifacts among ``entries`` (descriptors with ``artifactType``) whose manifest names
    ``subject``; a blob that does not hash to its digest is a damaged layout (UserError)."""
    found = []
    for desc in entries:
        try:
            data = _blob_path(root, str(desc.get("digest", "")), what).read_bytes()
            manifest = json.loads(data)
            if (manifest.get("subject") or {}).get("digest") != subject:
                continue
            layer = manifest["layers"][0]
            document = _blob_path(root, str(layer["digest"]), what).read_bytes()
        except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError) as e:
            raise UserError(f"{what}: artifact {desc.get('digest')} is unreadable ({e})") from None
        if sha256_digest(data) != desc.get("digest") or sha256_digest(document) != layer["digest"]:
            raise UserError(f"{what}: artifact {desc.get('digest')} does not match its digest; the layout is damaged")
        found.append(Attachment(str(desc["artifactType"]), document, dict(manifest.get("annotations") or {})))
    return tuple(found)


def read_oci_layout(root: Path, ref_name: str | None = None, what: str | None = None) -> LocalImage:
    """The image manifest of the OCI layout ``root`` (the only one, or the one named ``ref_name``).

    Artifacts listed with an ``artifactType`` (SBOM, provenance) are not images: those whose
    ``subject`` is the chosen image come along as ``attachments``. Raises UserError when ``root``
    is no layout, holds no or several images without a ``ref_name`` choice, names an index, or
    misses a blob."""
    what = what or f"--oci-layout-path {root}"
    try:
        index = json.loads((root / "index.json").read_text())
        listed = [m for m in index["manifests"] if isinstance(m, dict)]
        entries = [m for m in listed if not m.get("artifactType")]
        artifacts = [m for m in listed if m.get("artifactType")]
    except FileNotFoundError:
        raise UserError(f"{what}: no index.json; not an OCI image layout") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{what}: index.json is not an OCI image index ({e})") from None
    names = [(m.get("annotations") or {}).get(REF_NAME) for m in entries]
    if ref_name is not None:
        entries = [m for m, n in zip(entries, names) if n == ref_name]
        if not entries:
            raise UserError(f"{what}: no image named {ref_name!r} (names: {', '.join(map(str, names)) or 'none'})")
    if not entries:
        raise UserError(f"{what}: index.json lists no image")
    if len(entries) > 1:
        raise UserError(f"{what}: holds {len(entries)} images ({', '.join(map(str, names))}); choose one with "
                        "--ref-name NAME")
    desc = entries[-1]
    media_type = desc.get("mediaType", "")
    if media_type not in _MANIFEST_TYPES:
        raise UserError(f"{what}: {desc.get('digest')} is a {media_type or 'descriptor without mediaType'}, not an "
                        "image manifest; executor push pushes one single-platform image")
    digest = str(desc.get("digest", ""))
    path = _blob_path(root, digest, what)
    try:
        data = path.read_bytes()
        manifest = json.loads(data)
        blobs = [manifest["config"], *manifest.get("layers", [])]
        descs = [(str(b["digest"]), int(b["size"])) for b in blobs]
    except OSError as e:
        raise UserError(f"{what}: manifest {digest}: {e.strerror or e}") from None
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{what}: manifest {digest} is not an image manifest") from None
    if sha256_digest(data) != digest:
        raise UserError(f"{what}: manifest blob {digest} hashes to {sha256_digest(data)}; the layout is damaged")
    files = [_file_blob(_blob_path(root, d, what), d, s, what) for d, s in descs]
    return LocalImage(manifest=data, media_type=media_type, config=files[0], layers=files[1:],
                      attachments=_attachments(root, artifacts, digest, what))


def _blob_path(root: Path, digest: str, what: str) -> Path:
    alg, _, hexd = digest.partition(":")
    if alg != "sha256" or len(hexd) != 64 or not all(c in "0123456789abcdef" for c in hexd):
        raise UserError(f"{what}: {digest!r} is not a sha256 digest")
    return root / "blobs" / alg / hexd


def read_docker_archive(path: Path, work: Path, oci: bool = True, ref_name: str | None = None) -> LocalImage:
    """The image of the docker-archive ``path``, unpacked under ``work`` (see the module docstring).

    ``oci`` picks the rebuilt manifest's format for a classic archive. Raises UserError for an
    unreadable tarball, one without ``manifest.json`` (or an OCI layout), several images, or a
    zstd layer with ``oci=False`` (Docker schema 2 has no zstd layer type)."""
    what = f"--tar-path {path}"
    try:
        with tarfile.open(path) as tar:
            tar.extractall(work, filter="data")
    except FileNotFoundError:
        raise UserError(f"{what}: no such file") from None
    except (OSError, tarfile.TarError) as e:
        raise UserError(f"{what}: not a readable tar archive ({e})") from None
    if (work / "index.json").is_file() and (work / "blobs").is_dir():
        return read_oci_layout(work, ref_name, what)
    try:
        entries = json.loads((work / "manifest.json").read_text())
        if not isinstance(entries, list) or not entries:
            raise ValueError("no image listed")
    except FileNotFoundError:
        raise UserError(f"{what}: no manifest.json; not a docker-archive (written by --tar-path or docker save)") \
            from None
    except ValueError as e:
        raise UserError(f"{what}: manifest.json is malformed ({e})") from None
    if len(entries) > 1:
        raise UserError(f"{what}: holds {len(entries)} images; executor push pushes one")
    entry = entries[0]
    try:
        cfg_path = _member(work, entry["Config"], what)
        layer_paths = [_member(work, name, what) for name in entry["Layers"]]
    except (KeyError, TypeError):
        raise UserError(f"{what}: manifest.json entry has no Config/Layers") from None
    cfg = cfg_path.read_bytes()
    layers, descs = [], []
    for lp in layer_paths:
        comp = blob_compression("", lp)
        media_type = _LAYER_TYPES.get((oci, comp))
        if media_type is None:
            raise UserError(f"{what}: layer {lp.name} is {comp}-compressed; Docker schema 2 has no such layer type "
                            "(use --image-format=oci)")
        digest, size = file_digest(lp), lp.stat().st_size
        descs.append({"mediaType": media_type, "digest": digest, "size": size})
        layers.append(BlobToPush(digest, size, lambda lp=lp: lp))
    man_type = mt.OCI_MANIFEST if oci else mt.DOCKER_MANIFEST
    cfg_type = mt.config_type_for(man_type)
    manifest = {"schemaVersion": 2, "mediaType": man_type,
                "config": {"mediaType": cfg_type, "digest": sha256_digest(cfg), "size": len(cfg)},
                "layers": descs}
    return LocalImage(manifest=manifest_bytes(manifest), media_type=man_type,
                      config=BlobToPush(sha256_digest(cfg), len(cfg), lambda: cfg), layers=layers)


def _member(work: Path, name: str, what: str) -> Path:
    p = (work / name).resolve()
    if not p.is_relative_to(work.resolve()) or not p.is_file():
        raise UserError(f"{what}: manifest.json names {name!r}, which the archive does not hold")
    return p


# ------------------------------------------------------------------------------------ command
push_app = typer.Typer(add_completion=False, rich_markup_mode=None,
                       context_settings={"help_option_names": ["-h", "--help"]})


@push_app.command()
def push_command(
    tar_path: Optional[Path] = typer.Option(None, "--tar-path", metavar="FILE", help="docker-archive tarball written by --tar-path."),
    oci_layout_path: Optional[Path] = typer.Option(None, "--oci-layout-path", metavar="DIR", help="OCI layout written by --oci-layout-path."),
    ref_name: Optional[str] = typer.Option(None, "--ref-name", metavar="TAG", help="Image of the layout/archive to push, by its ref name (tag)."),
    image_format: str = typer.Option("oci", "--image-format", metavar="FORMAT", help="oci|docker: manifest format for a classic docker-archive."),
    destination: List[str] = typer.Option([], "--destination", "-d", metavar="REF", help="Reference to push to (repeatable)."),
    digest_file: Optional[Path] = typer.Option(None, "--digest-file", metavar="FILE", help="Write the digest (sha256:...) here."),
    image_name_with_digest_file: Optional[Path] = typer.Option(None, "--image-name-with-digest-file", metavar="FILE", help="Write repo@digest lines here."),
    image_name_tag_with_digest_file: Optional[Path] = typer.Option(None, "--image-name-tag-with-digest-file", metavar="FILE", help="Write repo:tag@digest lines here."),
    insecure: bool = typer.Option(False, "--insecure", help="Use plain HTTP for every registry."),
    insecure_registry: List[str] = typer.Option([], "--insecure-registry", metavar="HOST", help="Registry to use over plain HTTP (repeatable)."),
    skip_tls_verify: bool = typer.Option(False, "--skip-tls-verify", help="Do not verify TLS certificates."),
    skip_tls_verify_registry: List[str] = typer.Option([], "--skip-tls-verify-registry", metavar="HOST", help="Registry whose TLS certificate is not verified (repeatable)."),
    registry_certificate: List[str] = typer.Option([], "--registry-certificate", metavar="REGISTRY=FILE", help="REGISTRY=CA.crt (repeatable)."),
    registry_client_cert: List[str] = typer.Option([], "--registry-client-cert", metavar="REGISTRY=CERT,KEY", help="REGISTRY=CERT,KEY (repeatable)."),
    push_retry: int = typer.Option(0, "--push-retry", metavar="N", help="Extra attempts for each push request, beyond the 3 built-in retries."),
    push_ignore_immutable_tag_errors: bool = typer.Option(
        False, "--push-ignore-immutable-tag-errors",
        help="A refused move of an existing immutable tag is a warning; other destinations are pushed."),
    verbosity: str = typer.Option("info", "--verbosity", "-v", metavar="LEVEL", help="Log level."),
    log_format: str = typer.Option("color", "--log-format", metavar="FORMAT", help="color, text or json."),
    log_timestamp: bool = typer.Option(False, "--log-timestamp", help="Prefix log lines with the time."),
    progress: str = typer.Option("auto", "--progress", metavar="MODE", help="auto|tty|plain: live view on a terminal, or log lines."),
) -> None:
    """Push an image written earlier by --tar-path or --oci-layout-path to every --destination."""
    from types import SimpleNamespace

    from .buildcmd import registry_options as _registry_options
    from .logs import setup_logging
    from .registry.auth import Keychain
    from .registry.client import RegistryClient

    try:
        setup_logging(verbosity, log_format, log_timestamp, progress)
    except ValueError as e:
        raise UserError(str(e)) from None
    if (tar_path is None) == (oci_layout_path is None):
        raise UserError("executor push: give exactly one of --tar-path FILE or --oci-layout-path DIR")
    if not destination:
        raise UserError("executor push: no --destination given; pass --destination REGISTRY/REPO:TAG")
    fmt = image_format.strip().lower()
    if fmt not in ("oci", "docker"):
        raise UserError(f"--image-format={image_format}: use oci or docker")
    if push_retry < 0:
        raise UserError(f"--push-retry={push_retry}: must be 0 or more (extra attempts)")
    check_output_paths(SimpleNamespace(digest_file=digest_file, image_name_with_digest_file=image_name_with_digest_file,
                                       image_name_tag_with_digest_file=image_name_tag_with_digest_file, tar_path=None,
                                       oci_layout_path=None))
    ropts = _registry_options(insecure, False, insecure_registry, skip_tls_verify, False, skip_tls_verify_registry,
                              registry_certificate, registry_client_cert, [], [], False, push_retry, 0)
    work = Path(tempfile.mkdtemp(prefix="executor-push-"))
    try:
        if tar_path is not None:
            image = read_docker_archive(tar_path, work, oci=fmt == "oci", ref_name=ref_name)
        else:
            image = read_oci_layout(oci_layout_path, ref_name)
        log.info("pushing %s (%d layers, %d bytes) from %s", image.digest, len(image.layers),
                 sum(b.size for b in image.layers), tar_path or oci_layout_path)
        with RegistryClient(ropts, Keychain.from_environment()) as client:
            from .progress import watch_client
            watch_client(client)
            pushed = push_manifest(client, image.manifest, image.media_type, image.layers, image.config,
                                   list(destination), ignore_immutable=push_ignore_immutable_tag_errors)
            _attach(client, image, pushed.digest, pushed.landed())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_digest_files(pushed.digest, list(destination), digest_file, image_name_with_digest_file,
                       image_name_tag_with_digest_file)
    log.info("done: %s", pushed.digest)
    print(pushed.digest)


def _attach(client, image: LocalImage, digest: str, destinations: list[str]) -> None:
    """Attach the layout's SBOM/provenance artifacts to the pushed image in every destination
    repository (referrers API or referrers tag, as a build does; image first, artifacts after)."""
    if not image.attachments:
        return
    from .reference import parse_reference
    from .referrers import attach
    subject = {"mediaType": image.media_type, "digest": digest, "size": len(image.manifest)}
    repos = {}
    for d in destinations:
        ref = parse_reference(d)
        repos.setdefault((ref.registry, ref.repository), ref)
    for repo in repos.values():
        for a in image.attachments:
            attach(client, repo, subject, a.document, a.artifact_type, a.annotations or None)
    log.info("attached %s of the layout to %s", counted(len(image.attachments), "artifact"),
             counted(len(repos), "repository", "repositories"))


def run(argv: list[str]) -> None:
    """Run ``executor push ARGV`` as the CLI does (one-line errors, exit codes)."""
    from .cli import _run_app, normalise_argv
    _run_app(push_app, normalise_argv(argv), "executor push")


if __name__ == "__main__":
    run(sys.argv[1:])
