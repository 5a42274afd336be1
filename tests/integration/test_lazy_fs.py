"""The lazy filesystem end to end (executor/engine/lazyfs.py): after cache hits, COPY/ADD/WORKDIR
layers are computed from path indexes without downloading or unpacking the layers below.

Proof by comparison: the same change build is run with the lazy path off (the internal switch
EXECUTOR_LAZY_FS=0) and on, reading the same primed cache, and must give the same image digest
(so byte-identical layers and config); the registry request log (a pass-through proxy in front
of a real docker-registry) shows that the lazy build downloads no base or RUN layer blob.
Bases: the Debian minbase image (merged /usr: /lib -> usr/lib) made by debootstrap + umoci."""

from __future__ import annotations

import json
import os
import re
import shutil
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.tools import executor_cmd, run, run_executor, skopeo_inspect, umoci_unpack

pytestmark = pytest.mark.integration

EPOCH = str(int(time.time()) - 5)  # newer than the base's files: recorded mtimes must survive



def _build(host: str, ctx: Path, dest: str, cache: str, *extra: str, lazy: bool = True):
    digest_file = ctx.parent / f"digest-{uuid.uuid4().hex[:6]}"
    p = run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", host,
                      "--cache", "--cache-copy-layers", "--cache-repo", cache, "--reproducible",
                      "--log-format", "text", "-v", "debug", "--digest-file", str(digest_file), *extra],
                     env={"EXECUTOR_LAZY_FS": "1" if lazy else "0", "SOURCE_DATE_EPOCH": EPOCH})
    return digest_file.read_text().strip(), p.stdout + p.stderr


def _blob_gets(proxy: FaultProxy, since: int) -> list[str]:
    return [path for method, path, _ in proxy.log[since:] if method == "GET" and "/blobs/sha256:" in path]


FEATURES = """\
    ARG BASE
    FROM scratch AS src
    COPY app.txt /data/x.txt
    FROM $BASE
    RUN echo primed > /primed
    COPY app.txt /app/app.txt
    COPY app.txt /usr/share/doc/
    COPY app.txt /lib/app-lib.txt
    COPY --chown=1000:1000 --chmod=0640 app.txt /srv/new/deep/x.txt
    COPY --link app.txt /opt/linked.txt
    ADD app.txt /opt/added.txt
    ADD --checksum=@SUM@ @URL@/remote.txt /opt/url/
    COPY --parents sub/./a/b.txt /p/
    COPY <<EOF /etc/heredoc.txt
    hello
    EOF
    COPY --from=src /data/ /from-stage/
    WORKDIR /work/dir
    WORKDIR /usr
    COPY app.txt rel.txt
    COPY app.txt /etc/hostname
    COPY tree/ /usr/
    COPY app.txt /bin/
    ADD app.tar /unpacked/
    COPY --chown=nobody app.txt /by-name.txt
    COPY app.txt /after-fallback.txt
    CMD ["/bin/true"]
"""


