"""Supply-chain documents of a build: the SBOM (``--sbom``, ``--sbom-format``, ``--sbom-path``)
and the SLSA provenance (``--provenance``, ``--provenance-path``).

Made after the build and before the push (the image digest is known then), so a failure costs
no half-published image; files written at once; written into the ``--oci-layout-path`` layout
after the image (:func:`executor.outputs.write_layout_referrer`); attached after the image is
pushed, as OCI 1.1 artifacts whose ``subject`` is the pushed manifest (:mod:`executor.referrers`),
in every destination repository. Single platform: both refer to the image. Several platforms: one SBOM
per platform image (subject: that image's manifest), the provenance refers to the index.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UserError
from .logs import counted
from .oci.image import manifest_bytes, sha256_digest  # noqa: F401 - sha256_digest used by job
from .reference import parse_reference

log = logging.getLogger("executor")


@dataclass
class Document:
    """One document: ``artifact_type`` (its media type), ``data`` (JSON bytes) and ``subject``
    (the descriptor of the manifest it describes)."""

    artifact_type: str
    data: bytes
    subject: dict
    annotations: dict[str, str] = field(default_factory=dict)


def wanted(opts) -> bool:
    return bool(opts.sbom or opts.sbom_path or opts.provenance or opts.provenance_path)


def image_descriptor(result) -> dict:
    """``mediaType``, ``digest``, ``size`` of the manifest ``result`` is pushed with."""
    data = manifest_bytes(result.image.manifest(result.image.config_bytes()))
    return {"mediaType": result.image.manifest_media_type(), "digest": sha256_digest(data), "size": len(data)}


def _created() -> dict[str, str]:
    return {"org.opencontainers.image.created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def _write(flag: str, path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as e:
        raise UserError(f"{flag} {path}: cannot write it: {e.strerror or e}") from None
    log.info("wrote %s", path)


def sbom_for(opts, result, descriptor: dict) -> bytes:
    """The SBOM of ``result``'s image (layers fetched when not local) in ``opts.sbom_format``."""
    from .sbom import ImageInfo, sbom_document, scan_layers
    t0 = time.monotonic()
    layers = [(layer.digest, result.source.fetch(layer)) for layer in result.image.layers]
    inv = scan_layers(layers)
    dest = parse_reference(opts.destinations[0]) if opts.destinations else None
    info = ImageInfo(name=dest.name if dest else "unnamed", digest=descriptor["digest"],
                     tag=dest.tag if dest else None, platform=result.platform or opts.platform)
    data = sbom_document(inv, info, opts.sbom_format)
    counts = ", ".join(f"{inv.count(e)} {e}" for e in ("deb", "apk", "pypi", "npm", "golang") if inv.count(e))
    log.info("sbom (%s): %d packages (%s) in %d layers, %.2fs", opts.sbom_format, len(inv.packages),
             counts or "none", len(layers), time.monotonic() - t0)
    return data


def provenance_for(opts, results: list, subject: dict) -> bytes:
    """The provenance Statement of the build of ``results`` whose pushed manifest is ``subject``."""
    from .provenance import context_digest, provenance_statement
    t0 = time.monotonic()
    tree, n = context_digest(opts.context, opts.dockerfile)
    bases: dict[str, str] = {}
    for r in results:
        bases.update(r.bases)
    checkout = None
    if not opts.source_commit and not opts.context_source:  # a local directory: is it a git checkout?
        from .provenance.gitcheckout import local_checkout
        checkout = local_checkout(Path(opts.context))
    names = [parse_reference(d).name for d in opts.destinations] or ["unnamed"]
    statement = provenance_statement(subjects=[(name, subject["digest"]) for name in dict.fromkeys(names)], opts=opts,
                                     record=results[0].record, bases=bases,
                                     platforms=[r.platform or opts.platform for r in results], context_digest=tree,
                                     checkout=checkout)
    log.info("provenance: %d base image(s), context %s (%d entries)%s, %d steps, %.2fs", len(bases), tree[:19], n,
             f", git commit {checkout.commit[:12]}" if checkout else "", len(results[0].record.steps),
             time.monotonic() - t0)
    return json.dumps(statement, indent=1).encode()


