"""``executor warm``: store base images in a local directory (``--cache-dir``) for later builds.

The directory is an OCI image layout (OCI image-spec image-layout.md: ``oci-layout``,
``index.json``, ``blobs/sha256/<hex>``), so skopeo and umoci can read it too. Each
``index.json`` entry is one platform image manifest annotated with:

* ``dev.executor.ref``: the reference as asked (``registry/repo:tag`` or ``@digest``);
* ``dev.executor.platform``: ``os/arch[/variant]``;
* ``dev.executor.index-digest``: the image index / manifest list digest, when there was one;
* ``dev.executor.cached-at``: POSIX seconds when it was stored (``--cache-ttl`` for tags);
* ``org.opencontainers.image.ref.name``: the reference, for other OCI tools.

Blobs are verified by the registry client while they stream in, written to a temp file and
renamed, and ``index.json`` is replaced last, so a reader never sees an entry whose blobs are
missing. The executor reads the layout through ``executor.cache.base_images.LocalImageCache``:
tags are resolved locally (no registry request) while younger than ``--cache-ttl``.

Kaniko's warmer flags are accepted (``--image/-i``, ``--cache-dir/-c``, ``--force/-f``,
``--cache-ttl``, ``--dockerfile/-d``, ``--build-arg``, ``--customPlatform``, registry flags).
Each image is tried; failures are warned about, and the command fails only when every image
failed (as Kaniko's warmer does).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import List, Optional

import typer

from .cache.base_images import LocalImageCache
from .cache.entry import (
    ANN_CACHED_AT,
    ANN_INDEX_DIGEST,
    ANN_PLATFORM,
    ANN_REF,
)
from .errors import UserError
from .oci.layout import add_index_entry, blob_path, put_blob, tmp_name
from .reference import Reference, parse_reference

log = logging.getLogger("executor.warm")

warm_app = typer.Typer(add_completion=False, rich_markup_mode=None, context_settings={"help_option_names": ["-h", "--help"]})


def _store_blob(client, ref: Reference, root: Path, digest: str) -> bool:
    """Download blob ``digest`` of ``ref`` into the layout unless present; True when downloaded."""
    dest = blob_path(root, digest)
    if dest.is_file():
        return False
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(dest)
    try:
        with open(tmp, "wb") as f:
            client.fetch_blob(ref, digest, f)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


def warm_image(client, root: Path, ref_text: str, platform: str, force: bool, ttl_seconds: int) -> str:
    """Store ``ref_text`` for ``platform`` in the layout at ``root``; returns a one-line summary.

    Raises RegistryError/UserError (naming the image) when it cannot be fetched.
    """
    ref = parse_reference(ref_text)
    existing = LocalImageCache(root, ttl_seconds).lookup(ref, platform) if not force else None
    if existing is not None:
        return f"{ref} already cached ({existing.digest[:19]}); pass --force to refresh it"
    resolved = client.resolve_image(ref, platform)
    src = resolved.reference
    fetched = 0
    for desc in resolved.manifest.get("layers") or []:
        fetched += _store_blob(client, src, root, desc["digest"])
    put_blob(root, resolved.manifest["config"]["digest"], data=resolved.config_bytes)
    put_blob(root, resolved.digest, data=resolved.manifest_bytes)
    ann = {ANN_REF: str(ref), ANN_PLATFORM: platform, ANN_CACHED_AT: str(int(time.time())),
           "org.opencontainers.image.ref.name": str(ref)}
    if ref.digest and ref.digest != resolved.digest:  # the digest named an index / manifest list
        ann[ANN_INDEX_DIGEST] = ref.digest
    entry = {"mediaType": resolved.media_type, "digest": resolved.digest, "size": len(resolved.manifest_bytes),
             "annotations": ann}
    _add_entry(root, entry)
    return f"cached {ref} ({platform}, {resolved.digest[:19]}, {fetched} layers downloaded) in {root}"


def _add_entry(root: Path, entry: dict) -> None:
    """Put ``entry`` in index.json (locked, atomic), replacing an older one for the same reference and platform."""
    ann = entry["annotations"]

    def same_image(m: dict) -> bool:
        a = m.get("annotations") or {}
        return (a.get(ANN_REF), a.get(ANN_PLATFORM)) == (ann[ANN_REF], ann[ANN_PLATFORM])

    add_index_entry(root, entry, replaces=same_image)


def dockerfile_bases(path: Path, build_args: dict[str, str]) -> list[str]:
    """Base image references of every stage of the Dockerfile at ``path`` (stage names and scratch skipped).

    ``FROM ${ARG}`` is expanded with the global ARG defaults overridden by ``build_args``.
    """
    from .dockerfile.instructions import load_dockerfile
    from .dockerfile.shell import ExpansionError
    try:
        df = load_dockerfile(path.read_text(), path.name)
    except FileNotFoundError:
        raise UserError(f"--dockerfile {path}: no such file") from None
    env: dict[str, str] = {}
    try:
        for ins in df.meta_args:
            for decl in ins.args:
                if decl.name in build_args:
                    env[decl.name] = build_args[decl.name]
                elif decl.default is not None:
                    env[decl.name] = df.expand_word(decl.default, env)
        names: set[str] = set()
        out = []
        for st in df.stages:
            base = df.expand_word(st.from_.image, env)
            if base.lower() != "scratch" and base.lower() not in names and base not in out:
                out.append(base)
            if st.name:
                names.add(st.name.lower())
    except ExpansionError as e:
        raise UserError(f"{path.name}: {e}") from None
    return out


@warm_app.command()
def warm(
    image: List[str] = typer.Option([], "--image", "-i", metavar="REF", help="Image to cache (repeatable)."),
    cache_dir: Path = typer.Option(Path("/cache"), "--cache-dir", "-c", metavar="DIR", help="Directory of the base-image cache."),
    force: bool = typer.Option(False, "--force", "-f", help="Download again even when cached."),
    cache_ttl: str = typer.Option("336h", "--cache-ttl", metavar="DURATION", help="Age after which a cached tag is fetched again."),
    dockerfile: Optional[Path] = typer.Option(None, "--dockerfile", "-d", metavar="FILE", help="Also cache every FROM image of this Dockerfile."),
    build_arg: List[str] = typer.Option([], "--build-arg", metavar="KEY=VALUE", help="KEY=VALUE for FROM ${KEY} in --dockerfile."),
    custom_platform: Optional[str] = typer.Option(None, "--custom-platform", "--customPlatform", metavar="OS/ARCH", help="os/arch, optionally /variant (default: this machine)."),
    insecure: bool = typer.Option(False, "--insecure"),
    insecure_pull: bool = typer.Option(False, "--insecure-pull", help="Pull over plain HTTP."),
    insecure_registry: List[str] = typer.Option([], "--insecure-registry", metavar="HOST", help="Registry to use over plain HTTP (repeatable)."),
    skip_tls_verify: bool = typer.Option(False, "--skip-tls-verify"),
    skip_tls_verify_pull: bool = typer.Option(False, "--skip-tls-verify-pull"),
    skip_tls_verify_registry: List[str] = typer.Option([], "--skip-tls-verify-registry", metavar="HOST"),
    registry_certificate: List[str] = typer.Option([], "--registry-certificate", metavar="REGISTRY=FILE", help="REGISTRY=CA.crt (repeatable)."),
    registry_client_cert: List[str] = typer.Option([], "--registry-client-cert", metavar="REGISTRY=CERT,KEY", help="REGISTRY=CERT,KEY (repeatable)."),
    registry_mirror: List[str] = typer.Option([], "--registry-mirror", metavar="MIRROR"),
    registry_map: List[str] = typer.Option([], "--registry-map", metavar="REGISTRY=MIRROR"),
    skip_default_registry_fallback: bool = typer.Option(False, "--skip-default-registry-fallback"),
    image_download_retry: int = typer.Option(0, "--image-download-retry", metavar="N"),
    verbosity: str = typer.Option("info", "--verbosity", "-v", metavar="LEVEL"),
    log_format: str = typer.Option("color", "--log-format", metavar="FORMAT"),
    log_timestamp: bool = typer.Option(False, "--log-timestamp"),
) -> None:
    """Download base images into --cache-dir so builds can use them without the registry."""
    from .engine.platforms import default_platform
    from .cache.ttl import parse_ttl
    from .buildcmd import registry_options as _registry_options
    from .cliargs import build_args_from
    from .logs import setup_logging
    from .registry.auth import Keychain
    from .registry.client import RegistryClient

    try:
        setup_logging(verbosity, log_format, log_timestamp)
    except ValueError as e:
        raise UserError(str(e)) from None
    images = list(image)
    if dockerfile is not None:
        images += [b for b in dockerfile_bases(dockerfile, build_args_from(build_arg, dict(os.environ)))
                   if b not in images]
    if not images:
        raise UserError("executor warm: nothing to cache; pass --image REF (repeatable) or --dockerfile PATH")
    ttl = parse_ttl(cache_ttl)
    platform = custom_platform or default_platform()
    root = cache_dir.resolve()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--cache-dir {root}: cannot create it ({e.strerror})") from None
    ropts = _registry_options(insecure, insecure_pull, insecure_registry, skip_tls_verify, skip_tls_verify_pull,
                              skip_tls_verify_registry, registry_certificate, registry_client_cert, registry_mirror,
                              registry_map, skip_default_registry_fallback, 0, image_download_retry)
    failures = []
    with RegistryClient(ropts, Keychain.from_environment()) as client:
        for ref in images:
            try:
                log.info("%s", warm_image(client, root, ref, platform, force, ttl))
            except UserError as e:
                failures.append(f"{ref}: {e}")
                log.warning("could not cache %s: %s", ref, e)
    if failures and len(failures) == len(images):
        raise UserError("executor warm: no image could be cached:\n  " + "\n  ".join(failures))
