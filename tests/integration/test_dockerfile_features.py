"""Dockerfile build semantics beyond the core (issue 3): RUN --mount, RUN --network, COPY
--link/--parents/--exclude, ADD URL/--checksum/archives, ONBUILD, FROM --platform, ARG scoping,
unused stages. Every test builds with the real `executor`, pushes to a real docker-registry and
checks the result with skopeo/umoci (independent tools)."""

from __future__ import annotations

import bz2
import email.utils
import gzip
import hashlib
import http.server
import io
import json
import lzma
import os
import stat
import tarfile
import threading
import uuid
from pathlib import Path

import pytest

from tests.integration.test_build_core import make_context as _make_context
from tests.support.tools import run, run_executor, skopeo_inspect, umoci_unpack

pytestmark = pytest.mark.integration

SECRET = "S3CRET-VALUE-5f1d9c"
DIGEST = hashlib.sha256(SECRET.encode()).hexdigest()  # the Dockerfiles compare hashes: the text is in history


def make_context(tmp: Path, dockerfile: str, files: dict | None = None) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    return _make_context(tmp, dockerfile, files)


def build(registry, ctx: Path, repo: str, *extra: str, check: bool = True, env: dict | None = None):
    dest = f"{registry.host}/{repo}:{uuid.uuid4().hex[:8]}"
    p = run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", registry.host,
                      "--log-format", "text", *extra], check=check, env=env)
    return dest, p


def fetch_layout(dest: str, tmp: Path) -> tuple[Path, dict, list[Path], bytes]:
    """skopeo copy to an OCI layout: (layout, manifest, layer blob paths, config bytes)."""
    layout = tmp / f"raw-{uuid.uuid4().hex[:6]}"
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{dest}", f"oci:{layout}:x"])
    idx = json.loads((layout / "index.json").read_text())
    blobs = layout / "blobs" / "sha256"
    man = json.loads((blobs / idx["manifests"][0]["digest"][7:]).read_text())
    layers = [blobs / d["digest"][7:] for d in man["layers"]]
    return layout, man, layers, (blobs / man["config"]["digest"][7:]).read_bytes()


def layer_names(blob: Path) -> list[str]:
    with tarfile.open(blob, "r:*") as t:
        return t.getnames()


def all_layer_bytes(layers: list[Path]) -> bytes:
    out = b""
    for blob in layers:
        with tarfile.open(blob, "r:*") as t:
            for m in t:
                out += m.name.encode() + b"\0"
                if m.isfile():
                    out += t.extractfile(m).read()
    return out


# ---------------------------------------------------------------------------------------- RUN --mount

MOUNTS_DOCKERFILE = """\
FROM {base} AS src
RUN mkdir -p /data && echo from-stage > /data/f
FROM {base}
RUN --mount=type=secret,id=tok test "$(sha256sum < /run/secrets/tok | cut -c1-64)" = "{digest}" \\
    && stat -c %a:%u /run/secrets/tok > /secret-mode
RUN --mount=type=secret,id=tok,env=TOKEN,mode=0440,uid=1000,target=/etc/tokfile \\
    test "$(echo -n $TOKEN | sha256sum | cut -c1-64)" = "{digest}" && cmp -s /etc/tokfile /run/secrets/tok 2>/dev/null; \\
    test "$(sha256sum < /etc/tokfile | cut -c1-64)" = "{digest}" && stat -c %a:%u /etc/tokfile > /secret2-mode
RUN --mount=type=secret,id=absent test ! -e /run/secrets/absent
RUN --mount=type=bind,from=src,source=/data,target=/mnt/data cat /mnt/data/f > /bind-out \\
    && (touch /mnt/data/x 2>/dev/null && echo writable || echo readonly) > /bind-ro
RUN --mount=type=bind,source=ctxdir,target=/ctxmnt,rw echo new > /ctxmnt/new && ls /ctxmnt > /ctx-list
RUN --mount=type=tmpfs,target=/tmp/scratch,size=1m echo hi > /tmp/scratch/x && cat /tmp/scratch/x > /tmpfs-out
RUN --mount=type=cache,target=/var/cache/app,id=appcache,sharing=locked \\
    echo run >> /var/cache/app/log && wc -l < /var/cache/app/log > /cache-count && ls -ld /var/cache/app > /cache-ls
RUN --mount=type=cache,target=cachedir,uid=1000,mode=0700 stat -c %a:%u /cachedir > /cache2-mode
"""


