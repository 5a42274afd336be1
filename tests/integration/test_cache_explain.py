"""Cache-miss explanations end to end through the CLI: builds against a real docker-registry (behind
a request-logging proxy) with the registry cache and with the OCI-layout cache; the
``cache miss at <instruction> (<file>:<line>): <reason>`` lines read from the executor's log.
A no-change rebuild costs one extra request (the trail GET) and writes no trail."""

from __future__ import annotations

import re
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.support.tools import run_executor

pytestmark = pytest.mark.integration

EXPLAIN = re.compile(r"cache miss at (.*) \((Dockerfile:\d+)\): (.*)$")
CACHE_LINE = re.compile(r"cache (hit|miss) ([0-9a-f]{12}): (.*)$")



def _build(proxy, ctx: Path, repo: str, cache: list[str], *extra: str):
    """One cached build; returns ([(instruction, location, reason)], [hit|miss], log)."""
    p = run_executor(["--context", str(ctx), "--destination", f"{proxy.host}/{repo}:1", "--insecure-registry",
                      proxy.host, "--cache", "--cache-copy-layers", "--log-format", "text", *cache, *extra])
    log = p.stdout + p.stderr
    explained = [m.groups() for line in log.splitlines() if (m := EXPLAIN.search(line))]
    uses = [m.group(1) for line in log.splitlines() if (m := CACHE_LINE.search(line))]
    return explained, uses, log


@pytest.mark.parametrize("store", ["registry", "layout"])
def test_a_miss_names_its_first_cause(proxy, busybox, tmp_path, store):
    repo = f"explain/{store}-{uuid.uuid4().hex[:6]}"
    cache = ["--cache-repo", f"oci:{tmp_path / 'layers'}"] if store == "layout" else []
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    df = textwrap.dedent(f"""\
        FROM {proxy.host}/busybox:latest
        RUN echo early > /early
        COPY requirements.txt /requirements.txt
        ARG VERSION=1.0
        ARG API_TOKEN
        RUN echo "$VERSION" > /v && test -n "$API_TOKEN"
        RUN cat /requirements.txt /v > /all
        """)
    (ctx / "Dockerfile").write_text(df)
    (ctx / "requirements.txt").write_text("flask==1\n")
    args = ["--build-arg", "VERSION=1.2", "--build-arg", "API_TOKEN=tok-one-1234"]

    got, uses, _ = _build(proxy, ctx, repo, cache, *args)
    assert uses == ["miss"] * 4 and [r for *_, r in got] == ["no earlier build of this step recorded"] * 4, got

    # no change: every step hits, nothing is explained, no component is fetched, no trail written
    proxy.log.clear()
    got, uses, _ = _build(proxy, ctx, repo, cache, *args)
    assert uses == ["hit"] * 4 and got == []
    cache_path = f"/v2/{repo}/cache/"
    manifest_gets = [r[1] for r in proxy.log if r[0] == "GET" and r[1].startswith(cache_path + "manifests/")]
    if store == "registry":
        trail_gets = [g for g in manifest_gets if "/manifests/trail-" in g]
        assert len(trail_gets) == 1 and len(manifest_gets) == 1 + 4 + 1, manifest_gets  # trail, steps, config
    else:
        assert manifest_gets == []
    assert not [r for r in proxy.log if r[0] == "PUT" and "/manifests/trail-" in r[1]]

    # a changed build arg: the first step that sees it names it, with both values
    args = ["--build-arg", "VERSION=1.3", "--build-arg", "API_TOKEN=tok-one-1234"]
    got, uses, _ = _build(proxy, ctx, repo, cache, *args)
    assert uses == ["hit", "hit", "miss", "miss"]
    assert got == [('RUN echo "$VERSION" > /v && test -n "$API_TOKEN"', "Dockerfile:6",
                    "build arg VERSION changed (1.2 -> 1.3)"),
                   ("RUN cat /requirements.txt /v > /all", "Dockerfile:7",
                    "build arg VERSION changed (1.2 -> 1.3)")], got

    # a changed secret-looking build arg: named, never its values
    args = ["--build-arg", "VERSION=1.3", "--build-arg", "API_TOKEN=tok-two-5678"]
    got, uses, log = _build(proxy, ctx, repo, cache, *args)
    assert got[0] == ('RUN echo "$VERSION" > /v && test -n "$API_TOKEN"', "Dockerfile:6",
                      "build arg API_TOKEN changed"), got
    assert got[1][2] == "the previous step missed (its result changed)", got
    assert "tok-one" not in "\n".join(r for *_, r in got) and "tok-two" not in "\n".join(r for *_, r in got)

    # a changed copied file: its COPY names it, later misses follow from it
    (ctx / "requirements.txt").write_text("flask==2\n")
    got, uses, _ = _build(proxy, ctx, repo, cache, *args)
    assert uses == ["hit", "miss", "miss", "miss"]
    assert got == [("COPY requirements.txt /requirements.txt", "Dockerfile:3",
                    "requirements.txt content changed"),
                   ('RUN echo "$VERSION" > /v && test -n "$API_TOKEN"', "Dockerfile:6",
                    "an earlier step missed (its result changed): COPY requirements.txt /requirements.txt "
                    "(Dockerfile:3)"),
                   ("RUN cat /requirements.txt /v > /all", "Dockerfile:7",
                    "the previous step missed (its result changed); it follows from "
                    "COPY requirements.txt /requirements.txt (Dockerfile:3)")], got

    # only the mode of the copied file changed: said so
    (ctx / "requirements.txt").chmod(0o600)
    got, uses, _ = _build(proxy, ctx, repo, cache, *args)
    assert uses == ["hit", "miss", "miss", "miss"]
    assert got[0] == ("COPY requirements.txt /requirements.txt", "Dockerfile:3",
                      "requirements.txt mode or owner changed"), got

    # a changed RUN text
    (ctx / "Dockerfile").write_text(df.replace("cat /requirements.txt /v > /all", "cat /v /requirements.txt > /all"))
    got, uses, _ = _build(proxy, ctx, repo, cache, *args)
    assert got == [("RUN cat /v /requirements.txt > /all", "Dockerfile:7", "instruction changed")], got