def _context(tmp: Path, dockerfile: str) -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir(parents=True)
    (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    (ctx / "app.txt").write_text("v1\n")
    (ctx / "sub" / "a").mkdir(parents=True)
    (ctx / "sub" / "a" / "b.txt").write_text("b\n")
    (ctx / "tree" / "lib").mkdir(parents=True)
    (ctx / "tree" / "lib" / "extra.txt").write_text("extra\n")
    (ctx / "tree" / "newdir").mkdir()
    (ctx / "tree" / "newdir" / "n.txt").write_text("n\n")
    import tarfile
    with tarfile.open(ctx / "app.tar", "w") as tf:
        tf.add(ctx / "sub", arcname="sub")
    return ctx


def test_lazy_and_eager_change_builds_give_the_same_image(registry, debian_base, tmp_path, http_files):
    import hashlib
    www, url = http_files
    (www / "remote.txt").write_text("from the web\n")
    checksum = "sha256:" + hashlib.sha256(b"from the web\n").hexdigest()
    ctx = _context(tmp_path, FEATURES.replace("@SUM@", checksum).replace("@URL@", url))
    cache = f"{registry.host}/lazy/features-cache-{uuid.uuid4().hex[:6]}"
    dest = f"{registry.host}/lazy/features:{uuid.uuid4().hex[:6]}"
    base = ["--build-arg", f"BASE={debian_base}"]
    _build(registry.host, ctx, dest, cache, *base)  # prime: stores entries and path indexes
    (ctx / "app.txt").write_text("v2, longer\n")
    eager, _ = _build(registry.host, ctx, dest + "-eager", cache, *base, "--no-push-cache", lazy=False)
    lazy, log = _build(registry.host, ctx, dest + "-lazy", cache, *base, "--no-push-cache")
    assert log.count("lazy: layer computed from path indexes") == 15, log  # every step before ADD app.tar
    assert log.count("lazy: step computed from path indexes") == 1, log  # WORKDIR /usr: exists, no layer
    # ADD of a local archive needs the files (it merges into what is there): the first fallback
    assert log.count("lazy: this step needs the files of the image; unpacking the layers") == 1, log
    assert len(re.findall(r"stage \S+: (?:unpacked|stacked) \d+ layers in", log)) == 1, log  # once, at the fallback
    assert "cache hit" in log and "RUN echo primed" in log
    assert lazy == eager, "the lazy path changed the image (layers or config)"


COPYCHANGE = """\
    ARG BASE
    FROM $BASE
    RUN head -c 3000000 /dev/urandom > /big && echo done
    COPY app.txt /app/app.txt
    CMD ["cat", "/app/app.txt"]
"""


def test_copy_after_cache_hits_downloads_no_layer(proxy, debian_base, tmp_path):
    host = proxy.host
    ctx = _context(tmp_path, COPYCHANGE)
    cache = f"{host}/lazy/copychange-cache-{uuid.uuid4().hex[:6]}"
    dest = f"{host}/lazy/copychange:{uuid.uuid4().hex[:6]}"
    base = ["--build-arg", f"BASE={debian_base.replace(debian_base.split('/')[0], host, 1)}"]
    _build(host, ctx, dest, cache, *base)
    (ctx / "app.txt").write_text("changed\n")
    mark = len(proxy.log)
    lazy, log = _build(host, ctx, dest + "-lazy", cache, *base)
    gets = _blob_gets(proxy, mark)
    layers = [d["digest"] for d in skopeo_inspect(f"{dest}-lazy", raw=True)["layers"]]
    assert not [g for g in gets if any(d in g for d in layers[:-1])], gets  # base and RUN layer: not fetched
    assert "lazy: layer computed from path indexes" in log, log
    eager, _ = _build(host, ctx, dest + "-eager", cache, *base, "--no-push-cache", lazy=False)
    assert lazy == eager
    bundle = umoci_unpack(f"{dest}-lazy", tmp_path / "u")
    assert (bundle / "rootfs" / "app" / "app.txt").read_text() == "changed\n"
    assert (bundle / "rootfs" / "big").stat().st_size == 3000000
    assert (bundle / "rootfs" / "usr" / "bin" / "sh").exists() or (bundle / "rootfs" / "bin").is_symlink()
    # a third build in a fresh work dir needs no blob at all except its own new layer
    (ctx / "app.txt").write_text("changed again\n")
    mark = len(proxy.log)
    again, log = _build(host, ctx, dest + "-again", cache, *base)
    assert not [g for g in _blob_gets(proxy, mark) if any(d in g for d in layers[:-1])]


def test_a_hostile_index_falls_back_to_the_eager_path(registry, debian_base, tmp_path):
    """An index entry whose blob names a path outside the root (stored with a valid digest, as a
    malicious cache writer could) is rejected whole: a warning, the eager path, the same image."""
    from executor.cache.layout_store import LayoutLayerCache
    import gzip
    ctx = _context(tmp_path, COPYCHANGE.replace("head -c 3000000 /dev/urandom > /big && echo done", "echo x > /x"))
    layout = tmp_path / "cache"
    dest = f"{registry.host}/lazy/hostile:{uuid.uuid4().hex[:6]}"
    base = ["--build-arg", f"BASE={debian_base}"]
    _build(registry.host, ctx, dest, f"oci:{layout}", *base)
    diff_ids = skopeo_inspect(f"{dest}", config=True)["rootfs"]["diff_ids"]
    head = {"pathindex": 1, "diff_id": diff_ids[0], "entries": 2}
    rows = [["etc", "d", 0o755, 0, 0, 0, 0, ""], ["../../../../tmp/escape", "f", 0o644, 0, 0, 9, 0, ""]]
    bad = gzip.compress(("\n".join(json.dumps(x) for x in [head, *rows]) + "\n").encode())
    store = LayoutLayerCache(layout, 3600)
    store.store_index(diff_ids[0], bad)
    store.close()
    (ctx / "app.txt").write_text("after\n")
    lazy, log = _build(registry.host, ctx, dest + "-l", f"oci:{layout}", *base, "--no-push-cache")
    assert "is unusable" in log and "Traceback" not in log, log
    eager, _ = _build(registry.host, ctx, dest + "-e", f"oci:{layout}", *base, "--no-push-cache", lazy=False)
    assert lazy == eager
    assert not Path("/tmp/escape").exists()
    # path-index entries are cache entries like the others: pruned by age
    names = [m["annotations"]["org.opencontainers.image.ref.name"]
             for m in json.loads((layout / "index.json").read_text())["manifests"]]
    assert sum(n.startswith("pathindex-") for n in names) >= 2, names  # the base's and the RUN layer's
    run_executor(["cache", "prune", "--cache-repo", f"oci:{layout}", "--older-than", "0s"])
    names = [m["annotations"]["org.opencontainers.image.ref.name"]
             for m in json.loads((layout / "index.json").read_text())["manifests"]]
    assert not [n for n in names if n.startswith("pathindex-")], names
    shutil.rmtree(layout)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="switches to uid 1000 with setpriv: needs root and util-linux")
