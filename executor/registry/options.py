"""Per-build registry settings (the CLI's registry flags) and the endpoint they select."""

from __future__ import annotations

from dataclasses import dataclass, field

from executor.reference import normalize_registry
from executor.registry.transport import DEFAULT_TIMEOUT_S, Endpoint, make_base

@dataclass
class RegistryOptions:
    """Per-build registry settings (CLI flags).

    Scheme: plain HTTP when the registry is in ``insecure_registries``, or for any
    registry when ``insecure`` is set, or for pulls when ``insecure_pull`` is set.
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


def endpoint_for(o: RegistryOptions, registry: str, pull: bool) -> Endpoint:
    """Scheme, CA and client certificate for talking to ``registry`` (``pull``: a read)."""
    plain = o.insecure or (pull and o.insecure_pull) or listed(o.insecure_registries, registry)
    skip = o.skip_tls_verify or (pull and o.skip_tls_verify_pull) or listed(o.skip_tls_verify_registries, registry)
    ca = lookup(o.registry_certificates, registry)
    cert = lookup(o.registry_client_certs, registry)
    verify: bool | str = False if skip else (ca or True)
    return Endpoint(registry=registry, base=make_base(registry, plain), verify=verify,
                    cert=tuple(cert) if cert else None)
