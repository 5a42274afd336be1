"""The build command once its flags are read: validate, prepare the context, build, push.

:func:`run` takes the values of every build flag (``executor.buildflags.FLAGS`` names them,
as does the typer command in ``executor.cliapp``) and the long names of the flags given on the
command line. Both the fast argv parser and the typer command end here, so a build behaves
the same whichever parsed its flags.

Start-up: as soon as the flags are validated, the ``--destination`` registries get their first
``GET /v2/`` from the standard library (:mod:`executor.registry.firstcontact`: no HTTP client to
import first); then the registry client (httpx) is created, takes those answers, and finishes
Kaniko's push-permission check on a thread while the main thread prepares the context and
imports the build engine. The ping's answer (the registry's auth challenge) is kept by the
client, so the build's first request needs no second ``GET /v2/``. Errors keep their order: a
flag or context error is raised before a registry one.
"""

from __future__ import annotations

import logging
import os
import threading
from importlib import import_module
from pathlib import Path
from typing import Any

from . import __version__
from .cliargs import (NO_OP_FLAGS, _kv, build_args_from, credential_helpers, credential_helpers_hint, parse_platforms,
                      parse_secret, resolve_dockerfile)
from .errors import UserError
from .logs import setup_logging
from .options import BuildOptions

log = logging.getLogger("executor")


def registry_option_values(insecure: bool, insecure_pull: bool, insecure_registry: list[str], skip_tls_verify: bool,
                           skip_tls_verify_pull: bool, skip_tls_verify_registry: list[str],
                           registry_certificate: list[str], registry_client_cert: list[str],
                           registry_mirror: list[str], registry_map: list[str], skip_default_registry_fallback: bool,
                           push_retry: int, image_download_retry: int) -> dict[str, Any]:
    """The keyword arguments of :class:`executor.registry.client.RegistryOptions` for these
    flags (plain values: nothing imported). Raises UserError naming a malformed
    ``--registry-map`` / ``--registry-certificate`` / ``--registry-client-cert``."""
    maps: dict[str, tuple[str, ...]] = {}
    for item in registry_map + [x for x in os.environ.get("KANIKO_REGISTRY_MAP", "").split(";") if x]:
        for part in item.split(";"):
            k, eq, v = part.partition("=")
            if not eq:
                raise UserError(f"--registry-map {part!r}: expected ORIGINAL=MIRROR")
            maps[k] = maps.get(k, ()) + tuple(x for x in v.split(",") if x)
    mirrors = tuple(registry_mirror) + tuple(x for x in os.environ.get("KANIKO_REGISTRY_MIRROR", "").split(";") if x)
    certs = _kv(registry_certificate, "--registry-certificate")
    client_certs = {}
    for k, v in _kv(registry_client_cert, "--registry-client-cert").items():
        cert, _, key = v.partition(",")
        if not key:
            raise UserError(f"--registry-client-cert {k}={v}: expected REGISTRY=CERT,KEY")
        client_certs[k] = (cert, key)
    return dict(
        insecure=insecure, insecure_pull=insecure_pull, insecure_registries=frozenset(insecure_registry),
        skip_tls_verify=skip_tls_verify, skip_tls_verify_pull=skip_tls_verify_pull,
        skip_tls_verify_registries=frozenset(skip_tls_verify_registry), registry_certificates=certs,
        registry_client_certs=client_certs, registry_mirrors=mirrors, registry_maps=maps,
        skip_default_registry_fallback=skip_default_registry_fallback, push_retry=push_retry,
        image_download_retry=image_download_retry, user_agent=f"executor/{__version__}")


def registry_options(*args, **kw):
    """:func:`registry_option_values` as a RegistryOptions (imports the registry client)."""
    from .registry.client import RegistryOptions
    return RegistryOptions(**registry_option_values(*args, **kw))


#: seconds the destination pings run alone before the build goes on beside them
PING_HEAD_START_S = 0.05


#: seconds the client waits for the first contact's answers before pinging by itself
FIRST_CONTACT_WAIT_S = 2.0


