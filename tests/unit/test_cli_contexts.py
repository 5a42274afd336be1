"""Build-context sources through the real CLI (``python -m executor``), against real sources on
loopback: a tar.gz on stdin, a local tar.gz, a tarball over HTTP (http.server in a thread), git
over smart HTTP (``git http-backend`` behind a CGI shim in a thread) and git's own protocol
(``git daemon``, when installed). Each build is ``FROM scratch`` + ``COPY . /ctx/`` written to an
OCI layout, whose layer is read back to see exactly which context files the build saw.
"""

from __future__ import annotations

import http.server
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from executor.contexts import classify, parse_git_options, parse_git_url, redact
from executor.errors import UserError

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = b"FROM scratch\nCOPY . /ctx/\n"


def _executor(args: list[str], stdin: bytes | None = None, env: dict | None = None,
              timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "executor", "--log-format", "text", *args], input=stdin,
                          capture_output=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


def _layout_files(layout: Path) -> dict[str, bytes]:
    """Regular files of every layer of the single image in an OCI layout: path -> content."""
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    manifest = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    out = {}
    for layer in manifest["layers"]:
        blob = layout / "blobs" / "sha256" / layer["digest"].split(":")[1]
        with tarfile.open(blob, "r:*") as tf:
            for m in tf:
                if m.isfile():
                    out[m.name.lstrip("./")] = tf.extractfile(m).read()
    return out


def _manifest(layout: Path) -> dict:
    index = json.loads((layout / "index.json").read_text())
    digest = index["manifests"][0]["digest"]
    return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())


def _context_files() -> dict[str, bytes]:
    return {"Dockerfile": DOCKERFILE, "hello.txt": b"hello\n", "sub/deep.txt": b"deep\n",
            "secret.key": b"do not ship\n", ".dockerignore": b"secret.key\n"}


