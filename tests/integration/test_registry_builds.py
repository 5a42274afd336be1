"""Registries, credentials and flaky networks proved through whole ``executor`` builds (the CLI).

The registry client has its own tests (test_registry_tls/token/faults.py); these run the
executor as a user does and check the results at the registry directly (httpx, bypassing
any proxy), with base images seeded by skopeo (an independent tool):

* Debian's docker-registry behind TLS (a CA the test makes) with htpasswd basic auth, and
  with mTLS; the missing-CA error; ``--skip-tls-verify-registry``.
* ``auth: token`` (realm = tests/support/token_server.py, scopes enforced): cross-repository
  mount of the base layers, anonymous push refused.
* Credential sources: a credential helper on PATH (``credHelpers``, ``credsStore``) and a
  config.json in each location, in precedence order, including ``/kaniko/.docker`` and the
  Tekton layout ``/tekton/creds/.docker``. Those absolute paths are provided inside a private
  mount namespace whose root is a tmpfs mirroring the host's top-level directories (bind
  mounts), so the host's own / is never written to; the test checks that.
* A fault-injecting proxy (503, 429 + Retry-After, resets mid-upload and mid-download):
  builds succeed within their retry budget, fail clearly beyond it, and no tag ever points
  at an image with a missing blob.
No secret appears in the executor's output, even at ``--verbosity=debug``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import textwrap
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.registry_server import start_custom_registry
from tests.support.tls import issue_cert, make_ca
from tests.support.token_server import TokenServer
from tests.support.tools import executor_cmd, have, run

pytestmark = pytest.mark.integration

USER = "alice"
PASSWORD = "bUild-Pa55-w0rd-7c1e"          # distinctive so a leak is unmistakable
WRONG = "wr0ng-Pa55-w0rd-e91a"
B64 = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
B64_WRONG = base64.b64encode(f"{USER}:{WRONG}".encode()).decode()


# --- helpers ------------------------------------------------------------------------------

def make_context(tmp: Path, dockerfile: str, files: dict[str, bytes | str] | None = None) -> Path:
    ctx = tmp / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    for name, content in (files or {}).items():
        (ctx / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    return ctx


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for an executor run: no inherited DOCKER_CONFIG, HOME a test directory."""
    env = {k: v for k, v in os.environ.items() if k not in ("DOCKER_CONFIG", "REGISTRY_AUTH_FILE")}
    env["HOME"] = str(home)
    env.update(extra)
    return env