def first_contact(options: dict[str, Any], destinations: list[str]):
    """Start ``GET /v2/`` to the registries of ``destinations`` with the standard library
    (:class:`executor.registry.firstcontact.FirstContact`), before the client's HTTP stack is
    imported. A destination that does not parse is left for the client's ping to report."""
    from .reference import parse_reference
    from .registry.endpoints import Endpoint
    from .registry.firstcontact import FirstContact
    from .registry.options import RegistryOptions, endpoint_for
    ro = RegistryOptions(**options)
    endpoints: list[Endpoint] = []
    for d in destinations:
        try:
            endpoints.append(endpoint_for(ro, parse_reference(d).registry, False))
        except UserError:
            continue
    return FirstContact(endpoints, ro.user_agent).start()


class EarlyClient:
    """A RegistryClient whose destination registries are pinged on a thread of its own.

    ``options``: RegistryOptions keyword arguments; ``ping``: the destinations to check
    (:func:`executor.outputs.check_destinations`), empty for none; ``contact``: the first
    contact already under way with those registries (:func:`first_contact`), whose answers the
    client takes before pinging (so it sends no ``GET /v2/`` of its own for them). The client
    is made on the calling thread (importing httpx there, not on two threads at once);
    :meth:`result` waits for the pings and returns the client, or raises what they raised
    (RegistryError naming the destination). The thread is a daemon: a build that fails before
    :meth:`result` does not wait for an unreachable registry."""

    def __init__(self, options: dict[str, Any], ping: list[str], contact=None):
        from .registry.auth import Keychain
        from .registry.client import RegistryClient, RegistryOptions
        self._client = RegistryClient(RegistryOptions(**options), Keychain.from_environment())
        self._ping = ping
        self._contact = contact
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="registry-ping", daemon=True)

    def start(self) -> "EarlyClient":
        """Start the pings; returns when they are done or after :data:`PING_HEAD_START_S`
        (the caller's imports, competing for the interpreter, would delay sending them; a
        registry slower than that is waited for while the caller goes on)."""
        if self._ping or self._contact is not None:
            self._thread.start()
            self._thread.join(PING_HEAD_START_S)
        return self

    def _run(self) -> None:
        try:
            if self._contact is not None:
                self._client.seed(self._contact.results(FIRST_CONTACT_WAIT_S))
            from .outputs import check_destinations
            check_destinations(self._client, self._ping)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread by result()
            self._error = e

    def result(self):
        """The client (its pings done); raises the pings' exception."""
        if self._thread.ident is not None:
            self._thread.join()
        if self._error is not None:
            self._client.close()
            raise self._error
        return self._client


def warn_no_ops(given: set[str], values: dict[str, Any], extra: dict[str, str] | None = None) -> None:
    """One warning per Kaniko flag given on the command line that has no effect (NO_OP_FLAGS).
    ``given``: the primary long names of the flags given (``--no-X`` counts as ``--X``);
    ``extra``: text appended to a flag's warning. A list value is shown comma-separated."""
    named = {"--" + f[5:] if f.startswith("--no-") and "--" + f[5:] in NO_OP_FLAGS else f for f in given}
    for flag, instead in NO_OP_FLAGS.items():
        if flag in named:
            value = values[flag]
            if isinstance(value, list) and not value:
                continue  # e.g. --credential-helpers= (the fork's "none"): what the executor does anyway
            shown = (str(value).lower() if isinstance(value, bool) else
                     ",".join(value) if isinstance(value, list) else str(value))
            log.warning("%s=%s: ignored; %s%s", flag, shown, instead, (extra or {}).get(flag, ""))


def image_format(value: str | None, annotations: dict[str, str]) -> bool | None:
    """``--image-format``: True for oci, False for docker, None to follow the base image.
    Annotations need an OCI manifest (Docker's v2 schema 2 has no annotations field)."""
    if value is None:
        return True if annotations else None
    v = value.strip().lower()
    if v not in ("oci", "docker"):
        raise UserError(f"--image-format={value}: use docker or oci")
    if v == "docker" and annotations:
        raise UserError("--annotation needs an OCI manifest: Docker v2 schema 2 manifests have no annotations "
                        "(drop --image-format=docker)")
    return v == "oci"


def jobs_value(value: int) -> int | None:
    if value < 0:
        raise UserError(f"--jobs={value}: use a positive number of stages, or 0 for one per CPU")
    return value or None


