"""A small Docker token server (distribution docs/spec/auth/token.md, jwt.md, oauth.md) for tests.

Issues ES256 JWTs signed by ``signer`` (its certificate goes in the JWT ``x5c``
header and must be in the registry's ``rootcertbundle``). Access is decided by
``acl(user, repository, requested_actions) -> granted_actions``; ``user`` is None
for anonymous requests. Supports GET with Basic auth and POST
``grant_type=password|refresh_token``. Every request is recorded (no secrets).
Loopback only; runs in a daemon thread.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography.hazmat.primitives import serialization

from .tls import CertFiles

Acl = Callable[[str | None, str, set[str]], set[str]]


def allow_all_for_users(user: str | None, repo: str, actions: set[str]) -> set[str]:
    """Authenticated users get everything asked for; anonymous users only ``pull`` on ``public/*``."""
    if user is not None:
        return set(actions)
    return actions & {"pull"} if repo.startswith("public/") else set()


@dataclass
class TokenRequest:
    """One recorded request: method, user (None = anonymous), scopes, grant type, HTTP status."""

    method: str
    user: str | None
    scopes: list[str]
    grant_type: str | None
    status: int


@dataclass
class TokenServer:
    signer: CertFiles
    service: str = "test-registry"
    issuer: str = "test-issuer"
    users: dict[str, str] = field(default_factory=dict)
    refresh_tokens: dict[str, str] = field(default_factory=dict)   # token -> user
    acl: Acl = allow_all_for_users
    expires_in: int = 300
    requests: list[TokenRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    # -- token minting ----------------------------------------------------------
    def mint(self, user: str | None, scopes: list[str]) -> str:
        access = []
        for sc in scopes:
            parts = sc.split(":")
            if len(parts) < 3:
                continue
            typ, name, acts = parts[0], ":".join(parts[1:-1]), set(parts[-1].split(","))
            granted = self.acl(user, name, acts) if typ == "repository" else set()
            if granted:
                access.append({"type": typ, "name": name, "actions": sorted(granted)})
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": user or "", "aud": self.service, "exp": now + self.expires_in,
                  "nbf": now - 10, "iat": now, "jti": uuid.uuid4().hex, "access": access}
        der = self.signer.certificate.public_bytes(serialization.Encoding.DER)
        key_pem = self.signer.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption())
        return jwt.encode(claims, key_pem, algorithm="ES256",
                          headers={"x5c": [base64.b64encode(der).decode()], "typ": "JWT"})

    # -- HTTP -------------------------------------------------------------------------
    @property
    def realm(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def start(self) -> "TokenServer":
        ts = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _reply(self, status: int, body: dict, method: str, user, scopes, grant) -> None:
                with ts._lock:
                    ts.requests.append(TokenRequest(method, user, scopes, grant, status))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 401:
                    self.send_header("WWW-Authenticate", 'Basic realm="token"')
                self.end_headers()
                self.wfile.write(data)

            def _basic_user(self) -> tuple[str | None, bool]:
                h = self.headers.get("Authorization", "")
                if not h.lower().startswith("basic "):
                    return None, True
                try:
                    u, _, p = base64.b64decode(h[6:]).decode().partition(":")
                except Exception:
                    return None, False
                return (u, True) if ts.users.get(u) == p else (None, False)

            def do_GET(self):
                q = parse_qs(urlparse(self.path).query)
                scopes = [s for v in q.get("scope", []) for s in v.split(" ") if s]
                user, ok = self._basic_user()
                if not ok:
                    return self._reply(401, {"details": "bad credentials"}, "GET", None, scopes, None)
                if q.get("service", [""])[0] != ts.service:
                    return self._reply(400, {"details": "unknown service"}, "GET", user, scopes, None)
                tok = ts.mint(user, scopes)
                self._reply(200, {"token": tok, "access_token": tok, "expires_in": ts.expires_in,
                                  "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
                            "GET", user, scopes, None)

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                form = parse_qs(self.rfile.read(n).decode())
                grant = form.get("grant_type", [""])[0]
                scopes = [s for v in form.get("scope", []) for s in v.split(" ") if s]
                user = None
                if grant == "refresh_token":
                    user = ts.refresh_tokens.get(form.get("refresh_token", [""])[0])
                elif grant == "password":
                    u, p = form.get("username", [""])[0], form.get("password", [""])[0]
                    user = u if ts.users.get(u) == p else None
                if user is None:
                    return self._reply(401, {"details": "bad grant"}, "POST", None, scopes, grant)
                tok = ts.mint(user, scopes)
                self._reply(200, {"access_token": tok, "expires_in": ts.expires_in, "scope": " ".join(scopes)},
                            "POST", user, scopes, grant)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def registry_auth_config(self) -> dict:
        """The ``auth:`` section for a docker-registry trusting this server."""
        return {"token": {"realm": self.realm, "service": self.service, "issuer": self.issuer,
                          "rootcertbundle": str(self.signer.cert)}}

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
