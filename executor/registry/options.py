"""Per-build registry settings (the CLI's registry flags) and the endpoint they select."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from executor.errors import RegistryError
from executor.reference import normalize_registry
from executor.registry.endpoints import DEFAULT_TIMEOUT_S, Endpoint, make_base

@dataclass
class RegistryOptions:
    """Per-build registry settings (CLI flags).

    Scheme: plain HTTP when the registry is in ``insecure_registries``, or for any
    registry when ``insecure`` is set, or for pulls when ``insecure_pull`` is set.
    Otherwise HTTPS -- except that a loopback registry (``localhost``, 127.0.0.0/8,
    ``::1``; :func:`is_loopback`) that turns out not to speak TLS is used over plain
    HTTP, as go-containerregistry (Kaniko) does, unless ``loopback_plain_http`` is off
    or a ``registry_certificates``/``registry_client_certs`` entry for it asks for TLS
    (see :func:`endpoint_for`).
    TLS verification is skipped when the registry is in ``skip_tls_verify_registries``,
    or ``skip_tls_verify`` is set, or for pulls with ``skip_tls_verify_pull``.
    ``registry_certificates``: registry -> extra CA bundle path;
    ``registry_client_certs``: registry -> (cert path, key path) for mTLS.
    Mirrors (pulls only): ``registry_mirrors`` for docker.io, ``registry_maps``
    ORIG -> mirrors; each mirror is ``host[:port][/path-prefix]``. The original
    registry is tried last unless ``skip_default_registry_fallback``.
    Retry counts are *extra* attempts on top of
    :data:`~executor.registry.transport.DEFAULT_EXTRA_RETRIES`.
    ``chunk_size`` in bytes: blobs larger than this are uploaded with PATCH chunks.
    ``timeout`` in seconds: how long a connection may stay silent (a read or a write
    making no progress) before that attempt fails and is retried within the budget;
    connecting waits at most ``min(timeout, 15)`` seconds.
    """

    insecure: bool = False
    insecure_pull: bool = False
    insecure_registries: frozenset[str] = frozenset()
    skip_tls_verify: bool = False
    skip_tls_verify_pull: bool = False
    skip_tls_verify_registries: frozenset[str] = frozenset()
    registry_certificates: dict[str, str] = field(default_factory=dict)
    registry_client_certs: dict[str, tuple[str, str]] = field(default_factory=dict)
    registry_mirrors: tuple[str, ...] = ()
    registry_maps: dict[str, tuple[str, ...]] = field(default_factory=dict)
    skip_default_registry_fallback: bool = False
    push_retry: int = 0
    image_download_retry: int = 0
    chunk_size: int = 16 * 1024 * 1024
    user_agent: str = "executor/0.1"
    timeout: float = DEFAULT_TIMEOUT_S
    loopback_plain_http: bool = True


def lookup(mapping: dict, registry: str):
    """Value for ``registry`` in a per-registry option map: exact, then Hub alias, then host without port."""
    if registry in mapping:
        return mapping[registry]
    norm = normalize_registry(registry)
    for k, v in mapping.items():
        if normalize_registry(k) == norm:
            return v
    host = registry.rsplit(":", 1)[0] if registry.count(":") == 1 else registry
    return mapping.get(host)


def listed(regs: frozenset[str], registry: str) -> bool:
    """True when ``registry`` (or its Docker Hub alias) is in ``regs``."""
    norm = normalize_registry(registry)
    return any(normalize_registry(r) == norm for r in regs)


def registry_host(registry: str) -> str:
    """The host part of ``host[:port]``, ``[v6addr]:port`` or a bare IPv6 address, lower-cased."""
    r = registry.strip().lower()
    if r.startswith("["):
        return r[1:].split("]", 1)[0]
    if r.count(":") == 1:
        return r.rsplit(":", 1)[0]
    return r


def is_loopback(registry: str) -> bool:
    """True for ``localhost``, any 127.0.0.0/8 address and ``::1`` (with or without a port).

    go-containerregistry's ``name.Registry.Scheme()`` also lets ``*.localhost``, ``*.local``
    style names and RFC 1918 addresses fall back to HTTP; this client does not (those are
    reachable from other machines, where a plain-HTTP downgrade is an attack, not a
    convenience): pass ``--insecure-registry`` for them."""
    host = registry_host(registry)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_for(o: RegistryOptions, registry: str, pull: bool) -> Endpoint:
    """Scheme, CA and client certificate for talking to ``registry`` (``pull``: a read).

    ``http_fallback`` is set on the HTTPS endpoint of a loopback registry the options do not
    pin to a scheme: the transport then probes ``GET /v2/`` over HTTPS once and switches to
    plain HTTP when the server does not speak TLS (:meth:`Transport.endpoint`). An explicit
    ``--registry-certificate`` or ``--registry-client-cert`` for the registry means "TLS
    only": no fallback. ``--skip-tls-verify*`` keeps the fallback (the Kaniko catalog's
    tests pass it for a plain-HTTP ``localhost:5000``). Raises RegistryError for a host name no
    lookup can take (an empty label, or one longer than DNS's 63 characters)."""
    host = registry_host(registry)
    if ":" not in host and any(not 0 < len(label) <= 63 for label in host.removesuffix(".").split(".")):
        raise RegistryError(f"registry {registry}: the host name cannot be looked up (each dot-separated part "
                            "must be 1 to 63 characters); check the name")
    plain = o.insecure or (pull and o.insecure_pull) or listed(o.insecure_registries, registry)
    skip = o.skip_tls_verify or (pull and o.skip_tls_verify_pull) or listed(o.skip_tls_verify_registries, registry)
    ca = lookup(o.registry_certificates, registry)
    cert = lookup(o.registry_client_certs, registry)
    verify: bool | str = False if skip else (ca or True)
    fallback = not plain and o.loopback_plain_http and not ca and not cert and is_loopback(registry)
    return Endpoint(registry=registry, base=make_base(registry, plain), verify=verify,
                    cert=tuple(cert) if cert else None, http_fallback=fallback)