def run(v: dict[str, Any], given: set[str], notes: list[str]) -> None:
    """Build with the flag values ``v`` (parameter name -> value, every build flag present);
    ``given``: long names of the flags on the command line; ``notes``: deprecated spellings
    seen (one warning each). Raises UserError (and subclasses) for the CLI to print."""
    if v["version"]:
        print(f"executor {__version__}")
        return
    try:
        setup_logging(v["verbosity"], v["log_format"], v["log_timestamp"], v["progress"])
    except ValueError as e:
        raise UserError(str(e)) from None
    for note in notes:
        log.warning("%s", note)
    cache_run_layers = v["cache_run_layers"] and not v["no_cache_run_layers"]
    cache_copy_layers = v["cache_copy_layers"] and not v["no_cache_copy_layers"]
    cleanup = v["cleanup"] and not v["no_cleanup"]
    helpers = credential_helpers(v["credential_helpers"])
    warn_no_ops(given, {"--snapshot-mode": v["snapshot_mode"], "--use-new-run": v["use_new_run"],
                        "--compressed-caching": v["compressed_caching"] and not v["no_compressed_caching"],
                        "--force": v["force"],
                        "--skip-unused-stages": v["skip_unused_stages"] and not v["no_skip_unused_stages"],
                        "--ignore-var-run": v["ignore_var_run"] and not v["no_ignore_var_run"],
                        "--force-build-metadata": v["force_build_metadata"],
                        "--image-fs-extract-retry": v["image_fs_extract_retry"],
                        "--preserve-context": v["preserve_context"], "--pre-cleanup": v["pre_cleanup"],
                        "--materialize": v["materialize"], "--credential-helpers": helpers},
                {"--credential-helpers": credential_helpers_hint(helpers)})
    if v["bucket"]:
        from .contexts import SUPPORTED
        raise UserError(f"--bucket {v['bucket']}: Google Cloud Storage contexts are not supported; supported "
                        f"--context forms: {SUPPORTED}")
    destination, no_push = v["destination"], v["no_push"]
    if not destination and not no_push:
        raise UserError("no --destination given: pass --destination REGISTRY/REPO:TAG, or --no-push to build only")
    compression, compression_level = v["compression"], v["compression_level"]
    if compression not in ("gzip", "zstd"):
        raise UserError(f"--compression={compression}: use gzip or zstd")
    if v["run_isolation"] not in ("auto", "namespace", "userns", "chroot"):
        raise UserError(f"--run-isolation={v['run_isolation']}: use auto, namespace, userns or chroot")
    if os.geteuid() != 0:  # non-root with subuid ranges: root of its own user namespace, or why not
        from .rootless import enter_or_fall_back
        if fallback := enter_or_fall_back():
            log.warning("%s", fallback)
    top = 9 if compression == "gzip" else 22
    if compression_level != -1 and not 1 <= compression_level <= top:
        raise UserError(f"--compression-level={compression_level}: {compression} levels are 1..{top} "
                        "(-1 = the default)")
    for flag, value in (("--push-retry", v["push_retry"]), ("--image-download-retry", v["image_download_retry"])):
        if value < 0:
            raise UserError(f"{flag}={value}: must be 0 or more (extra attempts)")
    kaniko_dir: Path | None = v["kaniko_dir"]
    if kaniko_dir is not None and os.path.lexists(kaniko_dir) and not kaniko_dir.is_dir():
        raise UserError(f"--kaniko-dir {kaniko_dir}: exists and is not a directory")
    annotations = _kv(v["annotation"], "--annotation")
    oci_format = image_format(v["image_format"], annotations)
    if oci_format is False and compression == "zstd":
        raise UserError("--image-format=docker with --compression=zstd: Docker v2 schema 2 has no zstd layer "
                        "type; use --image-format=oci or --compression=gzip")
    sbom_format = v["sbom_format"].strip().lower()  # (SPDX, CycloneDX as written in their names)
    if sbom_format not in ("spdx", "cyclonedx"):
        raise UserError(f"--sbom-format={v['sbom_format']}: use spdx or cyclonedx")
    secrets = {s.id: s for s in map(parse_secret, v["secret"])}
    ropts = registry_option_values(
        v["insecure"], v["insecure_pull"], v["insecure_registry"], v["skip_tls_verify"], v["skip_tls_verify_pull"],
        v["skip_tls_verify_registry"], v["registry_certificate"], v["registry_client_cert"], v["registry_mirror"],
        v["registry_map"], v["skip_default_registry_fallback"], v["push_retry"], v["image_download_retry"])
    if v["git"]:  # checked before any request (imports the context module, which a build needs later anyway)
        from .contexts import parse_git_options
        parse_git_options(v["git"])
    pinged = [] if no_push or v["skip_push_permission_check"] else list(destination)
    contact = first_contact(ropts, pinged) if pinged else None
    early = EarlyClient(ropts, pinged, contact).start()
    from .cache.ttl import parse_ttl  # (fractions, decimal: after the ping is on its way)
    ttl = parse_ttl(v["cache_ttl"])
    from .contexts import parse_git_options, prepare_context
    git_options = parse_git_options(v["git"])
    from .engine.platforms import default_platform
    platforms = parse_platforms(v["custom_platform"]) if v["custom_platform"] else [default_platform()]
    prepared = prepare_context(v["context"], sub_path=v["context_sub_path"], git=git_options,
                               work_parent=kaniko_dir if kaniko_dir is not None and kaniko_dir.is_dir() else None,
                               keep=not cleanup)
    try:
        ctx_dir = prepared.root
        if kaniko_dir is not None and kaniko_dir.resolve().is_relative_to(ctx_dir.resolve()):
            raise UserError(f"--kaniko-dir {kaniko_dir} is inside the build context {ctx_dir}: the build would "
                            "copy its own work files; put it outside the context")
        tar_path, oci_layout_path = v["tar_path"], v["oci_layout_path"]
        run_cache_dir, sbom_path, provenance_path = v["run_cache_dir"], v["sbom_path"], v["provenance_path"]
        opts = BuildOptions(
            context=ctx_dir, dockerfile=resolve_dockerfile(ctx_dir, v["dockerfile"]), destinations=list(destination),
            build_args=build_args_from(v["build_arg"], dict(os.environ)), target=v["target"], no_push=no_push,
            push_ignore_immutable_tag_errors=v["push_ignore_immutable_tag_errors"],
            tar_path=tar_path.resolve() if tar_path else None,
            oci_layout_path=oci_layout_path.resolve() if oci_layout_path else None,
            digest_file=v["digest_file"], image_name_with_digest_file=v["image_name_with_digest_file"],
            image_name_tag_with_digest_file=v["image_name_tag_with_digest_file"], labels=_kv(v["label"], "--label"),
            platform=platforms[0], platforms=platforms if len(platforms) > 1 else [],
            work_dir=kaniko_dir, cleanup=cleanup,
            run_isolation=v["run_isolation"], reproducible=v["reproducible"], compression=compression,
            compression_level=None if compression_level < 0 else compression_level,
            single_snapshot=v["single_snapshot"], ignore_paths=list(v["ignore_path"]), secrets=secrets,
            ssh=list(v["ssh"]), cache=v["cache"], cache_repo=v["cache_repo"], cache_from=list(v["cache_from"]),
            cache_dir=v["cache_dir"], cache_ttl_seconds=ttl,
            cache_run_layers=cache_run_layers, cache_copy_layers=cache_copy_layers, no_push_cache=v["no_push_cache"],
            run_cache_dir=run_cache_dir.resolve() if run_cache_dir else None, jobs=jobs_value(v["jobs"]),
            annotations=annotations, image_format=oci_format,
            context_source=prepared.source if prepared.kind != "dir" else None,
            source_commit=prepared.commit, sbom=v["sbom"], sbom_format=sbom_format,
            sbom_path=sbom_path.resolve() if sbom_path else None, provenance=v["provenance"],
            provenance_path=provenance_path.resolve() if provenance_path else None,
        )
        from .outputs import check_output_paths
        check_output_paths(opts)
        from .attest import check_paths
        check_paths(opts)
        from .job import run_build
        import_module("executor.engine.build")  # while the registry answers the ping
        with early.result() as client:
            from .progress import watch_client
            watch_client(client)
            run_build(opts, client)
    finally:
        prepared.cleanup(keep=not cleanup)
