"""The git-clone Task's step script, run for real with no capabilities and Tekton's substitution
applied, as the uids it meets on a cluster (its securityContext names none, issue 15): 65534:65534
(the catalog-tools image's USER; the README's runAsUser for a root image on plain Kubernetes) and
1000680000:0 with no passwd entry, as OpenShift's restricted-v2 runs it. A non-root clone works
into a world-writable workspace, with HOME=/tekton/home's stand-in or, when HOME is not writable,
a temp HOME; submodules and DEPTH over file://; the basic-auth workspace (Pipelines-as-Code's
.git-credentials/.gitconfig) and the ssl-ca-directory workspace against `git http-backend` served
over HTTPS with basic auth on loopback; the ssh-directory workspace against Debian's OpenSSH server
run on a loopback port (as OpenShift's uid through nss_wrapper) and, for what the step hands ssh, a
recording stand-in. Every run checks the CHAINS-GIT_* results."""

from __future__ import annotations

import base64
import glob
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from tests.tekton_schemas.pod_security import step_security_context
from tests.tekton_schemas.substitute import render_step

REPO = Path(__file__).resolve().parents[2]
TASK = yaml.safe_load((REPO / "tekton/tasks/git-clone/0.1/git-clone.yaml").read_text())
SC = step_security_context(TASK, "clone")
PLAIN = (65534, 65534)            # the catalog-tools image's USER 65534:65534
OPENSHIFT = (1000680000, 0)       # restricted-v2: a uid from the namespace's range, gid 0, no passwd entry
BOTH_USERS = pytest.mark.parametrize("step_user", [PLAIN, OPENSHIFT], ids=["65534", "openshift"], indirect=True)
GIT_ENV = dict(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@e", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@e")
# git >= 2.38.1 refuses file:// for submodules unless told (CVE-2022-39253); a test-only setting.
ALLOW_FILE = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.file.allow", "GIT_CONFIG_VALUE_0": "always"}
USER, TOKEN = "pac-bot", "s3cr3t-t0ken"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("git") or not shutil.which("setpriv"),
    reason="needs root (to drop to the step's uid with setpriv), git and setpriv")


