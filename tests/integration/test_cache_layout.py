"""The on-disk layer cache (``--cache --cache-repo oci:DIR``) end to end: real builds pulling
through a request-logging proxy in front of a real docker-registry; hits and misses read from the
executor's per-instruction log lines; the layout checked with skopeo (``oci:DIR:KEY``) and the
pushed images with skopeo/umoci. Also the kaniko-build Task's step script with its ``cache``
workspace bound, run on this machine with the real executor (the in-pod variant lives in
test_executor_image.py and needs PyPI)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from tests.support.fault_proxy import FaultProxy
from tests.support.tools import executor_cmd, run, run_executor, skopeo_inspect, umoci_unpack

pytestmark = pytest.mark.integration

CACHE_LINE = re.compile(r"cache (hit|miss) ([0-9a-f]{12}): (.*)$")
REF_NAME = "org.opencontainers.image.ref.name"



@pytest.fixture
def base(proxy, busybox) -> str:
    """busybox, referenced through the proxy so its requests are logged."""
    return f"{proxy.host}/busybox:latest"


def write_ctx(ctx: Path, dockerfile: str, files: dict[str, str]) -> Path:
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    for name, content in files.items():
        (ctx / name).write_text(content)
    return ctx


def steps_of(log: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(3).strip()) for line in log.splitlines() if (m := CACHE_LINE.search(line))]


def build_args(host: str, ctx: Path, dest: str, layout: Path, digest_file: Path, *extra: str) -> list[str]:
    return ["--context", str(ctx), "--destination", dest, "--insecure-registry", host, "--cache",
            "--cache-copy-layers", "--cache-repo", f"oci:{layout}", "--log-format", "text",
            "--digest-file", str(digest_file), *extra]


def build(host: str, ctx: Path, dest: str, layout: Path, *extra: str):
    """One build with the layout cache; returns (digest, [(hit|miss, instruction)], process)."""
    digest_file = ctx.parent / f"digest-{uuid.uuid4().hex[:6]}"
    p = run_executor(build_args(host, ctx, dest, layout, digest_file, *extra))
    return digest_file.read_text(), steps_of(p.stdout + p.stderr), p


def index_entries(layout: Path, trails: bool = False) -> dict[str, dict]:
    """ref name -> descriptor of the layout's index.json (asserting names are unique); the build
    trails (``trail-<hex>``, one per destination/target/platform) only with ``trails``; never the
    layers' path-index entries (``pathindex-<hex>``, the lazy filesystem's; see test_lazy_fs)."""
    idx = json.loads((layout / "index.json").read_text())
    assert idx["schemaVersion"] == 2 and idx["mediaType"] == "application/vnd.oci.image.index.v1+json"
    names = [m["annotations"][REF_NAME] for m in idx["manifests"]]
    assert len(names) == len(set(names)), names
    return {m["annotations"][REF_NAME]: m for m in idx["manifests"]
            if (trails or not m["annotations"][REF_NAME].startswith("trail-"))
            and not m["annotations"][REF_NAME].startswith("pathindex-")}


def skopeo_layout(layout: Path, key: str) -> dict:
    return json.loads(run(["skopeo", "inspect", f"oci:{layout}:{key}"]).stdout)


def layer_gets(proxy: FaultProxy) -> list[str]:
    """Digests (``sha256:...``) of every blob GET the proxy saw."""
    return [path.rsplit("/", 1)[1] for method, path, _ in proxy.log if method == "GET" and "/blobs/" in path]


def test_layout_rebuild_hits_everything_offline_from_the_cache_and_pushes_its_blobs(proxy, base, tmp_path):
    layout = tmp_path / "layers"
    ctx = write_ctx(tmp_path / "ctx", f"""
        FROM {base}
        RUN echo one > /one
        ARG V=1
        COPY a.txt /a.txt
        RUN echo "v=$V" > /v
        WORKDIR /app
        RUN cat /one /a.txt /v > /app/all
        """, {"a.txt": "hello\n"})
    d1, steps1, _ = build(proxy.host, ctx, f"{proxy.host}/layout/first:1", layout)
    assert [s for s, _ in steps1] == ["miss"] * 5
    # the layout is a valid OCI layout: one entry per step plus the final config, each readable by skopeo
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    entries = index_entries(layout)
    assert len(entries) == 6
    assert len([k for k in index_entries(layout, trails=True) if k.startswith("trail-")]) == 1
    for key in entries:
        assert re.fullmatch(r"[0-9a-f]{64}", key)
        info = skopeo_layout(layout, key)
        assert info["Digest"] == entries[key]["digest"]
    built_layers = skopeo_inspect(f"{proxy.host}/layout/first:1")["Layers"]
    base_layers = skopeo_inspect(base)["Layers"]
    cached_layers = {d for k in entries for d in skopeo_layout(layout, k)["Layers"]}
    assert cached_layers == set(built_layers) - set(base_layers)  # what the steps made, not the base
    assert not [p for p in layout.rglob("*.tmp")] and not [p for p in layout.rglob(".*partial")]

    # a second build into another repository: every step hits, same image, no layer is downloaded,
    # no cache request reaches the registry, and the cached layer blobs are uploaded from the layout
    proxy.log.clear()
    dest2 = f"{proxy.host}/layout/second-{uuid.uuid4().hex[:6]}:1"
    d2, steps2, p2 = build(proxy.host, ctx, dest2, layout)
    assert [s for s, _ in steps2] == ["hit"] * 5, p2.stderr
    assert d2 == d1
    gets = layer_gets(proxy)
    assert not set(gets) & set(built_layers), f"a layer blob was downloaded on a cached rebuild: {gets}"
    base_config = skopeo_inspect(base, raw=True)["config"]["digest"]
    assert set(gets) <= {base_config}, gets  # at most the base's config (ENV, USER...)
    assert not [r for r in proxy.log if "/cache/" in r[1]], "the registry cache was asked"
    uploaded = {r[1] for r in proxy.log if r[0] in ("POST", "PUT", "PATCH") and "/blobs/uploads/" in r[1]}
    assert uploaded, proxy.log
    pushed = [line for line in p2.stderr.splitlines() if "pushed blobs to" in line]
    n_step_layers = len(set(built_layers) - set(base_layers))
    assert n_step_layers == 5  # RUN, COPY, RUN, WORKDIR (new dir), RUN
    assert pushed and pushed[0].endswith(f": {n_step_layers} uploaded, 1 mounted"), p2.stderr  # step layers from the layout, base mounted
    assert skopeo_inspect(dest2)["Digest"] == d1
    bundle = umoci_unpack(dest2, tmp_path / "unpacked")
    assert (bundle / "rootfs/app/all").read_text() == "one\nhello\nv=1\n"


def test_layout_multistage_copy_from_misses_after_the_earlier_stage_changed(proxy, base, tmp_path):
    layout = tmp_path / "layers"
    ctx = write_ctx(tmp_path / "ctx", f"""
        FROM {base} AS build
        COPY src.txt /src.txt
        RUN tr a-z A-Z < /src.txt > /out.txt
        FROM {base}
        RUN echo final > /final
        COPY --from=build /out.txt /out.txt
        """, {"src.txt": "first\n"})
    repo = f"{proxy.host}/layout/multistage-{uuid.uuid4().hex[:6]}"
    build(proxy.host, ctx, f"{repo}:1", layout)
    (ctx / "src.txt").write_text("second\n")
    _, steps, _ = build(proxy.host, ctx, f"{repo}:2", layout)
    assert steps == [("miss", "COPY src.txt /src.txt"), ("miss", "RUN tr a-z A-Z < /src.txt > /out.txt"),
                     ("hit", "RUN echo final > /final"), ("miss", "COPY --from=build /out.txt /out.txt")]
    assert (umoci_unpack(f"{repo}:2", tmp_path / "u2") / "rootfs/out.txt").read_text() == "SECOND\n"
    _, steps, _ = build(proxy.host, ctx, f"{repo}:3", layout)
    assert [s for s, _ in steps] == ["hit"] * 4


def test_layout_ttl_and_no_push_cache(proxy, base, tmp_path):
    layout = tmp_path / "layers"
    ctx = write_ctx(tmp_path / "ctx", f"FROM {base}\nRUN echo x > /x\n", {})
    repo = f"{proxy.host}/layout/flags-{uuid.uuid4().hex[:6]}"
    _, steps, _ = build(proxy.host, ctx, f"{repo}:1", layout, "--no-push-cache")
    assert steps == [("miss", "RUN echo x > /x")]
    assert not layout.exists()  # --no-push-cache only reads: nothing created
    _, steps, _ = build(proxy.host, ctx, f"{repo}:2", layout)
    assert steps == [("miss", "RUN echo x > /x")]
    _, steps, _ = build(proxy.host, ctx, f"{repo}:3", layout, "--no-push-cache")
    assert steps == [("hit", "RUN echo x > /x")]
    time.sleep(2.1)
    _, steps, _ = build(proxy.host, ctx, f"{repo}:4", layout, "--cache-ttl=1s")
    assert steps == [("miss", "RUN echo x > /x")]  # expired (entry created more than 1 s ago)


def test_layout_cache_in_an_unwritable_place_is_a_clear_error(tmp_path):
    ctx = write_ctx(tmp_path / "ctx", "FROM scratch\nCOPY a /a\n", {"a": "x"})
    (tmp_path / "file").write_text("not a directory")
    p = run_executor(["--context", str(ctx), "--no-push", "--cache", "--cache-repo", f"oci:{tmp_path}/file/layers"],
                     check=False)
    assert p.returncode == 1, p.stderr
    assert f"--cache-repo=oci:{tmp_path}/file/layers: cannot create the cache layout" in p.stderr
    assert "Traceback" not in p.stderr
    p = run_executor(["--context", str(ctx), "--no-push", "--cache", "--cache-repo", "oci:"], check=False)
    assert p.returncode == 1 and "needs a directory" in p.stderr


def test_two_builds_in_parallel_share_one_layout(proxy, base, tmp_path):
    """Two builds writing into the same layout at once (different steps, one shared step): both
    succeed, and index.json ends valid with every entry of both, each readable by skopeo."""
    layout = tmp_path / "layers"
    procs = []
    for name in ("left", "right"):
        ctx = write_ctx(tmp_path / name / "ctx", f"""
            FROM {base}
            RUN echo shared > /shared
            RUN echo {name} > /{name}
            COPY f.txt /f.txt
            RUN cat /f.txt > /copy
            """, {"f.txt": f"{name}\n" * 1000})
        digest_file = tmp_path / name / "digest"
        args = build_args(proxy.host, ctx, f"{proxy.host}/layout/par-{name}:1", layout, digest_file)
        procs.append((name, digest_file, subprocess.Popen(executor_cmd() + args, stdout=subprocess.PIPE,
                                                           stderr=subprocess.STDOUT, text=True)))
    keys: set[str] = set()
    for name, digest_file, proc in procs:
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        assert digest_file.read_text().startswith("sha256:")
        keys |= {m.group(2) for line in out.splitlines() if (m := CACHE_LINE.search(line))}
    entries = index_entries(layout)
    # 4 step keys per build, "RUN echo shared" the same in both: 7 step entries + 2 final configs
    assert len(keys) == 7
    assert {k[:12] for k in entries} >= keys and len(entries) == 9
    for key, desc in entries.items():
        assert skopeo_layout(layout, key)["Digest"] == desc["digest"]
    assert not [p for p in layout.rglob("*.tmp")]
    # and both builds' entries serve a third build
    ctx = tmp_path / "left" / "ctx"
    _, steps, _ = build(proxy.host, ctx, f"{proxy.host}/layout/par-left:2", layout)
    assert [s for s, _ in steps] == ["hit"] * 4


# ------------------------------------------------------------------ the Task's step, on this machine
def test_task_step_with_cache_workspace_builds_twice_from_the_cache(proxy, base, tmp_path):
    """The kaniko-build step script (Tekton substitution applied) with ``cache`` bound, the real
    executor on PATH: the first run warms base-images/ and fills layers/, the second hits every
    step, takes its base image from base-images/ and pushes the same digest."""
    import shutil
    import sys

    from tests.tekton_schemas.checker import CATALOG_ROOT, load_yaml_docs
    from tests.tekton_schemas.substitute import render_step, write_script
    task = load_yaml_docs(CATALOG_ROOT / "tasks/kaniko-build/0.1/kaniko-build.yaml")[0]
    if shutil.which("sh") is None:
        pytest.skip("no /bin/sh")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "executor").write_text(f"#!/bin/sh\nexec {sys.executable} -m executor \"$@\"\n")
    (bindir / "executor").chmod(0o755)
    source, cache = tmp_path / "source", tmp_path / "cache"
    cache.mkdir()
    write_ctx(source, f"""
        FROM {base}
        ARG MSG
        RUN echo "$MSG" > /msg
        COPY a.txt /a.txt
        """, {"a.txt": "a\n"})
    image = f"{proxy.host}/layout/task-{uuid.uuid4().hex[:6]}:1"

    def step(n: int):
        results = tmp_path / f"results-{n}"
        results.mkdir()
        r = render_step(task, "build-and-push", {
            "IMAGE": image, "BUILD_ARGS": ["MSG=cached"],
            "EXTRA_ARGS": [f"--insecure-registry={proxy.host}", "--log-format=text", "--cache-copy-layers"]},
            {"source": str(source), "cache": str(cache)}, results_dir=str(results))
        script = write_script(r, tmp_path / f"script-{n}.sh")
        env = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp_path), **r.env}
        p = subprocess.run(["sh", str(script), *r.args], cwd=r.working_dir, env=env, capture_output=True,
                           text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        return p.stdout + p.stderr, (results / "IMAGE_DIGEST").read_text()

    log1, d1 = step(1)
    assert [s for s, _ in steps_of(log1)] == ["miss", "miss"], log1
    assert "caching the Dockerfile's base images" in log1 and f"cached {base}" in log1
    warmed = json.loads((cache / "base-images/index.json").read_text())["manifests"]
    assert [m["annotations"]["dev.executor.ref"] for m in warmed] == [base]
    assert len(index_entries(cache / "layers")) == 3
    proxy.log.clear()
    log2, d2 = step(2)
    assert [s for s, _ in steps_of(log2)] == ["hit", "hit"], log2
    assert f"base image {base} from the local cache" in log2, log2
    # warm --force asked for the manifest (and config) again, but no layer blob was downloaded
    gets = layer_gets(proxy)
    base_config = skopeo_inspect(base, raw=True)["config"]["digest"]
    assert set(gets) <= {base_config}, proxy.log
    assert d2 == d1 == skopeo_inspect(image)["Digest"]
    assert sorted(os.listdir(cache)) == ["base-images", "layers"]