def test_lazy_without_root_writes_the_owners_of_the_eager_root_build(registry, busybox):
    """Without root the skeleton's owners are recorded (fs/owners), not applied: a lazy build as
    uid 1000 with no capabilities writes the same layers as root's eager build, ancestors owned
    by 1000 and 7:8 in the base included."""
    from tests.support.rootless import run_executor_as, shared_dir
    tmp = shared_dir("executor-lazy-rootless-")
    try:
        ctx = tmp / "ctx"
        (ctx / "dir" / "sub").mkdir(parents=True)
        (ctx / "app.txt").write_text("v1\n")
        (ctx / "dir" / "sub" / "z").write_text("z\n")
        for p in [ctx, *ctx.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
        (ctx / "Dockerfile.base").write_text(f"FROM {busybox}\nCOPY --chown=1000:1000 dir /owned\n"
                                             "COPY --chown=7:8 dir /other\n")
        base = f"{registry.host}/lazy/rootless-base:{uuid.uuid4().hex[:8]}"
        run(executor_cmd() + ["--context", str(ctx), "--dockerfile", "Dockerfile.base", "--destination", base,
                              "--insecure-registry", registry.host])
        (ctx / "Dockerfile").write_text(f"FROM {base}\nCOPY app.txt /owned/new.txt\n"
                                        "COPY app.txt /owned/sub/deeper/x.txt\nCOPY app.txt /other/sub/\n"
                                        "WORKDIR /owned/w\n")
        dest = f"{registry.host}/lazy/rootless"
        args = ["--context", str(ctx), "--insecure-registry", registry.host, "--reproducible", "--cache",
                "--cache-copy-layers", "--cache-repo", f"{registry.host}/lazy/rootless-cache-{uuid.uuid4().hex[:6]}",
                "--log-format", "text"]
        env = {**os.environ, "SOURCE_DATE_EPOCH": EPOCH}
        run(executor_cmd() + args + ["--destination", f"{dest}:prime"], env=env)  # stores the indexes
        (ctx / "app.txt").write_text("v2, longer\n")
        run(executor_cmd() + args + ["--no-push-cache", "--destination", f"{dest}:eager", "--digest-file",
                                     str(tmp / "eager")], env={**env, "EXECUTOR_LAZY_FS": "0"})
        home = tmp / "home"
        home.mkdir()
        os.chown(home, 1000, 1000)
        os.environ["SOURCE_DATE_EPOCH"], old = EPOCH, os.environ.get("SOURCE_DATE_EPOCH")
        try:
            p = run_executor_as(1000, args + ["--no-push-cache", "--destination", f"{dest}:lazy", "--digest-file",
                                              str(home / "digest")], home)
        finally:
            if old is None:
                del os.environ["SOURCE_DATE_EPOCH"]
            else:
                os.environ["SOURCE_DATE_EPOCH"] = old
        assert p.returncode == 0 and "Traceback" not in p.stderr, p.stderr
        assert p.stderr.count("lazy: layer computed from path indexes") == 4, p.stderr
        assert (home / "digest").read_text() == (tmp / "eager").read_text()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_a_base_two_stages_share_gets_its_path_index_stored_once(proxy, busybox, tmp_path):
    """The first --cache build of two stages on one base hands the base layers' path indexes to
    the cache once (each stage used to schedule its own scan and push of the same index)."""
    host = proxy.host
    base = busybox.replace(busybox.split("/")[0], host, 1)
    ctx = _context(tmp_path, f"""\
        FROM {base} AS one
        RUN echo one > /one
        FROM {base} AS two
        RUN echo two > /two
        FROM {base}
        COPY --from=one /one /one
        COPY --from=two /two /two
    """)
    cache = f"{host}/lazy/shared-base-cache-{uuid.uuid4().hex[:6]}"
    mark = len(proxy.log)
    _build(host, ctx, f"{host}/lazy/shared-base:{uuid.uuid4().hex[:6]}", cache)
    puts = [path for method, path, _ in proxy.log[mark:] if method == "PUT" and "/manifests/pathindex-" in path]
    base_layers = [d["digest"] for d in skopeo_inspect(base, raw=True)["layers"]]
    assert puts and len(puts) == len(set(puts)), puts
    assert len(puts) >= len(base_layers), puts  # the base's (and the RUN layers')