def executor(args: list[str], env: dict[str, str], prefix: list[str] | None = None,
             timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run((prefix or []) + executor_cmd() + ["--log-format", "text", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def show(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"


def assert_ok(p: subprocess.CompletedProcess) -> None:
    assert p.returncode == 0, show(p)


def assert_clean_failure(p: subprocess.CompletedProcess, *needles: str, debug: bool = False) -> str:
    """Exit 1, one ``error:`` line containing every needle, no traceback (``--verbosity=debug``
    adds one by design, so ``debug`` runs skip that check). Returns the error line."""
    assert p.returncode == 1, show(p)
    if not debug:
        assert "Traceback" not in p.stderr and "Traceback" not in p.stdout, show(p)
    errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1, show(p)
    for n in needles:
        assert n in errors[0], f"{n!r} not in {errors[0]!r}"
    return errors[0]


def assert_no_secrets(p: subprocess.CompletedProcess, *secrets: str) -> None:
    out = p.stdout + p.stderr
    for s in (PASSWORD, B64, WRONG, B64_WRONG, *secrets):
        assert s not in out, f"secret {s[:4]}... leaked into the executor's output"


def write_config(d: Path, host: str, b64: str = B64, **extra) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    cfg = {"auths": {host: {"auth": b64}}} if b64 else {}
    cfg.update(extra)
    (d / "config.json").write_text(json.dumps(cfg))
    return d


class Direct:
    """Reads a registry directly with httpx (not the executor's client): tags, manifests, blobs."""

    ACCEPT = ", ".join(["application/vnd.oci.image.manifest.v1+json",
                        "application/vnd.docker.distribution.manifest.v2+json"])

    def __init__(self, base: str, verify: bool | str = False, basic: tuple[str, str] | None = None,
                 token_server: TokenServer | None = None, cert: tuple[str, str] | None = None):
        self.base = base
        if isinstance(verify, str):
            verify = ssl.create_default_context(cafile=verify)
            if cert:
                verify.load_cert_chain(*cert)
        self.client = httpx.Client(verify=verify, timeout=30, auth=basic)
        self.ts = token_server

    def _h(self, repo: str) -> dict[str, str]:
        if self.ts is None:
            return {}
        r = httpx.get(self.ts.realm, params={"service": self.ts.service, "scope": f"repository:{repo}:pull"},
                      auth=(USER, PASSWORD), timeout=30)
        r.raise_for_status()
        return {"Authorization": f"Bearer {r.json()['token']}"}

    def manifest(self, repo: str, ref: str) -> dict | None:
        r = self.client.get(f"{self.base}/v2/{repo}/manifests/{ref}", headers={**self._h(repo), "Accept": self.ACCEPT})
        if r.status_code == 404:
            return None
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json()

    def blob_status(self, repo: str, digest: str) -> int:
        return self.client.head(f"{self.base}/v2/{repo}/blobs/{digest}", headers=self._h(repo)).status_code

    def tags(self, repo: str) -> list[str]:
        r = self.client.get(f"{self.base}/v2/{repo}/tags/list", headers=self._h(repo))
        if r.status_code == 404:
            return []
        assert r.status_code == 200, (r.status_code, r.text)
        return r.json().get("tags") or []

    def check_image(self, repo: str, ref: str) -> dict:
        """The manifest of repo:ref; asserts its config and every layer blob exist (HEAD 200)."""
        man = self.manifest(repo, ref)
        assert man is not None, f"{repo}:{ref} was not pushed"
        for d in [man["config"]["digest"], *(layer["digest"] for layer in man["layers"])]:
            assert self.blob_status(repo, d) == 200, f"{repo}:{ref} names blob {d}, which is missing"
        return man

    def check_every_tag(self, repo: str) -> int:
        """Every tag of ``repo`` points at a complete image; returns how many tags there are."""
        tags = self.tags(repo)
        for t in tags:
            self.check_image(repo, t)
        return len(tags)

    def close(self) -> None:
        self.client.close()


def skopeo_copy(src: str, dest: str, *opts: str) -> None:
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", *opts, f"docker://{src}", f"docker://{dest}"])


# --- TLS + htpasswd, mTLS -----------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca(d / "ca", "build-ca")
    client_ca = make_ca(d / "client-ca", "build-client-ca")
    server = issue_cert(ca, d / "server", "server")
    client = issue_cert(client_ca, d / "client", "client", client=True)
    # skopeo's --cert-dir layout: *.crt CAs, *.cert/*.key client pair.
    sk = d / "skopeo"
    sk.mkdir()
    shutil.copy(ca.cert, sk / "ca.crt")
    sk_m = d / "skopeo-mtls"
    sk_m.mkdir()
    shutil.copy(ca.cert, sk_m / "ca.crt")
    shutil.copy(client.cert, sk_m / "client.cert")
    shutil.copy(client.key, sk_m / "client.key")
    return {"ca": ca, "client_ca": client_ca, "server": server, "client": client, "skopeo": sk,
            "skopeo_mtls": sk_m}


@pytest.fixture(scope="module")
def tls_registry(tools_present, pki, busybox, tmp_path_factory):
    """HTTPS (test CA) + htpasswd basic auth, seeded with busybox as base/busybox:latest."""
    if have("htpasswd"):
        pytest.skip("htpasswd (apache2-utils) missing: cannot make the basic-auth registry")
    state = tmp_path_factory.mktemp("build-tlsreg")
    (state / "htpasswd").write_text(run(["htpasswd", "-Bbn", USER, PASSWORD]).stdout)
    reg = start_custom_registry(
        state, http_extra={"tls": {"certificate": str(pki["server"].cert), "key": str(pki["server"].key)}},
        auth={"htpasswd": {"realm": "build-realm", "path": str(state / "htpasswd")}})
    reg.direct = Direct(f"https://{reg.host}", verify=str(pki["ca"].cert), basic=(USER, PASSWORD))
    try:
        reg.base = f"{reg.host}/base/busybox:latest"
        skopeo_copy(busybox, reg.base, "--dest-cert-dir", str(pki["skopeo"]), "--dest-creds", f"{USER}:{PASSWORD}")
        yield reg
    finally:
        reg.direct.close()
        reg.stop()


@pytest.fixture(scope="module")
def mtls_registry(tools_present, pki, busybox, tmp_path_factory):
    """HTTPS requiring a client certificate from the client CA; no other auth."""
    state = tmp_path_factory.mktemp("build-mtlsreg")
    reg = start_custom_registry(
        state, http_extra={"tls": {"certificate": str(pki["server"].cert), "key": str(pki["server"].key),
                                   "clientcas": [str(pki["client_ca"].cert)]}})
    try:
        reg.base = f"{reg.host}/base/busybox:latest"
        skopeo_copy(busybox, reg.base, "--dest-cert-dir", str(pki["skopeo_mtls"]))
        yield reg
    finally:
        reg.stop()


def tls_build(tmp_path: Path, reg, repo: str, *flags: str, env: dict | None = None,
              prefix: list[str] | None = None, base: str | None = None, debug: bool = True):
    """FROM the registry's base, COPY one file, push to REG/repo:TAG with ``flags``."""
    ctx = make_context(tmp_path, f"""
        FROM {base or reg.base}
        COPY hello.txt /hello.txt
        """, {"hello.txt": f"hello {uuid.uuid4().hex}\n"})
    tag = uuid.uuid4().hex[:8]
    home = tmp_path / f"home-{tag}"
    home.mkdir()
    if env is None:
        env = clean_env(home, DOCKER_CONFIG=str(write_config(tmp_path / f"docker-{tag}", reg.host)))
    p = executor(["--context", str(ctx), "--destination", f"{reg.host}/{repo}:{tag}",
                  "--verbosity=debug" if debug else "--verbosity=info", *flags], env, prefix=prefix)
    return p, tag


def test_tls_basic_auth_pull_and_push(tls_registry, pki, tmp_path):
    reg = tls_registry
    p, tag = tls_build(tmp_path, reg, "tls/app", "--registry-certificate", f"{reg.host}={pki['ca'].cert}")
    assert_ok(p)
    assert_no_secrets(p)
    man = reg.direct.check_image("tls/app", tag)
    base = reg.direct.manifest("base/busybox", "latest")
    assert [layer["digest"] for layer in man["layers"][:-1]] == [layer["digest"] for layer in base["layers"]]
    assert len(man["layers"]) == len(base["layers"]) + 1
    # The registry really demands credentials: the same build without them is refused.
    p2, tag2 = tls_build(tmp_path, reg, "tls/app", "--registry-certificate", f"{reg.host}={pki['ca'].cert}",
                         env=clean_env(tmp_path), debug=False)
    assert_clean_failure(p2, reg.host, "401", "no credentials for")
    assert reg.direct.manifest("tls/app", tag2) is None


def test_tls_missing_ca_is_a_clear_error(tls_registry, tmp_path):
    reg = tls_registry
    p, tag = tls_build(tmp_path, reg, "tls/noca", debug=False)
    line = assert_clean_failure(p, reg.host, "--registry-certificate", "--skip-tls-verify-registry")
    assert "not trusted" in line
    assert_no_secrets(p)
    assert reg.direct.manifest("tls/noca", tag) is None


def test_tls_skip_verify_registry(tls_registry, tmp_path):
    reg = tls_registry
    p, tag = tls_build(tmp_path, reg, "tls/skip", "--skip-tls-verify-registry", reg.host)
    assert_ok(p)
    assert_no_secrets(p)
    reg.direct.check_image("tls/skip", tag)


def test_mtls_client_certificate(mtls_registry, pki, tmp_path):
    reg = mtls_registry
    ca = f"{reg.host}={pki['ca'].cert}"
    env = clean_env(tmp_path)
    p, tag = tls_build(tmp_path, reg, "mtls/app", "--registry-certificate", ca, env=env, debug=False)
    assert_clean_failure(p, reg.host, "--registry-client-cert")
    p, tag = tls_build(tmp_path, reg, "mtls/app", "--registry-certificate", ca, "--registry-client-cert",
                       f"{reg.host}={pki['client'].cert},{pki['client'].key}", env=env)
    assert_ok(p)
    d = Direct(f"https://{reg.host}", verify=str(pki["ca"].cert),
               cert=(str(pki["client"].cert), str(pki["client"].key)))
    try:
        d.check_image("mtls/app", tag)
    finally:
        d.close()


# --- token auth ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def token_env(tools_present, busybox, tmp_path_factory):
    d = tmp_path_factory.mktemp("build-tokenreg")
    ts = TokenServer(signer=make_ca(d / "pki", "build-token-signer"), users={USER: PASSWORD}).start()
    try:
        reg = start_custom_registry(d / "reg", auth=ts.registry_auth_config())
    except Exception:
        ts.stop()
        raise
    reg.direct = Direct(f"http://{reg.host}", token_server=ts)
    try:
        for repo in ("team/base", "public/base"):
            skopeo_copy(busybox, f"{reg.host}/{repo}:latest", "--dest-tls-verify=false",
                        "--dest-creds", f"{USER}:{PASSWORD}")
        yield reg, ts
    finally:
        reg.direct.close()
        reg.stop()
        ts.stop()


def test_token_auth_build_mounts_base_layers_across_repos(token_env, tmp_path):
    reg, ts = token_env
    ts.requests.clear()
    p, tag = tls_build(tmp_path, reg, "team/app", "--insecure-registry", reg.host,
                       base=f"{reg.host}/team/base:latest")
    assert_ok(p)
    assert_no_secrets(p, "eyJ")            # no JWT (they all start with eyJ) in the output either
    # The push asked for one token covering push on team/app and pull on team/base: a mount.
    mount_reqs = [r for r in ts.requests if "repository:team/base:pull" in r.scopes
                  and "repository:team/app:pull,push" in r.scopes]
    assert mount_reqs and all(r.user == USER and r.status == 200 for r in mount_reqs), ts.requests
    base = reg.direct.manifest("team/base", "latest")
    man = reg.direct.check_image("team/app", tag)
    assert [x["digest"] for x in man["layers"][:-1]] == [x["digest"] for x in base["layers"]]
    assert "mounted" in p.stderr, show(p)


def test_token_auth_build_attaches_sbom_and_provenance_without_secrets(token_env, tmp_path):
    """This module's secret scan applied to the supply-chain documents: a build that signs in
    (basic -> bearer token) and gets a credential in a build arg attaches its SBOM and provenance
    in the authenticated repository (referrers tag), and neither document, as written and as
    stored in the registry, nor the output holds the password, its base64, a JWT or the arg."""
    reg, ts = token_env
    p, tag = tls_build(tmp_path, reg, "team/docs", "--insecure-registry", reg.host, "--sbom", "--provenance",
                       "--sbom-path", str(tmp_path / "sbom.json"), "--provenance-path", str(tmp_path / "prov.json"),
                       "--build-arg", f"REGISTRY_PASSWORD={PASSWORD}", "--digest-file", str(tmp_path / "digest"),
                       base=f"{reg.host}/team/base:latest")
    assert_ok(p)
    assert_no_secrets(p, "eyJ")
    digest = (tmp_path / "digest").read_text()
    assert f"sha256-{digest.split(':')[1]}" in reg.direct.tags("team/docs")
    h = reg.direct._h("team/docs")
    index = reg.direct.client.get(f"{reg.direct.base}/v2/team/docs/manifests/sha256-{digest.split(':')[1]}",
                                  headers={**h, "Accept": "application/vnd.oci.image.index.v1+json"}).json()
    stored = {}
    for d in index["manifests"]:
        man = reg.direct.client.get(f"{reg.direct.base}/v2/team/docs/manifests/{d['digest']}",
                                    headers={**h, "Accept": d["mediaType"]}).json()
        assert man["subject"]["digest"] == digest
        stored[d["artifactType"]] = reg.direct.client.get(
            f"{reg.direct.base}/v2/team/docs/blobs/{man['layers'][0]['digest']}", headers=h).content
    assert stored == {"application/spdx+json": (tmp_path / "sbom.json").read_bytes(),
                      "application/vnd.in-toto+json": (tmp_path / "prov.json").read_bytes()}
    for data in stored.values():
        for s in (PASSWORD, B64, USER + ":", "eyJ"):
            assert s.encode() not in data, f"{s[:4]}... leaked into a supply-chain document"
    ext = json.loads(stored["application/vnd.in-toto+json"])["predicate"]["buildDefinition"]["externalParameters"]
    assert ext["buildArgs"] == {}  # REGISTRY_PASSWORD is a secret-like name: left out


def test_token_auth_anonymous_push_is_refused(token_env, tmp_path):
    reg, ts = token_env
    p, tag = tls_build(tmp_path, reg, "team/anon", "--insecure-registry", reg.host,
                       base=f"{reg.host}/public/base:latest", env=clean_env(tmp_path), debug=False)
    assert_clean_failure(p, reg.host, "team/anon", "401", "no credentials for")
    assert reg.direct.tags("team/anon") == []
    assert reg.direct.manifest("team/anon", tag) is None
    # the anonymous pull of the public base worked: the failure is the push
    assert any(r.user is None and "repository:public/base:pull" in r.scopes for r in ts.requests)


# --- credential sources ----------------------------------------------------------------------

HELPER = r"""#!/bin/sh
# docker-credential-testhelper: answers `get` for one registry; logs what it was asked (no secrets).
[ "$1" = get ] || exit 2
read -r url
echo "$url" >> "$HELPER_LOG"
if [ "$url" = "$HELPER_HOST" ]; then
  printf '{"ServerURL":"%s","Username":"%s","Secret":"%s"}\n' "$url" "$HELPER_USER" "$HELPER_SECRET"
else
  echo "credentials not found in native keychain"
  exit 1
fi
"""


@pytest.mark.parametrize("how", ["credHelpers", "credsStore"])
def test_credential_helper_on_path(tls_registry, pki, tmp_path, how):
    reg = tls_registry
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-testhelper"
    helper.write_text(HELPER)
    helper.chmod(0o755)
    log = tmp_path / "helper.log"
    cfg = {"credHelpers": {reg.host: "testhelper"}} if how == "credHelpers" else {"credsStore": "testhelper"}
    dc = write_config(tmp_path / "docker", reg.host, b64="", **cfg)
    env = clean_env(tmp_path, DOCKER_CONFIG=str(dc), PATH=f"{bindir}:{os.environ['PATH']}",
                    HELPER_LOG=str(log), HELPER_HOST=reg.host, HELPER_USER=USER, HELPER_SECRET=PASSWORD)
    p, tag = tls_build(tmp_path, reg, "creds/helper", "--registry-certificate", f"{reg.host}={pki['ca'].cert}",
                       env=env)
    assert_ok(p)
    assert_no_secrets(p)
    assert reg.host in log.read_text().split()
    reg.direct.check_image("creds/helper", tag)


# A private mount namespace whose / is a tmpfs mirroring the host's top-level entries (bind
# mounts, symlinks copied) plus /kaniko and /tekton from STAGE; then chroot into it. Nothing is
# created in the host's / and every mount vanishes with the namespace.
NS_ROOT_SCRIPT = r"""
set -eu
R=$1; STAGE=$2; shift 2
mount -t tmpfs -o mode=0755 executor-test-root "$R"
for e in /* /.[!.]*; do
  [ -e "$e" ] || [ -L "$e" ] || continue
  n=${e#/}
  case "$n" in kaniko|tekton) continue;; esac
  if [ -L "$e" ]; then ln -s "$(readlink "$e")" "$R/$n"
  elif [ -d "$e" ]; then mkdir "$R/$n"; mount --rbind "$e" "$R/$n"
  else : > "$R/$n"; mount --bind "$e" "$R/$n"
  fi
done
cp -a "$STAGE/kaniko" "$STAGE/tekton" "$R/"
exec chroot "$R" "$@"
"""

LOCATIONS = ["DOCKER_CONFIG", "HOME", "/kaniko/.docker", "/tekton/creds/.docker"]


def _host_state() -> dict:
    return {p: (os.path.lexists(p), sorted(os.listdir(p)) if os.path.isdir(p) else None)
            for p in ("/kaniko", "/tekton")}


@pytest.fixture(scope="module")
def mount_ns_ok(tmp_path_factory):
    if have("unshare", "chroot"):
        pytest.skip("unshare/chroot missing: cannot provide /kaniko and /tekton without touching the host")
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f"mount -t tmpfs none {tmp_path_factory.mktemp('nsprobe')}"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a private mount namespace here (need CAP_SYS_ADMIN): {probe.stderr.strip()}")


@pytest.mark.parametrize("where", LOCATIONS)
def test_config_json_locations_in_order(tls_registry, pki, tmp_path, mount_ns_ok, where):
    """Good credentials in ``where``; wrong ones in every later location (so a later file winning
    would fail the build), none earlier. /kaniko and /tekton exist only in the namespace."""
    reg = tls_registry
    before = _host_state()
    idx = LOCATIONS.index(where)
    stage = tmp_path / "stage"
    home = tmp_path / "home"
    home.mkdir()
    dirs = {"DOCKER_CONFIG": tmp_path / "dockerconfig", "HOME": home / ".docker",
            "/kaniko/.docker": stage / "kaniko" / ".docker",
            "/tekton/creds/.docker": stage / "tekton" / "creds" / ".docker"}
    (stage / "kaniko").mkdir(parents=True)
    (stage / "tekton").mkdir(parents=True)
    for i, loc in enumerate(LOCATIONS):
        if i >= idx:
            write_config(dirs[loc], reg.host, B64 if i == idx else B64_WRONG)
    extra = {"DOCKER_CONFIG": str(dirs["DOCKER_CONFIG"])} if where == "DOCKER_CONFIG" else {}
    if where.startswith("/tekton"):
        extra["HOME"] = "/tekton/home"       # what Tekton sets; no .docker there
        (stage / "tekton" / "home").mkdir()
    env = clean_env(home, **extra)
    root = tmp_path / "nsroot"
    root.mkdir()
    prefix = ["unshare", "--mount", "--propagation", "private", "sh", "-c", NS_ROOT_SCRIPT, "ns-root",
              str(root), str(stage)]
    p, tag = tls_build(tmp_path, reg, "creds/location", "--registry-certificate", f"{reg.host}={pki['ca'].cert}",
                       env=env, prefix=prefix)
    assert_ok(p)
    assert_no_secrets(p)
    reg.direct.check_image("creds/location", tag)
    # the host is unchanged: no /kaniko or /tekton appeared, no mount leaked out of the namespace
    assert _host_state() == before
    assert not os.listdir(root)
    with open("/proc/self/mounts") as f:
        assert "executor-test-root" not in f.read()


def test_first_config_file_wins_without_merging(tls_registry, pki, tmp_path):
    """DOCKER_CONFIG with a wrong password beats a correct $HOME/.docker: a clean 401 naming the file."""
    reg = tls_registry
    home = tmp_path / "home"
    write_config(home / ".docker", reg.host, B64)
    bad = write_config(tmp_path / "bad", reg.host, B64_WRONG)
    p, tag = tls_build(tmp_path, reg, "creds/order", "--registry-certificate", f"{reg.host}={pki['ca'].cert}",
                       env=clean_env(home, DOCKER_CONFIG=str(bad)))      # at debug: check no leak
    assert_clean_failure(p, reg.host, "401", "did not accept the credentials", str(bad / "config.json"), debug=True)
    assert_no_secrets(p)
    assert reg.direct.manifest("creds/order", tag) is None


# --- faults -----------------------------------------------------------------------------------

@pytest.fixture
def proxy(registry):
    h, port = registry.host.split(":")
    with FaultProxy((h, int(port))) as px:
        yield px


@pytest.fixture(scope="module")
def session_direct(registry):
    d = Direct(f"http://{registry.host}")
    yield d
    d.close()


@pytest.fixture(scope="module")
def base_layer(registry, busybox, session_direct) -> str:
    repo, _, tag = busybox.split("/", 1)[1].partition(":")
    man = session_direct.manifest(repo, tag)
    assert len(man["layers"]) == 1
    return man["layers"][0]["digest"]


def fault_build(tmp_path: Path, proxy: FaultProxy, busybox: str, repo: str, *flags: str):
    """FROM busybox (through the proxy; its layer is downloaded and unpacked), COPY 600 KiB of random
    data, push via the proxy: one layer uploaded, then the config (the base layer is mounted)."""
    base = busybox.replace(busybox.split("/")[0], proxy.host)
    ctx = make_context(tmp_path, f"""
        FROM {base}
        COPY blob.bin /blob.bin
        """, {"blob.bin": os.urandom(600 * 1024)})
    tag = uuid.uuid4().hex[:8]
    p = executor(["--context", str(ctx), "--destination", f"{proxy.host}/{repo}:{tag}",
                  "--insecure-registry", proxy.host, *flags], clean_env(tmp_path))
    return p, tag


def fired(proxy: FaultProxy) -> list[str]:
    return [a for _, _, a in proxy.log if a != "forward"]


def test_faults_503_and_429_within_budget(proxy, busybox, session_direct, tmp_path):
    proxy.add(Fault("status", "GET", "/manifests/", status=503, times=2),
              Fault("status", "HEAD", "/blobs/", status=429, retry_after=1, times=1),
              Fault("status", "POST", "/blobs/uploads/", status=503, times=2),
              Fault("status", "PUT", "/manifests/", status=503, times=2))
    p, tag = fault_build(tmp_path, proxy, busybox, "rb-faults/status")
    assert_ok(p)
    assert sorted(fired(proxy)) == sorted(["status 503"] * 6 + ["status 429"]), proxy.log
    session_direct.check_image("rb-faults/status", tag)
    assert session_direct.check_every_tag("rb-faults/status") >= 1


def test_faults_reset_mid_upload_and_mid_download(proxy, busybox, base_layer, session_direct, tmp_path):
    proxy.add(Fault("reset_response", "GET", f"/blobs/{base_layer}", after_bytes=100 * 1024, times=2),
              Fault("reset_request", "PUT", "/blobs/uploads/", after_bytes=64 * 1024, times=1))
    p, tag = fault_build(tmp_path, proxy, busybox, "rb-faults/reset", "--verbosity=debug")
    assert_ok(p)
    acts = fired(proxy)
    assert acts.count("reset_response") == 2, proxy.log
    resets = [a for a in acts if a.startswith("reset_request@")]
    assert len(resets) == 1 and int(resets[0].split("@")[1]) >= 64 * 1024, proxy.log   # mid-blob, not before it
    # two broken GETs of the base layer, then the one that finished it
    assert sum(1 for m, path, a in proxy.log if m == "GET" and base_layer in path) == 3
    man = session_direct.check_image("rb-faults/reset", tag)
    assert man["layers"][0]["digest"] == base_layer and len(man["layers"]) == 2
    session_direct.check_every_tag("rb-faults/reset")


def test_push_retry_budget_decides(proxy, busybox, session_direct, tmp_path):
    """Four 503s on blob-upload PUTs: 4 attempts (the default budget) fail cleanly with no tag;
    --push-retry 1 (5 attempts) succeeds. Only the COPY layer and the config are uploaded
    (the base layer is mounted), one after the other, so the count is deterministic."""
    proxy.add(Fault("status", "PUT", "/blobs/uploads/", status=503, times=4))
    p, tag = fault_build(tmp_path, proxy, busybox, "rb-faults/budget")
    assert_clean_failure(p, proxy.host, "503", "--push-retry")
    assert session_direct.manifest("rb-faults/budget", tag) is None
    assert session_direct.tags("rb-faults/budget") == []
    proxy.faults.clear()
    proxy.log.clear()
    proxy.add(Fault("status", "PUT", "/blobs/uploads/", status=503, times=4))
    p, tag = fault_build(tmp_path, proxy, busybox, "rb-faults/budget", "--push-retry", "1")
    assert_ok(p)
    assert fired(proxy) == ["status 503"] * 4
    assert session_direct.check_every_tag("rb-faults/budget") == 1
    session_direct.check_image("rb-faults/budget", tag)


def test_download_retry_budget_decides(proxy, busybox, base_layer, session_direct, tmp_path):
    proxy.add(Fault("reset_response", "GET", f"/blobs/{base_layer}", after_bytes=50 * 1024, times=4))
    p, tag = fault_build(tmp_path, proxy, busybox, "rb-faults/dl")
    assert_clean_failure(p, proxy.host, base_layer, "--image-download-retry")
    assert session_direct.tags("rb-faults/dl") == []
    proxy.faults.clear()
    proxy.add(Fault("reset_response", "GET", f"/blobs/{base_layer}", after_bytes=50 * 1024, times=4))
    p, tag = fault_build(tmp_path, proxy, busybox, "rb-faults/dl", "--image-download-retry", "1")
    assert_ok(p)
    session_direct.check_image("rb-faults/dl", tag)
    assert session_direct.check_every_tag("rb-faults/dl") == 1
