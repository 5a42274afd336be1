"""Layer cache end to end: real builds through a request-logging proxy in front of a real
docker-registry; hits and misses read from the executor's one-line-per-instruction log,
image contents checked with skopeo/umoci (independent tools)."""

from __future__ import annotations

import re
import shutil
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.registry import seed_busybox, start_registry
from tests.support.tools import run_executor, skopeo_inspect, umoci_unpack

pytestmark = pytest.mark.integration

CACHE_LINE = re.compile(r"cache (hit|miss) ([0-9a-f]{12}): (.*)$")



def write_ctx(ctx: Path, dockerfile: str, files: dict[str, str]) -> Path:
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    for name, content in files.items():
        (ctx / name).write_text(content)
    return ctx


def build(host: str, ctx: Path, dest: str, *extra: str, check: bool = True):
    """Run one cached build; returns (digest, [(hit|miss, instruction)], completed process)."""
    digest_file = ctx.parent / f"digest-{uuid.uuid4().hex[:6]}"
    p = run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", host,
                      "--cache", "--cache-copy-layers", "--log-format", "text", "--digest-file", str(digest_file),
                      *extra], check=check)
    steps = [(m.group(1), m.group(3).strip()) for line in (p.stdout + p.stderr).splitlines()
             if (m := CACHE_LINE.search(line))]
    return (digest_file.read_text() if digest_file.exists() else None), steps, p


def blob_gets(proxy: FaultProxy, repo: str) -> list[str]:
    return [path for method, path, _ in proxy.log if method == "GET" and f"/v2/{repo}/blobs/" in path]


def file_in_image(ref: str, tmp: Path, path: str) -> str:
    bundle = umoci_unpack(ref, tmp / uuid.uuid4().hex[:8])
    return (bundle / "rootfs" / path.lstrip("/")).read_text()


@pytest.fixture
def base(proxy, busybox) -> str:
    """busybox, referenced through the proxy so its requests are logged."""
    return f"{proxy.host}/busybox:latest"


def test_rebuild_unchanged_hits_everything_without_downloading_the_base(proxy, base, tmp_path):
    repo = f"cache/unchanged-{uuid.uuid4().hex[:6]}"
    ctx = write_ctx(tmp_path / "ctx", f"""
        FROM {base}
        RUN echo one > /one
        ARG V=1
        COPY a.txt /a.txt
        RUN echo "v=$V" > /v
        WORKDIR /app
        RUN cat /one /a.txt /v > /app/all
        """, {"a.txt": "hello\n"})
    dest = f"{proxy.host}/{repo}:1"
    d1, steps1, _ = build(proxy.host, ctx, dest)
    assert [s for s, _ in steps1] == ["miss"] * 5
    image_layers = skopeo_inspect(dest)["Layers"]
    assert set(skopeo_inspect(base)["Layers"]) <= set(image_layers)
    proxy.log.clear()
    d2, steps2, p2 = build(proxy.host, ctx, f"{proxy.host}/{repo}:2")
    assert [s for s, _ in steps2] == ["hit"] * 5, p2.stderr
    assert d2 == d1  # byte-identical image: the final config is reused on a full hit
    all_gets = [r[1].rsplit("/", 1)[1] for r in proxy.log if r[0] == "GET" and "/blobs/" in r[1]]
    assert not set(all_gets) & set(image_layers), "a layer blob was downloaded on a no-change rebuild"
    # only two small config blobs: the base image's (its ENV, USER... feed the build) and the
    # stored final config that makes the rebuild byte-identical
    assert len(all_gets) == 2
    print(f"no-change rebuild: {len(proxy.log)} registry requests: {proxy.log}")
    proxy.log.clear()
    assert skopeo_inspect(f"{proxy.host}/{repo}:2")["Digest"] == d1
    assert file_in_image(f"{proxy.host}/{repo}:2", tmp_path, "/app/all") == "one\nhello\nv=1\n"


