"""The typer app of the build command: ``executor --help``, usage errors, and any command line
the fast parser (:mod:`executor.buildflags`) leaves to typer. The flags' help texts and help
panels live here; their names, kinds and defaults must match :data:`executor.buildflags.FLAGS`
(tests/unit/test_cli_startup.py compares them). The build itself is :func:`executor.buildcmd.run`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer

from .cliargs import P_BUILD, P_CACHE, P_COMPAT, P_CONTEXT, P_LOG, P_OUTPUT, P_REGISTRY


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


def _opt(default, *names: str, panel: str, help: str | None = None, metavar: str | None = None, **kw):
    return typer.Option(default, *names, help=help, metavar=metavar, rich_help_panel=panel,
                        show_default=kw.pop("show_default", False), **kw)


def _env_no_push() -> bool:
    """``KANIKO_NO_PUSH`` for the typer command's default (help and usage errors only: a build
    reads it through :mod:`executor.buildflags`, where a bad spelling is an error)."""
    from .cliargs import env_bool
    try:
        return env_bool("KANIKO_NO_PUSH")
    except Exception:  # noqa: BLE001 - UserError: a bad spelling, refused when a build reads it
        return False


def _hidden(default, *names: str):
    return typer.Option(default, *names, hidden=True)


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
    push_ignore_immutable_tag_errors: bool = _opt(False, "--push-ignore-immutable-tag-errors", panel=P_REGISTRY,
                                                  help="A registry refusing to move an existing immutable tag (ECR, "
                                                       "Harbor, Artifact Registry, ...) is a warning, not an error: "
                                                       "the tag keeps its image, other destinations are pushed."),
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
    no_push: bool = _opt(_env_no_push(), "--no-push", panel=P_OUTPUT,
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
                                      help="Where each run makes its own work directory (default: the temp dir)."),
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
    preserve_context: bool = _opt(False, "--preserve-context", panel=P_COMPAT,
                                  help="The executor's own filesystem is never touched."),
    pre_cleanup: bool = _opt(False, "--pre-cleanup", panel=P_COMPAT,
                             help="Every build starts from an empty root of its own."),
    materialize: bool = _opt(False, "--materialize", panel=P_COMPAT,
                             help="Image files stay out of the executor's /."),
    credential_helpers: List[str] = _opt([], "--credential-helpers", panel=P_COMPAT, metavar="NAME",
                                         help="env|google|ecr|acr|gitlab: use config.json credHelpers instead."),
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
    values = {k: v for k, v in locals().items() if k != "ctx"}
    from .buildcmd import run
    run(values, given_flags(ctx), _spelling_notes)


def given_flags(ctx: typer.Context) -> set[str]:
    """The primary long name of every option given on the command line of ``ctx``."""
    from typer._click.core import ParameterSource
    given = set()
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source not in (None, ParameterSource.DEFAULT) and param.opts and param.opts[0].startswith("--"):
            given.add(param.opts[0])
    return given


def _run_app(app: typer.Typer, argv: list[str], prog: str, cmd=None) -> None:
    from .cli import debug_requested, run_guarded

    def call() -> None:
        try:
            from .clicoerce import plain_coercion
            command = cmd or typer.main.get_command(app)
            plain_coercion(command)  # no pydantic adapters per option (start-up time)
            command(args=argv, prog_name=prog, standalone_mode=False)
        except typer.Exit as e:
            sys.exit(e.exit_code)
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

    run_guarded(call, debug_requested(argv))
