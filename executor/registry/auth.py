"""Registry credentials (Docker ``config.json``) and ``WWW-Authenticate`` challenges.

Sources:
* Docker CLI config file format (``auths``, ``credHelpers``, ``credsStore``) and the
  docker-credential-helpers protocol (``docker-credential-NAME get``: stdin is the
  server URL, stdout is ``{"ServerURL", "Username", "Secret"}``; ``Username`` of
  ``<token>`` means ``Secret`` is an identity token).
* RFC 7235 section 4.1 (WWW-Authenticate) and the Docker token spec
  (distribution ``docs/spec/auth/token.md``).

Secrets never appear in ``repr`` or log records.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from executor.errors import RegistryError
from executor.reference import DOCKER_HUB, normalize_registry

log = logging.getLogger("executor.registry")

DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
#: Fixed fallback locations after $DOCKER_CONFIG and $HOME (Kaniko and Tekton conventions).
FALLBACK_CONFIG_PATHS = ("/kaniko/.docker/config.json", "/tekton/creds/.docker/config.json")
_HELPER_TIMEOUT_S = 30


@dataclass(frozen=True, repr=False)
class Credentials:
    """Credentials for one registry.

    ``username``/``password`` for Basic auth or for the token endpoint;
    ``identity_token`` is an OAuth2 refresh token (POSTed to the token realm);
    ``registry_token`` is a ready bearer token sent as-is.
    """

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None
    registry_token: str | None = None

    def __repr__(self) -> str:
        kinds = [k for k in ("password", "identity_token", "registry_token") if getattr(self, k)]
        return f"Credentials(username={self.username!r}, secrets={kinds})"

    __str__ = __repr__

    @property
    def has_basic(self) -> bool:
        """True when a username and password are present."""
        return bool(self.username) and self.password is not None


def _hostname_of(key: str) -> str:
    """Docker's ``ConvertToHostname``: strip scheme and path from a config key; fold Hub aliases."""
    k = key.strip()
    for prefix in ("https://", "http://"):
        if k.lower().startswith(prefix):
            k = k[len(prefix):]
            break
    return normalize_registry(k.split("/", 1)[0])


def server_url_for(registry: str) -> str:
    """The server URL a credential helper is asked about: Hub's legacy key or the host."""
    return DOCKER_HUB_CONFIG_KEY if normalize_registry(registry) == DOCKER_HUB else registry


