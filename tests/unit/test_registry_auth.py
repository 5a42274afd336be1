"""Credentials lookup (config.json auths, credHelpers, credsStore) and challenge parsing."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
from pathlib import Path

import pytest

from executor.errors import RegistryError
from executor.registry.auth import (
    Credentials,
    Keychain,
    find_config_file,
    parse_challenges,
    scope_for,
)


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def write_config(dir_: Path, cfg: dict) -> Path:
    dir_.mkdir(parents=True, exist_ok=True)
    p = dir_ / "config.json"
    p.write_text(json.dumps(cfg))
    return p


def make_helper(bin_dir: Path, name: str, table: dict[str, tuple[str, str]], log: Path) -> None:
    """A docker-credential-NAME script answering ``get`` from ``table`` (server URL -> (user, secret))."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    script.write_text(f"""#!/usr/bin/env python3
import json, sys
table = {json.dumps(table)}
assert sys.argv[1:] == ["get"], sys.argv
url = sys.stdin.read().strip()
open({str(log)!r}, "a").write(url + "\\n")
if url not in table:
    print("credentials not found in native keychain"); sys.exit(1)
u, s = table[url]
print(json.dumps({{"ServerURL": url, "Username": u, "Secret": s}}))
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def env_with(tmp_path: Path, bin_dir: Path | None = None, **kw) -> dict:
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}" if bin_dir else os.environ["PATH"], "HOME": str(tmp_path / "home")}
    env.update(kw)
    return env


def test_auths_base64_and_key_forms(tmp_path):
    cfg = {"auths": {
        "https://index.docker.io/v1/": {"auth": b64("hubuser:hubpw")},
        "http://127.0.0.1:5000/v2/": {"auth": b64("u5000:p:with:colons")},
        "ghcr.io": {"username": "gh", "password": "ghpw"},
        "quay.io": {"identitytoken": "idtok"},
        "reg.example": {"registrytoken": "rtok"},
        "empty.example": {},
    }}
    write_config(tmp_path / "dc", cfg)
    kc = Keychain.from_environment(env_with(tmp_path, DOCKER_CONFIG=str(tmp_path / "dc")))
    assert kc.credentials_for("docker.io") == Credentials("hubuser", "hubpw")
    assert kc.credentials_for("index.docker.io") == Credentials("hubuser", "hubpw")
    assert kc.credentials_for("127.0.0.1:5000") == Credentials("u5000", "p:with:colons")
    assert kc.credentials_for("ghcr.io") == Credentials("gh", "ghpw")
    assert kc.credentials_for("quay.io").identity_token == "idtok"
    assert kc.credentials_for("reg.example").registry_token == "rtok"
    assert kc.credentials_for("empty.example") is None
    assert kc.credentials_for("127.0.0.1:5001") is None


def test_search_order_docker_config_then_home(tmp_path):
    write_config(tmp_path / "home" / ".docker", {"auths": {"r.io": {"auth": b64("home:pw")}}})
    env = env_with(tmp_path)
    assert Keychain.from_environment(env).credentials_for("r.io").username == "home"
    write_config(tmp_path / "dc", {"auths": {"r.io": {"auth": b64("dc:pw")}}})
    env["DOCKER_CONFIG"] = str(tmp_path / "dc")
    assert Keychain.from_environment(env).credentials_for("r.io").username == "dc"
    # DOCKER_CONFIG pointing at a directory without config.json falls through to HOME (no merge).
    env["DOCKER_CONFIG"] = str(tmp_path / "nothing")
    assert Keychain.from_environment(env).credentials_for("r.io").username == "home"
    # DOCKER_CONFIG may name the file itself.
    env["DOCKER_CONFIG"] = str(tmp_path / "dc" / "config.json")
    assert find_config_file(env) == tmp_path / "dc" / "config.json"


