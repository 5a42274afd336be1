"""One build job: build (one platform or several), then write every requested output.

Outputs in order, nothing half-written: ``--tar-path`` / ``--oci-layout-path`` files, then the
push (blobs, manifests by digest, the tag last), then the digest files. When pushing, each
layer of the output image starts uploading to the first destination as soon as the build
writes it (:mod:`executor.registry.uploads`); the push then waits for those uploads.
"""

from __future__ import annotations

import logging
import os
import time

from . import attest
from .errors import UserError
from .interrupts import check_interrupted
from .options import BuildOptions

log = logging.getLogger("executor")


def apply_manifest_options(image, opts: BuildOptions) -> None:
    """``--image-format`` and ``--annotation`` on the built image, before any output is written
    (push, --tar-path, --oci-layout-path and the digest files all see the same manifest).
    Layer media types follow the manifest format (Image.manifest converts them)."""
    if opts.image_format is not None:
        image.oci = opts.image_format
    if opts.annotations:
        image.annotations = {**image.annotations, **opts.annotations}
    if opts.source_commit:
        log.info("built from %s at commit %s", opts.context_source, opts.source_commit)


#: Environment switch of the push while building (issue 12): "0" turns it off (tests compare
#: the images of both ways; not a user flag).
EARLY_PUSH_ENV = "EXECUTOR_PUSH_WHILE_BUILDING"


def start_uploads(opts: BuildOptions, client):
    """The build's upload pool (:class:`executor.registry.uploads.UploadPool`) to the first
    ``--destination``, or None: with ``--no-push`` (tar / layout outputs only), or with
    ``EXECUTOR_PUSH_WHILE_BUILDING=0``."""
    if opts.no_push or not opts.destinations or os.environ.get(EARLY_PUSH_ENV, "1") == "0":
        return None
    from .reference import parse_reference
    from .registry.uploads import UploadPool
    return UploadPool(client, parse_reference(opts.destinations[0]))


def _close_uploads(pool, ok: bool) -> None:
    if pool is not None:
        pool.close(abort=not ok)


def run_build(opts: BuildOptions, client) -> str:
    """Build, then write every requested output; returns the image digest."""
    from .engine.build import Build
    from .outputs import image_digest, local_blob_paths, push, tar_tags, write_digest_files

    if len(opts.platforms) > 1:
        return run_multi_platform_build(opts, client)
    t0 = time.monotonic()
    uploads = start_uploads(opts, client)
    builder = Build(opts, client, uploads=uploads)
    ok = False
    try:
        result = builder.build()
        log.info("built image in %.2fs", time.monotonic() - t0)
        apply_manifest_options(result.image, opts)
        if opts.tar_path or opts.oci_layout_path:
            paths = local_blob_paths(result)
            if opts.tar_path:
                from .oci.docker_archive import write_docker_archive
                opts.tar_path.parent.mkdir(parents=True, exist_ok=True)
                write_docker_archive(opts.tar_path, result.image, paths, tar_tags(opts.destinations))
                log.info("wrote %s", opts.tar_path)
            if opts.oci_layout_path:
                from .oci.layout import write_oci_layout
                tag = tar_tags(opts.destinations)[0].rpartition(":")[2]
                write_oci_layout(opts.oci_layout_path, result.image, paths, ref_name=tag)
                log.info("wrote OCI layout %s", opts.oci_layout_path)
        check_interrupted()  # a swallowed interruption must never lead to a push or a tag
        docs = attest.prepare(opts, [result], attest.image_descriptor(result)) if attest.wanted(opts) else []
        if opts.no_push:
            digest = image_digest(result)
            log.info("skipping push (--no-push); image digest %s", digest)
        else:
            pushed = push(client, result, opts.destinations, uploads, opts.push_ignore_immutable_tag_errors)
            digest = pushed.digest
            attest.attach_all(client, opts, docs, pushed.landed())
        write_digest_files(digest, opts.destinations,
                           opts.digest_file, opts.image_name_with_digest_file, opts.image_name_tag_with_digest_file)
        log.info("done in %.2fs: %s", time.monotonic() - t0, digest)
        ok = True
        return digest
    finally:
        _close_uploads(uploads, ok)  # before the cleanup removes the blobs it reads
        builder.cleanup()


def run_multi_platform_build(opts: BuildOptions, client) -> str:
    """Several ``--custom-platform`` values: one image each, pushed by digest, then one index at
    every destination; the digest files hold the index digest. Returns the index digest."""
    from .engine.build import Build
    from .outputs import write_digest_files
    from .publish import image_index, push_index

    if opts.tar_path or opts.oci_layout_path:
        flag = "--tar-path" if opts.tar_path else "--oci-layout-path"
        raise UserError(f"{flag} holds one image; with several platforms ({', '.join(opts.platforms)}) push to a "
                        f"registry, or build one --custom-platform at a time")
    t0 = time.monotonic()
    uploads = start_uploads(opts, client)
    builder = Build(opts, client, uploads=uploads)
    ok = False
    try:
        results = builder.build_all()
        log.info("built %d platform images in %.2fs", len(results), time.monotonic() - t0)
        for r in results:
            apply_manifest_options(r.image, opts)
        check_interrupted()  # a swallowed interruption must never lead to a push or a tag
        docs = []
        if attest.wanted(opts):
            index, media_type, _ = image_index(results)
            docs = attest.prepare(opts, results, {"mediaType": media_type, "digest": attest.sha256_digest(index),
                                                  "size": len(index)})
        if opts.no_push:
            from .oci.image import sha256_digest
            digest = sha256_digest(image_index(results)[0])
            log.info("skipping push (--no-push); index digest %s", digest)
        else:
            pushed = push_index(client, results, opts.destinations, uploads, opts.push_ignore_immutable_tag_errors)
            digest = pushed.digest
            attest.attach_all(client, opts, docs, pushed.landed())
        write_digest_files(digest, opts.destinations, opts.digest_file, opts.image_name_with_digest_file,
                           opts.image_name_tag_with_digest_file)
        log.info("done in %.2fs: %s", time.monotonic() - t0, digest)
        ok = True
        return digest
    finally:
        _close_uploads(uploads, ok)  # before the cleanup removes the blobs it reads
        builder.cleanup()