def test_changed_source_file_misses_from_its_copy_on(proxy, base, tmp_path):
    repo = f"cache/source-{uuid.uuid4().hex[:6]}"
    df = f"""
        FROM {base}
        RUN echo early > /early
        COPY a.txt /a.txt
        COPY b.txt /b.txt
        RUN cat /a.txt /b.txt > /both
        """
    ctx = write_ctx(tmp_path / "ctx", df, {"a.txt": "a1\n", "b.txt": "b\n", ".dockerignore": "ignored.txt\n",
                                           "ignored.txt": "x"})
    build(proxy.host, ctx, f"{proxy.host}/{repo}:1")
    # mtime-only change and a change of an ignored file: still all hits
    time.sleep(1.1)
    (ctx / "a.txt").write_text("a1\n")
    (ctx / "ignored.txt").write_text("changed")
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:2")
    assert [s for s, _ in steps] == ["hit"] * 4
    (ctx / "b.txt").write_text("b2\n")
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:3")
    assert steps == [("hit", "RUN echo early > /early"), ("hit", "COPY a.txt /a.txt"),
                     ("miss", "COPY b.txt /b.txt"), ("miss", "RUN cat /a.txt /b.txt > /both")]
    assert file_in_image(f"{proxy.host}/{repo}:3", tmp_path, "/both") == "a1\nb2\n"
    (ctx / "a.txt").chmod(0o600)  # mode is part of the key
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:4")
    assert [s for s, _ in steps] == ["hit", "miss", "miss", "miss"]


def test_changed_build_arg_misses_only_the_runs_that_see_it(proxy, base, tmp_path):
    repo = f"cache/arg-{uuid.uuid4().hex[:6]}"
    ctx = write_ctx(tmp_path / "ctx", f"""
        FROM {base} AS tools
        RUN echo tools > /tools
        FROM {base}
        RUN echo early > /early
        ARG V
        COPY a.txt /a.txt
        RUN echo "v=$V" > /v
        RUN echo late > /late
        COPY --from=tools /tools /tools
        """, {"a.txt": "a\n"})
    build(proxy.host, ctx, f"{proxy.host}/{repo}:1", "--build-arg", "V=1")
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:2", "--build-arg", "V=2")
    assert steps == [("hit", "RUN echo tools > /tools"), ("hit", "RUN echo early > /early"),
                     ("hit", "COPY a.txt /a.txt"), ("miss", 'RUN echo "v=$V" > /v'),
                     ("miss", "RUN echo late > /late"), ("miss", "COPY --from=tools /tools /tools")]
    assert file_in_image(f"{proxy.host}/{repo}:2", tmp_path, "/v") == "v=2\n"
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:3", "--build-arg", "V=1")
    assert [s for s, _ in steps] == ["hit"] * 6  # the V=1 entries are still there


def test_multistage_copy_from_misses_after_the_earlier_stage_changed(proxy, base, tmp_path):
    repo = f"cache/multistage-{uuid.uuid4().hex[:6]}"
    ctx = write_ctx(tmp_path / "ctx", f"""
        FROM {base} AS build
        COPY src.txt /src.txt
        RUN tr a-z A-Z < /src.txt > /out.txt
        FROM {base}
        RUN echo final > /final
        COPY --from=build /out.txt /out.txt
        """, {"src.txt": "first\n"})
    build(proxy.host, ctx, f"{proxy.host}/{repo}:1")
    (ctx / "src.txt").write_text("second\n")
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:2")
    assert steps == [("miss", "COPY src.txt /src.txt"), ("miss", "RUN tr a-z A-Z < /src.txt > /out.txt"),
                     ("hit", "RUN echo final > /final"), ("miss", "COPY --from=build /out.txt /out.txt")]
    # Kaniko's bug (#2065, #2697): the stale first layer would be reused here.
    assert file_in_image(f"{proxy.host}/{repo}:2", tmp_path, "/out.txt") == "SECOND\n"
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:3")
    assert [s for s, _ in steps] == ["hit"] * 4


