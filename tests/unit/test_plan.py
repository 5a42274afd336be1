"""The build plan (executor.engine.plan): stage graph edges, what the target needs, which
stages the output image holds, and plan-time errors naming the Dockerfile line."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.dockerfile.instructions import load_dockerfile
from executor.engine.plan import plan_build
from executor.errors import DockerfileError, UserError
from executor.options import BuildOptions

DF = """\
ARG BASE=scratch
FROM $BASE AS tools
FROM scratch AS unused
FROM tools AS build
RUN --mount=type=bind,from=assets,target=/a true
FROM scratch AS assets
FROM build AS test
FROM scratch AS final
COPY --from=build /x /x
COPY --from=1 /y /y
"""


def _plan(text: str, **kw):
    opts = BuildOptions(context=Path("/nonexistent"), dockerfile=Path("/nonexistent/Dockerfile"), **kw)
    return plan_build(load_dockerfile(text), opts)


def test_edges_needed_stages_and_exported_chain():
    with pytest.raises(DockerfileError, match=r"Dockerfile:5: --from=assets: stage 'assets' is defined after"):
        _plan(DF)
    text = DF.replace("from=assets", "from=tools")
    plan = _plan(text)
    nodes = plan.nodes
    assert nodes[2].parent == 0 and nodes[2].deps == {0}
    assert nodes[5].deps == {2, 1}  # COPY --from=build and --from=1 (an index)
    assert plan.order == [0, 1, 2, 5] and plan.target == 5
    assert plan.exported == {5}
    assert plan.referrers(0) == 1 and plan.referrers(2) == 1


def test_target_selects_a_stage_and_its_from_chain_is_exported():
    plan = _plan(DF.replace("from=assets", "from=tools"), target="test")
    assert plan.order == [0, 2, 4] and plan.exported == {4, 2, 0}
    with pytest.raises(UserError, match="no stage with that name"):
        _plan(DF.replace("from=assets", "from=tools"), target="nope")


def test_global_args_expand_bases_and_platform():
    plan = _plan("ARG IMG=busybox\nFROM $IMG\nFROM --platform=$BUILDPLATFORM scratch\n",
                 build_args={"IMG": "alpine"}, platform="linux/arm64")
    assert plan.nodes[0].base == "alpine" and "IMG" in plan.used_build_args
    assert plan.nodes[0].platform == "linux/arm64" and plan.nodes[1].platform.startswith("linux/")
    assert plan.meta["TARGETARCH"] == "arm64"


def test_empty_base_names_the_line_and_the_arg():
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: FROM \$IMG: the image name is empty \(IMG not set\)"):
        _plan("ARG IMG\nFROM $IMG\n")


def test_bad_platform_is_a_plan_error():
    with pytest.raises(DockerfileError, match="FROM --platform=linux: use OS/ARCH"):
        _plan("FROM --platform=linux scratch\n")


def test_secret_like_arg_and_env_names_are_found_once():
    from executor.engine.plan import secret_like_names
    df = load_dockerfile("ARG GITHUB_TOKEN\nFROM scratch\nARG VERSION DB_PASSWORD=x\n"
                         "ENV AWS_SECRET_ACCESS_KEY=1 PUBLIC_KEY=2 MONKEY=3 KEYBOARD=4\nARG GITHUB_TOKEN\n")
    assert secret_like_names(df) == ["GITHUB_TOKEN", "DB_PASSWORD", "AWS_SECRET_ACCESS_KEY"]
