"""``executor cache prune`` through the CLI: real caches written by real builds, pruned in a real
docker-registry with deletion enabled (the session registry: entries deleted through the
distribution API, other tags left alone), in one with deletion disabled (each entry reported
with the 405 fix, exit 0), and in an OCI layout (index entries, then unreferenced blobs; the
layout still checks out with skopeo and a rebuild hits what was kept)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable

import pytest

from executor.reference import parse_reference
from executor.registry.client import RegistryClient
from tests.support.tools import run, run_executor

pytestmark = pytest.mark.integration

CACHE_LINE = re.compile(r"cache (hit|miss) ([0-9a-f]{12}): (.*)$")
REF_NAME = "org.opencontainers.image.ref.name"


def tags(host: str, repo: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{host}/v2/{repo}/tags/list") as r:
            return sorted(json.load(r).get("tags") or [])
    except urllib.error.HTTPError as e:
        assert e.code == 404
        return []


def build(host: str, tmp: Path, base: str, app: str, dest: str, cache_repo: str) -> list[str]:
    """A cached build of a three-step Dockerfile (the image is not pushed, the cache is); returns
    hit|miss per step."""
    ctx = tmp / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {base}
        RUN echo base-step > /one
        COPY app.txt /app.txt
        RUN cat /app.txt /one > /both
        """))
    (ctx / "app.txt").write_text(app)
    # the entry counts below are of step, config and trail entries: no path-index entries (lazyfs)
    p = run_executor(["--context", str(ctx), "--destination", dest, "--no-push", "--insecure-registry", host,
                      "--cache", "--cache-copy-layers", "--cache-repo", cache_repo, "--log-format", "text"],
                     env={"EXECUTOR_LAZY_FS": "0"})
    return [m.group(1) for line in (p.stdout + p.stderr).splitlines() if (m := CACHE_LINE.search(line))]


def prune(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = run_executor(["cache", "prune", "--log-format", "text", *args], check=False)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def two_generations(host: str, tmp: Path, base: str, dest: str, cache_repo: str) -> Callable[[], str]:
    """Build v1, wait, build v2 (its first step hits v1's entry); return a function giving, when
    called, an --older-than that expires exactly v1's entries: a cutoff 1 s after the first build
    ended, and at least 1.5 s before the second one started even if the prune takes 1 s to start."""
    assert build(host, tmp, base, "v1\n", dest, cache_repo) == ["miss"] * 3
    t_first = time.time()
    time.sleep(3.5)
    assert build(host, tmp, base, "v2\n", dest, cache_repo) == ["hit", "miss", "miss"]
    return lambda: f"{time.time() - t_first - 1.0:.3f}s"


def test_registry_prune_deletes_expired_entries_only(registry, busybox, tmp_path):
    app = f"prune/app-{uuid.uuid4().hex[:6]}"
    cache = f"{registry.host}/{app}/cache"
    base = f"{registry.host}/busybox:latest"
    # a tag in the cache repository that is not a cache entry: never touched
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", f"docker://{base}",
         f"docker://{cache}:not-a-cache-entry"])
    older = two_generations(registry.host, tmp_path, base, f"{registry.host}/{app}:1", cache)
    before = tags(registry.host, f"{app}/cache")
    assert len(before) == 1 + 4 + 3 + 1, before  # other tag; v1: 3 steps + config; v2: 2 steps + config; trail
    with RegistryClient() as client:  # the client's tag list (docker-registry 2.8 ignores n=2: one page)
        assert sorted(client.list_tags(parse_reference(cache), page_size=2)) == before

    p = prune("--cache-repo", cache, "--older-than", older(), "--dry-run")
    assert tags(registry.host, f"{app}/cache") == before
    assert p.stderr.count("would delete ") == 4, p.stderr
    assert "8 cache entries, 4 older than" in p.stdout and "4 would be deleted; 4 kept; 1 other tag left alone" \
        in p.stdout, p.stdout

    p = prune("--cache-repo", cache, "--older-than", older())
    after = tags(registry.host, f"{app}/cache")
    assert len(after) == 5 and "not-a-cache-entry" in after, after
    assert p.stderr.count("deleted ") == 4 and "cannot delete" not in p.stderr, p.stderr
    assert "4 deleted; 4 kept; 1 other tag left alone; the registry frees their blobs" in p.stdout, p.stdout
    # what is left is usable: the v2 rebuild hits its two own steps; the v1-made first step expired and is gone
    assert build(registry.host, tmp_path, base, "v2\n", f"{registry.host}/{app}:1", cache) == ["miss", "hit", "hit"]

    # nothing older than 336h: nothing to do; an unknown repository has nothing either
    p = prune("--cache-repo", cache)
    assert "0 older than 336h: 0 deleted" in p.stdout, p.stdout
    p = prune("--cache-repo", f"{registry.host}/prune/never-pushed-{uuid.uuid4().hex[:6]}", "--older-than", "0s")
    assert ": 0 cache entries, 0 older than 0s: 0 deleted; 0 kept" in p.stdout, p.stdout


