"""Image references: ``[registry/]repository[:tag][@digest]``.

Grammar follows the distribution reference grammar (docker/distribution,
``reference/regexp.go``; OCI distribution-spec, spec.md "Pulling manifests"):

* registry  = host component(s) ``[:port]`` (or a bracketed IPv6 literal);
  the first path segment is a registry only when it contains ``.`` or ``:``,
  is ``localhost``, or contains upper-case letters (Docker's rule).
* repository = lower-case path components ``[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*``
  joined by ``/``; the full name is at most 255 characters.
* tag = ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}``
* digest = ``algorithm:hex`` (``sha256`` needs 64, ``sha512`` 128 lower-case hex).

Docker Hub shorthands are normalised: ``busybox`` ->
``docker.io/library/busybox:latest``; ``index.docker.io`` and
``registry-1.docker.io`` -> ``docker.io``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from executor.errors import UserError

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
DEFAULT_TAG = "latest"
_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(
    rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9A-Fa-f:.]+\])(?::[0-9]+)?$"
)
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_DIGEST_HEX_LEN = {"sha256": 64, "sha384": 96, "sha512": 128}
_MAX_NAME = 255


class ReferenceError(UserError):  # noqa: A001 - the interface name; shadows nothing we use
    """An image reference that does not follow the distribution reference grammar."""


@dataclass(frozen=True)
class Reference:
    """A parsed, normalised image reference.

    ``registry`` is a host[:port] (``docker.io`` for Docker Hub), ``repository``
    the path inside it (``library/busybox``), ``tag`` and/or ``digest``
    (``sha256:<64 hex>``). When neither tag nor digest is given, ``tag`` is
    ``"latest"``.
    """

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest, e.g. ``docker.io/library/busybox``."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes in ``/v2/<name>/manifests/<identifier>``: the digest if set, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def with_tag(self, tag: str) -> "Reference":
        """A copy with ``tag`` set (digest kept); raises ReferenceError for an invalid tag."""
        _check_tag(tag, f"{self.name}:{tag}")
        return replace(self, tag=tag)

    def with_digest(self, digest: str) -> "Reference":
        """A copy with ``digest`` set (tag kept); raises ReferenceError for an invalid digest."""
        _check_digest(digest, f"{self.name}@{digest}")
        return replace(self, digest=digest)

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s


def registry_api_host(registry: str) -> str:
    """Host[:port] to talk to for ``registry``: ``docker.io`` -> ``registry-1.docker.io``."""
    return DOCKER_HUB_API if normalize_registry(registry) == DOCKER_HUB else registry


def normalize_registry(registry: str) -> str:
    """Lower-case the host and fold Docker Hub aliases to ``docker.io``."""
    r = registry.lower()
    return DOCKER_HUB if r in _HUB_ALIASES else r


def _check_tag(tag: str, whole: str) -> None:
    if not _TAG_RE.match(tag):
        raise ReferenceError(
            f"invalid image reference {whole!r}: tag {tag!r} must be 1-128 characters of "
            "letters, digits, '_', '.' or '-' and must not start with '.' or '-'"
        )


def _check_digest(digest: str, whole: str) -> None:
    if not _DIGEST_RE.match(digest):
        raise ReferenceError(f"invalid image reference {whole!r}: digest {digest!r} must look like sha256:<64 hex digits>")
    algo, _, hexpart = digest.partition(":")
    want = _DIGEST_HEX_LEN.get(algo)
    if want is None:
        raise ReferenceError(f"invalid image reference {whole!r}: unsupported digest algorithm {algo!r} (use sha256)")
    if len(hexpart) != want or not re.fullmatch(r"[0-9a-f]+", hexpart):
        raise ReferenceError(
            f"invalid image reference {whole!r}: {algo} digest needs exactly {want} lower-case hex digits"
        )


def _split_registry(name: str) -> tuple[str | None, str]:
    """Split ``name`` (no tag/digest) into (registry or None, remainder) by Docker's rule."""
    first, sep, rest = name.partition("/")
    if not sep:
        return None, name
    if "." in first or ":" in first or first == "localhost" or first.lower() != first:
        return first, rest
    return None, name


def parse_reference(s: str) -> Reference:
    """Parse ``s`` into a normalised :class:`Reference`.

    Examples: ``busybox`` -> ``docker.io/library/busybox:latest``;
    ``127.0.0.1:5000/a/b@sha256:...`` -> registry ``127.0.0.1:5000``, no tag.
    Raises :class:`ReferenceError` (a ``UserError``) naming the offending part.
    """
    if not isinstance(s, str) or not s or s != s.strip():
        raise ReferenceError(f"invalid image reference {s!r}: must be a non-empty string without surrounding spaces")
    if any(c.isspace() for c in s):
        raise ReferenceError(f"invalid image reference {s!r}: must not contain whitespace")
    scheme, sep, after = s.partition("://")
    if sep and scheme.isalpha():
        hint = " (--insecure-registry HOST[:PORT] for a plain-HTTP registry)" if scheme.lower() == "http" else ""
        raise ReferenceError(f"invalid image reference {s!r}: drop the '{scheme}://' (an image reference has no "
                             f"scheme: {after}){hint}")
    rest = s
    digest: str | None = None
    if "@" in rest:
        rest, _, digest = rest.partition("@")
        if "@" in digest:
            raise ReferenceError(f"invalid image reference {s!r}: more than one '@'")
        _check_digest(digest, s)
    # A tag is after the last ':' that comes after the last '/' (a ':' before it is a port).
    tag: str | None = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1 :]
        _check_tag(tag, s)
    registry, path = _split_registry(rest)
    if registry is not None:
        if not _DOMAIN_RE.match(registry):
            raise ReferenceError(f"invalid image reference {s!r}: registry {registry!r} is not a valid host[:port]")
        registry = normalize_registry(registry)
    else:
        registry = DOCKER_HUB
    if not path:
        raise ReferenceError(f"invalid image reference {s!r}: missing repository name")
    for comp in path.split("/"):
        if not comp:
            raise ReferenceError(f"invalid image reference {s!r}: empty path component in {path!r}")
        if comp.lower() != comp:
            raise ReferenceError(f"invalid image reference {s!r}: repository name {path!r} must be lower-case")
        if not _PATH_COMPONENT_RE.match(comp):
            raise ReferenceError(
                f"invalid image reference {s!r}: repository component {comp!r} may only contain "
                "a-z, 0-9 and single separators '.', '_', '__' or '-' between them"
            )
    if registry == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > _MAX_NAME:
        raise ReferenceError(f"invalid image reference {s!r}: name longer than {_MAX_NAME} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=path, tag=tag, digest=digest)
