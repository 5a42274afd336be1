"""Several target platforms in one build (``BuildOptions.platforms``): one image per platform
with its platform in the config and TARGET* args, stages that do not depend on the target
platform built once, and a RUN for a platform without an emulator refused before anything runs."""

from __future__ import annotations

import pytest

from executor.errors import BuildError


def test_one_image_per_platform_with_target_args(build):
    b = build.start("""\
        FROM scratch
        ARG TARGETARCH
        ARG TARGETPLATFORM
        LABEL arch=$TARGETARCH platform=$TARGETPLATFORM
        COPY a.txt /a.txt
        """, {"a.txt": "A\n"}, platforms=["linux/amd64", "linux/arm64"])
    results = b.build_all()
    assert [r.platform for r in results] == ["linux/amd64", "linux/arm64"]
    for r, arch in zip(results, ["amd64", "arm64"]):
        assert r.image.config["architecture"] == arch and r.image.config["os"] == "linux"
        assert r.image.config["config"]["Labels"] == {"arch": arch, "platform": f"linux/{arch}"}
    with pytest.raises(Exception, match="2 platforms"):
        b.build()  # the one-image API refuses a multi-platform build instead of picking one


def test_a_buildplatform_stage_is_built_once_for_all_platforms(build):
    b = build.start("""\
        FROM --platform=$BUILDPLATFORM scratch AS tools
        COPY tool.txt /tool.txt
        FROM scratch AS cross
        ARG TARGETARCH
        FROM --platform=$BUILDPLATFORM scratch AS percross
        ARG TARGETARCH
        COPY tool.txt /tool-$TARGETARCH
        FROM scratch
        COPY --from=tools /tool.txt /tool.txt
        COPY --from=percross / /
        """, {"tool.txt": "T\n"}, platforms=["linux/amd64", "linux/arm64"])
    results = b.build_all()
    steps = [(s.stage, s.text) for s in b.services.record.steps]
    tools = [s for s in steps if s[1] == "COPY tool.txt /tool.txt"]
    assert len(tools) == 1, steps  # built once, shared
    assert len([s for s in steps if s[1] == "COPY tool.txt /tool-$TARGETARCH"]) == 2  # reads TARGETARCH
    assert results[0].image.layers[0].digest == results[1].image.layers[0].digest  # the same shared layer
    names = [set(e for lay in r.image.layers for e in _names(lay)) for r in results]
    assert "tool-amd64" in names[0] and "tool-arm64" in names[1]


def _names(layer):
    import tarfile
    with tarfile.open(layer.path) as tf:
        return [m.name for m in tf.getmembers()]


def test_run_for_a_platform_without_emulator_fails_before_anything_runs(build, tmp_path, monkeypatch):
    empty = tmp_path / "binfmt"
    empty.mkdir()
    monkeypatch.setenv("EXECUTOR_BINFMT_DIR", str(empty))
    b = build.start("FROM scratch\nCOPY a.txt /a\nRUN true\n", {"a.txt": "A\n"}, platforms=["linux/arm64"])
    with pytest.raises(BuildError, match=r"stage 0 has RUN steps for linux/arm64.*qemu-user-static.*executor index"):
        b.build_all()
    assert b.services is None  # nothing was set up or run


def test_an_emulator_with_the_fix_binary_flag_is_found(tmp_path):
    from executor.engine.emulation import emulator_for
    (tmp_path / "qemu-aarch64").write_text("enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\n")
    (tmp_path / "qemu-riscv64").write_text("enabled\ninterpreter /usr/bin/qemu-riscv64-static\nflags: \n")
    (tmp_path / "qemu-s390x").write_text("disabled\ninterpreter /usr/bin/qemu-s390x-static\nflags: F\n")
    assert emulator_for("linux/arm64", tmp_path) == "qemu-aarch64"
    assert emulator_for("linux/riscv64", tmp_path) is None  # no F: the interpreter is not found in the root
    assert emulator_for("linux/s390x", tmp_path) is None    # disabled
