"""The build's first contact with a registry: ``GET /v2/`` before the HTTP client exists.

The distribution spec's ping (``GET /v2/``, "Determining support") tells a client whether the
registry speaks the API and which auth challenge it sets. The CLI sends it from a daemon thread
as soon as its flags are read, with the standard library's socket (and ssl for HTTPS): importing
the client's HTTP stack takes longer than most registries take to answer. What the contact learns
is handed to the client's transport (:meth:`executor.registry.transport.Transport.seed`), which
then sends no ping of its own:

* the scheme of a loopback registry that may fall back to plain HTTP (the handshake is judged by
  :func:`executor.registry.endpoints.handshake_verdict`, as the transport's own probe does);
* the status of ``GET /v2/`` (200 or 401; or 429/5xx, which the client's ping counts as its
  first failed attempt, so the retry budget is the one the client always had; anything else is
  left for the client's ping, with its retries and error messages) and the ``WWW-Authenticate``
  challenge of a 401;
* the TLS context the request used (:func:`executor.registry.tls.client_context`), so the
  client does not load the CA bundle a second time.

No credentials are sent. A contact that fails, times out, or reads anything but a well-formed
HTTP/1.x status line and headers (at most :data:`MAX_HEAD_BYTES`) teaches nothing; the client
then pings as it always did. Requests: one ``GET /v2/`` per endpoint (two TCP connections for a
loopback registry whose TLS handshake showed it speaks plain HTTP).
"""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

from executor.registry.endpoints import Endpoint, handshake_verdict

log = logging.getLogger("executor.registry")

#: Seconds a first contact may take (connect, handshake, each read) before it is given up.
CONTACT_TIMEOUT_S = 5.0
#: Bytes of response head (status line + headers) read at most; a longer head teaches nothing.
MAX_HEAD_BYTES = 64 * 1024
#: The statuses of ``GET /v2/`` that a contact hands on: the spec's "supported" answers, and the
#: transient failures the client's ping retries (:meth:`executor.registry.core.ClientCore.ping`),
#: handed on as that ping's first failed attempt (the ping retries exactly these: it imports them).
USEFUL_STATUSES = (200, 401)
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class Contact:
    """What one first contact learnt about an endpoint.

    ``endpoint``: the endpoint as resolved (a loopback registry's plain-HTTP endpoint when its
    handshake showed no TLS); ``status``: 200 or 401 from ``GET /v2/`` (or one of
    :data:`RETRY_STATUSES`: a failed first attempt), None when only the scheme was learnt;
    ``challenge``: the ``WWW-Authenticate`` values of a 401 joined by ``", "``;
    ``ssl_context``: the ``ssl.SSLContext`` a verified HTTPS request used, else None;
    ``seconds``: from the start of the contact to its answer."""

    endpoint: Endpoint
    status: int | None
    challenge: str = ""
    ssl_context: Any = None
    seconds: float = 0.0


class ContactFailed(Exception):
    """The contact taught nothing (connection refused, timeout, malformed answer)."""


class FirstContact:
    """``GET /v2/`` to each of ``endpoints`` on daemon threads, one per endpoint.

    :meth:`start` returns at once; :meth:`results` waits at most ``wait`` seconds and returns the
    contacts that answered by then, keyed by the endpoint they were asked for. Answers that come
    later are dropped. ``user_agent`` is sent as ``User-Agent``; ``timeout`` bounds each connect,
    handshake and read, in seconds."""

    def __init__(self, endpoints: list[Endpoint], user_agent: str, timeout: float = CONTACT_TIMEOUT_S):
        self._endpoints = list(dict.fromkeys(endpoints))
        self._user_agent = user_agent
        self._timeout = timeout
        self._lock = threading.Lock()
        self._done = threading.Condition(self._lock)
        self._results: dict[Endpoint, Contact] = {}
        self._pending = len(self._endpoints)
        self._closed = False

    def start(self) -> "FirstContact":
        for ep in self._endpoints:
            threading.Thread(target=self._run, args=(ep,), name="registry-first-contact", daemon=True).start()
        return self

    def results(self, wait: float) -> dict[Endpoint, Contact]:
        """The contacts answered within ``wait`` seconds from now (all of them, usually)."""
        deadline = time.monotonic() + wait
        with self._done:
            while self._pending and (left := deadline - time.monotonic()) > 0:
                self._done.wait(left)
            self._closed = True
            return dict(self._results)

    def _run(self, ep: Endpoint) -> None:
        t0 = time.monotonic()
        contact = None
        try:
            contact = contact_endpoint(ep, self._user_agent, self._timeout)
            contact = dataclasses.replace(contact, seconds=time.monotonic() - t0)
            log.debug("first contact with %s: %s in %.0f ms", ep.registry,
                      f"GET /v2/ {contact.status}" if contact.status else f"scheme {contact.endpoint.base}",
                      contact.seconds * 1000)
        except Exception as e:  # noqa: BLE001 - ContactFailed, OSError, ValueError, an unloadable CA...: nothing learnt
            log.debug("first contact with %s taught nothing (%s); the client pings it", ep.registry, e)
        finally:
            with self._done:
                if contact is not None and not self._closed:
                    self._results[ep] = contact
                self._pending -= 1
                self._done.notify_all()


