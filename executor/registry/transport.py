"""HTTP transport for the registry client: scheme/TLS choice, authentication, retries.

* Scheme: plain HTTP only when the caller's options say so for that registry
  (see :func:`use_plain_http`); otherwise HTTPS with the system CAs plus the
  ``--registry-certificate`` CA for that registry, optional client certificate (mTLS).
* Auth: the Docker token flow (distribution ``docs/spec/auth/token.md``): on
  ``401`` with ``WWW-Authenticate: Bearer realm=..,service=..,scope=..`` fetch a
  token from the realm (Basic auth with the user's credentials, or an OAuth2
  ``refresh_token`` POST for identity tokens, ``docs/spec/auth/oauth.md``) and
  cache it per (registry, scopes) until ``expires_in``. ``Basic`` challenges get
  Basic auth.
* Retries: connection errors, 429 and 5xx, exponential backoff with jitter;
  ``Retry-After`` (seconds) is honoured for 429/503 (capped).

Tokens and passwords are never logged nor put in exception messages.
"""

from __future__ import annotations

import base64
import logging
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import httpx

from executor.errors import RegistryError
from executor.reference import registry_api_host
from executor.registry.auth import Challenge, Credentials, Keychain, parse_challenges

log = logging.getLogger("executor.registry")

T = TypeVar("T")

#: Retries added to the user's --push-retry / --image-download-retry so a flaky network survives.
DEFAULT_EXTRA_RETRIES = 3
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0
BACKOFF_BASE_S = 0.2
BACKOFF_MAX_S = 8.0
DEFAULT_TOKEN_TTL_S = 60
#: Seconds a connection may stay silent (no byte read or written) before the attempt
#: fails with a timeout and is retried (``RegistryOptions.timeout``).
DEFAULT_TIMEOUT_S = 60.0
#: Seconds to wait at most for a TCP (and TLS) connection.
CONNECT_TIMEOUT_S = 15.0
TOKEN_EXPIRY_SLACK_S = 10


