"""TLS client contexts for registry connections, one rule for every connection the build makes.

:func:`client_context` builds what httpx builds for the same ``verify`` value (httpx 0.28+
``create_ssl_context``: ``SSL_CERT_FILE``/``SSL_CERT_DIR`` or certifi's bundle for True), so
the first contact (:mod:`executor.registry.firstcontact`) and the client's transport trust the
same certificates, and the transport can reuse a context the first contact already loaded
(loading a CA bundle costs tens of milliseconds).
"""

from __future__ import annotations

import os
import ssl


def client_context(verify: bool | str, cert: tuple[str, str] | None = None) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` for a client connection.

    ``verify``: True -> the CA bundle named by ``SSL_CERT_FILE`` (or directory ``SSL_CERT_DIR``),
    else certifi's (the system's CAs when a client certificate is given); False -> no
    verification at all (``--skip-tls-verify*``); a path -> the system's CAs plus that bundle
    (``--registry-certificate``). ``cert``: (certificate, key) paths for mutual TLS
    (``--registry-client-cert``). Raises RegistryError naming a file that cannot be loaded
    (missing, unreadable, not PEM) and where it was given."""
    if verify is True and cert:
        ctx = ssl.create_default_context()
    elif verify is True:
        if os.environ.get("SSL_CERT_FILE"):
            ctx = _load(f"the CA bundle {os.environ['SSL_CERT_FILE']} named by SSL_CERT_FILE",
                        ssl.create_default_context, cafile=os.environ["SSL_CERT_FILE"])
        elif os.environ.get("SSL_CERT_DIR"):
            ctx = _load(f"the CA directory {os.environ['SSL_CERT_DIR']} named by SSL_CERT_DIR",
                        ssl.create_default_context, capath=os.environ["SSL_CERT_DIR"])
        else:
            import certifi
            ctx = ssl.create_default_context(cafile=certifi.where())
    elif verify is False:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context()
        _load(f"the CA bundle {verify} given by --registry-certificate", ctx.load_verify_locations, cafile=verify)
    if cert:
        _load(f"the client certificate {cert[0]} and key {cert[1]} given by --registry-client-cert",
              ctx.load_cert_chain, cert[0], cert[1])
    return ctx


def _load(what: str, load, *args, **kw):
    """``load(*args, **kw)``; a file it cannot load (OSError, ssl.SSLError) -> RegistryError."""
    try:
        return load(*args, **kw)
    except OSError as e:  # ssl.SSLError is an OSError
        from executor.errors import RegistryError
        reason = e.strerror if e.strerror and not isinstance(e, ssl.SSLError) else f"not PEM, or not a pair ({e})"
        raise RegistryError(f"cannot load {what}: {reason}") from None
