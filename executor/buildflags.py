"""The build command's flags as plain data, and a parser for the common command lines.

Start-up time: importing typer and building its click command costs 0.1-0.3 s of every build
(measured: issue 12), before the first registry request. :func:`parse` reads an argv that uses
only the build command's own flags, in the forms click accepts (``--flag VALUE``,
``--flag=VALUE``, ``-f VALUE``, ``-fVALUE``, boolean ``--flag``), into the same values typer
would pass to ``executor.cliapp.build``. Anything else -- ``--help``, an unknown flag, a
positional argument, ``--``, a missing value, a value typer would reject (``--jobs=x``, a
value after a boolean flag) -- returns None and the typer command parses the argv instead, so
help, usage errors and their messages are typer's own.

:data:`FLAGS` must match the typer command flag for flag (names, kind, default): a unit test
(tests/unit/test_cli_startup.py) compares the two, so a flag added to one and not the other
fails CI. Kinds: ``str``, ``str?`` (None by default), ``int``, ``path?`` (a
:class:`pathlib.Path`, None by default), ``list`` (repeatable ``str``), ``bool`` (a flag).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# parameter name, kind, default, flag names (the first long name is the one warnings show)
_TABLE: tuple[tuple[str, str, Any, tuple[str, ...]], ...] = (
    ("context", "str", "/workspace", ("--context", "-c")),
    ("context_sub_path", "str?", None, ("--context-sub-path",)),
    ("git", "list", None, ("--git",)),
    ("dockerfile", "str", "Dockerfile", ("--dockerfile", "-f")),
    ("build_arg", "list", None, ("--build-arg",)),
    ("target", "str?", None, ("--target",)),
    ("secret", "list", None, ("--secret",)),
    ("ssh", "list", None, ("--ssh",)),
    ("bucket", "str?", None, ("--bucket", "-b")),
    ("destination", "list", None, ("--destination", "-d")),
    ("insecure", "bool", False, ("--insecure",)),
    ("insecure_pull", "bool", False, ("--insecure-pull",)),
    ("insecure_registry", "list", None, ("--insecure-registry",)),
    ("skip_tls_verify", "bool", False, ("--skip-tls-verify",)),
    ("skip_tls_verify_pull", "bool", False, ("--skip-tls-verify-pull",)),
    ("skip_tls_verify_registry", "list", None, ("--skip-tls-verify-registry",)),
    ("registry_certificate", "list", None, ("--registry-certificate",)),
    ("registry_client_cert", "list", None, ("--registry-client-cert",)),
    ("registry_mirror", "list", None, ("--registry-mirror",)),
    ("registry_map", "list", None, ("--registry-map",)),
    ("skip_default_registry_fallback", "bool", False, ("--skip-default-registry-fallback",)),
    ("push_retry", "int", 0, ("--push-retry",)),
    ("push_ignore_immutable_tag_errors", "bool", False, ("--push-ignore-immutable-tag-errors",)),
    ("image_download_retry", "int", 0, ("--image-download-retry",)),
    ("skip_push_permission_check", "bool", False, ("--skip-push-permission-check",)),
    ("cache", "bool", False, ("--cache",)),
    ("cache_repo", "str?", None, ("--cache-repo",)),
    ("cache_from", "list", None, ("--cache-from",)),
    ("cache_dir", "path?", None, ("--cache-dir",)),
    ("cache_ttl", "str", "336h", ("--cache-ttl",)),
    ("cache_run_layers", "bool", True, ("--cache-run-layers",)),
    ("cache_copy_layers", "bool", True, ("--cache-copy-layers",)),
    ("no_push_cache", "bool", False, ("--no-push-cache",)),
    ("run_cache_dir", "path?", None, ("--run-cache-dir",)),
    ("no_push", "bool", "$KANIKO_NO_PUSH", ("--no-push",)),
    ("tar_path", "path?", None, ("--tar-path",)),
    ("oci_layout_path", "path?", None, ("--oci-layout-path",)),
    ("digest_file", "path?", None, ("--digest-file",)),
    ("image_name_with_digest_file", "path?", None, ("--image-name-with-digest-file",)),
    ("image_name_tag_with_digest_file", "path?", None, ("--image-name-tag-with-digest-file",)),
    ("label", "list", None, ("--label",)),
    ("annotation", "list", None, ("--annotation",)),
    ("image_format", "str?", None, ("--image-format",)),
    ("reproducible", "bool", False, ("--reproducible",)),
    ("compression", "str", "gzip", ("--compression",)),
    ("compression_level", "int", -1, ("--compression-level",)),
    ("sbom", "bool", False, ("--sbom",)),
    ("sbom_format", "str", "spdx", ("--sbom-format",)),
    ("sbom_path", "path?", None, ("--sbom-path",)),
    ("provenance", "bool", False, ("--provenance",)),
    ("provenance_path", "path?", None, ("--provenance-path",)),
    ("custom_platform", "str?", None, ("--custom-platform", "--platform")),
    ("jobs", "int", 0, ("--jobs", "-j")),
    ("ignore_path", "list", None, ("--ignore-path",)),
    ("run_isolation", "str", "auto", ("--run-isolation",)),
    ("single_snapshot", "bool", False, ("--single-snapshot",)),
    ("kaniko_dir", "path?", None, ("--kaniko-dir",)),
    ("cleanup", "bool", True, ("--cleanup",)),
    ("verbosity", "str", "info", ("--verbosity", "-v")),
    ("log_format", "str", "color", ("--log-format",)),
    ("log_timestamp", "bool", False, ("--log-timestamp",)),
    ("progress", "str", "auto", ("--progress",)),
    ("version", "bool", False, ("--version",)),
    ("snapshot_mode", "str", "full", ("--snapshot-mode",)),
    ("use_new_run", "bool", False, ("--use-new-run",)),
    ("compressed_caching", "bool", True, ("--compressed-caching",)),
    ("force", "bool", False, ("--force",)),
    ("skip_unused_stages", "bool", True, ("--skip-unused-stages",)),
    ("ignore_var_run", "bool", True, ("--ignore-var-run",)),
    ("force_build_metadata", "bool", False, ("--force-build-metadata",)),
    ("image_fs_extract_retry", "int", 0, ("--image-fs-extract-retry",)),
    ("preserve_context", "bool", False, ("--preserve-context",)),
    ("pre_cleanup", "bool", False, ("--pre-cleanup",)),
    ("materialize", "bool", False, ("--materialize",)),
    ("credential_helpers", "list", None, ("--credential-helpers",)),
    ("no_cache_run_layers", "bool", False, ("--no-cache-run-layers",)),
    ("no_cache_copy_layers", "bool", False, ("--no-cache-copy-layers",)),
    ("no_cleanup", "bool", False, ("--no-cleanup",)),
    ("no_compressed_caching", "bool", False, ("--no-compressed-caching",)),
    ("no_ignore_var_run", "bool", False, ("--no-ignore-var-run",)),
    ("no_skip_unused_stages", "bool", False, ("--no-skip-unused-stages",)),
)


@dataclass(frozen=True)
class Flag:
    """One option of the build command: its parameter ``name``, ``kind`` (see the module doc),
    ``default`` and every spelling in ``names`` (``--long`` and ``-s`` forms)."""

    name: str
    kind: str
    default: Any
    names: tuple[str, ...]

    @property
    def primary(self) -> str:
        """The first ``--long`` name (the one click reports and warnings name)."""
        return next(n for n in self.names if n.startswith("--"))

    def default_value(self) -> Any:
        """The value when the flag is not given (a fresh list for repeatable flags)."""
        if self.kind == "list":
            return []
        if self.default == "$KANIKO_NO_PUSH":
            from .cliargs import env_bool
            return env_bool("KANIKO_NO_PUSH")
        return self.default


FLAGS: tuple[Flag, ...] = tuple(Flag(*row) for row in _TABLE)
_BY_NAME: dict[str, Flag] = {n: f for f in FLAGS for n in f.names}
#: every long flag of the build command (what ``normalise_argv(known=...)`` takes)
KNOWN_FLAGS: frozenset[str] = frozenset(n for f in FLAGS for n in f.names if n.startswith("--"))
_INT = re.compile(r"-?[0-9]+\Z")


@dataclass
class ParsedFlags:
    """What :func:`parse` read: ``values`` maps every parameter name to its value (defaults
    included), ``given`` holds the primary long name of each flag on the command line."""

    values: dict[str, Any]
    given: set[str]


def parse(argv: list[str]) -> ParsedFlags | None:
    """The build command's values for ``argv`` (already through ``normalise_argv``), or None
    when typer must parse it (help, an unknown flag or form, a value typer would reject)."""
    values = {f.name: f.default_value() for f in FLAGS}
    given: set[str] = set()
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            attached = value if eq else None
        elif arg.startswith("-") and len(arg) >= 2:
            name, attached = arg[:2], (arg[2:] or None)
        else:
            return None  # a positional argument, "-" or "--": typer's error
        flag = _BY_NAME.get(name)
        if flag is None:
            return None
        if flag.kind == "bool":
            if attached is not None:
                return None
            values[flag.name] = True
        else:
            if attached is None:
                if i >= len(argv):
                    return None
                attached = argv[i]
                i += 1
            value = _convert(flag.kind, attached)
            if value is None:
                return None
            if flag.kind == "list":
                values[flag.name].append(value)
            else:
                values[flag.name] = value
        given.add(flag.primary)
    return ParsedFlags(values, given)


def _convert(kind: str, raw: str) -> Any:
    if kind == "int":
        return int(raw) if _INT.match(raw) else None
    if kind == "path?":
        return Path(raw)
    return raw
