"""Cache-miss explanations in-process with the OCI-layout store (``--cache-repo oci:DIR``): each
miss logs one ``cache miss at <instruction> (<file>:<line>): <reason>`` line naming the first real
cause (a changed build arg, copied file or RUN text), later misses say they follow from it, a
no-change rebuild writes no trail, and a secret-looking build arg is named without its values."""

from __future__ import annotations

import json
import logging
import re

from executor.cache.explain import ANN_RECORD, ANN_TRAIL

DOCKERFILE = """\
    FROM scratch AS base
    COPY rootfs/ /
    FROM base
    RUN echo early > /early
    COPY app.txt /app.txt
    ARG VERSION=1.2
    ARG API_TOKEN=none
    RUN echo "$VERSION $API_TOKEN" > /v
    RUN {last}
    """

EXPLAIN = re.compile(r"cache miss at (.*) \((Dockerfile:\d+)\): (.*)$")


def _build(root_build, tmp_path, ctx, caplog, last="cat /app.txt /v > /both", **kw):
    caplog.clear()
    built = root_build(DOCKERFILE.format(last=last), context=ctx, cache=True,
                       cache_repo=f"oci:{tmp_path / 'cache'}", **kw)
    built.build.cleanup()  # waits for the background cache writes
    return [m.groups() for r in caplog.records if (m := EXPLAIN.search(r.getMessage()))]


def test_each_miss_names_its_first_cause(root_build, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="executor.cache")
    ctx = root_build.context({"app.txt": "one\n"})
    first = _build(root_build, tmp_path, ctx, caplog, build_args={"VERSION": "1.2"})
    assert [r for _, _, r in first] == ["no earlier build of this step recorded"] * 5, first
    assert _build(root_build, tmp_path, ctx, caplog, build_args={"VERSION": "1.2"}) == []  # all hit

    # a changed build arg: the first RUN that sees it names it with both values
    got = _build(root_build, tmp_path, ctx, caplog, build_args={"VERSION": "1.3"})
    assert got[0] == ('RUN echo "$VERSION $API_TOKEN" > /v', "Dockerfile:8",
                      "build arg VERSION changed (1.2 -> 1.3)"), got
    assert got[1][0] == "RUN cat /app.txt /v > /both"
    assert got[1][2] == "build arg VERSION changed (1.2 -> 1.3)", got  # it sees VERSION too
    assert len(got) == 2

    # a changed copied file: its COPY names the source, later steps follow from it
    (ctx / "app.txt").write_text("two\n")
    got = _build(root_build, tmp_path, ctx, caplog, build_args={"VERSION": "1.3"})
    assert got[0] == ("COPY app.txt /app.txt", "Dockerfile:5", "app.txt content changed"), got
    assert got[1][2] == "an earlier step missed (its result changed): COPY app.txt /app.txt (Dockerfile:5)", got
    assert got[2][2] == ("the previous step missed (its result changed); it follows from "
                         "COPY app.txt /app.txt (Dockerfile:5)"), got
    assert len(got) == 3

    # a changed RUN text
    got = _build(root_build, tmp_path, ctx, caplog, last="cat /v /app.txt > /both", build_args={"VERSION": "1.3"})
    assert got == [("RUN cat /v /app.txt > /both", "Dockerfile:9", "instruction changed")], got


def test_a_secret_looking_build_arg_is_named_without_values(root_build, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="executor.cache")
    ctx = root_build.context({"app.txt": "one\n"})
    _build(root_build, tmp_path, ctx, caplog, build_args={"API_TOKEN": "s3cr3t-old"})
    got = _build(root_build, tmp_path, ctx, caplog, build_args={"API_TOKEN": "s3cr3t-new"})
    assert got[0] == ('RUN echo "$VERSION $API_TOKEN" > /v', "Dockerfile:8", "build arg API_TOKEN changed"), got
    assert "s3cr3t" not in caplog.text
    # neither the entries' key records nor the trail hold the values (the image history does, as
    # in Docker: the build warns about secret-looking ARGs)
    blobs = [p.read_bytes() for p in (tmp_path / "cache" / "blobs" / "sha256").iterdir()]
    manifests = [json.loads(t) for t in blobs if t.startswith(b"{") and b'"annotations"' in t]
    records = [m["annotations"][ANN_RECORD] for m in manifests if ANN_RECORD in m.get("annotations", {})]
    trails = [m["annotations"][ANN_TRAIL] for m in manifests if ANN_TRAIL in m.get("annotations", {})]
    assert records and trails
    assert not [t for t in records + trails if "s3cr3t" in t]
    assert any('"env API_TOKEN":"(hidden)"' in r for r in records), records
