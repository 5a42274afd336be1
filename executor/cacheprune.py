"""``executor cache prune``: delete layer-cache entries older than a duration.

::

    executor cache prune --cache-repo REGISTRY/REPO|oci:/DIR [--older-than 336h] [--dry-run]
                         [--insecure] [--insecure-registry REG] [--skip-tls-verify] [--skip-tls-verify-registry REG]
                         [--registry-certificate REG=CA] [--registry-client-cert REG=CERT,KEY] [--push-retry N]

What is an entry, how its age is read and how each kind of store is pruned:
:mod:`executor.cache.prune`. Output: one log line per entry deleted (``would delete`` with
``--dry-run``), one warning per entry that cannot be deleted (e.g. a registry with deletion
disabled, 405, with how to enable it), then one summary line on stdout.

Exit status: 0 when every expired entry was deleted, or could not be only because the
registry does not allow deletion (405); 1 for a real error: bad flags, the repository or
layout cannot be read (the tags cannot be listed, a kept entry's manifest is unreadable), or an
entry whose deletion failed for another reason (no rights, server errors after the retries).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import List

import typer

from .errors import UserError
from .logs import counted

log = logging.getLogger("executor.cache")

cache_app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                        context_settings={"help_option_names": ["-h", "--help"]},
                        help="Layer-cache maintenance (executor cache prune).")


@cache_app.callback()
def _group() -> None:
    """Layer-cache maintenance: `executor cache prune --cache-repo REF --older-than DURATION`."""


def _age(seconds: float) -> str:
    """``3d4h``, ``5h12m``, ``40s``: an age for a log line."""
    s = int(max(0, seconds))
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d{h}h"
    if h:
        return f"{h}h{m}m"
    return f"{m}m{s}s" if m else f"{s}s"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


@cache_app.command("prune")
def prune_command(
    cache_repo: str = typer.Option(..., "--cache-repo", metavar="REPO",
                                   help="The cache to prune: REGISTRY/REPO, or oci:/DIR (as given to builds)."),
    older_than: str = typer.Option("336h", "--older-than", metavar="DURATION",
                                   help="Delete entries created longer ago than this Go duration (e.g. 72h, 30m). "
                                        "Default 336h, the --cache-ttl default: older entries are never hit."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be deleted."),
    insecure: bool = typer.Option(False, "--insecure", help="Use plain HTTP for every registry."),
    insecure_registry: List[str] = typer.Option([], "--insecure-registry", metavar="REG",
                                                help="Registry to use over plain HTTP (repeatable)."),
    skip_tls_verify: bool = typer.Option(False, "--skip-tls-verify", help="Do not verify TLS certificates."),
    skip_tls_verify_registry: List[str] = typer.Option([], "--skip-tls-verify-registry", metavar="REG",
                                                       help="Registry whose TLS certificate is not verified "
                                                            "(repeatable)."),
    registry_certificate: List[str] = typer.Option([], "--registry-certificate", metavar="REG=CA",
                                                   help="REGISTRY=CA.crt (repeatable)."),
    registry_client_cert: List[str] = typer.Option([], "--registry-client-cert", metavar="REG=CERT,KEY",
                                                   help="REGISTRY=CERT,KEY (repeatable)."),
    push_retry: int = typer.Option(0, "--push-retry", metavar="N", help="Extra attempts for each delete request."),
    verbosity: str = typer.Option("info", "--verbosity", "-v", metavar="LEVEL", help="Log level."),
    log_format: str = typer.Option("color", "--log-format", metavar="FORMAT", help="color, text or json."),
    log_timestamp: bool = typer.Option(False, "--log-timestamp", help="Prefix log lines with the time."),
) -> None:
    """Delete the entries of a layer cache created longer ago than --older-than (registry: through
    the distribution API; OCI layout: index entries, then unreferenced blobs)."""
    from .cache.prune import prune_layout, prune_registry
    from .dockerfile.duration import parse_go_duration
    from .logs import setup_logging

    try:
        setup_logging(verbosity, log_format, log_timestamp, "plain")
    except ValueError as e:
        raise UserError(str(e)) from None
    try:
        seconds = parse_go_duration(older_than) / 1e9
    except ValueError:
        raise UserError(f"--older-than={older_than}: not a duration (e.g. 336h, 72h, 30m)") from None
    if seconds < 0:
        raise UserError(f"--older-than={older_than}: must not be negative")
    if push_retry < 0:
        raise UserError(f"--push-retry={push_retry}: must be 0 or more (extra attempts)")
    now = time.time()
    cutoff = now - seconds
    if cache_repo.startswith("oci:"):
        from .cache.layout_store import parse_layout_repo
        report = prune_layout(parse_layout_repo(cache_repo), cutoff, dry_run)
    else:
        from .buildcmd import registry_options as _registry_options
        from .reference import parse_reference
        from .registry.auth import Keychain
        from .registry.client import RegistryClient
        try:
            repo = parse_reference(cache_repo).name
        except UserError as e:
            raise UserError(f"--cache-repo {cache_repo}: {e}") from None
        ropts = _registry_options(insecure, False, insecure_registry, skip_tls_verify, False,
                                  skip_tls_verify_registry, registry_certificate, registry_client_cert, [], [], False,
                                  push_retry, 0)
        with RegistryClient(ropts, Keychain.from_environment()) as client:
            report = prune_registry(client, repo, cutoff, dry_run)
    verb = "would delete" if dry_run else "deleted"
    for e in report.deleted if not dry_run else report.expired:
        log.info("%s %s (%s entry, created %s ago)", verb, e.name, e.kind, _age(now - e.created))
    hinted = False
    for f in report.failed:
        if f.status == 405 and hinted:
            log.warning("cannot delete %s: deletion disabled (405), as above", f.entry.name)
            continue
        hinted = hinted or f.status == 405
        log.warning("cannot delete %s: %s", f.entry.name, f.reason)
    print(_summary(report, older_than))
    real = [f for f in report.failed if f.status != 405]
    if real:
        raise UserError(f"{len(real)} expired entr{'y' if len(real) == 1 else 'ies'} of {report.location} could "
                        "not be deleted (see the warnings above)")


def _summary(report, older_than: str) -> str:
    """One line: what was found and done."""
    n_exp = len(report.expired)
    done = (f"{n_exp} would be deleted" if report.dry_run else
            f"{len(report.deleted)} deleted" + (f", {len(report.failed)} could not be" if report.failed else ""))
    line = (f"{report.location}: {counted(report.entries, 'cache entry', 'cache entries')}, {n_exp} older than {older_than}: {done}; "
            f"{report.entries - n_exp} kept")
    if report.others:
        line += f"; {report.others} other tag{'s' if report.others != 1 else ''} left alone"
    if report.location.startswith("oci:"):
        line += (f"; {report.blobs} unreferenced blob{'s' if report.blobs != 1 else ''} "
                 f"({_size(report.freed)}) {'would be ' if report.dry_run else ''}removed")
    elif report.deleted:
        line += "; the registry frees their blobs at its next garbage collection"
    return line


def run(argv: list[str]) -> None:
    """Run ``executor cache ARGV`` as the CLI does (one-line errors, exit codes)."""
    from .cli import _run_app, normalise_argv
    _run_app(cache_app, normalise_argv(argv), "executor cache")


if __name__ == "__main__":
    run(sys.argv[1:])
