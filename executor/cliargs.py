"""Command-line argument helpers of the build command: Kaniko's spellings, flag groups, help.

Go/pflag booleans (``--flag=true|false``), ``-f=x`` shorthands, old camelCase / snake_case
spellings (``--tarPath``), the no-op Kaniko flags and their warnings, key=value parsers, and
the help panel names (the grouped ``--help`` itself is executor.cliapp's).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import UserError
from .options import SecretSource

BOOL_FLAGS = {
    "--no-push", "--insecure", "--insecure-pull", "--skip-tls-verify", "--skip-tls-verify-pull", "--cache",
    "--cache-run-layers", "--cache-copy-layers", "--no-push-cache", "--reproducible", "--cleanup",
    "--single-snapshot", "--skip-default-registry-fallback", "--log-timestamp", "--force",
    "--skip-unused-stages", "--compressed-caching", "--use-new-run", "--ignore-var-run",
    "--skip-push-permission-check", "--force-build-metadata", "--sbom", "--provenance",
    "--push-ignore-immutable-tag-errors", "--preserve-context", "--pre-cleanup", "--materialize",
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
    """Kaniko's rule: an absolute path (or one that exists as given) first, then relative to the context.

    Raises UserError for a URL (remote Dockerfiles are not fetched)."""
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", dockerfile):
        raise UserError(f"--dockerfile {dockerfile}: a URL; remote Dockerfiles are not fetched. Download it into "
                        "the context (e.g. curl -o CONTEXT/Dockerfile URL) and pass its path")
    p = Path(dockerfile)
    if p.is_absolute():
        return p
    if (context / p).exists():
        return (context / p).resolve()
    if p.exists():
        return p.resolve()
    return (context / p).resolve()


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
    "--snapshot-mode": "the executor takes a RUN's changes from its overlayfs upper directory, or "
                       "where it cannot mount from a stat index of the whole root (type, mode, owner, "
                       "size, mtime, ctime, inode, link target; no content hashing), which catches what "
                       "full mode does at the cost of redo",
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
    # the maintained fork's (osscontainertools/kaniko) flags for a build that runs in the container's own /
    "--preserve-context": "the build root is a directory of the executor's work directory, never its own /, so "
                          "files around the executor (secrets, the CI job's tools) stay as they are between "
                          "stages and after the build",
    "--pre-cleanup": "every build starts from an empty root of its own in the work directory; the executor's own "
                     "filesystem never enters an image, so there is nothing to clean first",
    "--materialize": "the image's files never land in the executor's own /, cache hits or not; to get them, "
                     "write --tar-path or --oci-layout-path",
    "--credential-helpers": "credentials come from a Docker config.json: 'auths', and 'credHelpers' / "
                            "'credsStore' run docker-credential-<name>; there are no built-in helpers",
}

# The fork's --credential-helpers names -> the docker-credential-<name> helper to name in config.json
# "credHelpers" instead (the fork builds these keychains in: osscontainertools/kaniko pkg/creds).
FORK_CREDENTIAL_HELPERS = {
    "env": "none: put the KANIKO_<HOST>_USER/_PASSWORD pair in an 'auths' entry",
    "google": "gcloud (or gcr)", "ecr": "ecr-login", "acr": "acr-env", "gitlab": "gitlabci",
}

def credential_helpers(values: list[str]) -> list[str]:
    """The fork's ``--credential-helpers`` values (repeatable, or comma-separated; ``''`` turns
    its built-in helpers off), checked: a name it does not know either is an error, since no
    helper of that name exists anywhere. The executor has no built-in helpers (NO_OP_FLAGS)."""
    names = [n.strip().lower() for v in values for n in v.split(",")]
    bad = [n for n in names if n and n not in FORK_CREDENTIAL_HELPERS]
    if bad:
        raise UserError(f"--credential-helpers={bad[0]}: unknown helper (the fork knows "
                        f"{', '.join(FORK_CREDENTIAL_HELPERS)}; '' turns them off); here credentials come from a "
                        "Docker config.json: name docker-credential-<name> in its 'credHelpers' or 'credsStore'")
    return [n for n in names if n]


def credential_helpers_hint(names: list[str]) -> str:
    """What to put in config.json instead of each fork helper in ``names`` ('' when none)."""
    parts = [f"{n} -> {FORK_CREDENTIAL_HELPERS[n]}" for n in dict.fromkeys(names)]
    return f" (config.json 'credHelpers' per registry: {'; '.join(parts)})" if parts else ""


# Old spellings (camelCase, snake_case) still found in pipelines: rewritten to the kebab-case
# flag, hidden from --help, and named once in a deprecation warning. Kaniko itself kept
# --snapshotMode, --customPlatform, --tarPath and --whitelist-var-run; the others are accepted
# because old wrapper scripts pass them.
RENAMED_FLAGS = {"--whitelist-var-run": "--ignore-var-run"}


def _kebab(name: str) -> str:
    """``--tarPath`` / ``--tar_path`` -> ``--tar-path``."""
    body = re.sub(r"(?<=[a-z0-9])([A-Z])", r"-\1", name[2:]).replace("_", "-").lower()
    return "--" + body


# Go's strconv.ParseBool spellings (pflag's booleans), lower-cased: TRUE/True/T count too
GO_BOOLS = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


def env_bool(name: str) -> bool:
    """A boolean environment variable as Kaniko reads one (Go's strconv.ParseBool): unset or
    empty is false; raises UserError for a spelling Go does not accept (``KANIKO_NO_PUSH=yes``)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return False
    value = GO_BOOLS.get(raw.lower())
    if value is None:
        raise UserError(f"{name}={raw}: {name} takes true or false (or Go's 1/t, 0/f)")
    return value


def _bool_base(arg: str) -> str | None:
    """The boolean flag ``arg`` sets (``--cleanup`` for ``--cleanup``, ``--cleanup=false`` and
    ``--no-cleanup``), or None when it is not one."""
    name = arg.partition("=")[0]
    if name in BOOL_FLAGS:
        return name
    if name.startswith("--no-") and "--" + name[5:] in TRUE_DEFAULT:
        return "--" + name[5:]
    return None


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
        base = _bool_base(name)
        if base is not None and (eq or name == arg):
            # a boolean given again overrides what came before, as in pflag: the last one wins
            out = [a for a in out if _bool_base(a) != base]
        if eq and name in BOOL_FLAGS:
            if value.lower() not in GO_BOOLS:
                raise UserError(f"{name}={value}: {name} takes true or false (or Go's 1/t, 0/f), "
                                f"e.g. {name}=false")
            truthy = GO_BOOLS[value.lower()]
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


def parse_platforms(value: str) -> list[str]:
    """``--custom-platform`` / ``--platform``: ``os/arch[/variant]`` values, comma-separated, in
    order, without repeats. Raises UserError naming a malformed value."""
    out: list[str] = []
    for part in value.split(","):
        p = part.strip().lower()
        bits = p.split("/")
        if len(bits) not in (2, 3) or not all(bits):
            raise UserError(f"--custom-platform={part.strip() or value!r}: use OS/ARCH[/VARIANT], e.g. linux/arm64 "
                            "(several: linux/amd64,linux/arm64)")
        if p not in out:
            out.append(p)
    return out