@pytest.mark.parametrize("isolation", ["namespace", "chroot"])
def test_run_mounts_secret_bind_tmpfs_cache(registry, busybox, tmp_path, isolation):
    """Every mount type works, writes under mounts are not in the layer, mount points that did not
    exist leave nothing, and the secret is in no layer, config, history or log; cache persists."""
    ctx = make_context(tmp_path, MOUNTS_DOCKERFILE.format(base=busybox, digest=DIGEST),
                       {"ctxdir/a.txt": "a", "secret.txt": SECRET})
    cache = tmp_path / "run-cache"
    common = ["--run-isolation", isolation, "--run-cache-dir", str(cache),
              "--secret", f"id=tok,src={ctx / 'secret.txt'}"]
    dest, p1 = build(registry, ctx, "feat/mounts", *common)
    dest2, p2 = build(registry, ctx, "feat/mounts", *common)
    rootfs = umoci_unpack(dest2, tmp_path / "u") / "rootfs"
    assert (rootfs / "secret-mode").read_text() == "400:0\n"
    assert (rootfs / "secret2-mode").read_text() == "440:1000\n"
    assert (rootfs / "bind-out").read_text() == "from-stage\n"
    assert (rootfs / "bind-ro").read_text() == ("readonly\n" if isolation == "namespace" else "writable\n")
    assert (rootfs / "ctx-list").read_text() == "a.txt\nnew\n"
    assert (rootfs / "tmpfs-out").read_text() == "hi\n"
    assert (rootfs / "cache-count").read_text().strip() == "2"   # second build saw the first's write
    assert (rootfs / "cache2-mode").read_text() == "700:1000\n"
    # nothing of the mounts remains: no placeholders, nothing written into them
    for gone in ("run", "mnt", "ctxmnt", "tmp/scratch", "var/cache", "cachedir", "etc/tokfile"):
        assert not os.path.lexists(rootfs / gone), gone
    assert not (ctx / "ctxdir" / "new").exists()  # rw bind writes are discarded
    assert [p.name for p in (ctx / "ctxdir").iterdir()] == ["a.txt"]
    # the cache itself holds both runs' writes
    logs = list(cache.glob("*/log"))
    assert len(logs) == 1 and logs[0].read_text() == "run\nrun\n"
    # the secret is nowhere: layers, config (incl. history), logs
    _, man, layers, config = fetch_layout(dest2, tmp_path)
    content = all_layer_bytes(layers)
    assert SECRET.encode() not in content and SECRET.encode() not in config
    for blob in layers[1:]:
        names = layer_names(blob)
        assert not any(n.rstrip("/") in ("run", "mnt", "ctxmnt", "cachedir", "var/cache", "tmp/scratch")
                       or n.startswith(("run/", "mnt/", "var/cache/", "tmp/scratch/")) for n in names), names
    for p in (p1, p2):
        assert SECRET not in p.stdout + p.stderr
    history = json.dumps(json.loads(config)["history"])
    assert "/run/secrets/tok" in history and DIGEST in history  # the command is recorded, never the value
    assert not any(n.rstrip("/") == "etc" for blob in layers[1:] for n in layer_names(blob))  # no placeholder parents


def test_secret_from_env_and_required_missing(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN --mount=type=secret,id=api,env=API_KEY test "$(echo -n $API_KEY | sha256sum | cut -c1-64)" = "{DIGEST}" && echo ok > /ok
        """)
    dest, p = build(registry, ctx, "feat/secretenv", "--secret", "id=api,env=MY_API", env={"MY_API": SECRET})
    assert SECRET not in p.stdout + p.stderr
    _, _, layers, config = fetch_layout(dest, tmp_path)
    assert SECRET.encode() not in config and SECRET.encode() not in all_layer_bytes(layers)
    ctx2 = make_context(tmp_path / "b", f"""\
        FROM {busybox}
        RUN true
        RUN --mount=type=secret,id=nothere,required=true cat /run/secrets/nothere
        """)
    _, p = build(registry, ctx2, "feat/secretreq", check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "Dockerfile:3" in p.stderr and "--secret id=nothere" in p.stderr


def test_mount_errors_name_the_line(registry, busybox, tmp_path):
    cases = {
        "RUN --mount=type=bogus,target=/x true": "unsupported mount type",
        "RUN --mount=type=cache true": "needs target",
        "RUN --mount=type=bind,target=/x,colour=red true": "unexpected key 'colour'",
        "RUN --mount=type=bind,source=nope,target=/x true": "does not exist",
        "RUN --mount=type=ssh ssh-add -l": "--ssh default",
    }
    for i, (line, msg) in enumerate(cases.items()):
        ctx = make_context(tmp_path / str(i), f"FROM {busybox}\n{line}\n")
        _, p = build(registry, ctx, "feat/mounterr", check=False, env={"SSH_AUTH_SOCK": ""})
        assert p.returncode == 1, (line, p.stderr)
        assert "Dockerfile:2" in p.stderr and msg in p.stderr and "Traceback" not in p.stderr, (line, p.stderr)


@pytest.mark.parametrize("isolation", ["namespace", "chroot"])
def test_ssh_mount_forwards_agent_socket(registry, busybox, tmp_path, isolation):
    """A stand-in agent (a unix socket answering one line) is reachable through SSH_AUTH_SOCK."""
    import socket
    sock_path = tmp_path / "agent.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock_path))
    srv.listen(4)

    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            data = c.recv(100)
            c.sendall(b"agent-says:" + data)
            c.close()
    threading.Thread(target=serve, daemon=True).start()
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN --mount=type=ssh echo ping | nc local:$SSH_AUTH_SOCK > /reply && echo $SSH_AUTH_SOCK > /sockpath
        """)
    try:
        dest, _ = build(registry, ctx, "feat/ssh", "--run-isolation", isolation, "--ssh", f"default={sock_path}")
    finally:
        srv.close()
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"
    assert (rootfs / "reply").read_text() == "agent-says:ping\n"
    assert (rootfs / "sockpath").read_text() == "/run/buildkit/ssh_agent.0\n"
    assert not (rootfs / "run").exists()


@pytest.mark.parametrize("isolation", ["namespace", "chroot"])
def test_run_network_none_has_no_network(registry, busybox, tmp_path, isolation):
    url = f"http://{registry.host}/v2/"
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN wget -q -T 5 -O /default-net {url}
        RUN --network=host wget -q -T 5 -O /host-net {url}
        RUN --network=none if wget -q -T 3 -O /none-net {url}; then exit 9; fi; rm -f /none-net; \\
            cat /proc/net/dev 2>/dev/null | tail -n +3 | cut -d: -f1 | tr -d ' ' > /none-ifaces || true
        """)
    dest, _ = build(registry, ctx, "feat/net", "--run-isolation", isolation)
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"
    assert (rootfs / "default-net").exists() and (rootfs / "host-net").exists()
    assert not (rootfs / "none-net").exists()
    if isolation == "namespace":  # /proc is mounted: only the loopback interface exists
        assert (rootfs / "none-ifaces").read_text().split() == ["lo"]
