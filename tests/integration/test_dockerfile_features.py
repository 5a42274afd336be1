"""Dockerfile build semantics beyond the core (issue 3): RUN --mount, RUN --network, COPY
--link/--parents/--exclude, ADD URL/--checksum/archives, ONBUILD, FROM --platform, ARG scoping,
unused stages. Every test builds with the real `executor`, pushes to a real docker-registry and
checks the result with skopeo/umoci (independent tools)."""

from __future__ import annotations

import bz2
import email.utils
import gzip
import hashlib
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
from tests.unit.test_sandbox import MODES

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


def _parallel(fn, items: list) -> list:
    """Run independent failing builds side by side (each is mostly interpreter start-up)."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(max_workers=3) as pool:
        return list(pool.map(fn, items))


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


@pytest.mark.parametrize("isolation", ["namespace", pytest.param("userns", marks=pytest.mark.skipif(
    "userns" not in MODES, reason="user namespaces refused here")), "chroot"])
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
    assert (rootfs / "bind-ro").read_text() == ("readonly\n" if isolation != "chroot" else "writable\n")
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
    dest, p = build(registry, ctx, "feat/secretenv", "--secret", "id=api,env=MY_API", "--verbosity", "debug",
                    env={"MY_API": SECRET})
    assert "DEBUG" in p.stderr or "debug" in p.stderr.lower()
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
    ctxs = [make_context(tmp_path / str(i), f"FROM {busybox}\n{line}\n") for i, line in enumerate(cases)]
    results = _parallel(lambda c: build(registry, c, "feat/mounterr", check=False, env={"SSH_AUTH_SOCK": ""})[1], ctxs)
    for (line, msg), p in zip(cases.items(), results):
        assert p.returncode == 1, (line, p.stderr)
        assert "Dockerfile:2" in p.stderr and msg in p.stderr and "Traceback" not in p.stderr, (line, p.stderr)


UNIX_CLIENT_C = r"""
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    char buf[256];
    int s = socket(AF_UNIX, SOCK_STREAM, 0), n;
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) return 2;
    write(s, "ping\n", 5);
    while ((n = read(s, buf, sizeof buf)) > 0) write(1, buf, n);
    return 0;
}
"""


def _compile_unix_client(out: Path) -> None:
    """busybox has no unix-socket client: build a tiny static one (skip, saying why, without gcc)."""
    import shutil
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build a static unix-socket client for the ssh mount test")
    src = out.with_suffix(".c")
    src.write_text(UNIX_CLIENT_C)
    run(["gcc", "-static", "-O1", "-o", str(out), str(src)])
    src.unlink()


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
        RUN --mount=type=bind,source=uclient,target=/uclient --mount=type=ssh \\
            /uclient $SSH_AUTH_SOCK > /reply && echo $SSH_AUTH_SOCK > /sockpath && stat -c %a -L $SSH_AUTH_SOCK > /sockmode
        """)
    _compile_unix_client(ctx / "uclient")
    try:
        dest, _ = build(registry, ctx, "feat/ssh", "--run-isolation", isolation, "--ssh", f"default={sock_path}")
    finally:
        srv.close()
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"
    assert (rootfs / "reply").read_text() == "agent-says:ping\n"
    assert (rootfs / "sockmode").read_text() == "600\n"
    assert not (rootfs / "uclient").exists()
    assert (rootfs / "sockpath").read_text() == "/run/buildkit/ssh_agent.0\n"
    assert not (rootfs / "run").exists()


