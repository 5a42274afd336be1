"""Git build contexts through the real CLI, beyond tests/unit/test_cli_contexts.py: Kaniko's
``--git recurse-submodules=true`` (a submodule with a relative URL, fetched from the same
``git http-backend`` on loopback), ``--git insecure-skip-tls=true`` against git over HTTPS with a
certificate the executor cannot verify, Kaniko's ``#REF#COMMIT`` form, and the checked-out commit
in the build's provenance (``--provenance-path`` with ``--no-push``)."""

from __future__ import annotations

import http.server
import json
import ssl
import threading

import pytest

from tests.support.tls import issue_cert, make_ca
from tests.unit.test_cli_contexts import DOCKERFILE, _executor, _git, _GitCGI, _layout_files


def _serve(root, tls: ssl.SSLContext | None = None):
    """``git http-backend`` for the bare repositories under ``root`` on 127.0.0.1; (server, host:port)."""
    handler = type("H", (_GitCGI,), {"project_root": str(root), "requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


def _commit_all(work, message: str) -> str:
    _git("add", "-A", cwd=work)
    _git("commit", "-q", "-m", message, cwd=work)
    return _git("rev-parse", "HEAD", cwd=work)


@pytest.fixture
def repos(tmp_path):
    """Bare ``app.git`` (Dockerfile, a.txt, submodule ``lib`` -> ``../lib.git``) and ``lib.git``
    (lib.txt) under ``<tmp>/git``; returns (root, {"app": sha, "lib": sha, "app_first": sha})."""
    root = tmp_path / "git"
    root.mkdir()
    lib = tmp_path / "lib"
    lib.mkdir()
    _git("init", "-q", "-b", "main", ".", cwd=lib)
    (lib / "lib.txt").write_text("from the submodule\n")
    lib_sha = _commit_all(lib, "lib")
    app = tmp_path / "app"
    app.mkdir()
    _git("init", "-q", "-b", "main", ".", cwd=app)
    (app / "Dockerfile").write_bytes(DOCKERFILE)
    (app / "a.txt").write_text("first\n")
    first = _commit_all(app, "one")
    (app / "a.txt").write_text("second\n")
    (app / ".gitmodules").write_text('[submodule "lib"]\n\tpath = lib\n\turl = ../lib.git\n')
    _git("add", "a.txt", ".gitmodules", cwd=app)
    _git("update-index", "--add", "--cacheinfo", f"160000,{lib_sha},lib", cwd=app)  # the gitlink, no checkout
    _git("commit", "-q", "-m", "two", cwd=app)
    app_sha = _git("rev-parse", "HEAD", cwd=app)
    assert _git("ls-tree", "HEAD", "lib", cwd=app).startswith("160000 commit")
    for name, src in (("app.git", app), ("lib.git", lib)):
        _git("clone", "-q", "--bare", str(src), str(root / name), cwd=tmp_path)
    return root, {"app": app_sha, "lib": lib_sha, "app_first": first}


def test_recurse_submodules(tmp_path, repos):
    root, shas = repos
    server, host = _serve(root)
    try:
        out = tmp_path / "out"
        p = _executor(["--context", f"http://{host}/app.git#main", "--git", "recurse-submodules=true",
                       "--no-push", "--oci-layout-path", str(out)])
        assert p.returncode == 0, p.stderr.decode()
        files = _layout_files(out)
        assert files["ctx/lib/lib.txt"] == b"from the submodule\n" and files["ctx/a.txt"] == b"second\n"
        # without the option the submodule stays an empty directory, as with Kaniko
        p = _executor(["--context", f"http://{host}/app.git#main", "--no-push", "--oci-layout-path",
                       str(tmp_path / "out2")])
        assert p.returncode == 0, p.stderr.decode()
        assert "ctx/lib/lib.txt" not in _layout_files(tmp_path / "out2")
    finally:
        server.shutdown()
        server.server_close()


def test_kaniko_ref_then_commit_form_and_provenance(tmp_path, repos):
    """``URL#refs/heads/main#<older commit>``: the ref is fetched, the older commit checked out;
    the commit and the URL (without credentials) are the provenance's resolved dependency."""
    root, shas = repos
    server, host = _serve(root)
    try:
        prov = tmp_path / "provenance.json"
        p = _executor(["--context", f"http://bob:s3cret@{host}/app.git#refs/heads/main#{shas['app_first']}",
                       "--no-push", "--oci-layout-path", str(tmp_path / "out"), "--provenance-path", str(prov)])
        err = p.stderr.decode()
        assert p.returncode == 0, err
        assert _layout_files(tmp_path / "out")["ctx/a.txt"] == b"first\n"
        assert f"commit {shas['app_first']}" in err and "s3cret" not in err
        text = prov.read_text()
        assert "s3cret" not in text
        deps = json.loads(text)["predicate"]["buildDefinition"]["resolvedDependencies"]
        git = [d for d in deps if d.get("digest", {}).get("gitCommit")]
        assert [d["digest"]["gitCommit"] for d in git] == [shas["app_first"]], deps
        assert f"{host}/app.git" in git[0]["uri"], deps
    finally:
        server.shutdown()
        server.server_close()


def test_insecure_skip_tls_over_https(tmp_path, repos):
    root, shas = repos
    ca = make_ca(tmp_path / "pki")
    cert = issue_cert(ca, tmp_path / "pki", "git-server")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert.cert, cert.key)
    server, host = _serve(root, tls)
    try:
        url = f"https://{host}/app.git#main"
        p = _executor(["--context", url, "--no-push"])
        err = p.stderr.decode()
        assert p.returncode == 1 and "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and errors[0].startswith(f"error: --context {url}: cannot fetch main"), err
        p = _executor(["--context", url, "--git", "insecure-skip-tls=true", "--no-push",
                       "--oci-layout-path", str(tmp_path / "out")])
        assert p.returncode == 0, p.stderr.decode()
        assert _layout_files(tmp_path / "out")["ctx/a.txt"] == b"second\n"
        assert f"commit {shas['app']}" in p.stderr.decode()
    finally:
        server.shutdown()
        server.server_close()


def test_git_binary_missing_is_one_line(tmp_path):
    """No ``git`` on PATH: one line naming what git contexts need."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    p = _executor(["--context", "https://127.0.0.1:9/none.git", "--no-push"], env={"PATH": str(bindir)})
    err = p.stderr.decode()
    assert p.returncode == 1 and "Traceback" not in err
    assert "git contexts need the git binary on PATH" in err