def test_cache_ttl_no_push_cache_and_run_layers_off(proxy, base, tmp_path):
    repo = f"cache/flags-{uuid.uuid4().hex[:6]}"
    ctx = write_ctx(tmp_path / "ctx", f"""
        FROM {base}
        RUN echo x > /x
        """, {})
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:1", "--no-push-cache")
    assert steps == [("miss", "RUN echo x > /x")]
    assert not [r for r in proxy.log if r[0] == "PUT" and f"/v2/{repo}/cache/manifests/" in r[1]]
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:2")
    assert steps == [("miss", "RUN echo x > /x")]  # nothing was stored by the first build
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:3")
    assert steps == [("hit", "RUN echo x > /x")]
    time.sleep(2.1)
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:4", "--cache-ttl=1s")
    assert steps == [("miss", "RUN echo x > /x")]  # expired
    _, steps, p = build(proxy.host, ctx, f"{proxy.host}/{repo}:5", "--cache-run-layers=false")
    assert steps == [] and "cache skipped (--cache-run-layers off)" in p.stderr
    # an explicit --cache-repo elsewhere starts empty
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/{repo}:6", "--cache-repo", f"{proxy.host}/{repo}-other")
    assert steps == [("miss", "RUN echo x > /x")]


def test_cache_without_destination_or_repo_is_a_clear_error(tmp_path):
    ctx = write_ctx(tmp_path / "ctx", "FROM scratch\n", {})
    p = run_executor(["--context", str(ctx), "--no-push", "--cache"], check=False)
    assert p.returncode != 0 and "--cache-repo" in p.stderr and "Traceback" not in p.stderr


def test_warm_then_build_with_the_base_registry_stopped(registry, tmp_path):
    base_reg = start_registry(tmp_path / "base-registry")
    try:
        base = seed_busybox(base_reg)
        cache_dir = tmp_path / "cache-dir"
        w = run_executor(["warm", "--image", base, "--cache-dir", str(cache_dir),
                          "--insecure-registry", base_reg.host])
        assert "cached" in w.stderr + w.stdout
        again = run_executor(["warm", "--image", base, "--cache-dir", str(cache_dir),
                              "--insecure-registry", base_reg.host])
        assert "already cached" in again.stderr + again.stdout
    finally:
        base_reg.stop()
    time.sleep(0.3)
    ctx = write_ctx(tmp_path / "ctx", f"""
        FROM {base}
        RUN echo warmed > /w
        """, {})
    dest = f"{registry.host}/cache/warm:{uuid.uuid4().hex[:6]}"
    common = ["--context", str(ctx), "--destination", dest, "--insecure-registry", registry.host,
              "--insecure-registry", base_reg.host, "--log-format", "text"]
    without = run_executor(common, check=False)
    assert without.returncode != 0, "the base registry is still answering; the test proves nothing"
    run_executor(common + ["--cache-dir", str(cache_dir)])
    bundle = umoci_unpack(dest, tmp_path / "unpacked")
    assert (bundle / "rootfs" / "w").read_text() == "warmed\n"
    assert (bundle / "rootfs" / "bin" / "busybox").stat().st_size > 0  # base layers came from the cache dir


def test_warm_reports_failures(tmp_path):
    p = run_executor(["warm", "--image", "127.0.0.1:1/nothing:latest", "--cache-dir", str(tmp_path / "c"),
                      "--insecure-registry", "127.0.0.1:1"], check=False)
    assert p.returncode != 0 and "127.0.0.1:1/nothing:latest" in p.stderr and "Traceback" not in p.stderr
    p = run_executor(["warm", "--cache-dir", str(tmp_path / "c")], check=False)
    assert p.returncode != 0 and "--image" in p.stderr
