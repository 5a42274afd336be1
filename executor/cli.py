"""The ``executor`` command line: Kaniko's flag names, so existing pipelines switch unchanged.

``executor [flags]`` builds and pushes; ``executor warm`` fills a base-image cache;
``executor version`` prints the version. Go-style ``--flag=true|false`` booleans are accepted.
"""

from __future__ import annotations

import logging
import os
import re
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
TRUE_DEFAULT = {"--cache-run-layers", "--cache-copy-layers", "--cleanup", "--compressed-caching", "--ignore-var-run",
                "--skip-unused-stages"}


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


class GroupedHelpCommand(typer.core.TyperCommand):
    """The build command with a plain, grouped ``--help``: one section per help panel (context,
    registry, cache, outputs, build, logging, Kaniko no-ops), each flag's names written whole and
    its help wrapped beside it, or on the next lines when the names are long (click's definition
    list). Never truncated at any width, unlike a rich table at 80 columns; hidden flags (old
    spellings, negative forms) are left out."""

    def format_help(self, ctx, formatter) -> None:
        self.format_usage(ctx, formatter)
        self.format_help_text(ctx, formatter)
        panels: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if getattr(param, "hidden", False) or not getattr(param, "opts", None):
                continue
            names = ", ".join(sorted(param.opts, key=lambda o: (o.startswith("--"), o)))
            if not param.opts[0].startswith("-") or len(param.opts) == 1 and param.opts[0].startswith("--"):
                names = "    " + names  # align long-only flags under the ones with a short form
            if not getattr(param, "is_flag", False) and param.metavar:
                names += f" {param.metavar}"
            panel = getattr(param, "rich_help_panel", None) or "Other"
            panels.setdefault(panel, []).append((names, param.help or ""))
        for panel, rows in panels.items():
            with formatter.section(panel):
                formatter.write_dl(rows, col_max=34)


build_app = typer.Typer(add_completion=False, rich_markup_mode=None,
                        context_settings={"help_option_names": ["-h", "--help"]})

# Help panels (``executor --help`` groups the flags; every flag name is shown whole at 80 columns).
P_CONTEXT = "Context and Dockerfile"
P_REGISTRY = "Registry"
P_CACHE = "Cache"
P_OUTPUT = "Outputs"
P_BUILD = "Build"
P_LOG = "Logging"
P_COMPAT = "Kaniko compatibility (no effect; each warns once)"

# Kaniko flags the executor accepts and ignores: flag -> what the executor does instead (the
# warning printed once when the flag is given). Kaniko README / root.go for their meaning.
NO_OP_FLAGS = {
    "--snapshot-mode": "the executor snapshots by a stat index of the whole root after each step "
                       "(type, mode, owner, size, mtime, ctime, inode, link target; no content hashing), "
                       "which catches what full mode does at the cost of redo",
    "--use-new-run": "every RUN is snapshotted exactly by the executor's stat index of the root; "
                     "there is no separate experimental RUN implementation",
    "--compressed-caching": "layers are compressed while they are written to disk, in one stream; "
                            "no layer is ever held in memory, whatever this flag says",
    "--force": "the executor builds in its own work directory, never in its own root filesystem, so it "
               "runs inside or outside a container alike",
    "--skip-unused-stages": "only the stages the target needs are built (as BuildKit); "
                            "all stages cannot be forced",
    "--ignore-var-run": "the build root is separate from the executor's own filesystem, so the host's "
                        "/var/run never enters a layer; files a RUN writes under /var/run are kept "
                        "(use --ignore-path /var/run to leave them out)",
    "--force-build-metadata": "metadata-only instructions (ENV, LABEL, ...) add a history entry "
                              "without a layer, as Docker does",
    "--image-fs-extract-retry": "base layers are downloaded (retried per --image-download-retry) and "
                                "digest-checked before they are extracted once; extraction is not retried",
}

# Old spellings (camelCase, snake_case) still found in pipelines: rewritten to the kebab-case
# flag, hidden from --help, and named once in a deprecation warning. Kaniko itself kept
# --snapshotMode, --customPlatform, --tarPath and --whitelist-var-run; the others are accepted
# because old wrapper scripts pass them.
RENAMED_FLAGS = {"--whitelist-var-run": "--ignore-var-run"}


