"""The ``executor`` command line: Kaniko's flag names, so existing pipelines switch unchanged.

``executor [flags]`` builds and pushes; ``executor warm`` fills a base-image cache;
``executor version`` prints the version. Go-style ``--flag=true|false`` booleans are accepted.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import List, Optional

import typer

from . import __version__
from .errors import Interrupted, UserError
from .logs import setup_logging
from .options import BuildOptions, SecretSource
from .registry.cancel import cancel_all as cancel_registry_transfers

log = logging.getLogger("executor")

BOOL_FLAGS = {
    "--no-push", "--insecure", "--insecure-pull", "--skip-tls-verify", "--skip-tls-verify-pull", "--cache",
    "--cache-run-layers", "--cache-copy-layers", "--no-push-cache", "--reproducible", "--cleanup",
    "--single-snapshot", "--skip-default-registry-fallback", "--log-timestamp", "--force",
    "--skip-unused-stages", "--compressed-caching", "--use-new-run", "--ignore-var-run",
    "--skip-push-permission-check", "--force-build-metadata",
}
# Flags whose default is true: "--flag=false" becomes "--no-<flag>" for typer.
TRUE_DEFAULT = {"--cache-run-layers", "--cache-copy-layers", "--cleanup", "--compressed-caching", "--ignore-var-run"}


def normalise_argv(argv: list[str]) -> list[str]:
    """Accept Go/pflag spellings: ``--flag=true|false`` for booleans and ``-f=x`` shorthands."""
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if eq and name in BOOL_FLAGS and value.lower() in ("true", "false", "1", "0"):
            truthy = value.lower() in ("true", "1")
            if truthy:
                out.append(name)
            elif name in TRUE_DEFAULT:
                out.append("--no-" + name[2:])
            continue
        if eq and len(name) == 2 and name.startswith("-") and name[1] != "-":
            out += [name, value]
            continue
        out.append(arg)
    return out


def _kv(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not eq or not k:
            raise UserError(f"{flag} {item!r}: expected KEY=VALUE")
        out[k] = v
    return out


def build_args_from(items: list[str], environ: dict[str, str]) -> dict[str, str]:
    """``--build-arg K=V``; a bare ``K`` takes its value from the environment (skipped when unset)."""
    out = {}
    for item in items:
        k, eq, v = item.partition("=")
        if not k or any(c.isspace() or c == "\0" for c in k):
            raise UserError(f"--build-arg {item[:200]!r}: invalid name {k[:100]!r}; expected NAME=VALUE with a non-empty "
                            "NAME without spaces")
        if eq:
            out[k] = v
        elif k in environ:
            out[k] = environ[k]
    return out


def parse_secret(spec: str) -> SecretSource:
    """``id=X,src=PATH`` | ``id=X,env=VAR`` (``type=file|env`` accepted) to a SecretSource."""
    fields = dict(p.split("=", 1) if "=" in p else (p, "") for p in spec.split(","))
    sid = fields.get("id")
    if not sid:
        raise UserError(f"--secret {spec!r}: needs id=NAME and src=PATH or env=VAR")
    src = fields.get("src") or fields.get("source")
    env = fields.get("env")
    if src:
        return SecretSource(id=sid, path=Path(src).resolve())
    return SecretSource(id=sid, env=env or sid)


def resolve_dockerfile(context: Path, dockerfile: str) -> Path:
    """Kaniko's rule: an absolute path (or one that exists as given) first, then relative to the context."""
    p = Path(dockerfile)
    if p.is_absolute():
        return p
    if (context / p).exists():
        return (context / p).resolve()
    if p.exists():
        return p.resolve()
    return (context / p).resolve()


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


build_app = typer.Typer(add_completion=False, context_settings={"help_option_names": ["-h", "--help"]})


