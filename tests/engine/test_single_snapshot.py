"""``--single-snapshot`` (Kaniko): a stage's steps write no layers of their own; one layer holding
everything they changed is taken at the end of the stage (history: one empty_layer entry per
step, one entry for the snapshot)."""

from __future__ import annotations


def test_one_layer_for_the_whole_final_stage(root_build):
    built = root_build("""\
        FROM scratch AS base
        COPY rootfs/ /
        FROM base
        RUN echo one > /one && rm /bin/ls
        WORKDIR /app
        COPY a.txt /app/a.txt
        RUN echo two > /app/two
        ENV X=1
        """, {"a.txt": "A\n"}, single_snapshot=True)
    # the base stage's snapshot (its COPY rootfs) and this stage's snapshot: one layer each
    assert len(built.image.layers) == 2, [h.get("created_by") for h in built.image.config["history"]]
    entries = built.layer(-1)
    assert entries["one"][1] == b"one\n" and entries["app/a.txt"][1] == b"A\n" and entries["app/two"][1] == b"two\n"
    assert "bin/.wh.ls" in entries  # a deletion since the stage began is a whiteout in the one layer
    history = built.image.config["history"]
    layered = [h for h in history if not h.get("empty_layer")]
    assert len(layered) == len(built.image.layers)
    assert layered[-1]["created_by"].startswith("executor --single-snapshot")
    assert built.config["Env"][-1] == "X=1" and built.config["WorkingDir"] == "/app"


def test_without_the_flag_each_step_has_its_layer(root_build):
    built = root_build("""\
        FROM scratch AS base
        COPY rootfs/ /
        FROM base
        RUN echo one > /one
        RUN echo two > /two
        """)
    assert len(built.own_layers()) == 2