@pytest.fixture
def tmp_path():
    """A directory the step's uid can reach (pytest's own tmp root is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="git-clone-step-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def git(*args, cwd=None, home=None) -> str:
    env = dict(os.environ, **GIT_ENV, **ALLOW_FILE, HOME=str(home or "/tmp"))
    return subprocess.run(["git", "-c", "safe.directory=*", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path: Path, files: dict[str, str], commits: int = 1) -> str:
    git("init", "-q", "-b", "main", str(path))
    for n in range(commits):
        for name, text in files.items():
            (path / name).write_text(f"{text}{n}\n" if n else text)
        git("add", "-A", cwd=path)
        git("commit", "-q", "-m", f"c{n}", cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


@pytest.fixture
def step_user(request) -> tuple[int, int]:
    """(uid, gid) the step runs as: PLAIN unless a test parametrizes it (BOTH_USERS)."""
    return getattr(request, "param", PLAIN)


def test_the_step_names_no_uid_so_restricted_v2_can_pick_one():
    assert "runAsUser" not in SC and "runAsGroup" not in SC and SC["runAsNonRoot"] is True


@pytest.fixture
def upstream(tmp_path, step_user) -> tuple[str, str]:
    src = tmp_path / "upstream"
    src.mkdir()
    sha = make_repo(src, {"Dockerfile": "FROM scratch\n"})
    # file:// makes git run upload-pack on the repository itself, which must then be the clone's
    # own (git's safe.directory rule); a real remote is a server and has no such check.
    subprocess.run(["chown", "-R", "%d:%d" % step_user, str(src)], check=True)
    return f"file://{src}", sha


def world_writable(p: Path) -> Path:
    p.mkdir(mode=0o777, exist_ok=True)
    os.chmod(p, 0o777)
    return p


def run_as_step(tmp_path: Path, url: str, revision: str, home: Path, params: dict | None = None,
                workspaces: dict | None = None, env: dict | None = None, user: tuple[int, int] = PLAIN):
    out = world_writable(tmp_path / "output")    # a world-writable volume (kind's local-path does this)
    results = world_writable(tmp_path / "results")
    step = render_step(TASK, "clone", {"URL": url, "REVISION": revision, **(params or {})},
                       {"output": str(out), **(workspaces or {})}, results_dir=str(results))
    step_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **step.env, "HOME": str(home), **(env or {})}
    script = tmp_path / "script.sh"
    script.write_text(step.script)
    script.chmod(0o755)
    uid, gid = user
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all",
           "--bounding-set=-all", "--no-new-privs", "sh", str(script)]
    p = subprocess.run(cmd, env=step_env, capture_output=True, text=True, timeout=60, cwd="/")
    return p, out, results


def assert_results(results: Path, url: str, sha: str) -> None:
    assert (results / "COMMIT").read_text() == (results / "CHAINS-GIT_COMMIT").read_text() == sha
    assert (results / "URL").read_text() == (results / "CHAINS-GIT_URL").read_text() == url


@BOTH_USERS
def test_clone_as_the_step_uid_without_capabilities(tmp_path, upstream, step_user):
    url, sha = upstream
    home = world_writable(tmp_path / "tekton-home")   # Tekton's /tekton/home emptyDir
    p, out, results = run_as_step(tmp_path, url, "main", home, user=step_user)
    assert p.returncode == 0, p.stderr
    assert (out / "Dockerfile").read_text() == "FROM scratch\n"
    assert_results(results, url, sha)
    st = (out / ".git").stat()
    assert (st.st_uid, st.st_gid) == step_user
    assert f"directory = {out}" in (home / ".gitconfig").read_text()   # HOME was used


@BOTH_USERS
def test_unwritable_home_falls_back_to_a_temp_home(tmp_path, upstream, step_user):
    url, sha = upstream
    home = tmp_path / "root-home"
    home.mkdir(mode=0o755)                    # root:root 0755: not writable by 65534, nor by group 0
    p, out, results = run_as_step(tmp_path, url, sha, home, user=step_user)
    assert p.returncode == 0, p.stderr
    assert "HOME is not writable" in p.stderr
    assert_results(results, url, sha)
    assert not any(home.iterdir())


@BOTH_USERS
def test_submodules_and_depth(tmp_path, step_user):
    """A superproject (3 commits) with a submodule (2 commits), both over file://: DEPTH=1 fetches
    one commit of each, the submodule's files are there; SUBMODULES=false leaves it empty."""
    sub, top = tmp_path / "sub", tmp_path / "top"
    sub.mkdir()
    top.mkdir()
    make_repo(sub, {"lib.txt": "lib\n"}, commits=2)
    make_repo(top, {"Dockerfile": "FROM scratch\n"}, commits=2)
    git("submodule", "add", "-q", f"file://{sub}", "vendor/lib", cwd=top)
    git("commit", "-q", "-m", "add submodule", cwd=top)
    sha = git("rev-parse", "HEAD", cwd=top)
    subprocess.run(["chown", "-R", "%d:%d" % step_user, str(sub), str(top)], check=True)
    home = world_writable(tmp_path / "home")
    p, out, results = run_as_step(tmp_path, f"file://{top}", "main", home, env=ALLOW_FILE, user=step_user)
    assert p.returncode == 0, p.stderr
    assert_results(results, f"file://{top}", sha)
    assert (out / "vendor/lib/lib.txt").read_text() == "lib\n1\n"   # the submodule's second commit
    assert git("rev-list", "--count", "HEAD", cwd=out, home=home) == "1"
    assert git("-C", str(out / "vendor/lib"), "rev-list", "--count", "HEAD", home=home) == "1"

    p, out, results = run_as_step(tmp_path, f"file://{top}", "main", home, env=ALLOW_FILE,
                                  params={"SUBMODULES": "false", "DEPTH": "0"}, user=step_user)
    assert p.returncode == 0, p.stderr
    assert not any((out / "vendor/lib").iterdir())
    assert git("rev-list", "--count", "HEAD", cwd=out, home=home) == "3"


@pytest.mark.parametrize("params,message", [({"DEPTH": "one"}, "DEPTH must be a number"),
                                            ({"SUBMODULES": "yes"}, "SUBMODULES must be true or false")])
def test_bad_params_are_one_line_errors(tmp_path, upstream, params, message):
    p, _, results = run_as_step(tmp_path, upstream[0], "main", world_writable(tmp_path / "home"), params=params)
    assert p.returncode == 1 and message in p.stderr
    assert not list(results.iterdir())