def prepare(opts, results: list, subject: dict) -> list[Document]:
    """Every requested document; ``subject`` is the image (one result) or index descriptor.
    The ``--sbom-path`` / ``--provenance-path`` files are written here."""
    if not wanted(opts):
        return []
    from .provenance import MEDIA_TYPE as PROV_TYPE
    from .sbom import MEDIA_TYPES
    docs: list[Document] = []
    if opts.sbom or opts.sbom_path:
        for r in results:
            desc = image_descriptor(r) if len(results) > 1 else subject
            data = sbom_for(opts, r, desc)
            docs.append(Document(MEDIA_TYPES[opts.sbom_format], data, desc, _created()))
            if opts.sbom_path:
                path = opts.sbom_path
                if len(results) > 1:
                    path = path.with_name(f"{path.stem}-{r.platform.replace('/', '-')}{path.suffix}")
                _write("--sbom-path", path, data)
    if opts.provenance or opts.provenance_path:
        data = provenance_for(opts, results, subject)
        docs.append(Document(PROV_TYPE, data, subject, _created()))
        if opts.provenance_path:
            _write("--provenance-path", opts.provenance_path, data)
    if opts.oci_layout_path:
        from .outputs import write_layout_referrer
        for d in _chosen(opts, docs):
            digest = write_layout_referrer(Path(opts.oci_layout_path), d.data, d.artifact_type, d.subject, d.annotations)
            log.info("wrote %s %s referring to %s into OCI layout %s", d.artifact_type, digest, d.subject["digest"],
                     opts.oci_layout_path)
    return docs


def _chosen(opts, docs: list[Document]) -> list[Document]:
    """The documents to attach: SBOMs with ``--sbom``, the provenance with ``--provenance``
    (``--sbom-path`` / ``--provenance-path`` alone only write files)."""
    from .sbom import MEDIA_TYPES
    return [d for d in docs if (opts.sbom if d.artifact_type in MEDIA_TYPES.values() else opts.provenance)]


def attach_all(client, opts, docs: list[Document], destinations: list[str] | None = None) -> None:
    """Attach the ``--sbom`` / ``--provenance`` documents in every destination repository (of
    ``destinations`` when given: those that hold the image; a repository whose only tags kept
    their immutable image gets no artifacts about an image it does not hold)."""
    if not docs:
        return  # nothing asked for: the SBOM and referrers modules are not even imported
    from .referrers import attach
    chosen = _chosen(opts, docs)
    if not chosen:
        return
    t0 = time.monotonic()
    repos = {}
    for d in opts.destinations if destinations is None else destinations:
        ref = parse_reference(d)
        repos.setdefault((ref.registry, ref.repository), ref)
    for repo in repos.values():
        for d in chosen:
            attach(client, repo, d.subject, d.data, d.artifact_type, d.annotations)
    log.info("attached %s to %s in %.2fs", counted(len(chosen), "document"),
             counted(len(repos), "repository", "repositories"), time.monotonic() - t0)


def check_paths(opts) -> None:
    """Before the build: ``--sbom-path`` / ``--provenance-path`` must not be directories; a lone
    ``--sbom`` / ``--provenance`` with ``--no-push`` and no ``--oci-layout-path`` has nowhere to
    go (warned)."""
    for flag, path in (("--sbom-path", opts.sbom_path), ("--provenance-path", opts.provenance_path)):
        if path is not None and Path(path).is_dir():
            raise UserError(f"{flag} {path}: is a directory; give a file path (e.g. {path}/{flag[2:-5]}.json)")
    if opts.no_push and not opts.oci_layout_path:
        for flag, on, path in (("--sbom", opts.sbom, opts.sbom_path), ("--provenance", opts.provenance,
                                                                       opts.provenance_path)):
            if on and path is None:
                log.warning("%s with --no-push: nothing is attached; add %s-path FILE or --oci-layout-path DIR to keep "
                            "the document", flag, flag)
