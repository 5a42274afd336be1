"""``--single-snapshot`` through the CLI against the loopback registry: the stage's RUN and COPY
steps write one layer on top of the base image's, taken at the end of the stage; skopeo reads the
pushed image and umoci unpacks it (the deletion is a whiteout in that one layer)."""

from __future__ import annotations

import textwrap

import pytest

from tests.support.tools import run_executor, skopeo_inspect, umoci_unpack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("single", [True, False])
def test_single_snapshot_writes_one_layer_for_the_stage(registry, busybox, tmp_path, single):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {busybox}
        RUN echo one > /one && rm /bin/ls
        WORKDIR /app
        COPY a.txt /app/a.txt
        RUN echo two > /app/two
        ENV X=1
        """))
    (ctx / "a.txt").write_text("A\n")
    dest = f"{registry.host}/single/{'on' if single else 'off'}:1"
    run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", registry.host,
                  "--log-format", "text", *(["--single-snapshot"] if single else [])])
    base_layers = len(skopeo_inspect(busybox)["Layers"])
    layers = skopeo_inspect(dest)["Layers"]
    assert len(layers) == base_layers + (1 if single else 4)  # RUN, WORKDIR (makes /app), COPY, RUN
    config = skopeo_inspect(dest, config=True)
    layered = [h for h in config["history"] if not h.get("empty_layer")]
    assert len(layered) == len(layers)
    if single:
        assert layered[-1]["created_by"].startswith("executor --single-snapshot")
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"
    assert (rootfs / "one").read_text() == "one\n" and (rootfs / "app" / "two").read_text() == "two\n"
    assert (rootfs / "app" / "a.txt").read_text() == "A\n"
    assert not (rootfs / "bin" / "ls").exists() and (rootfs / "bin" / "busybox").exists()
    assert "X=1" in config["config"]["Env"] and config["config"]["WorkingDir"] == "/app"