def _targz(files: dict[str, bytes], extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tf.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tf.addfile(info, io.BytesIO(b"x" * info.size))
    return buf.getvalue()


def _assert_context_built(layout: Path) -> None:
    files = _layout_files(layout)
    assert files["ctx/hello.txt"] == b"hello\n"
    assert files["ctx/sub/deep.txt"] == b"deep\n"
    assert "ctx/secret.key" not in files, ".dockerignore must apply as for a directory"


# -- tarballs ----------------------------------------------------------------------------------

def test_context_tar_stdin(tmp_path):
    p = _executor(["--context", "tar://stdin", "--no-push", "--oci-layout-path", str(tmp_path / "out")],
                  stdin=_targz(_context_files()))
    assert p.returncode == 0, p.stderr.decode()
    _assert_context_built(tmp_path / "out")


def test_context_tar_stdin_not_an_archive(tmp_path):
    p = _executor(["--context", "tar://stdin", "--no-push"], stdin=b"this is not a tarball at all\n" * 10)
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" not in err
    assert "error: --context tar://stdin: not a usable tar archive" in err


def test_context_local_targz_with_sub_path(tmp_path):
    files = {f"app/{k}": v for k, v in _context_files().items()}
    (tmp_path / "ctx.tar.gz").write_bytes(_targz(files))
    p = _executor(["--context", f"tar://{tmp_path / 'ctx.tar.gz'}", "--context-sub-path", "app", "--no-push",
                   "--oci-layout-path", str(tmp_path / "out")])
    assert p.returncode == 0, p.stderr.decode()
    _assert_context_built(tmp_path / "out")


def test_context_tar_entry_escaping_is_refused(tmp_path):
    evil = tarfile.TarInfo("../../escaped.txt")
    evil.size = 1
    (tmp_path / "ctx.tar.gz").write_bytes(_targz(_context_files(), [evil]))
    work = tmp_path / "work"
    work.mkdir()
    p = _executor(["--context", f"tar://{tmp_path / 'ctx.tar.gz'}", "--no-push", "--kaniko-dir", str(work)])
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" not in err
    assert "escapes the root" in err
    assert not list(tmp_path.rglob("escaped.txt"))
    assert not [d for d in work.iterdir() if d.name.startswith("executor-")], "the partial copy is removed"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_dir(tmp_path):
    """(directory served, base URL) of a loopback HTTP server."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(root)))
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_context_http_tarball(tmp_path, http_dir):
    root, base = http_dir
    (root / "ctx.tar.gz").write_bytes(_targz(_context_files()))
    p = _executor(["--context", f"{base}/ctx.tar.gz", "--no-push", "--oci-layout-path", str(tmp_path / "out")])
    assert p.returncode == 0, p.stderr.decode()
    _assert_context_built(tmp_path / "out")


def test_context_http_missing_is_one_line(http_dir):
    _, base = http_dir
    p = _executor(["--context", f"http://user:hunter2@{base[len('http://'):]}/nope.tar.gz", "--no-push"])
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" not in err
    assert "answered 404" in err and "hunter2" not in err and "***@" in err


@pytest.mark.parametrize("spec,what", [
    ("s3://bucket/ctx.tar.gz", "S3"),
    ("gs://bucket/ctx.tar.gz", "Google Cloud Storage"),
    ("az://container/ctx.tar.gz", "Azure Blob Storage"),
    ("https://acct.blob.core.windows.net/c/ctx.tar.gz", "Azure Blob Storage"),
    ("ftp://host/ctx.tar.gz", "ftp://"),
])
def test_cloud_contexts_fail_with_one_line(spec, what):
    p = _executor(["--context", spec, "--no-push"])
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1
    assert f"{what} contexts are not supported" in lines[0]
    assert "tar://stdin" in lines[0] and "git://" in lines[0]


# -- git -----------------------------------------------------------------------------------------

def _git(*args: str, cwd: Path) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def git_repo(tmp_path):
    """A bare repository ``<root>/repo.git``: main has two commits (the first with
    old.txt), branch ``feature`` has the context in ``app/``. Returns (root, shas)."""
    if not shutil.which("git"):
        pytest.skip("git is not installed")
    work = tmp_path / "src"
    work.mkdir()
    _git("init", "-q", "-b", "main", ".", cwd=work)
    (work / "Dockerfile").write_bytes(DOCKERFILE)
    (work / "old.txt").write_text("old\n")
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "one", cwd=work)
    first = _git("rev-parse", "HEAD", cwd=work)
    (work / "old.txt").unlink()
    (work / "new.txt").write_text("new\n")
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "two", cwd=work)
    main = _git("rev-parse", "HEAD", cwd=work)
    _git("checkout", "-q", "-b", "feature", cwd=work)
    for name, data in _context_files().items():
        (work / "app" / name).parent.mkdir(parents=True, exist_ok=True)
        (work / "app" / name).write_bytes(data)
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", "feature", cwd=work)
    feature = _git("rev-parse", "HEAD", cwd=work)
    _git("checkout", "-q", "main", cwd=work)
    root = tmp_path / "git"
    root.mkdir()
    _git("clone", "-q", "--bare", str(work), str(root / "repo.git"), cwd=tmp_path)
    return root, {"first": first, "main": main, "feature": feature}


class _GitCGI(http.server.BaseHTTPRequestHandler):
    """git's smart HTTP protocol: each request run through ``git http-backend`` (CGI)."""

    project_root = ""
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._cgi()

    def do_POST(self):
        self._cgi()

    def _cgi(self):
        type(self).requests.append(f"{self.command} {self.path} auth={self.headers.get('Authorization')}")
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        env = {"PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": self.project_root, "GIT_HTTP_EXPORT_ALL": "1",
               "PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": self.command,
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body)),
               "REMOTE_ADDR": "127.0.0.1", "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
               "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", "")}
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            k, _, v = line.partition(":")
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


