"""HTTP transport for the registry client: scheme/TLS choice, authentication, cancellation.

* Scheme: plain HTTP when the caller's options say so for that registry
  (:func:`executor.registry.options.endpoint_for`); otherwise HTTPS with the system CAs
  plus the ``--registry-certificate`` CA for that registry, optional client certificate (mTLS).
  A loopback registry's endpoint may allow falling back to plain HTTP
  (``Endpoint.http_fallback``): :meth:`Transport.endpoint` then tries ``GET /v2/`` over
  HTTPS once and uses plain HTTP if, and only if, the server answered the TLS handshake
  with something that is not TLS (go-containerregistry's ``ping`` tries HTTPS, then HTTP).
* Auth: ``GET /v2/`` learns the registry's challenge once (distribution-spec "Determining
  support"); ``Basic`` challenges get Basic auth, ``Bearer`` ones a token from the realm
  (:mod:`executor.registry.tokens`), re-fetched once on a 401.
* Cancellation: every request carries the :class:`~executor.registry.cancel.CancelToken`'s
  ``trace`` extension (so its connection can be shut down from another thread) and is
  refused once the token is cancelled.
* Retries are the caller's (:mod:`executor.registry.retry`, re-exported here): :meth:`Transport.send`
  raises :class:`TransientError` for 408/429/5xx and lets connection errors through.

Tokens and passwords are never logged nor put in exception messages.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping

import httpx

from executor.registry.auth import Challenge, Keychain, parse_challenges
from executor.registry.cancel import CancelToken
from executor.registry.endpoints import (  # noqa: F401 - re-exported: their historical home
    CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    Endpoint,
    handshake_verdict,
    make_base,
)
from executor.registry.tls import client_context
from executor.registry.retry import (  # noqa: F401 - re-exported: the historical home of the retry policy
    BACKOFF_BASE_S,
    BACKOFF_MAX_S,
    DEFAULT_EXTRA_RETRIES,
    MAX_RETRY_AFTER_S,
    RETRY_STATUSES,
    IntegrityError,
    TransientError,
    _describe,
    backoff_delay,
    is_retryable,
    parse_retry_after,
    transport_error_message,
    with_retries,
)
from executor.registry.tokens import (  # noqa: F401 - re-exported
    DEFAULT_TOKEN_TTL_S,
    TOKEN_EXPIRY_SLACK_S,
    AuthSession,
    basic_header,
    fetch_token,
)

log = logging.getLogger("executor.registry")

class Transport:
    """Sends requests to registries with auth and TLS; one httpx.Client per endpoint.

    ``endpoint_for(registry, pull)`` decides scheme and TLS (see client options).
    ``timeout``: seconds a read or write may make no progress (and a pooled connection
    may be waited for); connecting waits at most ``min(timeout, 15)`` seconds.
    ``cancel``: the token that aborts this transport's transfers (a new one if None).
    """

    def __init__(self, keychain: Keychain, endpoint_for: Callable[[str, bool], Endpoint],
                 user_agent: str, timeout: float = DEFAULT_TIMEOUT_S, cancel: CancelToken | None = None):
        self.keychain = keychain
        self.cancel = cancel if cancel is not None else CancelToken()
        self._endpoint_for = endpoint_for
        self._user_agent = user_agent
        self._timeout = timeout
        self._clients: dict[Endpoint, httpx.Client] = {}
        self._auth: dict[str, AuthSession] = {}
        self._schemes: dict[Endpoint, Endpoint] = {}
        self._contexts: dict[tuple, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------
    def endpoint(self, registry: str, pull: bool) -> Endpoint:
        """The :class:`Endpoint` for ``registry`` (``pull``: for a read; may select plain HTTP).

        An endpoint with ``http_fallback`` is resolved by :meth:`probe_scheme` (once per
        endpoint and transport; an inconclusive probe is repeated next time)."""
        ep = self._endpoint_for(registry, pull)
        if not ep.http_fallback:
            return ep
        with self._lock:
            known = self._schemes.get(ep)
        if known is not None:
            return known
        resolved = self.probe_scheme(ep)
        if resolved is not None:
            with self._lock:
                self._schemes[ep] = resolved
            return resolved
        return ep

    def probe_scheme(self, ep: Endpoint) -> Endpoint | None:
        """``GET /v2/`` over HTTPS at ``ep``: ``ep`` when any HTTP answer or a TLS-level error
        (untrusted certificate, a client certificate refused, ...) shows the server speaks TLS;
        the plain-HTTP endpoint when the handshake met a server that does not speak TLS; None
        when nothing can be concluded (refused, timed out): the caller keeps HTTPS and its
        request fails, and is retried, with the usual error."""
        self.cancel.check(f"contacting registry {ep.registry}")
        # The probe only asks whether the server speaks TLS, so its handshake does not verify the
        # certificate (no CA bundle to load for a plain-HTTP registry); it sends no credentials.
        # A server that speaks TLS keeps HTTPS, and every real request then verifies as configured.
        probe = Endpoint(ep.registry, ep.base, False, None)
        try:
            self.client(probe).get(f"{ep.base}/v2/", extensions=self.extensions).close()
            return ep
        except httpx.TransportError as e:
            if self.cancel.cancelled:
                raise self.cancel.error(f"contacting registry {ep.registry}") from None
            verdict = handshake_verdict(str(e))
            if verdict == "plain":
                _announce_plain_http(ep.registry)
                return ep.as_plain_http()
            if verdict == "tls":
                return ep
            return None

    def client(self, ep: Endpoint) -> httpx.Client:
        """The pooled httpx.Client for ``ep`` (created on first use). Requests sent with it
        directly should pass :attr:`extensions` so cancelling can abort them."""
        with self._lock:
            c = self._clients.get(ep)
            if c is None:
                verify: bool | ssl.SSLContext = self._contexts.get((ep.verify, ep.cert)) or ep.verify
                if not isinstance(verify, (bool, ssl.SSLContext)) or (isinstance(verify, bool) and ep.cert):
                    verify = client_context(ep.verify, ep.cert)
                # (True / False alone: LazyTLSTransport makes it, on the first https request)
                c = httpx.Client(
                    verify=verify, timeout=httpx.Timeout(self._timeout, connect=min(CONNECT_TIMEOUT_S, self._timeout)),
                    headers={"User-Agent": self._user_agent}, follow_redirects=False,
                    transport=LazyTLSTransport(verify),
                )
                self._clients[ep] = c
            return c

    @property
    def extensions(self) -> dict:
        """httpx request ``extensions`` that make a request cancellable (see :mod:`executor.registry.cancel`)."""
        return self.cancel.extensions

    def auth_session(self, registry: str) -> AuthSession:
        """The (shared, created on first use) authorization state of ``registry``."""
        with self._lock:
            s = self._auth.get(registry)
            if s is None:
                s = AuthSession(registry, self.keychain.credentials_for(registry))
                self._auth[registry] = s
            return s

    def close(self) -> None:
        """Close every pooled connection (idempotent; the transport can still be used after)."""
        with self._lock:
            for c in self._clients.values():
                c.close()
            self._clients.clear()

    # -- auth ---------------------------------------------------------------
    def _auth_header(self, ep: Endpoint, scopes: frozenset[str], refresh: bool) -> str | None:
        sess = self.auth_session(ep.registry)
        creds = sess.credentials
        ch = sess.challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            return basic_header(creds) if creds and creds.has_basic else None
        if ch.scheme != "bearer":
            return None
        if creds and creds.registry_token:
            return f"Bearer {creds.registry_token}"
        if not refresh:
            tok = sess.cached(scopes)
            if tok:
                return f"Bearer {tok}"
        tok, ttl = self._fetch_token(ep, sess, ch, scopes)
        sess.store(scopes, tok, ttl)
        return f"Bearer {tok}"

    def _fetch_token(self, ep: Endpoint, sess: AuthSession, ch: Challenge, scopes: frozenset[str]) -> tuple[str, float]:
        """Token for ``scopes`` from ``ch``'s realm; returns (token, ttl seconds)."""
        # The realm may be on another host: TLS verification follows the realm's own host defaults,
        # but inherits the registry endpoint's CA/skip settings (a common single-CA deployment).
        realm_client = self.client(Endpoint(ep.registry, ch.realm or ep.base, ep.verify, ep.cert))
        return fetch_token(realm_client, ep.registry, sess, ch, scopes, self.keychain.source, self.cancel)

    def seed(self, asked: Endpoint, contact) -> None:
        """Take what the CLI's first contact learnt about ``asked`` (an
        :class:`executor.registry.firstcontact.Contact`): a loopback registry's scheme, the TLS
        context its request used, and the status and challenge of its ``GET /v2/`` -- so this
        transport sends no probe or ping of its own for them."""
        with self._lock:
            if asked.http_fallback:
                self._schemes[asked] = contact.endpoint
            if contact.ssl_context is not None:
                self._contexts.setdefault((contact.endpoint.verify, contact.endpoint.cert), contact.ssl_context)
        if asked.http_fallback and contact.endpoint.plain_http:
            _announce_plain_http(asked.registry)
        if contact.status is None:
            return
        sess = self.auth_session(asked.registry)
        if contact.status == 401:
            self._learn_challenge(asked, contact.challenge)
        sess.ping_status = contact.status
        sess.pinged = contact.status in (200, 401)  # (429/5xx: the ping's first failed attempt)

    def learn_challenge(self, ep: Endpoint, resp: httpx.Response) -> Challenge | None:
        """Record the first usable challenge of a 401 response for the registry."""
        return self._learn_challenge(ep, resp.headers.get("WWW-Authenticate", ""))

    def _learn_challenge(self, ep: Endpoint, header: str) -> Challenge | None:
        chs = parse_challenges(header)
        ch = next((c for c in chs if c.scheme in ("bearer", "basic")), None)
        if ch is not None:
            self.auth_session(ep.registry).challenge = ch
        return ch

    def ensure_challenge(self, ep: Endpoint) -> None:
        """Learn the registry's auth scheme with ``GET /v2/`` once (the ping of the spec)."""
        sess = self.auth_session(ep.registry)
        if sess.pinged or sess.challenge is not None:
            return
        self.cancel.check(f"contacting registry {ep.registry}")
        resp = self.client(ep).get(f"{ep.base}/v2/", extensions=self.extensions)
        if resp.status_code == 401:
            self.learn_challenge(ep, resp)
            sess.pinged = True
        elif resp.status_code < 400 or resp.status_code == 404:
            sess.pinged = True
        elif resp.status_code in RETRY_STATUSES:
            raise TransientError(f"GET /v2/ answered {resp.status_code}",
                                 parse_retry_after(resp.headers.get("Retry-After")), resp.status_code)

    # -- requests -------------------------------------------------------------
    def send(self, ep: Endpoint, method: str, url: str, scopes: Iterable[str], *,
             headers: Mapping[str, str] | None = None, content=None, stream: bool = False,
             params: Mapping[str, str] | None = None) -> httpx.Response:
        """One authorised request (no retries here); re-authenticates once on 401.

        ``content`` may be bytes or a zero-argument callable returning a fresh
        iterable (so a body can be resent after a 401). Raises TransientError for
        429/5xx (closing the response), httpx.TransportError for connection failures,
        :class:`~executor.registry.cancel.Cancelled` when the transport is (or gets)
        cancelled -- no request is started then. The caller must close streamed responses.
        """
        sc = frozenset(scopes)
        what = f"{method} {_path(url)} at {ep.registry}"
        self.cancel.check(what)
        self.ensure_challenge(ep)
        cl = self.client(ep)
        refresh = False
        for attempt in range(2):
            h = dict(headers or {})
            auth = self._auth_header(ep, sc, refresh)
            if auth:
                h["Authorization"] = auth
            body = content() if callable(content) else content
            self.cancel.check(what)
            req = cl.build_request(method, url, headers=h, content=body, params=params, extensions=self.extensions)
            resp = cl.send(req, stream=stream)
            if self.cancel.cancelled:
                resp.close()
                raise self.cancel.error(what)
            if resp.status_code == 401 and attempt == 0:
                ch = self.learn_challenge(ep, resp)
                resp.close()
                if ch is None:
                    break
                if ch.scheme == "bearer":
                    sc = sc | frozenset(ch.scopes)
                    self.auth_session(ep.registry).forget(frozenset(scopes))
                refresh = True
                continue
            if resp.status_code in RETRY_STATUSES:
                ra = parse_retry_after(resp.headers.get("Retry-After"))
                resp.close()
                raise TransientError(f"{method} {_path(url)} answered {resp.status_code}", ra, resp.status_code)
            return resp
        return resp


