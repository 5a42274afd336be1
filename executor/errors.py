"""Exception classes for errors a user can act on.

Every error the CLI reports without a traceback derives from ``UserError``;
anything else is a bug and is shown with its traceback.
"""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input the user controls; printed as one clear message.

    ``exit_code`` is the process exit status the CLI uses (1 unless a RUN
    instruction failed, in which case it is that command's own exit status).
    """

    exit_code: int = 1


class DockerfileError(UserError):
    """A Dockerfile that cannot be parsed or is invalid.

    The message names the file and the line range, e.g. ``Dockerfile:3-4: ...``.
    """

    def __init__(self, message: str, filename: str = "Dockerfile", start: int = 0, end: int | None = None):
        self.filename = filename
        self.start = start
        self.end = end if end is not None else start
        loc = f"{filename}:{start}" if self.end == start else f"{filename}:{start}-{self.end}"
        super().__init__(f"{loc}: {message}" if start else f"{filename}: {message}")
        self.detail = message


class BuildError(UserError):
    """An instruction failed during the build (missing COPY source, bad --chown, ...)."""


class RunFailed(BuildError):
    """A RUN instruction exited non-zero; ``exit_code`` is the command's exit status."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code if 0 < exit_code < 256 else 1


class RegistryError(UserError):
    """A registry could not be reached, refused us, or returned bad data.

    The message names the registry, the operation tried and what to do. ``status`` is the
    HTTP status code of the registry's answer that caused the error (401, 403, 404, 429,
    503, ...; the last one when retries ran out), or None when no HTTP answer did
    (connection failure, timeout, corrupt or malformed data, an invalid argument).
    """

    def __init__(self, message: str = "", *, status: int | None = None):
        super().__init__(message)
        self.status = status


class ImmutableTagError(RegistryError):
    """The registry refused a manifest PUT because the tag already exists and the repository
    keeps its tags immutable (:mod:`executor.registry.immutable` recognises the refusals of
    ECR, Harbor, Artifact Registry, Docker Hub, Quay, ...). ``status`` is the HTTP status,
    ``reference`` the ``registry/repo:tag`` refused and ``detail`` the registry's own words."""

    def __init__(self, message: str = "", *, status: int | None = None, reference: str = "", detail: str = ""):
        super().__init__(message, status=status)
        self.reference = reference
        self.detail = detail


class NotFound(RegistryError):
    """The registry answered 404 Not Found to a manifest or blob GET/HEAD: the tag, digest or
    repository does not exist there (OCI distribution-spec, ``MANIFEST_UNKNOWN``,
    ``BLOB_UNKNOWN``, ``NAME_UNKNOWN``). ``status`` is 404. Catch it instead of looking for
    "404" in the message."""

    def __init__(self, message: str = "", *, status: int | None = 404):
        super().__init__(message, status=status)


class LayerError(UserError):
    """A layer tarball is malformed or tries to escape the build root."""


class Interrupted(UserError):
    """The build was stopped by SIGINT or SIGTERM; ``exit_code`` is 128 + the signal number
    (130, 143), the shell convention. Raised by the CLI's signal handlers (executor/cli.py);
    everything a RUN started has been killed and its placed files removed when it reaches the CLI."""

    def __init__(self, signum: int):
        super().__init__("interrupted")
        self.signum = signum
        self.exit_code = 128 + signum