def _decode_auth(value: str, where: str) -> tuple[str, str]:
    try:
        raw = base64.b64decode(value + "=" * (-len(value) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise RegistryError(f"{where}: 'auth' is not valid base64 of 'user:password'") from None
    user, sep, pw = raw.partition(":")
    if not sep:
        raise RegistryError(f"{where}: 'auth' must decode to 'user:password'")
    return user, pw


def credentials_from_auth_entry(entry: Mapping, where: str = "config.json") -> Credentials | None:
    """Credentials from one ``auths`` entry (``auth``, ``username``/``password``,
    ``identitytoken``, ``registrytoken``); None when the entry holds nothing usable."""
    user = entry.get("username") or None
    pw = entry.get("password")
    if entry.get("auth"):
        user, pw = _decode_auth(entry["auth"], where)
    ident = entry.get("identitytoken") or None
    regtok = entry.get("registrytoken") or None
    if not (user or pw or ident or regtok):
        return None
    return Credentials(username=user, password=pw, identity_token=ident, registry_token=regtok)


def run_credential_helper(name: str, server_url: str, env: Mapping[str, str] | None = None) -> Credentials | None:
    """Ask ``docker-credential-NAME get`` for ``server_url``.

    Returns None when the helper says the credentials are not found.
    Raises RegistryError when the helper is missing or fails otherwise
    (the message never contains the helper's stdout).
    """
    exe = f"docker-credential-{name}"
    try:
        import subprocess  # (a credential helper only: not at start-up)
        p = subprocess.run(
            [exe, "get"], input=server_url, capture_output=True, text=True,
            env=dict(env) if env is not None else None, timeout=_HELPER_TIMEOUT_S,
        )
    except FileNotFoundError:
        raise RegistryError(
            f"credential helper {exe!r} (configured for {server_url}) is not on PATH; install it or "
            "remove it from credHelpers/credsStore in config.json"
        ) from None
    except subprocess.TimeoutExpired:
        raise RegistryError(f"credential helper {exe!r} did not answer within {_HELPER_TIMEOUT_S}s for {server_url}") from None
    if p.returncode != 0:
        out = (p.stdout + p.stderr).lower()
        if "credentials not found" in out or "not found" in out:
            return None
        raise RegistryError(f"credential helper {exe!r} failed for {server_url} (exit {p.returncode}): {p.stderr.strip()[:200]}")
    try:
        data = json.loads(p.stdout)
        user, secret = data.get("Username") or None, data.get("Secret")
    except (ValueError, AttributeError):
        raise RegistryError(f"credential helper {exe!r} printed something that is not the expected JSON for {server_url}") from None
    if not secret:
        return None
    if user == "<token>":
        return Credentials(identity_token=secret)
    return Credentials(username=user, password=secret)


def find_config_file(env: Mapping[str, str]) -> Path | None:
    """The config.json to use: the first that exists of ``$DOCKER_CONFIG/config.json``
    (``$DOCKER_CONFIG`` may also name the file itself), ``$HOME/.docker/config.json``,
    ``/kaniko/.docker/config.json``, ``/tekton/creds/.docker/config.json``.

    Files are not merged: like Docker and Kaniko, one file is authoritative, which
    keeps "where did this credential come from" answerable.
    """
    candidates: list[Path] = []
    if env.get("DOCKER_CONFIG"):
        d = Path(env["DOCKER_CONFIG"])
        candidates += [d] if d.name.endswith(".json") else [d / "config.json"]
    if env.get("HOME"):
        candidates.append(Path(env["HOME"]) / ".docker" / "config.json")
    candidates += [Path(p) for p in FALLBACK_CONFIG_PATHS]
    for c in candidates:
        try:
            if c.is_file():
                return c
        except PermissionError:  # e.g. HOME=/root kept by setpriv/sudo for another uid
            log.warning("cannot look into %s (permission denied); trying the next credentials location", c.parent)
    return None


@dataclass(repr=False)
class Keychain:
    """Looks up credentials per registry from a parsed Docker ``config.json``.

    ``config`` is the parsed file (``{}`` = anonymous everywhere); ``source`` names
    it in error messages; ``env`` is the environment credential helpers run with.
    """

    config: Mapping = field(default_factory=dict)
    source: str = "<none>"
    env: Mapping[str, str] | None = None

    def __repr__(self) -> str:
        return f"Keychain(source={self.source!r}, registries={sorted(self.config.get('auths', {}))})"

    @classmethod
    def anonymous(cls) -> "Keychain":
        """A keychain with no credentials."""
        return cls()

    @classmethod
    def from_file(cls, path: Path, env: Mapping[str, str] | None = None) -> "Keychain":
        """Parse ``path`` (a Docker config.json); RegistryError if it is not valid JSON."""
        try:
            data = json.loads(Path(path).read_text() or "{}")
        except (OSError, ValueError) as e:
            raise RegistryError(f"cannot read registry credentials from {path}: {type(e).__name__}; fix or remove the file") from None
        if not isinstance(data, dict):
            raise RegistryError(f"cannot read registry credentials from {path}: top level must be a JSON object")
        return cls(config=data, source=str(path), env=env)

    @classmethod
    def from_environment(cls, env: Mapping[str, str] | None = None) -> "Keychain":
        """Keychain from the first existing config file (see :func:`find_config_file`)."""
        e = dict(os.environ if env is None else env)
        path = find_config_file(e)
        if path is None:
            log.debug("no docker config.json found; using anonymous access")
            return cls(env=e)
        log.debug("using registry credentials from %s", path)
        return cls.from_file(path, env=e)

    def credentials_for(self, registry: str) -> Credentials | None:
        """Credentials for ``registry`` (host[:port]; Hub aliases accepted) or None.

        Order: ``credHelpers`` entry for the registry, then ``credsStore``, then
        ``auths`` (keys matched with or without scheme and ``/v1/`` path).
        """
        reg = normalize_registry(registry)
        helpers = self.config.get("credHelpers") or {}
        for key, helper in helpers.items():
            if _hostname_of(key) == reg and helper:
                return run_credential_helper(helper, server_url_for(reg), self.env)
        store = self.config.get("credsStore")
        if store:
            creds = run_credential_helper(store, server_url_for(reg), self.env)
            if creds is not None:
                return creds
        auths = self.config.get("auths") or {}
        for key, entry in auths.items():
            if _hostname_of(key) == reg and isinstance(entry, Mapping):
                creds = credentials_from_auth_entry(entry, f"{self.source}: auths[{key!r}]")
                if creds is not None:
                    return creds
        return None


# --- WWW-Authenticate -------------------------------------------------------

@dataclass(frozen=True)
class Challenge:
    """One parsed authentication challenge: ``scheme`` lower-cased (``bearer``/``basic``),
    ``params`` with lower-cased keys (``realm``, ``service``, ``scope``, ``error``)."""

    scheme: str
    params: Mapping[str, str]

    @property
    def realm(self) -> str | None:
        return self.params.get("realm")

    @property
    def service(self) -> str | None:
        return self.params.get("service")

    @property
    def scopes(self) -> tuple[str, ...]:
        """Space-separated ``scope`` values (the token spec allows several)."""
        return tuple(self.params.get("scope", "").split())


_PARAM_RE = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*(,|$)')
#: A challenge's scheme, after blanks and at most one comma (``\s*(?:,\s*)?``: one way to split a
#: run of blanks, so a hostile header of 60 KB blanks costs linear time, not quadratic).
_SCHEME_RE = re.compile(r"\s*(?:,\s*)?([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)")


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a ``WWW-Authenticate`` value into challenges (RFC 7235 auth-param lists).

    ``Bearer realm="https://a/token",service="reg",scope="repository:x:pull"``
    -> ``[Challenge("bearer", {...})]``. Unparseable tails are ignored.
    """
    out: list[Challenge] = []
    s = header.strip()
    pos = 0
    while pos < len(s):
        m = _SCHEME_RE.match(s, pos)
        if not m:
            break
        scheme = m.group(1).lower()
        pos = m.end()
        params: dict[str, str] = {}
        while pos < len(s):
            pm = _PARAM_RE.match(s, pos)
            if not pm:
                break
            val = pm.group(2)
            if val.startswith('"'):
                val = re.sub(r"\\(.)", r"\1", val[1:-1])
            params[pm.group(1).lower()] = val
            pos = pm.end()
        out.append(Challenge(scheme, params))
    return out


def scope_for(repository: str, actions: str) -> str:
    """A token scope: ``repository:NAME:ACTIONS`` (``pull`` or ``pull,push``)."""
    return f"repository:{repository}:{actions}"
