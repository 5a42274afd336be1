"""``--cache-from`` end to end through the CLI against the real docker-registry: a pull-request
build reads the main branch's cache (registry repository and OCI layout forms), says which
source each hit came from, explains its misses from the main branch's trail, and never writes
to the source; ``--cache-from`` without ``--cache`` is a read-only cache giving the main
build's digest when nothing changed."""

from __future__ import annotations

import json
import re
import textwrap
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.support.tools import run_executor, skopeo_inspect

pytestmark = pytest.mark.integration

CACHE_LINE = re.compile(r"cache (hit|miss) ([0-9a-f]{12}): (.*)$")
EXPLAIN = re.compile(r"cache miss at (.*) \((Dockerfile:\d+)\): (.*)$")

DOCKERFILE = """\
    FROM {base}
    RUN echo base-step > /one
    COPY app.txt /app.txt
    RUN cat /app.txt /one > /both
    """


def tags(registry, repo: str) -> list[str]:
    """The registry's tag list of ``repo`` (empty for an unknown repository), without the layers'
    path-index entries (``pathindex-<diff_id hex>``, the lazy filesystem's; tested in test_lazy_fs)."""
    try:
        with urllib.request.urlopen(f"http://{registry.host}/v2/{repo}/tags/list") as r:
            return sorted(t for t in json.load(r).get("tags") or [] if not t.startswith("pathindex-"))
    except urllib.error.HTTPError as e:
        assert e.code == 404
        return []


def ctx_with(tmp: Path, base: str, app: str) -> Path:
    ctx = tmp / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(textwrap.dedent(DOCKERFILE.format(base=base)))
    (ctx / "app.txt").write_text(app)
    return ctx


def build(registry, ctx: Path, dest: str, *extra: str):
    """One build; returns (digest, [(hit|miss, instruction)], [(instruction, line, reason)], log)."""
    digest_file = ctx.parent / f"digest-{uuid.uuid4().hex[:6]}"
    p = run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", registry.host,
                      "--cache-copy-layers", "--log-format", "text", "--digest-file", str(digest_file), *extra])
    log = p.stdout + p.stderr
    uses = [(m.group(1), m.group(3)) for line in log.splitlines() if (m := CACHE_LINE.search(line))]
    explained = [m.groups() for line in log.splitlines() if (m := EXPLAIN.search(line))]
    return digest_file.read_text(), uses, explained, log


def test_pull_request_reads_the_main_branch_cache(registry, busybox, tmp_path):
    app = f"cachefrom/app-{uuid.uuid4().hex[:6]}"
    main_cache, pr_cache = f"{registry.host}/{app}/main-cache", f"{registry.host}/{app}/pr-cache"
    base = f"{registry.host}/busybox:latest"

    main_digest, uses, _, _ = build(registry, ctx_with(tmp_path, base, "v1\n"), f"{registry.host}/{app}:main",
                                    "--cache", "--cache-repo", main_cache)
    assert [u for u, _ in uses] == ["miss"] * 3
    main_tags = tags(registry, f"{app}/main-cache")
    assert len(main_tags) == 3 + 2, main_tags  # 3 steps, the final config, the trail

    # the pull request changed app.txt: the first RUN hits in main's cache, the rest miss and
    # are explained from main's trail (the PR cache has none yet); only the PR cache is written
    _, uses, explained, log = build(registry, ctx_with(tmp_path, base, "v2\n"), f"{registry.host}/{app}:pr-1",
                                    "--cache", "--cache-repo", pr_cache, "--cache-from", main_cache)
    src = f"{registry.host}/{app}/main-cache"
    assert uses[0] == ("hit", f"RUN echo base-step > /one (from --cache-from {src})"), log
    assert [u for u, _ in uses[1:]] == ["miss", "miss"], log
    assert explained[0] == ("COPY app.txt /app.txt", "Dockerfile:3", "app.txt content changed"), explained
    assert "cache: 1 hits (1 from --cache-from), 2 misses" in log
    assert tags(registry, f"{app}/main-cache") == main_tags  # never written back
    pr_tags = tags(registry, f"{app}/pr-cache")
    assert len(pr_tags) == 2 + 2, pr_tags  # the two misses, the final config, the trail
    main_layers = skopeo_inspect(f"{registry.host}/{app}:main", raw=True)["layers"]
    pr_layers = skopeo_inspect(f"{registry.host}/{app}:pr-1", raw=True)["layers"]
    assert pr_layers[-3] == main_layers[-3] and pr_layers[-1] != main_layers[-1]  # the hit is main's very layer

    # --cache-from alone (no --cache): read-only; nothing changed since main, so every step hits
    # there, main's final config is reused and the image is main's, digest for digest
    digest, uses, explained, log = build(registry, ctx_with(tmp_path, base, "v1\n"),
                                         f"{registry.host}/{app}:pr-2", "--cache-from", f"{main_cache}:ignored-tag")
    assert [u for u, _ in uses] == ["hit"] * 3 and all(f"(from --cache-from {src})" in t for _, t in uses), log
    assert digest == main_digest, log
    assert tags(registry, f"{app}/main-cache") == main_tags
    assert tags(registry, f"{app}/pr-cache") == pr_tags
    assert tags(registry, f"{app}/cache") == []  # no default cache repository was made either
    assert skopeo_inspect(f"{registry.host}/{app}:pr-2")["Digest"] == main_digest