@pytest.mark.parametrize("isolation", ["namespace", "chroot"])
def test_run_network_none_has_no_network(registry, busybox, tmp_path, isolation):
    host, port = registry.host.split(":")
    get = f"printf 'GET /v2/ HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {host} {port}"  # busybox wget needs NSS in a chroot
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN {get} > /default-net
        RUN --network=host {get} > /host-net
        RUN --network=none {get} > /none-net || true; \\
            cat /proc/net/dev 2>/dev/null | tail -n +3 | cut -d: -f1 | tr -d ' ' > /none-ifaces || true
        """)
    dest, _ = build(registry, ctx, "feat/net", "--run-isolation", isolation)
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"
    assert (rootfs / "default-net").read_text().startswith("HTTP/1.")
    assert (rootfs / "host-net").read_text().startswith("HTTP/1.")
    assert (rootfs / "none-net").read_text() == ""  # the registry on the host's loopback is unreachable
    if isolation == "namespace":  # /proc is mounted: only the loopback interface exists
        assert (rootfs / "none-ifaces").read_text().split() == ["lo"]


# ---------------------------------------------------------------------------------------- COPY flags

def test_copy_link_parents_exclude(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN echo base > /base-file
        COPY --link a.txt /linked/
        COPY --parents x/a.txt y/a.txt /parents/
        COPY --parents ./src/./pkg/*.go /pivot/
        COPY --parents tree /ptree/
        COPY --exclude=*.md --exclude=sub/skip.txt hom* /excl/
        COPY --exclude=*.log --exclude=**/*.tmp tree /tree/
        """, {"a.txt": "A", "x/a.txt": "xa", "y/a.txt": "ya", "src/pkg/m.go": "go", "src/pkg/n.txt": "no",
              "home.txt": "h", "homework.md": "md", "homedir/keep": "k", "homedir/sub/skip.txt": "s",
              "homedir/sub/other.txt": "o", "tree/a.log": "l", "tree/b.txt": "b", "tree/deep/c.log": "c",
              "tree/deep/d.tmp": "t"})
    dest, _ = build(registry, ctx, "feat/copyflags")
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"

    def tree(d: str) -> list[str]:
        base = rootfs / d
        return sorted(str(p.relative_to(base)) for p in base.rglob("*"))
    assert tree("linked") == ["a.txt"] and (rootfs / "base-file").exists()
    assert tree("parents") == ["x", "x/a.txt", "y", "y/a.txt"]
    assert tree("pivot") == ["pkg", "pkg/m.go"]
    assert tree("ptree") == ["tree", "tree/a.log", "tree/b.txt", "tree/deep", "tree/deep/c.log", "tree/deep/d.tmp"]
    # hom* matches home.txt, homework.md (excluded), homedir (its contents copied, sub/skip.txt excluded)
    assert tree("excl") == ["home.txt", "keep", "sub", "sub/other.txt"]
    # filepath.Match: *.log matches only at the source's top level; **/*.tmp at any depth
    assert tree("tree") == ["b.txt", "deep", "deep/c.log"]
    # the --link layer holds only what it copied
    _, _, layers, _ = fetch_layout(dest, tmp_path)
    assert sorted(n.rstrip("/") for n in layer_names(layers[2])) == ["linked", "linked/a.txt"]


# ---------------------------------------------------------------------------------------- ADD

