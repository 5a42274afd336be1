"""Registry authorization state and the Docker token flow.

Distribution ``docs/spec/auth/token.md``: on ``401`` with ``WWW-Authenticate: Bearer
realm=..,service=..,scope=..`` a token is fetched from the realm -- ``GET`` with Basic
auth of the user's credentials (or anonymously), or for identity tokens an OAuth2
``refresh_token`` ``POST`` (``docs/spec/auth/oauth.md``) -- and cached per
(registry, scopes) until its ``expires_in`` (seconds) minus a slack.

Tokens and passwords are never logged nor put in exception messages.
"""

from __future__ import annotations

import base64
import logging
import threading
import time

import httpx

from executor.errors import RegistryError
from executor.registry.auth import Challenge, Credentials
from executor.registry.cancel import CancelToken
from executor.registry.retry import (
    DEFAULT_EXTRA_RETRIES,
    RETRY_STATUSES,
    TransientError,
    _describe,
    parse_retry_after,
    with_retries,
)

log = logging.getLogger("executor.registry")

#: Seconds a token is used when the server does not say (the token spec's default).
DEFAULT_TOKEN_TTL_S = 60
#: Seconds before its expiry a cached token is no longer used.
TOKEN_EXPIRY_SLACK_S = 10


class _Token:
    __slots__ = ("value", "expires_at")

    def __init__(self, value: str, expires_at: float):
        self.value = value
        self.expires_at = expires_at


class AuthSession:
    """Authorization state for one registry: the last challenge seen and cached tokens.

    Tokens are cached per frozenset of scopes until their ``expires_in`` (minus slack).
    """

    def __init__(self, registry: str, credentials: Credentials | None):
        self.registry = registry
        self.credentials = credentials
        self.challenge: Challenge | None = None
        self.pinged = False         # True once GET /v2/ told us the auth scheme (or that none is needed)
        self.ping_status: int | None = None  # 200 / 401 from the CLI's first contact (Transport.seed)
        self._tokens: dict[frozenset[str], _Token] = {}
        self._lock = threading.Lock()
        self.token_requests = 0     # for tests and debugging: how many times we hit the realm

    def cached(self, scopes: frozenset[str]) -> str | None:
        """A cached, unexpired token for exactly ``scopes``, or None."""
        with self._lock:
            tok = self._tokens.get(scopes)
            if tok and tok.expires_at > time.monotonic():
                return tok.value
            return None

    def store(self, scopes: frozenset[str], value: str, ttl: float) -> None:
        """Cache ``value`` for ``scopes`` for ``ttl`` seconds minus the slack (at least 1 s)."""
        with self._lock:
            self._tokens[scopes] = _Token(value, time.monotonic() + max(1.0, ttl - TOKEN_EXPIRY_SLACK_S))

    def forget(self, scopes: frozenset[str]) -> None:
        """Drop the cached token for ``scopes`` (the registry refused it)."""
        with self._lock:
            self._tokens.pop(scopes, None)


def basic_header(creds: Credentials) -> str:
    """``Basic base64(user:password)`` (RFC 7617)."""
    raw = f"{creds.username or ''}:{creds.password or ''}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def fetch_token(realm_client: httpx.Client, registry: str, sess: AuthSession, ch: Challenge,
                scopes: frozenset[str], source: str, cancel: CancelToken | None = None) -> tuple[str, float]:
    """GET (or POST for identity tokens) the realm of ``ch`` through ``realm_client``;
    returns (token, ttl seconds). Retries 408/429/5xx and connection errors
    (1 + DEFAULT_EXTRA_RETRIES attempts). ``source`` names where the credentials came from,
    for messages. Raises RegistryError (with ``status`` for an HTTP refusal)."""
    realm = ch.realm
    if not realm:
        raise RegistryError(f"registry {registry} asked for a bearer token but gave no realm; the registry is "
                            "misconfigured", status=401)
    creds = sess.credentials
    service = ch.service or ""
    sorted_scopes = sorted(scopes)
    sess.token_requests += 1
    ext = cancel.extensions if cancel is not None else None

    def once() -> httpx.Response:
        if cancel is not None:
            cancel.check(f"token request for {registry}")
        if creds and creds.identity_token:
            data = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                    "service": service, "client_id": "executor", "scope": " ".join(sorted_scopes)}
            resp = realm_client.post(realm, data=data, extensions=ext)
        else:
            params = [("service", service)] if service else []
            params += [("scope", s) for s in sorted_scopes]
            headers = {}
            if creds and creds.has_basic:
                headers["Authorization"] = basic_header(creds)
                params.append(("account", creds.username or ""))
            resp = realm_client.get(realm, params=params, headers=headers, extensions=ext)
        if resp.status_code in RETRY_STATUSES:
            raise TransientError(f"token server answered {resp.status_code}",
                                 parse_retry_after(resp.headers.get("Retry-After")), resp.status_code)
        return resp

    try:
        resp = with_retries(once, 1 + DEFAULT_EXTRA_RETRIES, f"token request for {registry}", cancel=cancel)
    except httpx.TransportError as e:
        if cancel is not None:
            cancel.check(f"token request for {registry}")
        raise RegistryError(f"cannot reach the token server for registry {registry}: {_describe(e)}") from None
    except TransientError as e:
        raise RegistryError(f"token server for registry {registry} keeps failing ({e}); try again later",
                            status=e.status) from None
    if resp.status_code in (401, 403):
        who = "with the configured credentials" if creds else "anonymously"
        raise RegistryError(
            f"registry {registry} refused a token {who} for {', '.join(sorted_scopes) or 'access'} "
            f"({resp.status_code}); " + (f"check the credentials in {source}" if creds else
                                         f"no credentials for {registry} were found; add them to a Docker "
                                         "config.json ($DOCKER_CONFIG, $HOME/.docker, /kaniko/.docker or "
                                         "/tekton/creds/.docker)"),
            status=resp.status_code)
    if resp.status_code != 200:
        raise RegistryError(f"token server for registry {registry} answered {resp.status_code}; try again or check "
                            "the registry's auth setup", status=resp.status_code)
    try:
        body = resp.json()
        tok = body.get("token") or body.get("access_token")
        ttl = float(body.get("expires_in") or DEFAULT_TOKEN_TTL_S)
    except (ValueError, AttributeError, TypeError):
        raise RegistryError(f"token server for registry {registry} returned a malformed response") from None
    if not tok:
        raise RegistryError(f"token server for registry {registry} returned no token")
    log.debug("got token for %s scopes=%s ttl=%ss", registry, sorted_scopes, ttl)
    return tok, ttl