@pytest.fixture
def git_http(git_repo):
    root, shas = git_repo
    handler = type("H", (_GitCGI,), {"project_root": str(root), "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", shas, handler
    server.shutdown()
    server.server_close()


def test_context_git_https_form_branch_and_subdir(tmp_path, git_http):
    """``http(s)://HOST/REPO.git#REF:SUBDIR`` (Docker's form): branch fetched, sub-directory built,
    .dockerignore of the sub-directory applied, commit logged and recorded."""
    host, shas, _ = git_http
    p = _executor(["--context", f"http://{host}/repo.git#feature:app", "--no-push",
                   "--oci-layout-path", str(tmp_path / "out")])
    err = p.stderr.decode()
    assert p.returncode == 0, err
    _assert_context_built(tmp_path / "out")
    assert f"commit {shas['feature']}" in err


def test_context_git_kaniko_form_with_sha_and_credentials(tmp_path, git_http):
    """``git://HOST/REPO.git#SHA`` (Kaniko: git:// means https, GIT_PULL_METHOD=http plain http):
    an older commit is checked out; GIT_USERNAME/GIT_PASSWORD go as basic auth, never into the
    context's .git/config nor the logs."""
    host, shas, handler = git_http
    p = _executor(["--context", f"git://{host}/repo.git#{shas['first']}", "--no-push",
                   "--oci-layout-path", str(tmp_path / "out")],
                  env={"GIT_PULL_METHOD": "http", "GIT_USERNAME": "bob", "GIT_PASSWORD": "s3cret"})
    err = p.stderr.decode()
    assert p.returncode == 0, err
    files = _layout_files(tmp_path / "out")
    assert files["ctx/old.txt"] == b"old\n" and "ctx/new.txt" not in files
    assert f"commit {shas['first']}" in err and "s3cret" not in err
    assert b"s3cret" not in files.get("ctx/.git/config", b"") and "ctx/.git/config" in files
    assert any("auth=Basic " in r for r in handler.requests)


def test_context_git_branch_option_and_shallow(tmp_path, git_http):
    """``--git branch=feature`` picks the ref when the URL has none; the fetch is depth 1."""
    host, shas, _ = git_http
    p = _executor(["--context", f"http://{host}/repo.git", "--git", "branch=feature,single-branch=true",
                   "--context-sub-path", "app", "--no-push", "--oci-layout-path", str(tmp_path / "out"),
                   "--kaniko-dir", str(tmp_path / "k"), "--cleanup=false"])
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert f"commit {shas['feature']}" in err and "depth 1" in err


def test_context_git_unknown_ref_is_one_line(git_http):
    host, _, _ = git_http
    p = _executor(["--context", f"http://{host}/repo.git#no-such-branch", "--no-push"])
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" not in err
    assert "cannot fetch no-such-branch" in err


def test_context_git_daemon_protocol(tmp_path, git_repo):
    """``git+git://`` hands git's own protocol to git (a ``git daemon`` on loopback)."""
    root, shas = git_repo
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    daemon = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", f"--base-path={root}",
                               "--listen=127.0.0.1", f"--port={port}", str(root)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if daemon.poll() is not None:
                    pytest.skip("git daemon is not available")
                time.sleep(0.05)
        p = _executor(["--context", f"git+git://127.0.0.1:{port}/repo.git#main", "--no-push",
                       "--oci-layout-path", str(tmp_path / "out")])
        err = p.stderr.decode()
        assert p.returncode == 0, err
        assert _layout_files(tmp_path / "out")["ctx/new.txt"] == b"new\n"
        assert f"commit {shas['main']}" in err
    finally:
        daemon.terminate()
        daemon.wait(10)


# -- pure functions ------------------------------------------------------------------------------

def test_classify_and_parse():
    assert classify("/ws") == ("dir", "/ws") and classify("dir:///ws") == ("dir", "/ws")
    assert classify("tar://stdin") == ("tar", "stdin")
    assert classify("https://h/ctx.tar.gz") == ("http", "https://h/ctx.tar.gz")
    assert classify("https://h/r.git#main:sub") == ("git", "https://h/r.git#main:sub")
    assert classify("git://github.com/o/r.git#refs/heads/x") == ("git", "https://github.com/o/r.git#refs/heads/x")
    assert classify("git+ssh://git@h/r.git") == ("git", "ssh://git@h/r.git")
    assert parse_git_url("https://h/r.git#main:sub/dir") == ("https://h/r.git", "main", "sub/dir", None)
    assert parse_git_url("https://h/r.git#refs/heads/b#abc1234") == ("https://h/r.git", "refs/heads/b", None,
                                                                       "abc1234")
    g = parse_git_options(["branch=dev,single-branch=true", "recurse-submodules=true", "depth=0"])
    assert (g.branch, g.single_branch, g.recurse_submodules, g.depth) == ("dev", True, True, 0)
    with pytest.raises(UserError):
        parse_git_options(["bogus=1"])
    assert redact("https://u:p@h/x") == "https://***@h/x"


def test_context_tar_stdin_is_streamed(tmp_path):
    """A 96 MiB incompressible tar.gz on stdin: the executor's peak RSS stays below the archive's
    size (it would exceed it if the archive, or the file in it, were held in memory)."""
    import gzip
    import random
    size = 96 << 20
    block = random.Random(7).randbytes(1 << 20)  # repeated 1 MiB: beyond gzip's 32 KiB window
    archive = tmp_path / "big.tar.gz"
    with gzip.open(archive, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w|") as tf:
        df = b"FROM scratch\nLABEL a=b\n"
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(df)
        tf.addfile(info, io.BytesIO(df))
        info = tarfile.TarInfo("big.bin")
        info.size = size
        tf.addfile(info, io.BufferedReader(io.BytesIO(block * (size >> 20))))
    assert archive.stat().st_size > size
    probe = ("import resource, subprocess, sys; "
             "r = subprocess.run(sys.argv[1:], stdin=sys.stdin, capture_output=True); "
             "sys.stderr.buffer.write(r.stderr); "
             "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    with open(archive, "rb") as f:
        p = subprocess.run([sys.executable, "-c", probe, sys.executable, "-m", "executor", "--context", "tar://stdin",
                            "--no-push", "--log-format", "text"], stdin=f, capture_output=True, text=True,
                           cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    rc, rss_kib = map(int, p.stdout.split())
    assert rc == 0, p.stderr
    assert "unpacked build context tar://stdin: 2 entries" in p.stderr
    assert rss_kib * 1024 < size, f"peak RSS {rss_kib} KiB"