def _kebab(name: str) -> str:
    """``--tarPath`` / ``--tar_path`` -> ``--tar-path``."""
    body = re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", name[2:]).replace("_", "-").lower()
    return "--" + body


def _known_build_flags() -> set[str]:
    """Every long flag of the build command (visible or hidden)."""
    cmd = typer.main.get_command(build_app)
    return {o for p in cmd.params for o in (*p.opts, *p.secondary_opts) if o.startswith("--")}


_spelling_notes: list[str] = []  # deprecation notes from the last normalise_argv(known=...) call


def normalise_argv(argv: list[str], known: set[str] | None = None, notes: list[str] | None = None) -> list[str]:
    """Accept Go/pflag spellings: ``--flag=true|false`` for booleans and ``-f=x`` shorthands.

    With ``known`` (the command's long flags), old spellings are rewritten too: ``--tarPath``,
    ``--snapshotMode``, ``--customPlatform``, ``--cacheRepo``, ``--tar_path``, ... become their
    kebab-case flag when that flag exists, and ``--whitelist-var-run`` becomes
    ``--ignore-var-run``; ``notes`` receives one "--old: deprecated, use --new" line per spelling.
    """
    out = []
    for arg in argv:
        if arg == "--":
            out.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if known is not None and name.startswith("--") and name not in known:
            new = RENAMED_FLAGS.get(name) or _kebab(name)
            if new != name and new in known:
                if notes is not None and not any(n.startswith(name + ":") for n in notes):
                    notes.append(f"{name}: deprecated spelling, use {new}")
                name = new
                arg = name + eq + value
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


def _opt(default, *names: str, panel: str, help: str | None = None, metavar: str | None = None, **kw):
    return typer.Option(default, *names, help=help, metavar=metavar, rich_help_panel=panel,
                        show_default=kw.pop("show_default", False), **kw)


def _hidden(default, *names: str):
    return typer.Option(default, *names, hidden=True)


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
    # -- build
    custom_platform: Optional[str] = _opt(None, "--custom-platform", panel=P_BUILD, metavar="PLAT",
                                          help="os/arch (optionally /variant) of the image (default: this machine)."),
    jobs: int = _opt(0, "--jobs", "-j", panel=P_BUILD, metavar="N",
                     help="Stages built at the same time (default 0: twice the CPUs this process may use, "
                          "cgroup limit included)."),
    ignore_path: List[str] = _opt([], "--ignore-path", panel=P_BUILD, metavar="PATH",
                                  help="Path excluded from snapshots (repeatable)."),
    run_isolation: str = _opt("auto", "--run-isolation", panel=P_BUILD, metavar="MODE",
                              help="auto|namespace|chroot (default auto)."),
    single_snapshot: bool = _opt(False, "--single-snapshot", panel=P_BUILD,
                                 help="Accepted for Kaniko compatibility (every step is snapshotted exactly)."),
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

    Other commands: `executor warm --image REF --cache-dir DIR` (base-image cache), `executor version`.
    """
    if version:
        print(f"executor {__version__}")
        return
    try:
        setup_logging(verbosity, log_format, log_timestamp)
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
            platform=custom_platform or default_platform(), work_dir=kaniko_dir, cleanup=cleanup,
            run_isolation=run_isolation, reproducible=reproducible, compression=compression,
            compression_level=None if compression_level < 0 else compression_level, single_snapshot=single_snapshot,
            ignore_paths=list(ignore_path), secrets=secrets, ssh=list(ssh),
            cache=cache, cache_repo=cache_repo, cache_dir=cache_dir, cache_ttl_seconds=ttl,
            cache_run_layers=cache_run_layers, cache_copy_layers=cache_copy_layers, no_push_cache=no_push_cache,
            run_cache_dir=run_cache_dir.resolve() if run_cache_dir else None, jobs=_jobs(jobs),
            annotations=annotations, image_format=oci_format,
            context_source=prepared.source if prepared.kind != "dir" else None,
            source_commit=prepared.commit,
        )
        from .outputs import check_destinations, check_output_paths
        check_output_paths(opts)
        with RegistryClient(ropts, Keychain.from_environment()) as client:
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
        apply_manifest_options(result.image, opts)
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
    _spelling_notes.clear()
    _run_app(build_app, normalise_argv(args, _known_build_flags(), _spelling_notes), "executor")
