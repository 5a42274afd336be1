"""The ``executor`` command line: Kaniko's flag names, so existing pipelines switch unchanged.

``executor [flags]`` builds and pushes; ``executor warm`` fills a base-image cache;
``executor index --destination REF SRC...`` joins pushed single-platform images into one index;
``executor push --tar-path FILE|--oci-layout-path DIR --destination REF`` pushes an image built earlier;
``executor cache prune --cache-repo REF --older-than DURATION`` deletes expired layer-cache entries;
``executor tekton-step`` is the kaniko-build Tekton step (params from env and args, see executor/tekton.py);
``executor version`` prints the version. Go-style ``--flag=true|false`` booleans are accepted.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import UserError
from .logs import setup_logging
from .options import BuildOptions
from .cliargs import (BOOL_FLAGS, NO_OP_FLAGS, P_BUILD, P_CACHE, P_COMPAT, P_CONTEXT, P_LOG, P_OUTPUT,  # noqa: F401
                      P_REGISTRY, RENAMED_FLAGS, TRUE_DEFAULT, GroupedHelpCommand, _hidden, _kebab, _kv, _opt,
                      build_args_from, normalise_argv, parse_platforms, parse_secret, resolve_dockerfile)
from .interrupts import _interrupted, _on_signal, check_interrupted  # noqa: F401
from .job import apply_manifest_options, run_build  # noqa: F401

log = logging.getLogger("executor")


def _registry_options(insecure: bool, insecure_pull: bool, insecure_registry: list[str], skip_tls_verify: bool,
                      skip_tls_verify_pull: bool, skip_tls_verify_registry: list[str], registry_certificate: list[str],
                      registry_client_cert: list[str], registry_mirror: list[str], registry_map: list[str],
                      skip_default_registry_fallback: bool, push_retry: int, image_download_retry: int):
    from .registry.client import RegistryOptions
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
    return RegistryOptions(
        insecure=insecure, insecure_pull=insecure_pull, insecure_registries=frozenset(insecure_registry),
        skip_tls_verify=skip_tls_verify, skip_tls_verify_pull=skip_tls_verify_pull,
        skip_tls_verify_registries=frozenset(skip_tls_verify_registry), registry_certificates=certs,
        registry_client_certs=client_certs, registry_mirrors=mirrors, registry_maps=maps,
        skip_default_registry_fallback=skip_default_registry_fallback, push_retry=push_retry,
        image_download_retry=image_download_retry, user_agent=f"executor/{__version__}")


build_app = typer.Typer(add_completion=False, rich_markup_mode=None,
                        context_settings={"help_option_names": ["-h", "--help"]})


def _known_build_flags(cmd=None) -> set[str]:
    """Every long flag of the build command (visible or hidden); ``cmd``: that command, if built."""
    cmd = cmd or typer.main.get_command(build_app)
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}


_spelling_notes: list[str] = []  # deprecation notes from the last normalise_argv(known=...) call


@build_app.command(cls=GroupedHelpCommand)
def build(
    ctx: typer.Context,
    # -- context and Dockerfile
    context: str = _opt("/workspace", "--context", "-c", panel=P_CONTEXT, metavar="SRC",
                        help="Build context: DIR (or dir://DIR), tar://FILE.tar.gz, tar://stdin, "
                             "https://HOST/ctx.tar.gz, git://HOST/REPO[#REF[:SUBDIR]], "
                             "https://HOST/REPO.git[#REF[:SUBDIR]] (default /workspace)."),
    context_sub_path: Optional[str] = _opt(None, "--context-sub-path", panel=P_CONTEXT, metavar="DIR",
                                           help="Build from this sub-directory of the context."),
    git: List[str] = _opt([], "--git", panel=P_CONTEXT, metavar="K=V,...",
                          help="Git context options: branch=, single-branch=, recurse-submodules=, "
                               "insecure-skip-tls=, depth= (default 1; 0 = full history)."),
    dockerfile: str = _opt("Dockerfile", "--dockerfile", "-f", panel=P_CONTEXT, metavar="PATH",
                           help="Dockerfile path: absolute, or relative to the context (default Dockerfile)."),
    build_arg: List[str] = _opt([], "--build-arg", panel=P_CONTEXT, metavar="K=V",
                                help="Build arg; a bare KEY takes the environment's value (repeatable)."),
    target: Optional[str] = _opt(None, "--target", panel=P_CONTEXT, metavar="NAME", help="Stage to build."),
    secret: List[str] = _opt([], "--secret", panel=P_CONTEXT, metavar="SPEC",
                             help="id=X,src=PATH or id=X,env=VAR for RUN --mount=type=secret."),
    ssh: List[str] = _opt([], "--ssh", panel=P_CONTEXT, metavar="SPEC",
                          help="default|ID=SOCKET for RUN --mount=type=ssh."),
    bucket: Optional[str] = _hidden(None, "--bucket", "-b"),
    # -- registry
    destination: List[str] = _opt([], "--destination", "-d", panel=P_REGISTRY, metavar="REF",
                                  help="Image reference to push to (repeatable)."),
    insecure: bool = _opt(False, "--insecure", panel=P_REGISTRY, help="Push over plain HTTP."),
    insecure_pull: bool = _opt(False, "--insecure-pull", panel=P_REGISTRY, help="Pull over plain HTTP."),
    insecure_registry: List[str] = _opt([], "--insecure-registry", panel=P_REGISTRY, metavar="HOST",
                                        help="Registry to use over plain HTTP (repeatable)."),
    skip_tls_verify: bool = _opt(False, "--skip-tls-verify", panel=P_REGISTRY, help="Do not verify TLS certificates."),
    skip_tls_verify_pull: bool = _opt(False, "--skip-tls-verify-pull", panel=P_REGISTRY,
                                      help="Do not verify TLS when pulling."),
    skip_tls_verify_registry: List[str] = _opt([], "--skip-tls-verify-registry", panel=P_REGISTRY, metavar="HOST",
                                               help="Registry whose TLS certificate is not verified (repeatable)."),
    registry_certificate: List[str] = _opt([], "--registry-certificate", panel=P_REGISTRY, metavar="H=CA",
                                           help="REGISTRY=CA.crt (repeatable)."),
    registry_client_cert: List[str] = _opt([], "--registry-client-cert", panel=P_REGISTRY, metavar="H=C,K",
                                           help="REGISTRY=CERT,KEY for mTLS (repeatable)."),
    registry_mirror: List[str] = _opt([], "--registry-mirror", panel=P_REGISTRY, metavar="HOST",
                                      help="Mirror for docker.io (repeatable)."),
    registry_map: List[str] = _opt([], "--registry-map", panel=P_REGISTRY, metavar="A=B",
                                   help="ORIGINAL=MIRROR (repeatable)."),
    skip_default_registry_fallback: bool = _opt(False, "--skip-default-registry-fallback", panel=P_REGISTRY,
                                                help="Fail when no mirror has the image instead of trying "
                                                     "the original registry."),
    push_retry: int = _opt(0, "--push-retry", panel=P_REGISTRY, metavar="N",
                           help="Extra attempts for each push request, beyond the 3 built-in retries."),
    image_download_retry: int = _opt(0, "--image-download-retry", panel=P_REGISTRY, metavar="N",
                                     help="Extra attempts for each pull request, beyond the 3 built-in retries."),
    skip_push_permission_check: bool = _opt(False, "--skip-push-permission-check", panel=P_REGISTRY,
                                            help="Do not check that every --destination registry answers "
                                                 "before building."),
    # -- cache
    cache: bool = _opt(False, "--cache", panel=P_CACHE, help="Use the registry layer cache."),
    cache_repo: Optional[str] = _opt(None, "--cache-repo", panel=P_CACHE, metavar="REPO",
                                     help="Layer cache: REGISTRY/REPO, or oci:/DIR for an on-disk OCI layout "
                                          "(default: <destination>/cache)."),
    cache_from: List[str] = _opt([], "--cache-from", panel=P_CACHE, metavar="REPO",
                                 help="Read-only layer cache checked after --cache-repo, in order (repeatable): "
                                      "REGISTRY/REPO or oci:/DIR; works without --cache. Never written."),
    cache_dir: Optional[Path] = _opt(None, "--cache-dir", panel=P_CACHE, metavar="DIR",
                                     help="Local base-image cache (executor warm)."),
    cache_ttl: str = _opt("336h", "--cache-ttl", panel=P_CACHE, metavar="DUR",
                          help="How long cache entries stay valid (Go duration). (default 336h)"),
    cache_run_layers: bool = _opt(True, "--cache-run-layers", panel=P_CACHE,
                                  help="Cache RUN layers (with --cache; =false to turn off; default true)."),
    cache_copy_layers: bool = _opt(True, "--cache-copy-layers", panel=P_CACHE,
                                   help="Also cache COPY/ADD layers (keyed by source content, correct across "
                                        "stages; Kaniko defaults to off; default true)."),
    no_push_cache: bool = _opt(False, "--no-push-cache", panel=P_CACHE,
                               help="Use the cache but do not store new entries."),
    run_cache_dir: Optional[Path] = _opt(None, "--run-cache-dir", panel=P_CACHE, metavar="DIR",
                                         help="Where RUN --mount=type=cache content persists between builds "
                                              "(default: $XDG_CACHE_HOME/executor/run-cache, else "
                                              "~/.cache/executor/run-cache; created 0700, refused when another "
                                              "user owns it)."),
    # -- outputs
    no_push: bool = _opt(bool(os.environ.get("KANIKO_NO_PUSH")), "--no-push", panel=P_OUTPUT,
                         help="Build only; do not push."),
    tar_path: Optional[Path] = _opt(None, "--tar-path", panel=P_OUTPUT, metavar="FILE",
                                    help="Also write a docker-load tarball here."),
    oci_layout_path: Optional[Path] = _opt(None, "--oci-layout-path", panel=P_OUTPUT, metavar="DIR",
                                           help="Also write an OCI image layout here."),
    digest_file: Optional[Path] = _opt(None, "--digest-file", panel=P_OUTPUT, metavar="FILE",
                                       help="Write the image digest (sha256:...) here."),
    image_name_with_digest_file: Optional[Path] = _opt(None, "--image-name-with-digest-file", panel=P_OUTPUT,
                                                       metavar="FILE", help="Write repo@digest lines here."),
    image_name_tag_with_digest_file: Optional[Path] = _opt(None, "--image-name-tag-with-digest-file",
                                                           panel=P_OUTPUT, metavar="FILE",
                                                           help="Write repo:tag@digest lines here."),
    label: List[str] = _opt([], "--label", panel=P_OUTPUT, metavar="K=V",
                            help="Label added to the image config (repeatable)."),
    annotation: List[str] = _opt([], "--annotation", panel=P_OUTPUT, metavar="K=V",
                                 help="Annotation of the image manifest (repeatable; the manifest is OCI)."),
    image_format: Optional[str] = _opt(None, "--image-format", panel=P_OUTPUT, metavar="FMT",
                                       help="docker|oci manifest (default: the base image's; oci for scratch)."),
    reproducible: bool = _opt(False, "--reproducible", panel=P_OUTPUT,
                              help="Timestamps from SOURCE_DATE_EPOCH (0 when unset)."),
    compression: str = _opt("gzip", "--compression", panel=P_OUTPUT, metavar="ALG",
                            help="gzip|zstd (default gzip)."),
    compression_level: int = _opt(-1, "--compression-level", panel=P_OUTPUT, metavar="N",
                                  help="gzip 1-9 or zstd 1-22 (default: the compressor's own)."),
    sbom: bool = _opt(False, "--sbom", panel=P_OUTPUT,
                      help="Attach an SBOM of the image's packages (dpkg, apk, Python, npm) as an OCI referrer."),
    sbom_format: str = _opt("spdx", "--sbom-format", panel=P_OUTPUT, metavar="FMT",
                            help="spdx (SPDX 2.3 JSON) | cyclonedx (CycloneDX 1.6 JSON) (default spdx)."),
    sbom_path: Optional[Path] = _opt(None, "--sbom-path", panel=P_OUTPUT, metavar="FILE",
                                     help="Also write the SBOM here (with --no-push too)."),
    provenance: bool = _opt(False, "--provenance", panel=P_OUTPUT,
                            help="Attach SLSA v1 provenance (in-toto statement) as an OCI referrer."),
    provenance_path: Optional[Path] = _opt(None, "--provenance-path", panel=P_OUTPUT, metavar="FILE",
                                           help="Also write the provenance statement here (with --no-push too)."),
    # -- build
    custom_platform: Optional[str] = _opt(None, "--custom-platform", "--platform", panel=P_BUILD, metavar="PLATS",
                                          help="os/arch[/variant] of the image (default: this machine); several, "
                                               "comma-separated (linux/amd64,linux/arm64), build one image each and "
                                               "push them as one index."),
    jobs: int = _opt(0, "--jobs", "-j", panel=P_BUILD, metavar="N",
                     help="Stages built at the same time (default 0: twice the CPUs this process may use, "
                          "cgroup limit included)."),
    ignore_path: List[str] = _opt([], "--ignore-path", panel=P_BUILD, metavar="PATH",
                                  help="Path excluded from snapshots (repeatable)."),
    run_isolation: str = _opt("auto", "--run-isolation", panel=P_BUILD, metavar="MODE",
                              help="auto|namespace|userns|chroot (default auto: the strongest this "
                                   "environment allows)."),
    single_snapshot: bool = _opt(False, "--single-snapshot", panel=P_BUILD,
                                 help="One layer per stage: all of a stage's changes snapshotted once at "
                                      "its end (Kaniko's --single-snapshot)."),
    kaniko_dir: Optional[Path] = _opt(None, "--kaniko-dir", panel=P_BUILD, metavar="DIR",
                                      help="Work directory (default: a fresh temp dir)."),
    cleanup: bool = _opt(True, "--cleanup", panel=P_BUILD,
                         help="Remove the work directory at the end (=false keeps it; default true)."),
    # -- logging
    verbosity: str = _opt("info", "--verbosity", "-v", panel=P_LOG, metavar="LEVEL",
                          help="trace|debug|info|warn|error|fatal|panic (default info)."),
    log_format: str = _opt("color", "--log-format", panel=P_LOG, metavar="FMT",
                           help="text|color|json (default color)."),
    log_timestamp: bool = _opt(False, "--log-timestamp", panel=P_LOG,
                               help="Prefix text log lines with a UTC timestamp."),
    progress: str = _opt("auto", "--progress", panel=P_LOG, metavar="MODE",
                         help="auto|tty|plain: a live view of stages, pulls and pushes (tty), or log lines "
                              "(plain); auto = tty when stderr is a terminal and --log-format is not json."),
    version: bool = _opt(False, "--version", panel=P_LOG, help="Print the version and exit.", is_eager=True),
    # -- Kaniko flags without effect (NO_OP_FLAGS)
    snapshot_mode: str = _opt("full", "--snapshot-mode", panel=P_COMPAT, metavar="MODE",
                              help="full|redo|time: snapshots are always exact."),
    use_new_run: bool = _opt(False, "--use-new-run", panel=P_COMPAT, help="Every RUN is snapshotted exactly."),
    compressed_caching: bool = _opt(True, "--compressed-caching", panel=P_COMPAT,
                                    help="Layers are always compressed in a stream."),
    force: bool = _opt(False, "--force", panel=P_COMPAT, help="Runs anywhere; nothing to force."),
    skip_unused_stages: bool = _opt(True, "--skip-unused-stages", panel=P_COMPAT,
                                    help="Unused stages are always skipped."),
    ignore_var_run: bool = _opt(True, "--ignore-var-run", panel=P_COMPAT,
                                help="The host's /var/run never enters the build root."),
    force_build_metadata: bool = _opt(False, "--force-build-metadata", panel=P_COMPAT,
                                      help="Metadata-only steps add history, no layer."),
    image_fs_extract_retry: int = _opt(0, "--image-fs-extract-retry", panel=P_COMPAT, metavar="N",
                                       help="Layers are digest-checked, then extracted once."),
    # hidden negative forms of the true-by-default flags (``--flag=false`` is rewritten to these)
    no_cache_run_layers: bool = _hidden(False, "--no-cache-run-layers"),
    no_cache_copy_layers: bool = _hidden(False, "--no-cache-copy-layers"),
    no_cleanup: bool = _hidden(False, "--no-cleanup"),
    no_compressed_caching: bool = _hidden(False, "--no-compressed-caching"),
    no_ignore_var_run: bool = _hidden(False, "--no-ignore-var-run"),
    no_skip_unused_stages: bool = _hidden(False, "--no-skip-unused-stages"),
) -> None:
    """Build the Dockerfile in CONTEXT and push the image to every --destination.

    Other commands: `executor warm --image REF --cache-dir DIR` (base-image cache), `executor push --tar-path FILE|--oci-layout-path DIR -d REF` (push an image built with --no-push), `executor index -d REF SRC...` (join pushed single-platform images into one index), `executor cache prune --cache-repo REF --older-than DURATION` (delete expired layer-cache entries), `executor version`.
    """
    if version:
        print(f"executor {__version__}")
        return
    try:
        setup_logging(verbosity, log_format, log_timestamp, progress)
    except ValueError as e:
        raise UserError(str(e)) from None
    for note in _spelling_notes:
        log.warning("%s", note)
    cache_run_layers = cache_run_layers and not no_cache_run_layers
    cache_copy_layers = cache_copy_layers and not no_cache_copy_layers
    cleanup = cleanup and not no_cleanup
    _warn_no_ops(ctx, {"--snapshot-mode": snapshot_mode, "--use-new-run": use_new_run,
                       "--compressed-caching": compressed_caching and not no_compressed_caching,
                       "--force": force, "--skip-unused-stages": skip_unused_stages and not no_skip_unused_stages,
                       "--ignore-var-run": ignore_var_run and not no_ignore_var_run,
                       "--force-build-metadata": force_build_metadata,
                       "--image-fs-extract-retry": image_fs_extract_retry})
    if bucket:
        from .contexts import SUPPORTED
        raise UserError(f"--bucket {bucket}: Google Cloud Storage contexts are not supported; supported --context "
                        f"forms: {SUPPORTED}")
    if not destination and not no_push:
        raise UserError("no --destination given: pass --destination REGISTRY/REPO:TAG, or --no-push to build only")
    if compression not in ("gzip", "zstd"):
        raise UserError(f"--compression={compression}: use gzip or zstd")
    if run_isolation not in ("auto", "namespace", "userns", "chroot"):
        raise UserError(f"--run-isolation={run_isolation}: use auto, namespace, userns or chroot")
    from .rootless import enter_or_fall_back
    if fallback := enter_or_fall_back():  # non-root with subuid ranges: root of its own user namespace, or why not
        log.warning("%s", fallback)
    top = 9 if compression == "gzip" else 22
    if compression_level != -1 and not 1 <= compression_level <= top:
        raise UserError(f"--compression-level={compression_level}: {compression} levels are 1..{top} "
                        "(-1 = the default)")
    for flag, value in (("--push-retry", push_retry), ("--image-download-retry", image_download_retry)):
        if value < 0:
            raise UserError(f"{flag}={value}: must be 0 or more (extra attempts)")
    if kaniko_dir is not None and os.path.lexists(kaniko_dir) and not kaniko_dir.is_dir():
        raise UserError(f"--kaniko-dir {kaniko_dir}: exists and is not a directory")
    annotations = _kv(annotation, "--annotation")
    oci_format = _image_format(image_format, annotations)
    if oci_format is False and compression == "zstd":
        raise UserError("--image-format=docker with --compression=zstd: Docker v2 schema 2 has no zstd layer "
                        "type; use --image-format=oci or --compression=gzip")
    if sbom_format not in ("spdx", "cyclonedx"):
        raise UserError(f"--sbom-format={sbom_format}: use spdx or cyclonedx")
    from .contexts import parse_git_options, prepare_context
    git_options = parse_git_options(git)
    from .engine.platforms import default_platform
    from .registry.auth import Keychain
    from .registry.client import RegistryClient
    from .cache.ttl import parse_ttl

    ttl = parse_ttl(cache_ttl)
    secrets = {s.id: s for s in map(parse_secret, secret)}
    ropts = _registry_options(insecure, insecure_pull, insecure_registry, skip_tls_verify, skip_tls_verify_pull,
                              skip_tls_verify_registry, registry_certificate, registry_client_cert, registry_mirror,
                              registry_map, skip_default_registry_fallback, push_retry, image_download_retry)
    platforms = parse_platforms(custom_platform) if custom_platform else [default_platform()]
    prepared = prepare_context(context, sub_path=context_sub_path, git=git_options,
                               work_parent=kaniko_dir if kaniko_dir is not None and kaniko_dir.is_dir() else None,
                               keep=not cleanup)
    try:
        ctx_dir = prepared.root
        opts = BuildOptions(
            context=ctx_dir, dockerfile=resolve_dockerfile(ctx_dir, dockerfile), destinations=list(destination),
            build_args=build_args_from(build_arg, dict(os.environ)), target=target, no_push=no_push,
            tar_path=tar_path.resolve() if tar_path else None,
            oci_layout_path=oci_layout_path.resolve() if oci_layout_path else None,
            digest_file=digest_file, image_name_with_digest_file=image_name_with_digest_file,
            image_name_tag_with_digest_file=image_name_tag_with_digest_file, labels=_kv(label, "--label"),
            platform=platforms[0], platforms=platforms if len(platforms) > 1 else [],
            work_dir=kaniko_dir, cleanup=cleanup,
            run_isolation=run_isolation, reproducible=reproducible, compression=compression,
            compression_level=None if compression_level < 0 else compression_level, single_snapshot=single_snapshot,
            ignore_paths=list(ignore_path), secrets=secrets, ssh=list(ssh),
            cache=cache, cache_repo=cache_repo, cache_from=list(cache_from), cache_dir=cache_dir, cache_ttl_seconds=ttl,
            cache_run_layers=cache_run_layers, cache_copy_layers=cache_copy_layers, no_push_cache=no_push_cache,
            run_cache_dir=run_cache_dir.resolve() if run_cache_dir else None, jobs=_jobs(jobs),
            annotations=annotations, image_format=oci_format,
            context_source=prepared.source if prepared.kind != "dir" else None,
            source_commit=prepared.commit, sbom=sbom, sbom_format=sbom_format,
            sbom_path=sbom_path.resolve() if sbom_path else None, provenance=provenance,
            provenance_path=provenance_path.resolve() if provenance_path else None,
        )
        from .outputs import check_destinations, check_output_paths
        check_output_paths(opts)
        from .attest import check_paths
        check_paths(opts)
        with RegistryClient(ropts, Keychain.from_environment()) as client:
            from .progress import watch_client
            watch_client(client)
            if not no_push and not skip_push_permission_check:
                check_destinations(client, opts.destinations)
            run_build(opts, client)
    finally:
        prepared.cleanup(keep=not cleanup)


def _warn_no_ops(ctx: typer.Context, values: dict[str, object]) -> None:
    """One warning per Kaniko flag given on the command line that has no effect (NO_OP_FLAGS)."""
    from typer._click.core import ParameterSource
    given = set()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source not in (None, ParameterSource.DEFAULT) and param.opts and param.opts[0].startswith("--"):
            flag = param.opts[0]
            given.add("--" + flag[5:] if flag.startswith("--no-") and "--" + flag[5:] in NO_OP_FLAGS else flag)
    for flag, instead in NO_OP_FLAGS.items():
        if flag in given:
            value = values[flag]
            shown = str(value).lower() if isinstance(value, bool) else str(value)
            log.warning("%s=%s: ignored; %s", flag, shown, instead)


def _image_format(value: str | None, annotations: dict[str, str]) -> bool | None:
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


def _jobs(value: int) -> int | None:
    if value < 0:
        raise UserError(f"--jobs={value}: use a positive number of stages, or 0 for one per CPU")
    return value or None


def _run_app(app: typer.Typer, argv: list[str], prog: str, cmd=None) -> None:
    debug = any(a in ("--verbosity=debug", "--verbosity=trace", "-v=debug") for a in argv) or (
        "debug" in argv and any(a in ("--verbosity", "-v") for a in argv))
    from .progress import stop as stop_progress
    try:
        try:
            from .clicoerce import plain_coercion
            command = cmd or typer.main.get_command(app)
            plain_coercion(command)  # no pydantic adapters per option (start-up time)
            command(args=argv, prog_name=prog, standalone_mode=False)
            check_interrupted()
        finally:
            stop_progress()  # the live view's final state, then any error line below it
    except UserError as e:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"error: {e}\n")
        sys.exit(e.exit_code)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        sys.exit(130)
    except typer.Abort:
        sys.stderr.write("error: aborted\n")
        sys.exit(1)
    except typer.TyperException as e:  # usage errors: unknown flag, missing value, bad type
        fmt = getattr(e, "format_message", None)
        text = " ".join((fmt() if callable(fmt) else str(e)).split())
        ctx = getattr(e, "ctx", None)
        where = ctx.command_path if ctx is not None and getattr(ctx, "command_path", "") else prog
        sys.stderr.write(f"error: {text} (see {where} --help)\n")
        sys.exit(getattr(e, "exit_code", 2))


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``executor`` console script.

    SIGINT and SIGTERM raise :class:`executor.errors.Interrupted`: the build stops, the RUN's
    processes are killed, placed files and secrets removed, and the process exits 130 / 143
    with ``error: interrupted``. Nothing is pushed or tagged after an interruption."""
    _interrupted.clear()
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    except ValueError:  # not the main thread (embedded use): keep the caller's handlers
        previous = {}
    try:
        _main(argv)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _main(argv: list[str] | None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "version":
        print(f"executor {__version__}")
        return
    if args and args[0] == "index":
        from .index import run as run_index
        run_index(args[1:])
        return
    if args and args[0] == "push":
        from .pushcmd import run as run_push
        run_push(args[1:])
        return
    if args and args[0] == "cache":
        from .cacheprune import run as run_cache
        run_cache(args[1:])
        return
    if args and args[0] == "tekton-step":
        from .tekton import main as run_tekton_step
        run_tekton_step(args[1:])
        return
    if args and args[0] == "warm":
        from .warm import warm_app
        _run_app(warm_app, normalise_argv(args[1:]), "executor warm")
        return
    _spelling_notes.clear()
    cmd = typer.main.get_command(build_app)
    _run_app(build_app, normalise_argv(args, _known_build_flags(cmd), _spelling_notes), "executor", cmd)