@pytest.fixture
def no_delete_registry(tools_present, tmp_path):
    """A docker-registry with deletion disabled (its default), plain HTTP on a free port."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (tmp_path / "data").mkdir()
    cfg = tmp_path / "config.yml"
    cfg.write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path}/data\n"
                   f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://{host}/v2/").close()
            break
        except OSError:
            time.sleep(0.05)
    yield host
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=10)


def test_registry_with_deletion_disabled_reports_each_entry(registry, busybox, no_delete_registry, tmp_path):
    host = no_delete_registry
    cache = f"{host}/prune/cache"
    assert build(registry.host, tmp_path, f"{registry.host}/busybox:latest", "v1\n", f"{host}/prune/app:1",
                 cache) == ["miss"] * 3
    before = tags(host, "prune/cache")
    assert len(before) == 5
    p = prune("--cache-repo", cache, "--older-than", "0s")
    lines = [line for line in p.stderr.splitlines() if "cannot delete" in line]
    assert len(lines) == 5, p.stderr
    assert "deletion disabled (405)" in lines[0] and "storage: delete: enabled: true" in lines[0], lines[0]
    assert all("(405)" in line for line in lines[1:]), lines
    assert "5 cache entries, 5 older than 0s: 0 deleted, 5 could not be; 0 kept" in p.stdout, p.stdout
    assert tags(host, "prune/cache") == before


def test_layout_prune_removes_entries_then_unreferenced_blobs(registry, busybox, tmp_path):
    layout = tmp_path / "layers"
    base = f"{registry.host}/busybox:latest"
    dest = f"{registry.host}/prune/layout-{uuid.uuid4().hex[:6]}:1"
    older = two_generations(registry.host, tmp_path, base, dest, f"oci:{layout}")
    index_before = (layout / "index.json").read_bytes()
    blobs = layout / "blobs" / "sha256"
    n_before = len(list(blobs.iterdir()))

    p = prune("--cache-repo", f"oci:{layout}", "--older-than", older(), "--dry-run")
    assert (layout / "index.json").read_bytes() == index_before and len(list(blobs.iterdir())) == n_before
    assert "4 would be deleted; 4 kept" in p.stdout and "would be removed" in p.stdout, p.stdout

    p = prune("--cache-repo", f"oci:{layout}", "--older-than", older())
    m = re.search(r"4 deleted; 4 kept; (\d+) unreferenced blobs \(([\d.]+ \w+)\) removed", p.stdout)
    assert m, p.stdout
    names = {d["annotations"][REF_NAME]: d for d in json.loads((layout / "index.json").read_text())["manifests"]}
    assert len(names) == 4, names
    # every blob left is referenced by a kept entry, and every referenced blob is there
    referenced = set()
    for d in names.values():
        referenced.add(d["digest"])
        man = json.loads((blobs / d["digest"].split(":")[1]).read_bytes())
        referenced |= {man["config"]["digest"], *(lyr["digest"] for lyr in man["layers"])}
    assert {f"sha256:{p.name}" for p in blobs.iterdir()} == referenced
    assert n_before - len(referenced) == int(m.group(1))
    for name in names:
        run(["skopeo", "inspect", f"oci:{layout}:{name}"])
    assert build(registry.host, tmp_path, base, "v2\n", dest, f"oci:{layout}") == ["miss", "hit", "hit"]


def test_prune_bad_input_is_one_line(tmp_path):
    for args, want in ((["--cache-repo", f"oci:{tmp_path}/none"], "no OCI image layout there"),
                       (["--cache-repo", f"oci:{tmp_path}", "--older-than", "soon"],
                        "--older-than=soon: not a duration"),
                       (["--cache-repo", "Bad Repo!"], "--cache-repo Bad Repo!:")):
        p = prune(*args, check=False)
        assert p.returncode == 1 and p.stderr.startswith("error: ") and want in p.stderr, p.stderr
        assert len(p.stderr.strip().splitlines()) == 1 and "Traceback" not in p.stderr
