"""Where and how to reach one registry: the :class:`Endpoint` (scheme, host, TLS settings).

Plain data and string rules only (no HTTP library): the CLI's first contact with a registry
(:mod:`executor.registry.firstcontact`) chooses its endpoint with the same rules as the
client's transport, before the client's HTTP stack is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

from executor.reference import registry_api_host

#: Seconds a connection may stay silent (no byte read or written) before the attempt
#: fails with a timeout and is retried (``RegistryOptions.timeout``).
DEFAULT_TIMEOUT_S = 60.0
#: Seconds to wait at most for a TCP (and TLS) connection.
CONNECT_TIMEOUT_S = 15.0

#: TLS handshake errors that show the peer does not speak TLS (a plain-HTTP server).
NOT_TLS_ERRORS = ("wrong_version_number", "wrong version number", "record layer failure", "record_layer_failure",
                  "packet_length_too_long", "packet length too long", "http_request", "http request",
                  "unknown_protocol", "unknown protocol")
#: TLS handshake errors that show the peer speaks TLS (no fallback to plain HTTP then).
TLS_SPOKEN_ERRORS = ("certificate", "unknown_ca", "unknown ca", "alert", "handshake failure", "handshake_failure")


@dataclass(frozen=True)
class Endpoint:
    """How to talk to one registry: ``base`` URL (``https://host:port``) and TLS settings."""

    registry: str
    base: str
    verify: bool | str = True          # True, False or path to a CA bundle
    cert: tuple[str, str] | None = None
    http_fallback: bool = False        # HTTPS, but plain HTTP if the server does not speak TLS

    @property
    def plain_http(self) -> bool:
        """True for ``http://`` (``--insecure*``, or a loopback registry without TLS): no TLS at all."""
        return self.base.startswith("http://")

    def as_plain_http(self) -> "Endpoint":
        """This endpoint over plain HTTP (a loopback registry that answered TLS with plain HTTP)."""
        return Endpoint(self.registry, make_base(self.registry, True), self.verify, self.cert)


def handshake_verdict(error_text: str) -> str | None:
    """What a failed TLS handshake says about the server: ``"plain"`` (it does not speak
    TLS), ``"tls"`` (it does, and refused us or our trust) or None (nothing to conclude:
    refused, reset, timed out)."""
    low = error_text.lower()
    if any(p in low for p in NOT_TLS_ERRORS):
        return "plain"
    if any(p in low for p in TLS_SPOKEN_ERRORS):
        return "tls"
    return None


def make_base(registry: str, plain_http: bool) -> str:
    """``http(s)://`` + the API host for ``registry``."""
    return f"{'http' if plain_http else 'https'}://{registry_api_host(registry)}"
