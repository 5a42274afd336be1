"""The requests of a no-change rebuild, counted by a logging proxy in front of a real
docker-registry (issue 12: a no-change rebuild is a handful of requests, made concurrently where
they do not depend on each other). Counts only; timings belong to the benchmark."""

from __future__ import annotations

import textwrap
import uuid
from collections import Counter

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.tools import run_executor, skopeo_inspect

pytestmark = pytest.mark.integration



def _build(proxy: FaultProxy, ctx, dest: str, digest_file) -> str:
    p = run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", proxy.host, "--cache",
                      "--cache-copy-layers", "--log-format", "text", "--digest-file", str(digest_file)])
    assert "error" not in p.stderr.lower(), p.stderr
    return digest_file.read_text()


def test_no_change_rebuild_makes_each_request_once(proxy, busybox, tmp_path):
    """Two stages FROM one base, a RUN, two COPYs (one layer identical to the RUN's) and
    metadata: the rebuild asks for the base once, looks every cache entry up exactly once,
    checks a layer blob two entries share once, pushes nothing, and gives the same digest."""
    repo = f"requests/nochange-{uuid.uuid4().hex[:6]}"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "x.txt").write_text("x\n")
    (ctx / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {proxy.host}/busybox:latest AS a
        RUN echo a > /a
        FROM {proxy.host}/busybox:latest
        COPY x.txt /x
        COPY --from=a /a /a
        ENV K=v
        CMD ["cat", "/a"]
        """))
    dest = f"{proxy.host}/{repo}:1"
    first = _build(proxy, ctx, dest, tmp_path / "d1")
    proxy.log.clear()
    again = _build(proxy, ctx, dest, tmp_path / "d2")
    requests = [(method, path) for method, path, _ in proxy.log]
    assert again == first
    assert skopeo_inspect(dest)["Digest"] == first
    repeated = {r: n for r, n in Counter(requests).items() if n > 1}
    assert not repeated, f"requests made more than once: {repeated}"
    base_manifests = [p for m, p in requests if m == "GET" and p == "/v2/busybox/manifests/latest"]
    assert len(base_manifests) == 1
    # GET /v2/; the trail; the base manifest and config; 3 entries (their manifests, and a HEAD
    # of each distinct layer blob: 2); the final config (manifest + blob); the destination
    # manifest HEAD. Before, the blob the RUN and the COPY --from entries share was checked
    # twice: 13.
    assert len(requests) <= 12, "\n".join(f"{m} {p}" for m, p in requests)
    assert not [p for m, p in requests if m in ("PUT", "POST", "PATCH")], "a no-change rebuild pushed something"


def test_entry_whose_layer_blob_is_gone_is_a_miss_when_looked_up_ahead(proxy, busybox, tmp_path):
    """The rebuild looks its entries up ahead, from the trail; an entry whose layer blob was
    deleted from the cache repository is still a miss with its warning, and the step runs."""
    import urllib.request

    repo = f"requests/gone-{uuid.uuid4().hex[:6]}"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {proxy.host}/busybox:latest\nRUN echo one > /one\nRUN echo two > /two\n")
    dest = f"{proxy.host}/{repo}:1"
    _build(proxy, ctx, dest, tmp_path / "d1")
    layers = skopeo_inspect(dest)["Layers"]
    gone = layers[-2]  # the first RUN's layer
    req = urllib.request.Request(f"http://{proxy.host}/v2/{repo}/cache/blobs/{gone}", method="DELETE")
    assert urllib.request.urlopen(req).status == 202
    proxy.log.clear()
    p = run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", proxy.host, "--cache",
                      "--log-format", "text"])
    out = p.stdout + p.stderr
    assert f"layer blob {gone[:19]}" in out and "is missing; a miss" in out, out
    assert "cache miss" in out and "RUN echo one > /one" in out
    entry_gets = [path for m, path, _ in proxy.log if m == "GET" and f"/v2/{repo}/cache/manifests/" in path
                  and "trail-" not in path]
    assert len(entry_gets) == len(set(entry_gets)), "an entry was fetched twice"


def test_each_new_blob_is_checked_once_before_its_upload(proxy, busybox, tmp_path):
    """A cold push asks the destination once whether each new blob is there (HEAD 404), then
    uploads it: the HEAD is not repeated by the upload itself (it was, one round trip per layer)."""
    repo = f"requests/heads-{uuid.uuid4().hex[:6]}"
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    (ctx / "Dockerfile").write_text(f"FROM {proxy.host}/busybox:latest\nCOPY a.txt /a\nRUN echo b > /b\n")
    proxy.log.clear()
    run_executor(["--context", str(ctx), "--destination", f"{proxy.host}/{repo}:1", "--insecure-registry",
                  proxy.host, "--log-format", "text"])
    heads = Counter(p for m, p, _ in proxy.log if m == "HEAD" and p.startswith(f"/v2/{repo}/blobs/"))
    uploaded = {p.split("digest=")[1].split("&")[0].replace("%3A", ":") for m, p, _ in proxy.log
                if m == "PUT" and f"/v2/{repo}/blobs/uploads/" in p and "digest=" in p}
    assert len(uploaded) >= 3, proxy.log  # two layers and the config
    for digest in uploaded:
        assert heads[f"/v2/{repo}/blobs/{digest}"] <= 1, (digest, heads)