def _announce_plain_http(registry: str) -> None:
    """The notice that a loopback registry is used over plain HTTP (its handshake showed no TLS)."""
    log.info("registry %s does not speak HTTPS; using plain HTTP (a loopback registry, as "
             "go-containerregistry does)", registry)


def _path(url: str) -> str:
    return httpx.URL(url).path


class LazyTLSTransport(httpx.BaseTransport):
    """An httpx transport that makes its TLS context (for ``verify=True``, loading the CA
    bundle: tens of milliseconds of start-up) on the first ``https`` request only: requests to a
    plain-HTTP registry go through a transport that has no SSL context at all. ``verify`` is what
    ``httpx.HTTPTransport`` takes (True, False or an ``ssl.SSLContext``)."""

    def __init__(self, verify: bool | ssl.SSLContext):
        self._verify = verify
        self._by_scheme: dict[str, httpx.HTTPTransport] = {}
        self._lock = threading.Lock()

    def _transport(self, scheme: str) -> httpx.HTTPTransport:
        tls = scheme != "http"
        with self._lock:
            t = self._by_scheme.get("https" if tls else "http")
            if t is None:
                if tls:  # (client_context: what httpx would make, with a clear error for a missing bundle)
                    verify = client_context(self._verify) if isinstance(self._verify, bool) else self._verify
                    t = httpx.HTTPTransport(verify=verify)
                else:
                    t = _plain_http_transport()
                self._by_scheme["https" if tls else "http"] = t
            return t

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._transport(request.url.scheme).handle_request(request)

    def close(self) -> None:
        with self._lock:
            transports, self._by_scheme = list(self._by_scheme.values()), {}
        for t in transports:
            t.close()


class _PlainHTTPTransport(httpx.HTTPTransport):
    """``httpx.HTTPTransport`` for ``http://`` URLs only, over a connection pool without an SSL
    context: the process's first ``ssl.SSLContext`` costs tens of milliseconds (OpenSSL set-up),
    which a plain-HTTP registry never needs. Limits are httpx's defaults."""

    def __init__(self) -> None:  # HTTPTransport.__init__ would make an SSL context
        import httpcore
        self._pool = httpcore.ConnectionPool(ssl_context=None, max_connections=100, max_keepalive_connections=20,
                                             keepalive_expiry=5.0)


def _plain_http_transport() -> httpx.HTTPTransport:
    try:
        return _PlainHTTPTransport()
    except TypeError:  # pragma: no cover - another httpcore: the ordinary transport (never does TLS here)
        return httpx.HTTPTransport(verify=False)