@build_app.command()
def build(
    context: str = typer.Option("/workspace", "--context", "-c", help="Build context directory (dir:// prefix accepted)."),
    dockerfile: str = typer.Option("Dockerfile", "--dockerfile", "-f", help="Dockerfile path: absolute, or relative to the context."),
    destination: List[str] = typer.Option([], "--destination", "-d", help="Image reference to push to (repeatable)."),
    build_arg: List[str] = typer.Option([], "--build-arg", help="KEY=VALUE build arg; a bare KEY takes the environment's value (repeatable)."),
    target: Optional[str] = typer.Option(None, "--target", help="Stage to build (name)."),
    no_push: bool = typer.Option(bool(os.environ.get("KANIKO_NO_PUSH")), "--no-push", help="Build only; do not push."),
    tar_path: Optional[Path] = typer.Option(None, "--tar-path", help="Also write a docker-load tarball here."),
    oci_layout_path: Optional[Path] = typer.Option(None, "--oci-layout-path", help="Also write an OCI image layout here."),
    digest_file: Optional[Path] = typer.Option(None, "--digest-file", help="Write the image digest (sha256:...) here."),
    image_name_with_digest_file: Optional[Path] = typer.Option(None, "--image-name-with-digest-file", help="Write repo@digest lines here."),
    image_name_tag_with_digest_file: Optional[Path] = typer.Option(None, "--image-name-tag-with-digest-file", help="Write repo:tag@digest lines here."),
    label: List[str] = typer.Option([], "--label", help="key=value label added to the image (repeatable)."),
    insecure: bool = typer.Option(False, "--insecure", help="Push over plain HTTP."),
    insecure_pull: bool = typer.Option(False, "--insecure-pull", help="Pull over plain HTTP."),
    insecure_registry: List[str] = typer.Option([], "--insecure-registry", help="Registry to use over plain HTTP (repeatable)."),
    skip_tls_verify: bool = typer.Option(False, "--skip-tls-verify", help="Do not verify TLS certificates."),
    skip_tls_verify_pull: bool = typer.Option(False, "--skip-tls-verify-pull", help="Do not verify TLS when pulling."),
    skip_tls_verify_registry: List[str] = typer.Option([], "--skip-tls-verify-registry", help="Registry whose TLS certificate is not verified (repeatable)."),
    registry_certificate: List[str] = typer.Option([], "--registry-certificate", help="REGISTRY=CA.crt (repeatable)."),
    registry_client_cert: List[str] = typer.Option([], "--registry-client-cert", help="REGISTRY=CERT,KEY for mTLS (repeatable)."),
    registry_mirror: List[str] = typer.Option([], "--registry-mirror", help="Mirror for docker.io (repeatable)."),
    registry_map: List[str] = typer.Option([], "--registry-map", help="ORIGINAL=MIRROR (repeatable)."),
    skip_default_registry_fallback: bool = typer.Option(False, "--skip-default-registry-fallback", help="Fail when no mirror has the image instead of trying the original registry."),
    push_retry: int = typer.Option(0, "--push-retry", help="Extra attempts for each push request, beyond the 3 built-in retries."),
    image_download_retry: int = typer.Option(0, "--image-download-retry", help="Extra attempts for each pull request, beyond the 3 built-in retries."),
    verbosity: str = typer.Option("info", "--verbosity", "-v", help="trace|debug|info|warn|error|fatal|panic"),
    log_format: str = typer.Option("color", "--log-format", help="text|color|json"),
    log_timestamp: bool = typer.Option(False, "--log-timestamp", help="Prefix text log lines with a UTC timestamp."),
    custom_platform: Optional[str] = typer.Option(None, "--custom-platform", help="os/arch (optionally /variant) of the image (default: this machine)."),
    reproducible: bool = typer.Option(False, "--reproducible", help="Timestamps from SOURCE_DATE_EPOCH (0 when unset)."),
    compression: str = typer.Option("gzip", "--compression", help="gzip|zstd"),
    compression_level: int = typer.Option(-1, "--compression-level", help="gzip 1-9 or zstd 1-22 (default: the compressor's own)."),
    single_snapshot: bool = typer.Option(False, "--single-snapshot", help="Accepted for Kaniko compatibility (every step is snapshotted exactly)."),
    jobs: int = typer.Option(0, "--jobs", "-j", help="Stages built at the same time (default 0: twice the CPUs this process may use, cgroup limit included)."),
    ignore_path: List[str] = typer.Option([], "--ignore-path", help="Path excluded from snapshots (repeatable)."),
    secret: List[str] = typer.Option([], "--secret", help="id=X,src=PATH or id=X,env=VAR for RUN --mount=type=secret."),
    ssh: List[str] = typer.Option([], "--ssh", help="default|ID=SOCKET for RUN --mount=type=ssh."),
    run_cache_dir: Optional[Path] = typer.Option(None, "--run-cache-dir", help="Where RUN --mount=type=cache content persists between builds (default: $XDG_CACHE_HOME/executor/run-cache, else ~/.cache/executor/run-cache; created 0700, refused when another user owns it)."),
    cache: bool = typer.Option(False, "--cache", help="Use the registry layer cache."),
    cache_repo: Optional[str] = typer.Option(None, "--cache-repo", help="Layer cache: REGISTRY/REPO, or oci:/DIR for an on-disk OCI layout (default: <destination>/cache)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Local base-image cache (executor warm)."),
    cache_ttl: str = typer.Option("336h", "--cache-ttl", help="How long cache entries stay valid (Go duration, e.g. 336h)."),
    cache_run_layers: bool = typer.Option(True, "--cache-run-layers/--no-cache-run-layers", help="Cache RUN layers (with --cache)."),
    cache_copy_layers: bool = typer.Option(True, "--cache-copy-layers/--no-cache-copy-layers", help="Also cache COPY/ADD layers (default on: keyed by source content, correct across stages; Kaniko defaults to off)."),
    no_push_cache: bool = typer.Option(False, "--no-push-cache", help="Use the cache but do not store new entries."),
    kaniko_dir: Optional[Path] = typer.Option(None, "--kaniko-dir", help="Work directory (default: a fresh temp dir)."),
    cleanup: bool = typer.Option(True, "--cleanup/--no-cleanup", help="Remove the work directory at the end."),
    run_isolation: str = typer.Option("auto", "--run-isolation", help="auto|namespace|chroot"),
    skip_unused_stages: bool = typer.Option(True, "--skip-unused-stages", help="Accepted for Kaniko compatibility; unused stages are always skipped."),
    force: bool = typer.Option(False, "--force", help="Accepted for Kaniko compatibility."),
    use_new_run: bool = typer.Option(False, "--use-new-run", help="Accepted for Kaniko compatibility."),
    snapshot_mode: str = typer.Option("full", "--snapshot-mode", help="Accepted for Kaniko compatibility (snapshots are always exact)."),
    compressed_caching: bool = typer.Option(True, "--compressed-caching/--no-compressed-caching", help="Accepted for Kaniko compatibility."),
    ignore_var_run: bool = typer.Option(True, "--ignore-var-run/--no-ignore-var-run", help="Accepted for Kaniko compatibility (only RUN-time mounts are left out of layers)."),
    skip_push_permission_check: bool = typer.Option(False, "--skip-push-permission-check", help="Do not check that every --destination registry answers before building."),
    context_sub_path: Optional[str] = typer.Option(None, "--context-sub-path", help="Build from this sub-directory of the context."),
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    """Build the Dockerfile in CONTEXT and push the image to every --destination.

    Other commands: `executor warm --image REF --cache-dir DIR` (base-image cache), `executor version`.
    """
    if version:
        print(f"executor {__version__}")
        return
    try:
        setup_logging(verbosity, log_format, log_timestamp)
    except ValueError as e:
        raise UserError(str(e)) from None
    ctx_text = context.removeprefix("dir://")
    if "://" in ctx_text:
        raise UserError(f"--context {context!r}: only local directories (or dir://) are supported")
    ctx = Path(ctx_text).resolve()
    if context_sub_path:
        ctx = (ctx / context_sub_path).resolve()
    if not ctx.is_dir():
        raise UserError(f"--context {ctx}: not a directory")
    if not destination and not no_push:
        raise UserError("no --destination given: pass --destination REGISTRY/REPO:TAG, or --no-push to build only")
    if compression not in ("gzip", "zstd"):
        raise UserError(f"--compression={compression}: use gzip or zstd")
    top = 9 if compression == "gzip" else 22
    if compression_level != -1 and not 1 <= compression_level <= top:
        raise UserError(f"--compression-level={compression_level}: {compression} levels are 1..{top} "
                        "(-1 = the default)")
    for flag, value in (("--push-retry", push_retry), ("--image-download-retry", image_download_retry)):
        if value < 0:
            raise UserError(f"{flag}={value}: must be 0 or more (extra attempts)")
    if kaniko_dir is not None and os.path.lexists(kaniko_dir) and not kaniko_dir.is_dir():
        raise UserError(f"--kaniko-dir {kaniko_dir}: exists and is not a directory")
    from .engine.platforms import default_platform
    from .registry.auth import Keychain
    from .registry.client import RegistryClient
    from .cache.ttl import parse_ttl

    opts = BuildOptions(
        context=ctx, dockerfile=resolve_dockerfile(ctx, dockerfile), destinations=list(destination),
        build_args=build_args_from(build_arg, dict(os.environ)), target=target, no_push=no_push,
        tar_path=tar_path.resolve() if tar_path else None,
        oci_layout_path=oci_layout_path.resolve() if oci_layout_path else None,
        digest_file=digest_file, image_name_with_digest_file=image_name_with_digest_file,
        image_name_tag_with_digest_file=image_name_tag_with_digest_file, labels=_kv(label, "--label"),
        platform=custom_platform or default_platform(), work_dir=kaniko_dir, cleanup=cleanup,
        run_isolation=run_isolation, reproducible=reproducible, compression=compression,
        compression_level=None if compression_level < 0 else compression_level, single_snapshot=single_snapshot,
        ignore_paths=list(ignore_path), secrets={s.id: s for s in map(parse_secret, secret)}, ssh=list(ssh),
        cache=cache, cache_repo=cache_repo, cache_dir=cache_dir, cache_ttl_seconds=parse_ttl(cache_ttl),
        cache_run_layers=cache_run_layers, cache_copy_layers=cache_copy_layers, no_push_cache=no_push_cache,
        run_cache_dir=run_cache_dir.resolve() if run_cache_dir else None, jobs=_jobs(jobs),
    )
    ropts = _registry_options(insecure, insecure_pull, insecure_registry, skip_tls_verify, skip_tls_verify_pull,
                              skip_tls_verify_registry, registry_certificate, registry_client_cert, registry_mirror,
                              registry_map, skip_default_registry_fallback, push_retry, image_download_retry)
    from .outputs import check_destinations, check_output_paths
    check_output_paths(opts)
    with RegistryClient(ropts, Keychain.from_environment()) as client:
        if not no_push and not skip_push_permission_check:
            check_destinations(client, opts.destinations)
        run_build(opts, client)


def _jobs(value: int) -> int | None:
    if value < 0:
        raise UserError(f"--jobs={value}: use a positive number of stages, or 0 for one per CPU")
    return value or None


def run_build(opts: BuildOptions, client) -> str:
    """Build, then write every requested output; returns the image digest."""
    from .engine.build import Build
    from .oci.docker_archive import write_docker_archive
    from .oci.layout import write_oci_layout
    from .outputs import image_digest, local_blob_paths, push, tar_tags, write_digest_files

    t0 = time.monotonic()
    builder = Build(opts, client)
    try:
        result = builder.build()
        log.info("built image in %.2fs", time.monotonic() - t0)
        if opts.tar_path or opts.oci_layout_path:
            paths = local_blob_paths(result)
            if opts.tar_path:
                opts.tar_path.parent.mkdir(parents=True, exist_ok=True)
                write_docker_archive(opts.tar_path, result.image, paths, tar_tags(opts.destinations))
                log.info("wrote %s", opts.tar_path)
            if opts.oci_layout_path:
                tag = tar_tags(opts.destinations)[0].rpartition(":")[2]
                write_oci_layout(opts.oci_layout_path, result.image, paths, ref_name=tag)
                log.info("wrote OCI layout %s", opts.oci_layout_path)
        check_interrupted()  # a swallowed interruption must never lead to a push or a tag
        if opts.no_push:
            digest = image_digest(result)
            log.info("skipping push (--no-push); image digest %s", digest)
        else:
            digest = push(client, result, opts.destinations).digest
        write_digest_files(digest, opts.destinations if not opts.no_push else opts.destinations,
                           opts.digest_file, opts.image_name_with_digest_file, opts.image_name_tag_with_digest_file)
        log.info("done in %.2fs: %s", time.monotonic() - t0, digest)
        return digest
    finally:
        builder.cleanup()


_interrupted: list[int] = []  # signals received by main()'s handlers (first one counts)


def check_interrupted() -> None:
    """Raise Interrupted if SIGINT/SIGTERM arrived (even when some code swallowed the exception)."""
    if _interrupted:
        raise Interrupted(_interrupted[0])


def _on_signal(signum: int, frame) -> None:
    """SIGINT/SIGTERM: raise Interrupted once; later signals are ignored so the clean-up
    (killing the RUN's processes, removing secrets and placed files) runs to the end.
    Registry transfers in flight on any thread are aborted first and no new request starts
    (Kubernetes kills the pod 30 s after SIGTERM; a push must not go on, nor tag)."""
    if _interrupted:
        return
    _interrupted.append(signum)
    cancel_registry_transfers(signum)
    raise Interrupted(signum)


def _run_app(app: typer.Typer, argv: list[str], prog: str) -> None:
    debug = any(a in ("--verbosity=debug", "--verbosity=trace", "-v=debug") for a in argv) or (
        "debug" in argv and any(a in ("--verbosity", "-v") for a in argv))
    try:
        app(args=argv, prog_name=prog, standalone_mode=False)
        check_interrupted()
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
        show = getattr(e, "show", None)
        if callable(show):
            show()
        else:
            sys.stderr.write(f"error: {e}\n")
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
    if args and args[0] == "warm":
        from .warm import warm_app
        _run_app(warm_app, normalise_argv(args[1:]), "executor warm")
        return
    _run_app(build_app, normalise_argv(args), "executor")