def _tar_bytes(name: str, content: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mode = 0o640
        info.uid = 1000
        t.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def test_add_url_checksum_and_archives(registry, busybox, tmp_path, http_files):
    import zstandard
    www, base = http_files
    remote_tar = gzip.compress(_tar_bytes("inner", b"must stay packed"))
    (www / "remote.tar.gz").write_bytes(remote_tar)
    (www / "data.txt").write_text("remote data\n")
    mtime = 1_600_000_000
    for f in www.iterdir():
        os.utime(f, (mtime, mtime))
    tar = _tar_bytes
    files = {"a.tar": tar("f-plain", b"plain"), "a.tar.gz": gzip.compress(tar("f-gz", b"gz")),
             "a.tar.bz2": bz2.compress(tar("f-bz2", b"bz2")), "a.tar.xz": lzma.compress(tar("f-xz", b"xz")),
             "a.tar.zst": zstandard.ZstdCompressor().compress(tar("f-zst", b"zst")),
             "fake.tar.gz": b"not an archive", "local.txt": "local\n"}
    sha_remote = hashlib.sha256(remote_tar).hexdigest()
    sha_local = hashlib.sha256(b"local\n").hexdigest()
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        ADD --checksum=sha256:{sha_remote} {base}/remote.tar.gz /dl/
        ADD {base}/data.txt /dl/renamed.txt
        ADD --checksum=sha256:{sha_local} local.txt /local.txt
        ADD a.tar a.tar.gz a.tar.bz2 a.tar.xz a.tar.zst fake.tar.gz /arch/
        """, files)
    dest, _ = build(registry, ctx, "feat/add")
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"
    dl = rootfs / "dl" / "remote.tar.gz"
    assert dl.read_bytes() == remote_tar  # URLs are never unpacked
    assert stat.S_IMODE(dl.stat().st_mode) == 0o600 and int(dl.stat().st_mtime) == mtime
    renamed = rootfs / "dl" / "renamed.txt"
    assert renamed.read_text() == "remote data\n" and int(renamed.stat().st_mtime) == mtime
    assert (rootfs / "local.txt").read_text() == "local\n"
    arch = rootfs / "arch"
    assert sorted(p.name for p in arch.iterdir()) == ["f-bz2", "f-gz", "f-plain", "f-xz", "f-zst", "fake.tar.gz"]
    assert (arch / "f-zst").read_text() == "zst" and (arch / "f-xz").stat().st_uid == 1000
    assert stat.S_IMODE((arch / "f-bz2").stat().st_mode) == 0o640
    assert (arch / "fake.tar.gz").read_bytes() == b"not an archive"  # not a tar: copied as is
    assert email.utils  # (Last-Modified is parsed with email.utils in the executor)


def test_add_errors_name_the_line(registry, busybox, tmp_path, http_files):
    www, base = http_files
    (www / "f.bin").write_bytes(b"payload")
    bad = "0" * 64
    cases = {
        f"ADD --checksum=sha256:{bad} {base}/f.bin /f.bin": "checksum mismatch",
        f"ADD --checksum=sha256:{bad} local.txt /l": "checksum mismatch",
        f"ADD --checksum=md5:abc {base}/f.bin /f.bin": "--checksum=md5:abc",
        "ADD https://github.com/moby/buildkit.git#v0.12.0 /src": "git repository is not supported",
        "ADD git@github.com:moby/buildkit.git /src": "git repository is not supported",
        f"ADD {base}/missing.bin /m": "HTTP 404",
    }
    ctxs = [make_context(tmp_path / str(i), f"FROM {busybox}\nRUN true\n{line}\n", {"local.txt": "x"})
            for i, line in enumerate(cases)]
    results = _parallel(lambda c: build(registry, c, "feat/adderr", check=False)[1], ctxs)
    for (line, msg), p in zip(cases.items(), results):
        assert p.returncode == 1, (line, p.stderr)
        assert "Dockerfile:3" in p.stderr and msg in p.stderr and "Traceback" not in p.stderr, (line, p.stderr)


# ---------------------------------------------------------------------------------------- ONBUILD, platform, ARG, stages

def test_onbuild_triggers_run_in_child(registry, busybox, tmp_path):
    parent_ctx = make_context(tmp_path / "p", f"""\
        FROM {busybox}
        ONBUILD RUN echo triggered > /onbuild-ran
        ONBUILD COPY trig.txt /trig.txt
        """)
    parent, _ = build(registry, parent_ctx, "feat/onbuild-parent")
    cfg = skopeo_inspect(parent, config=True)["config"]
    assert cfg["OnBuild"] == ["RUN echo triggered > /onbuild-ran", "COPY trig.txt /trig.txt"]
    child_ctx = make_context(tmp_path / "c", f"FROM {parent}\nRUN cat /onbuild-ran /trig.txt > /both\n",
                             {"trig.txt": "from child context\n"})
    child, _ = build(registry, child_ctx, "feat/onbuild-child")
    assert not skopeo_inspect(child, config=True)["config"].get("OnBuild")  # triggers are not inherited
    rootfs = umoci_unpack(child, tmp_path / "u") / "rootfs"
    assert (rootfs / "both").read_text() == "triggered\nfrom child context\n"
    assert not (umoci_unpack(parent, tmp_path / "up") / "rootfs" / "onbuild-ran").exists()


def _push_index(registry, repo: str, tag: str, refs: list[str]) -> str:
    """Push an OCI image index for the given single-platform images (platform from their configs)."""
    import httpx
    manifests = []
    for ref in refs:
        raw = run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{ref}"]).stdout
        cfg = skopeo_inspect(ref, config=True)
        mt = json.loads(raw).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
        manifests.append({"mediaType": mt, "size": len(raw.encode()),
                          "digest": "sha256:" + hashlib.sha256(raw.encode()).hexdigest(),
                          "platform": {"os": cfg["os"], "architecture": cfg["architecture"]}})
        # the index must live in the same repository as its manifests
        run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--preserve-digests",
             f"docker://{ref}", f"docker://{registry.host}/{repo}@{manifests[-1]['digest']}"])
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests}
    r = httpx.put(f"http://{registry.host}/v2/{repo}/manifests/{tag}", content=json.dumps(index),
                  headers={"Content-Type": "application/vnd.oci.image.index.v1+json"})
    assert r.status_code == 201, r.text
    return f"{registry.host}/{repo}:{tag}"


def test_from_platform_selects_from_index(registry, busybox, tmp_path):
    refs = []
    for arch in ("amd64", "arm64"):
        ctx = make_context(tmp_path / arch, "FROM scratch\nCOPY marker /marker\n", {"marker": arch})
        ref, _ = build(registry, ctx, f"feat/plat-{arch}", "--custom-platform", f"linux/{arch}")
        refs.append(ref)
    index = _push_index(registry, "feat/multi", "idx", refs)
    ctx = make_context(tmp_path / "use", f"""\
        ARG ARM=linux/arm64
        FROM --platform=$ARM {index} AS arm
        FROM --platform=$BUILDPLATFORM {index} AS native
        FROM {busybox}
        COPY --from=arm /marker /arm-marker
        COPY --from=native /marker /native-marker
        """)
    dest, _ = build(registry, ctx, "feat/plat-use")
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"
    assert (rootfs / "arm-marker").read_text() == "arm64"
    assert (rootfs / "native-marker").read_text() == "amd64"
    bad = make_context(tmp_path / "bad", f"FROM --platform=linux/s390x {index}\nRUN true\n")
    _, p = build(registry, bad, "feat/plat-bad", check=False)
    assert p.returncode == 1 and "linux/s390x" in p.stderr and "linux/arm64" in p.stderr and "Traceback" not in p.stderr


def test_arg_scoping_platform_and_proxy_args(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""\
        ARG GLOBAL=g1
        FROM {busybox}
        RUN echo "global=[$GLOBAL] tp=[$TARGETPLATFORM] ta=[$TARGETARCH] proxy=[$HTTP_PROXY]" > /unscoped
        ARG GLOBAL
        ARG TARGETARCH
        ARG BUILDPLATFORM
        ARG TARGETOS
        ARG LOCAL=l1
        RUN echo "global=[$GLOBAL] ta=[$TARGETARCH] bp=[$BUILDPLATFORM] os=[$TARGETOS] local=[$LOCAL] noproxy=[$no_proxy]" > /scoped
        """)
    proxy = "http://proxy.invalid:3128"
    dest, p = build(registry, ctx, "feat/args", "--build-arg", "GLOBAL=override", "--build-arg", f"HTTP_PROXY={proxy}",
                    "--build-arg", "no_proxy=internal.example", "--build-arg", "NOBODY_USES_ME=1")
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"
    # global ARGs and automatic platform ARGs are not visible until declared; proxy args always are
    assert (rootfs / "unscoped").read_text() == f"global=[] tp=[] ta=[] proxy=[{proxy}]\n"
    assert (rootfs / "scoped").read_text() == ("global=[override] ta=[amd64] bp=[linux/amd64] os=[linux] "
                                              "local=[l1] noproxy=[internal.example]\n")
    warning = [line for line in p.stderr.splitlines() if "not consumed" in line]
    assert len(warning) == 1 and "NOBODY_USES_ME" in warning[0] and "PROXY" not in warning[0].upper()
    config = json.dumps(skopeo_inspect(dest, config=True))
    assert "proxy.invalid" not in config and "internal.example" not in config  # proxy args kept out of history
    assert "GLOBAL=override" in config  # other args are recorded as BuildKit does


def test_unneeded_stages_are_not_built(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""\
        FROM {busybox} AS broken
        RUN exit 7
        FROM {busybox} AS used
        RUN echo used > /used
        FROM {busybox} AS mounted
        RUN echo via-mount > /m
        FROM {busybox}
        COPY --from=used /used /used
        RUN --mount=type=bind,from=mounted,source=/m,target=/m cp /m /copied
        """)
    dest, p = build(registry, ctx, "feat/stages")
    assert "skipping stages the target does not need: 0" in p.stderr
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"
    assert (rootfs / "used").read_text() == "used\n" and (rootfs / "copied").read_text() == "via-mount\n"
    _, p = build(registry, ctx, "feat/stages", "--target", "broken", check=False)
    assert p.returncode == 7 and "Dockerfile:2" in p.stderr