def test_unsearchable_home_is_skipped_with_a_warning(tmp_path, monkeypatch, caplog):
    """A non-root executor started with HOME=/root (setpriv, sudo) cannot look into it: that
    location is skipped with a warning, the next one is used, and nothing raises."""
    import pathlib
    locked = tmp_path / "home" / ".docker" / "config.json"
    real_is_file = pathlib.Path.is_file

    def is_file(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_is_file(self)
    monkeypatch.setattr(pathlib.Path, "is_file", is_file)
    with caplog.at_level("WARNING", logger="executor.registry"):
        kc = Keychain.from_environment({"HOME": str(tmp_path / "home")})
    assert kc.credentials_for("docker.io") is None
    assert any("permission denied" in r.getMessage() for r in caplog.records)


def test_no_config_is_anonymous(tmp_path):
    kc = Keychain.from_environment(env_with(tmp_path))
    assert kc.credentials_for("docker.io") is None


def test_broken_config_is_a_clear_error(tmp_path):
    (tmp_path / "dc").mkdir()
    (tmp_path / "dc" / "config.json").write_text("{not json")
    with pytest.raises(RegistryError, match="config.json"):
        Keychain.from_environment(env_with(tmp_path, DOCKER_CONFIG=str(tmp_path / "dc")))


def test_bad_base64_auth(tmp_path):
    write_config(tmp_path / "dc", {"auths": {"r.io": {"auth": "!!!notb64"}}})
    kc = Keychain.from_environment(env_with(tmp_path, DOCKER_CONFIG=str(tmp_path / "dc")))
    with pytest.raises(RegistryError, match="base64"):
        kc.credentials_for("r.io")


def test_cred_helpers_and_store(tmp_path):
    bin_dir, log = tmp_path / "bin", tmp_path / "helper.log"
    make_helper(bin_dir, "per", {"ghcr.io": ("ghuser", "ghsecret")}, log)
    make_helper(bin_dir, "store", {"https://index.docker.io/v1/": ("<token>", "hub-identity"),
                                   "quay.io": ("quser", "qsecret")}, log)
    write_config(tmp_path / "dc", {
        "credHelpers": {"ghcr.io": "per"},
        "credsStore": "store",
        "auths": {"ghcr.io": {"auth": b64("file:pw")}, "other.io": {"auth": b64("o:pw")}},
    })
    kc = Keychain.from_environment(env_with(tmp_path, bin_dir, DOCKER_CONFIG=str(tmp_path / "dc")))
    assert kc.credentials_for("ghcr.io") == Credentials("ghuser", "ghsecret")        # credHelpers wins
    assert kc.credentials_for("docker.io") == Credentials(identity_token="hub-identity")  # <token> user
    assert kc.credentials_for("quay.io") == Credentials("quser", "qsecret")
    assert kc.credentials_for("other.io") == Credentials("o", "pw")   # store says not found -> auths
    asked = log.read_text().split()
    assert asked[:2] == ["ghcr.io", "https://index.docker.io/v1/"]


def test_missing_helper_is_clear(tmp_path):
    write_config(tmp_path / "dc", {"credHelpers": {"r.io": "nope-not-installed"}})
    kc = Keychain.from_environment(env_with(tmp_path, DOCKER_CONFIG=str(tmp_path / "dc")))
    with pytest.raises(RegistryError, match="docker-credential-nope-not-installed"):
        kc.credentials_for("r.io")


def test_secrets_not_in_repr_or_logs(tmp_path, caplog):
    c = Credentials("alice", "hunter2-pw", "id-tok-xyz", "reg-tok-xyz")
    text = repr(c) + str(c)
    assert "alice" in text
    for secret in ("hunter2-pw", "id-tok-xyz", "reg-tok-xyz"):
        assert secret not in text
    write_config(tmp_path / "dc", {"auths": {"r.io": {"auth": b64("alice:hunter2-pw")}}})
    caplog.set_level(logging.DEBUG, logger="executor.registry")
    kc = Keychain.from_environment(env_with(tmp_path, DOCKER_CONFIG=str(tmp_path / "dc")))
    assert "hunter2-pw" not in repr(kc)
    assert kc.credentials_for("r.io").password == "hunter2-pw"
    assert "hunter2-pw" not in caplog.text


@pytest.mark.parametrize("header,expected", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
     [("bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                  "scope": "repository:library/busybox:pull"})]),
    ('Basic realm="Registry Realm"', [("basic", {"realm": "Registry Realm"})]),
    ('bearer Realm=http://a/t, Service=s', [("bearer", {"realm": "http://a/t", "service": "s"})]),
    ('Bearer realm="r",scope="repository:a:pull repository:b:pull,push",error="insufficient_scope"',
     [("bearer", {"realm": "r", "scope": "repository:a:pull repository:b:pull,push", "error": "insufficient_scope"})]),
    ('Basic realm="x", Bearer realm="y",service="z"',
     [("basic", {"realm": "x"}), ("bearer", {"realm": "y", "service": "z"})]),
    ('Bearer realm="with \\"quote\\", comma"', [("bearer", {"realm": 'with "quote", comma'})]),
    ("", []),
])
def test_parse_challenges(header, expected):
    got = [(c.scheme, dict(c.params)) for c in parse_challenges(header)]
    assert got == expected


@pytest.mark.parametrize("filler", [" " * 60_000, " ," * 30_000, "a" * 60_000])
def test_parse_challenges_of_a_huge_hostile_header_is_fast(filler):
    """A registry's 60 KB WWW-Authenticate (the first contact reads 64 KB heads, httpx more) is
    parsed in linear time: a run of blanks used to cost quadratic backtracking (minutes)."""
    import time
    t0 = time.monotonic()
    got = parse_challenges('Bearer realm="https://t/token",' + filler + "!")
    assert time.monotonic() - t0 < 1.0
    assert got[0].scheme == "bearer" and got[0].realm == "https://t/token"


def test_challenge_scopes_and_scope_for():
    (c,) = parse_challenges('Bearer realm="r",scope="repository:a:pull repository:b:push"')
    assert c.realm == "r" and c.service is None
    assert c.scopes == ("repository:a:pull", "repository:b:push")
    assert scope_for("library/busybox", "pull,push") == "repository:library/busybox:pull,push"