# ------------------------------------------------------------ https + basic auth (git http-backend)
class GitHTTP(BaseHTTPRequestHandler):
    """`git http-backend` as a CGI program behind HTTP basic auth (git's docs: git-http-backend)."""

    root = ""

    def log_message(self, *a):  # quiet
        pass

    def _serve(self):
        want = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()
        if self.headers.get("Authorization") != want:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {"GIT_PROJECT_ROOT": self.root, "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": path, "QUERY_STRING": query,
               "REQUEST_METHOD": self.command, "CONTENT_TYPE": self.headers.get("Content-Type", ""),
               "CONTENT_LENGTH": str(len(body)), "REMOTE_USER": USER, "REMOTE_ADDR": "127.0.0.1",
               "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
               "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""), "PATH": os.environ["PATH"]}
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.split(b"\r\n"):
            k, _, v = line.decode().partition(":")
            if k.lower() == "status":
                status = int(v.split()[0])
            elif k:
                headers.append((k, v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _serve


@pytest.fixture(scope="module")
def https_git():
    """(url, sha, ca_dir): a repository served over HTTPS (a self-signed loopback certificate)."""
    if not shutil.which("openssl"):
        pytest.skip("openssl missing")
    tmp_path = Path(tempfile.mkdtemp(prefix="git-clone-https-"))
    os.chmod(tmp_path, 0o755)
    root = tmp_path / "srv"
    (root / "app.git").mkdir(parents=True)
    sha = make_repo(root / "app.git", {"Dockerfile": "FROM scratch\n"})
    ca = tmp_path / "ca"
    ca.mkdir(mode=0o755)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(tmp_path / "key.pem"),
                    "-out", str(ca / "ca-bundle.crt")], check=True, capture_output=True)
    os.chmod(ca / "ca-bundle.crt", 0o644)
    handler = type("H", (GitHTTP,), {"root": str(root)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(ca / "ca-bundle.crt", tmp_path / "key.pem")
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/app.git", sha, ca
    server.shutdown()
    shutil.rmtree(tmp_path, ignore_errors=True)


def basic_auth_workspace(tmp_path: Path, url: str, with_gitconfig: bool) -> Path:
    ws = tmp_path / "basic-auth"
    ws.mkdir(mode=0o755)
    host = url.split("/")[2]
    (ws / ".git-credentials").write_text(f"https://{USER}:{TOKEN}@{host}\n")
    if with_gitconfig:   # what Pipelines-as-Code writes next to it
        (ws / ".gitconfig").write_text(f'[credential "https://{host}"]\n  helper = store\n')
    for f in ws.iterdir():
        os.chmod(f, 0o644)
    return ws


@BOTH_USERS
@pytest.mark.parametrize("with_gitconfig", [True, False])
def test_basic_auth_and_ca_workspaces_over_https(tmp_path, https_git, with_gitconfig, step_user):
    url, sha, ca = https_git
    home = world_writable(tmp_path / "home")
    auth = basic_auth_workspace(tmp_path, url, with_gitconfig)
    p, out, results = run_as_step(tmp_path, url, "main", home, user=step_user,
                                  workspaces={"basic-auth": str(auth), "ssl-ca-directory": str(ca)})
    assert p.returncode == 0, p.stderr
    assert "credentials from the basic-auth workspace" in p.stdout
    assert (out / "Dockerfile").read_text() == "FROM scratch\n"
    assert_results(results, url, sha)
    leaked = subprocess.run(["grep", "-rl", TOKEN, str(out), str(results)], capture_output=True, text=True).stdout
    assert leaked == "" and TOKEN not in p.stdout + p.stderr


def test_https_without_the_ca_or_the_credentials_fails(tmp_path, https_git):
    url, _, ca = https_git
    home = world_writable(tmp_path / "home")
    p, _, results = run_as_step(tmp_path, url, "main", home, workspaces={"basic-auth": str(
        basic_auth_workspace(tmp_path, url, True))})
    # GnuTLS reports the untrusted certificate, or (seen under load) aborts the same handshake
    # with "unexpected TLS packet"; either way the TLS handshake is what failed
    assert p.returncode != 0 and ("certificate" in p.stderr.lower() or "gnutls_handshake() failed" in p.stderr), \
        p.stderr
    p, _, results = run_as_step(tmp_path, url, "main", world_writable(tmp_path / "fresh-home"),
                                workspaces={"ssl-ca-directory": str(ca)}, env={"GIT_TERMINAL_PROMPT": "0"})
    assert p.returncode != 0 and not list(results.iterdir()), p.stderr


def test_url_credentials_never_reach_the_results(tmp_path, https_git):
    url, sha, ca = https_git
    with_token = url.replace("https://", f"https://{USER}:{TOKEN}@")
    p, _, results = run_as_step(tmp_path, with_token, "main", world_writable(tmp_path / "home"),
                                workspaces={"ssl-ca-directory": str(ca)})
    assert p.returncode == 0, p.stderr
    assert_results(results, url, sha)
    assert TOKEN not in p.stdout


@pytest.mark.parametrize("given,expected", [
    ("https://bot:tok@git.example.com/a.git", "https://git.example.com/a.git"),
    ("https://tok@git.example.com/a.git", "https://git.example.com/a.git"),       # a token as the username
    ("HTTP://u:p@h:8080/a", "HTTP://h:8080/a"),
    ("ssh://git@git.example.com/a.git", "ssh://git@git.example.com/a.git"),       # a user, no secret
    ("ssh://git:pw@git.example.com/a.git", "ssh://git.example.com/a.git"),
    ("git@git.example.com:team/a.git", "git@git.example.com:team/a.git"),         # scp-like ssh
    ("https://git.example.com/a@b.git", "https://git.example.com/a@b.git"),       # '@' in the path
])
def test_url_result_drops_credentials(given, expected):
    """The script's own URL-cleaning lines, run by sh on their own."""
    script = TASK["spec"]["steps"][0]["script"]
    lines = script[script.index("url=$("):].split("\n")
    cmd = "\n".join(lines[:2]) + '\nprintf %s "$url"\n'
    p = subprocess.run(["sh", "-c", cmd], env={"PARAM_URL": given, "PATH": "/usr/bin:/bin"},
                       capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout == expected, p.stderr


# ------------------------------------------------------------ ssh-directory (a stand-in ssh transport)
FAKE_SSH = """#!/bin/sh
# Records how git-clone invokes ssh, then runs the remote command (git-upload-pack '<path>')
# locally, as sshd would on the server: the git protocol itself is real.
printf '%s\\n' "$@" > "$SSH_RECORD"
for last; do :; done
exec sh -c "$last"
"""


def test_ssh_directory_workspace(tmp_path, upstream):
    """No sshd on this machine: a stand-in `ssh` first on PATH records its arguments and runs
    git-upload-pack locally. Checks what the step hands ssh (the copied key with -i, the config
    with -F, known_hosts) and that the keys land in HOME/.ssh readable by the step's uid only."""
    url, sha = upstream
    src = url[len("file://"):]
    bindir = tmp_path / "bin"
    bindir.mkdir(mode=0o755)
    (bindir / "ssh").write_text(FAKE_SSH)
    (bindir / "ssh").chmod(0o755)
    keys = tmp_path / "ssh-secret"
    keys.mkdir(mode=0o755)
    for name, text in {"id_ed25519": "PRIVATE\n", "id_ed25519.pub": "ssh-ed25519 AAAA\n",
                       "known_hosts": "git.example.invalid ssh-ed25519 AAAA\n", "config": "Host *\n  User git\n"}.items():
        (keys / name).write_text(text)
        os.chmod(keys / name, 0o644)          # a Secret volume's files are world-readable (defaultMode 0644)
    home = world_writable(tmp_path / "home")
    record = world_writable(tmp_path / "rec") / "ssh-args"
    p, out, results = run_as_step(tmp_path, f"ssh://git@git.example.invalid{src}", "main", home,
                                  workspaces={"ssh-directory": str(keys)},
                                  env={"PATH": f"{bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                                       "SSH_RECORD": str(record)})
    assert p.returncode == 0, p.stderr
    assert (out / "Dockerfile").read_text() == "FROM scratch\n"
    assert_results(results, f"ssh://git@git.example.invalid{src}", sha)
    args = record.read_text().splitlines()
    ssh_dir = home / ".ssh"
    assert ["-F", f"{ssh_dir}/config"] == args[args.index("-F"):args.index("-F") + 2]
    assert f"UserKnownHostsFile={ssh_dir}/known_hosts" in args
    assert ["-i", f"{ssh_dir}/id_ed25519"] == args[args.index("-i"):args.index("-i") + 2]
    assert args.count("-i") == 1                # the .pub file is not an identity
    assert "git.example.invalid" in " ".join(args) and f"git-upload-pack '{src}'" == args[-1]
    key = ssh_dir / "id_ed25519"
    assert key.read_text() == "PRIVATE\n" and key.stat().st_uid == PLAIN[0]
    assert (key.stat().st_mode & 0o077) == 0 and (ssh_dir.stat().st_mode & 0o077) == 0


# ------------------------------------------------------------ ssh-directory against a real sshd
SSHD = "/usr/sbin/sshd"


@pytest.fixture
def sshd(tmp_path):
    """Debian's OpenSSH server on a free 127.0.0.1 port, run by the test (not the system's
    service): one authorized key (made here), root login by key only, nothing else. Yields
    (port, client key dir holding id_ed25519 + known_hosts, the repository it serves, its sha)."""
    if not os.access(SSHD, os.X_OK) or not shutil.which("ssh-keygen"):
        pytest.skip("openssh-server missing (apt-get install openssh-server): no real sshd for ssh-directory")
    from tests.support.registry_server import free_port
    srv = tmp_path / "sshd"
    srv.mkdir(mode=0o700)
    keys = tmp_path / "ssh-secret"
    keys.mkdir(mode=0o755)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(srv / "host_key")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "git-clone-test", "-f",
                    str(keys / "id_ed25519")], check=True)
    shutil.copy(keys / "id_ed25519.pub", srv / "authorized_keys")
    repo = tmp_path / "served.git"
    repo.mkdir()
    sha = make_repo(repo, {"Dockerfile": "FROM scratch\n"})
    port = free_port()
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {(srv / 'host_key.pub').read_text()}")
    for f in keys.iterdir():
        os.chmod(f, 0o644)                    # a Secret volume's files are world-readable (defaultMode 0644)
    (srv / "sshd_config").write_text(textwrap.dedent(f"""\
        ListenAddress 127.0.0.1:{port}
        HostKey {srv / 'host_key'}
        AuthorizedKeysFile {srv / 'authorized_keys'}
        AllowUsers root
        PermitRootLogin prohibit-password
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        UsePAM no
        StrictModes no
        PidFile none
        """))
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)   # sshd's privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(srv / "sshd_config")], stdout=subprocess.DEVNULL,
                            stderr=open(srv / "log", "wb"))
    try:
        for _ in range(100):
            if proc.poll() is not None:
                pytest.fail(f"sshd exited: {(srv / 'log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield port, keys, repo, sha
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@BOTH_USERS
def test_ssh_directory_workspace_against_a_real_sshd(tmp_path, sshd, step_user):
    """The ssh-directory workspace (key + known_hosts as a Secret would hold them) clones over a
    real OpenSSH server on loopback as the step's uid; host key checking stays on. As OpenShift's
    uid (no passwd entry, which ssh refuses) the script gives ssh one through nss_wrapper."""
    if step_user == OPENSHIFT and not glob.glob("/usr/lib/*/libnss_wrapper.so"):
        pytest.skip("libnss-wrapper missing (apt-get install libnss-wrapper): ssh as a uid without passwd entry")
    port, keys, repo, sha = sshd
    url = f"ssh://root@127.0.0.1:{port}{repo}"
    home = world_writable(tmp_path / "home")
    p, out, results = run_as_step(tmp_path, url, "main", home, workspaces={"ssh-directory": str(keys)},
                                  user=step_user)
    assert p.returncode == 0, p.stderr + (tmp_path / "sshd/log").read_text()
    assert (out / "Dockerfile").read_text() == "FROM scratch\n"
    assert_results(results, url, sha)
    assert (out / ".git").stat().st_uid == step_user[0]
    nss = home / ".nss/passwd"
    if step_user == OPENSHIFT:    # the wrapper's entry: the uid, gid 0, HOME as its home
        assert f"git-clone:x:{OPENSHIFT[0]}:0:git-clone:{home}:/bin/sh" in nss.read_text().splitlines()
    else:
        assert not nss.exists()   # 65534 has a passwd entry: no wrapper
    assert "Accepted publickey for root" in (tmp_path / "sshd/log").read_text()   # through sshd, by the key
    # the same server refuses a host key the workspace does not vouch for
    (keys / "known_hosts").write_text(f"[127.0.0.1]:{port} {(keys / 'id_ed25519.pub').read_text()}")
    again = tmp_path / "again"
    again.mkdir(mode=0o755)
    p, _, results = run_as_step(again, url, "main", home, workspaces={"ssh-directory": str(keys)}, user=step_user)
    assert p.returncode != 0 and "host key" in p.stderr.lower(), p.stderr
    assert not (results / "COMMIT").exists()