class TransientError(Exception):
    """A failure worth retrying; ``retry_after`` (seconds) when the server asked for a delay,
    ``status`` the HTTP status that caused it (None: no HTTP answer did)."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class IntegrityError(TransientError):
    """Bytes that do not hash to their digest (a blob, or a manifest against its reference
    digest or ``Docker-Content-Digest``). Retried -- the caller starts the transfer over from
    scratch -- because a flaky proxy or storage node may serve good bytes next time.
    ``detail`` says what arrived, e.g. ``"received 1234 bytes hashing to sha256:..."``."""

    def __init__(self, detail: str):
        super().__init__(f"corrupt data: {detail}")
        self.detail = detail


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` delta-seconds -> float seconds (capped); None for absent/HTTP-date/garbage."""
    if not value:
        return None
    try:
        return min(max(float(value.strip()), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return None


def backoff_delay(attempt: int, retry_after: float | None, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry ``attempt`` (1-based): ``Retry-After`` if given,
    else full-jitter exponential ``uniform(0, min(max, base*2**attempt))``."""
    if retry_after is not None:
        return retry_after
    r = rng or random
    return r.uniform(BACKOFF_BASE_S / 2, min(BACKOFF_MAX_S, BACKOFF_BASE_S * (2 ** attempt)))


def with_retries(fn: Callable[[], T], attempts: int, what: str, sleep: Callable[[float], None] = time.sleep) -> T:
    """Call ``fn`` up to ``attempts`` times while it raises :class:`TransientError`
    or an ``httpx.TransportError``; re-raise the last error when the budget is spent.

    Implemented with tenacity (stop after N attempts, custom wait honouring
    Retry-After)."""
    import tenacity

    def _wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        ra = exc.retry_after if isinstance(exc, TransientError) else None
        return backoff_delay(state.attempt_number, ra)

    def _before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning("%s failed (attempt %d/%d): %s; retrying", what, state.attempt_number, attempts, _describe(exc))

    r = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=_wait,
        retry=tenacity.retry_if_exception(is_retryable),
        before_sleep=_before_sleep,
        sleep=sleep,
        reraise=True,
    )
    return r(fn)


_PERMANENT_TLS = ("certificate_verify_failed", "certificate verify failed", "wrong_version_number",
                  "wrong version number", "bad_certificate", "bad certificate", "certificate_required",
                  "certificate required", "unknown_ca", "unknown ca")


def is_retryable(exc: BaseException) -> bool:
    """Transient failures: TransientError (429/5xx) and connection errors, except TLS
    configuration problems (untrusted certificate, client certificate refused, HTTP vs HTTPS)
    that no retry can fix."""
    if isinstance(exc, TransientError):
        return True
    if isinstance(exc, httpx.TransportError):
        low = str(exc).lower()
        return not any(p in low for p in _PERMANENT_TLS)
    return False


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else f"cannot connect ({type(exc).__name__})"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx.TransportError):
        return f"connection error ({type(exc).__name__})"
    return str(exc)


def transport_error_message(registry: str, exc: BaseException, attempts: int, https: bool, what: str = "",
                            retry_flag: str = "--push-retry/--image-download-retry",
                            timeout: float | None = None) -> str:
    """User-facing text for a connection-level failure after ``attempts`` tries, with the flag to fix it
    (``retry_flag``: the option that raises the retry budget of the operation that failed;
    ``timeout``: the seconds without progress after which a transfer timed out)."""
    desc = _describe(exc)
    text = str(exc)
    low = text.lower()
    during = f" while {what}" if what else ""
    if "certificate_verify_failed" in low or "certificate verify failed" in low:
        return (f"TLS certificate of registry {registry} is not trusted{during} ({text[:160]}); pass "
                f"--registry-certificate {registry}=CA.pem or --skip-tls-verify-registry {registry}")
    if "wrong_version_number" in low or "wrong version number" in low or "record layer failure" in low:
        return (f"registry {registry} does not speak HTTPS (TLS handshake failed{during}); if it serves plain HTTP "
                f"use --insecure-registry {registry}")
    if any(a in low for a in ("certificate required", "certificate_required", "bad certificate", "bad_certificate",
                              "unknown ca", "unknown_ca", "certificate unknown")):
        return (f"registry {registry} rejected our TLS client certificate{during} ({text[:120]}); pass "
                f"--registry-client-cert {registry}=CERT.pem,KEY.pem with a certificate it trusts")
    if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
        silent = f" (no data moved for {timeout:g} s)" if timeout else ""
        return (f"registry {registry} timed out{silent} in all {attempts} attempts{during}; the registry or the "
                f"network stalls: check them, or raise {retry_flag}")
    msg = f"cannot reach registry {registry} ({desc}) after {attempts} attempts{during}"
    if isinstance(exc, httpx.ConnectError) or isinstance(exc, httpx.ConnectTimeout):
        if registry in ("docker.io", "registry-1.docker.io", "index.docker.io"):
            return msg + ("; Docker Hub is unreachable from here: use --registry-mirror MIRROR or "
                          "--registry-map docker.io=MIRROR, or name the image with a reachable registry")
        return msg + (f"; is it running? use --insecure-registry {registry} for plain HTTP" if https
                      else "; is it running?")
    if https and not text:
        return msg + f"; the connection broke (TLS?); if the registry needs a client certificate pass --registry-client-cert {registry}=CERT.pem,KEY.pem"
    return msg + f"; the connection broke ({text[:120] or type(exc).__name__}); check the network or raise {retry_flag}"


@dataclass(frozen=True)
class Endpoint:
    """How to talk to one registry: ``base`` URL (``https://host:port``) and TLS settings."""

    registry: str
    base: str
    verify: bool | str = True          # True, False or path to a CA bundle
    cert: tuple[str, str] | None = None

    @property
    def plain_http(self) -> bool:
        return self.base.startswith("http://")


@dataclass
class _Token:
    value: str
    expires_at: float


class AuthSession:
    """Authorization state for one registry: the last challenge seen and cached tokens.

    Tokens are cached per frozenset of scopes until their ``expires_in`` (minus slack).
    """

    def __init__(self, registry: str, credentials: Credentials | None):
        self.registry = registry
        self.credentials = credentials
        self.challenge: Challenge | None = None
        self.pinged = False         # True once GET /v2/ told us the auth scheme (or that none is needed)
        self._tokens: dict[frozenset[str], _Token] = {}
        self._lock = threading.Lock()
        self.token_requests = 0     # for tests and debugging: how many times we hit the realm

    def cached(self, scopes: frozenset[str]) -> str | None:
        with self._lock:
            tok = self._tokens.get(scopes)
            if tok and tok.expires_at > time.monotonic():
                return tok.value
            return None

    def store(self, scopes: frozenset[str], value: str, ttl: float) -> None:
        with self._lock:
            self._tokens[scopes] = _Token(value, time.monotonic() + max(1.0, ttl - TOKEN_EXPIRY_SLACK_S))

    def forget(self, scopes: frozenset[str]) -> None:
        with self._lock:
            self._tokens.pop(scopes, None)


def basic_header(creds: Credentials) -> str:
    """``Basic base64(user:password)``."""
    raw = f"{creds.username or ''}:{creds.password or ''}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class Transport:
    """Sends requests to registries with auth and TLS; one httpx.Client per endpoint.

    ``endpoint_for(registry, pull)`` decides scheme and TLS (see client options).
    ``timeout``: seconds a read or write may make no progress (and a pooled connection
    may be waited for); connecting waits at most ``min(timeout, 15)`` seconds.
    """

    def __init__(self, keychain: Keychain, endpoint_for: Callable[[str, bool], Endpoint],
                 user_agent: str, timeout: float = DEFAULT_TIMEOUT_S):
        self.keychain = keychain
        self._endpoint_for = endpoint_for
        self._user_agent = user_agent
        self._timeout = timeout
        self._clients: dict[Endpoint, httpx.Client] = {}
        self._auth: dict[str, AuthSession] = {}
        self._lock = threading.Lock()

    # -- plumbing ---------------------------------------------------------
    def endpoint(self, registry: str, pull: bool) -> Endpoint:
        return self._endpoint_for(registry, pull)

    def client(self, ep: Endpoint) -> httpx.Client:
        with self._lock:
            c = self._clients.get(ep)
            if c is None:
                verify: bool | ssl.SSLContext = ep.verify if isinstance(ep.verify, bool) else _ssl_context(ep.verify, ep.cert)
                if isinstance(verify, bool) and verify and ep.cert:
                    verify = _ssl_context(None, ep.cert)
                elif verify is False and ep.cert:
                    ctx = ssl.create_default_context()
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                    ctx.load_cert_chain(*ep.cert)
                    verify = ctx
                c = httpx.Client(
                    verify=verify, timeout=httpx.Timeout(self._timeout, connect=min(CONNECT_TIMEOUT_S, self._timeout)),
                    headers={"User-Agent": self._user_agent}, follow_redirects=False,
                )
                self._clients[ep] = c
            return c

    def auth_session(self, registry: str) -> AuthSession:
        with self._lock:
            s = self._auth.get(registry)
            if s is None:
                s = AuthSession(registry, self.keychain.credentials_for(registry))
                self._auth[registry] = s
            return s

    def close(self) -> None:
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
        """GET (or POST for identity tokens) the realm; returns (token, ttl seconds)."""
        realm = ch.realm
        if not realm:
            raise RegistryError(f"registry {ep.registry} asked for a bearer token but gave no realm; the registry is "
                                "misconfigured", status=401)
        creds = sess.credentials
        service = ch.service or ""
        sorted_scopes = sorted(scopes)
        sess.token_requests += 1
        # The realm may be on another host: TLS verification follows the realm's own host defaults,
        # but inherits the registry endpoint's CA/skip settings (a common single-CA deployment).
        realm_client = self.client(Endpoint(ep.registry, realm, ep.verify, ep.cert))

        def once() -> httpx.Response:
            if creds and creds.identity_token:
                data = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                        "service": service, "client_id": "executor", "scope": " ".join(sorted_scopes)}
                resp = realm_client.post(realm, data=data)
            else:
                params = [("service", service)] if service else []
                params += [("scope", s) for s in sorted_scopes]
                headers = {}
                if creds and creds.has_basic:
                    headers["Authorization"] = basic_header(creds)
                    params.append(("account", creds.username or ""))
                resp = realm_client.get(realm, params=params, headers=headers)
            if resp.status_code in RETRY_STATUSES:
                raise TransientError(f"token server answered {resp.status_code}",
                                     parse_retry_after(resp.headers.get("Retry-After")), resp.status_code)
            return resp

        try:
            resp = with_retries(once, 1 + DEFAULT_EXTRA_RETRIES, f"token request for {ep.registry}")
        except httpx.TransportError as e:
            raise RegistryError(f"cannot reach the token server for registry {ep.registry}: {_describe(e)}") from None
        except TransientError as e:
            raise RegistryError(f"token server for registry {ep.registry} keeps failing ({e}); try again later",
                                status=e.status) from None
        if resp.status_code in (401, 403):
            who = "with the configured credentials" if creds else "anonymously"
            raise RegistryError(
                f"registry {ep.registry} refused a token {who} for {', '.join(sorted_scopes) or 'access'} "
                f"({resp.status_code}); " + (f"check the credentials in {self.keychain.source}" if creds else
                                             f"no credentials for {ep.registry} were found; add them to a Docker "
                                             "config.json ($DOCKER_CONFIG, $HOME/.docker, /kaniko/.docker or "
                                             "/tekton/creds/.docker)"),
                status=resp.status_code)
        if resp.status_code != 200:
            raise RegistryError(f"token server for registry {ep.registry} answered {resp.status_code}; try again or check "
                                "the registry's auth setup", status=resp.status_code)
        try:
            body = resp.json()
            tok = body.get("token") or body.get("access_token")
            ttl = float(body.get("expires_in") or DEFAULT_TOKEN_TTL_S)
        except (ValueError, AttributeError, TypeError):
            raise RegistryError(f"token server for registry {ep.registry} returned a malformed response") from None
        if not tok:
            raise RegistryError(f"token server for registry {ep.registry} returned no token")
        log.debug("got token for %s scopes=%s ttl=%ss", ep.registry, sorted_scopes, ttl)
        return tok, ttl

    def learn_challenge(self, ep: Endpoint, resp: httpx.Response) -> Challenge | None:
        """Record the first usable challenge of a 401 response for the registry."""
        chs = parse_challenges(resp.headers.get("WWW-Authenticate", ""))
        ch = next((c for c in chs if c.scheme in ("bearer", "basic")), None)
        if ch is not None:
            self.auth_session(ep.registry).challenge = ch
        return ch

    def ensure_challenge(self, ep: Endpoint) -> None:
        """Learn the registry's auth scheme with ``GET /v2/`` once (the ping of the spec)."""
        sess = self.auth_session(ep.registry)
        if sess.pinged or sess.challenge is not None:
            return
        resp = self.client(ep).get(f"{ep.base}/v2/")
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
        429/5xx (closing the response), httpx.TransportError for connection failures.
        The caller must close streamed responses.
        """
        sc = frozenset(scopes)
        self.ensure_challenge(ep)
        cl = self.client(ep)
        refresh = False
        for attempt in range(2):
            h = dict(headers or {})
            auth = self._auth_header(ep, sc, refresh)
            if auth:
                h["Authorization"] = auth
            body = content() if callable(content) else content
            req = cl.build_request(method, url, headers=h, content=body, params=params)
            resp = cl.send(req, stream=stream)
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


def _path(url: str) -> str:
    return httpx.URL(url).path


def _ssl_context(ca: str | None, cert: tuple[str, str] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca:
        ctx.load_verify_locations(cafile=ca)
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


def make_base(registry: str, plain_http: bool) -> str:
    """``http(s)://`` + the API host for ``registry``."""
    return f"{'http' if plain_http else 'https'}://{registry_api_host(registry)}"