def contact_endpoint(ep: Endpoint, user_agent: str, timeout: float) -> Contact:
    """One first contact with ``ep`` (see the module docstring). Raises ContactFailed or
    OSError when it teaches nothing."""
    if ep.plain_http:
        status, challenge = get_v2(ep, None, user_agent, timeout)
        return Contact(ep, status, challenge)
    from executor.registry.tls import client_context
    if ep.http_fallback:
        verdict = tls_verdict(ep, timeout)
        if verdict == "plain":
            plain = ep.as_plain_http()
            status, challenge = get_v2(plain, None, user_agent, timeout)
            return Contact(plain, status, challenge)
        if verdict is None:
            raise ContactFailed("the TLS handshake was inconclusive")
    ctx = client_context(ep.verify, ep.cert)
    try:
        status, challenge = get_v2(ep, ctx, user_agent, timeout)
    except ContactFailed:
        if ep.http_fallback:  # the scheme is known (TLS), which the client would otherwise probe for
            return Contact(ep, None, "", ctx)
        raise
    return Contact(ep, status, challenge, ctx)


def split_base(base: str) -> tuple[str, int, str]:
    """``http(s)://host[:port]`` -> (host, port, Host header value). IPv6 hosts are bracketed in
    ``base`` and the Host header, bare in the returned host. Raises ValueError for a malformed base."""
    scheme, sep, netloc = base.partition("://")
    if not sep or scheme not in ("http", "https") or not netloc or "/" in netloc:
        raise ValueError(f"not a registry base URL: {base!r}")
    default = 80 if scheme == "http" else 443
    if netloc.startswith("["):
        host, _, rest = netloc[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else default
    elif ":" in netloc:
        host, _, p = netloc.rpartition(":")
        port = int(p)
    else:
        host, port = netloc, default
    if not host or not 0 < port < 65536:
        raise ValueError(f"not a registry base URL: {base!r}")
    return host, port, netloc


def tls_verdict(ep: Endpoint, timeout: float) -> str | None:
    """Whether the server at ``ep`` speaks TLS: ``"tls"``, ``"plain"`` or None (inconclusive).
    The handshake does not verify the certificate: it only asks which protocol is spoken (every
    later request verifies as configured)."""
    from executor.registry.tls import client_context
    host, port, _ = split_base(ep.base)
    with socket.create_connection((host, port), timeout=timeout) as raw:
        try:
            with client_context(False).wrap_socket(raw, server_hostname=host):
                return "tls"
        except OSError as e:  # ssl.SSLError is an OSError
            return handshake_verdict(str(e))


def get_v2(ep: Endpoint, ctx, user_agent: str, timeout: float) -> tuple[int, str]:
    """``GET /v2/`` at ``ep`` over one connection (TLS with ``ctx`` when given): returns the
    status (200, 401 or one of :data:`RETRY_STATUSES`) and the joined ``WWW-Authenticate``
    values. Raises ContactFailed for any other status or a malformed answer, OSError for
    connection and TLS failures."""
    host, port, host_header = split_base(ep.base)
    request = (f"GET /v2/ HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: {user_agent}\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n").encode("latin-1")
    with socket.create_connection((host, port), timeout=timeout) as raw:
        conn = ctx.wrap_socket(raw, server_hostname=host) if ctx is not None else raw
        try:
            conn.sendall(request)
            head = read_head(conn)
        finally:
            if conn is not raw:
                conn.close()
    return parse_head(head)


def read_head(conn) -> bytes:
    """The response head (up to, not including, the blank line). Raises ContactFailed when the
    peer closes first or the head exceeds :data:`MAX_HEAD_BYTES`."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > MAX_HEAD_BYTES:
            raise ContactFailed("response head too long")
        chunk = conn.recv(8192)
        if not chunk:
            raise ContactFailed("connection closed before the response head ended")
        buf += chunk
    return buf.split(b"\r\n\r\n", 1)[0]


def parse_head(head: bytes) -> tuple[int, str]:
    """(status, joined ``WWW-Authenticate`` values) of an HTTP/1.x response head. Raises
    ContactFailed for a malformed head or a status outside :data:`USEFUL_STATUSES` and
    :data:`RETRY_STATUSES`."""
    first, _, rest = head.partition(b"\r\n")
    try:  # as httpx decodes header values: UTF-8 when they all are (ASCII included), else Latin-1
        fields = rest.decode("utf-8")
    except UnicodeDecodeError:
        fields = rest.decode("latin-1")
    lines = [first.decode("latin-1")] + (fields.split("\r\n") if rest else [])
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (len(parts[1]) == 3 and parts[1].isdigit()):
        raise ContactFailed(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(parts[1])
    if status not in USEFUL_STATUSES and status not in RETRY_STATUSES:
        raise ContactFailed(f"GET /v2/ answered {status}")
    challenges = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise ContactFailed(f"malformed header line: {line[:80]!r}")
        if name.lower() == "www-authenticate":
            challenges.append(value.strip())
    return status, ", ".join(challenges)