def test_layout_source_and_order(registry, busybox, tmp_path):
    """An ``oci:`` source is read like a registry one and left byte-for-byte unchanged; the
    --cache-repo store is asked first, then the sources in the order given."""
    app = f"cachefrom/layout-{uuid.uuid4().hex[:6]}"
    base = f"{registry.host}/busybox:latest"
    main_layout, pr_layout = tmp_path / "main-layers", tmp_path / "pr-layers"
    main_digest, uses, _, _ = build(registry, ctx_with(tmp_path, base, "v1\n"), f"{registry.host}/{app}:main",
                                    "--cache", "--cache-repo", f"oci:{main_layout}")
    assert [u for u, _ in uses] == ["miss"] * 3
    before = (main_layout / "index.json").read_bytes()
    blobs_before = sorted(p.name for p in (main_layout / "blobs" / "sha256").iterdir())

    missing = tmp_path / "nothing-here"
    digest, uses, _, log = build(registry, ctx_with(tmp_path, base, "v1\n"), f"{registry.host}/{app}:pr",
                                 "--cache", "--cache-repo", f"oci:{pr_layout}", "--cache-from", f"oci:{missing}",
                                 "--cache-from", f"oci:{main_layout}")
    assert f"--cache-from oci:{missing}: no OCI image layout there" in log
    assert [t for _, t in uses] == [f"{i} (from --cache-from oci:{main_layout})" for i in
                                    ("RUN echo base-step > /one", "COPY app.txt /app.txt",
                                     "RUN cat /app.txt /one > /both")], log
    assert digest == main_digest
    assert (main_layout / "index.json").read_bytes() == before
    assert sorted(p.name for p in (main_layout / "blobs" / "sha256").iterdir()) == blobs_before
    assert not missing.exists()
    pr_names = [m["annotations"]["org.opencontainers.image.ref.name"]
                for m in json.loads((pr_layout / "index.json").read_text())["manifests"]]
    assert len(pr_names) == 1 and pr_names[0].startswith("trail-"), pr_names  # its own trail, nothing else

    # the PR's own store now answers first: a rebuild hits there, not in the source
    (pr_layout / "index.json").unlink()
    _, uses, _, _ = build(registry, ctx_with(tmp_path, base, "v3\n"), f"{registry.host}/{app}:pr",
                          "--cache", "--cache-repo", f"oci:{pr_layout}", "--cache-from", f"oci:{main_layout}")
    assert [u for u, _ in uses] == ["hit", "miss", "miss"]
    _, uses, _, _ = build(registry, ctx_with(tmp_path, base, "v3\n"), f"{registry.host}/{app}:pr",
                          "--cache", "--cache-repo", f"oci:{pr_layout}", "--cache-from", f"oci:{main_layout}")
    assert [t for _, t in uses][1:] == ["COPY app.txt /app.txt", "RUN cat /app.txt /one > /both"], uses


def test_bad_cache_from_is_one_line(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY Dockerfile /\n")
    p = run_executor(["--context", str(ctx), "--no-push", "--cache-from", "Bad Repo!"], check=False)
    assert p.returncode == 1, p.stderr
    lines = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith("error: --cache-from Bad Repo!:"), p.stderr
    assert "Traceback" not in p.stderr
