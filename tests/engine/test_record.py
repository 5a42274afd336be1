"""The build record: one StepRecord per instruction that ran, with its keyword, stage label and
location (``Dockerfile:<first line>``), in order within each stage, with timings.

FROM and global ARGs are not steps; ONBUILD triggers are steps of the stage that runs them.
Also: every step of a cache-less build is ``CacheUse.OFF``, and a step that
wrote a layer records that layer's digest.
"""

from __future__ import annotations

import pytest

from executor.engine.step import CacheUse

from .conftest import BASE

ALL_KEYWORDS = """\
ARG G=1
FROM scratch AS first
ENV A=1
LABEL l=v \\
      m=w
COPY <<EOF /f
body
EOF

FROM first
ARG G
WORKDIR /w
EXPOSE 80
VOLUME /v
USER 1:1
SHELL ["/bin/sh", "-ec"]
STOPSIGNAL SIGINT
HEALTHCHECK NONE
MAINTAINER me
ONBUILD LABEL t=1
ENTRYPOINT ["/e"]
CMD ["x"]
ADD ctx.txt /
"""

EXPECTED = [
    ("first", "Dockerfile:3", "ENV", "ENV A=1"),
    ("first", "Dockerfile:4", "LABEL", None),
    ("first", "Dockerfile:6", "COPY", "COPY <<EOF /f"),
    ("1", "Dockerfile:11", "ARG", "ARG G"),
    ("1", "Dockerfile:12", "WORKDIR", "WORKDIR /w"),
    ("1", "Dockerfile:13", "EXPOSE", "EXPOSE 80"),
    ("1", "Dockerfile:14", "VOLUME", "VOLUME /v"),
    ("1", "Dockerfile:15", "USER", "USER 1:1"),
    ("1", "Dockerfile:16", "SHELL", 'SHELL ["/bin/sh", "-ec"]'),
    ("1", "Dockerfile:17", "STOPSIGNAL", "STOPSIGNAL SIGINT"),
    ("1", "Dockerfile:18", "HEALTHCHECK", "HEALTHCHECK NONE"),
    ("1", "Dockerfile:19", "MAINTAINER", "MAINTAINER me"),
    ("1", "Dockerfile:20", "ONBUILD", "ONBUILD LABEL t=1"),
    ("1", "Dockerfile:21", "ENTRYPOINT", 'ENTRYPOINT ["/e"]'),
    ("1", "Dockerfile:22", "CMD", 'CMD ["x"]'),
    ("1", "Dockerfile:23", "ADD", "ADD ctx.txt /"),
]


@pytest.fixture
def recorded(build):
    return build(ALL_KEYWORDS, {"ctx.txt": "c\n"})


def test_one_record_per_instruction(recorded):
    steps = recorded.record.steps
    assert [(s.stage, s.location, s.keyword) for s in steps] == [e[:3] for e in EXPECTED]
    for s, (_, _, _, text) in zip(steps, EXPECTED):
        if text is not None:
            assert s.text == text


def test_record_times(recorded):
    rec = recorded.record
    steps = rec.steps
    assert rec.started <= steps[0].started
    assert all(s.seconds >= 0 for s in steps)
    assert all(a.started <= b.started for a, b in zip(steps, steps[1:]))  # one chain: in order
    assert steps[-1].started + steps[-1].seconds <= rec.finished + 0.01


def test_no_cache_means_cache_off_and_no_key(recorded):
    assert all(s.cache == CacheUse.OFF and s.key == "" for s in recorded.record.steps)
    assert recorded.record.count(CacheUse.OFF) == len(EXPECTED)


def test_single_stage_label_is_its_index_or_name(build):
    assert {s.stage for s in build("FROM scratch\nENV A=1\n").record.steps} == {"0"}
    assert {s.stage for s in build("FROM scratch AS Named\nENV A=1\n").record.steps} == {"named"}  # stage names are case-insensitive, kept lower-case


def test_onbuild_trigger_is_a_step_of_the_child_stage(build):
    r = build("FROM scratch AS p\nONBUILD LABEL from=trigger\nFROM p\nENV A=1\n")
    steps = [(s.stage, s.keyword) for s in r.record.steps]
    assert steps == [("p", "ONBUILD"), ("1", "LABEL"), ("1", "ENV")]
    trigger = r.record.steps[1]
    assert "ONBUILD" in trigger.location and trigger.text == "LABEL from=trigger"


def test_concurrent_stages_each_record_their_own_steps(root_build):
    r = root_build(BASE + """FROM base AS x
RUN echo x > /x
ENV X=1
FROM base AS y
RUN echo y > /y
FROM scratch
COPY --from=x /x /x
COPY --from=y /y /y
""", jobs=2)
    by_stage: dict[str, list[tuple[str, str]]] = {}
    for s in r.record.steps:
        by_stage.setdefault(s.stage, []).append((s.keyword, s.location))
    assert by_stage == {
        "base": [("COPY", "Dockerfile:2")],
        "x": [("RUN", "Dockerfile:4"), ("ENV", "Dockerfile:5")],
        "y": [("RUN", "Dockerfile:7")],
        "3": [("COPY", "Dockerfile:9"), ("COPY", "Dockerfile:10")],
    }


def test_failed_step_is_recorded(build):
    b = build.start("FROM scratch\nENV A=1\nCOPY missing /\nENV B=2\n")
    with pytest.raises(Exception):
        b.build()
    assert [(s.keyword, s.location) for s in b.services.record.steps] == [("ENV", "Dockerfile:2"),
                                                                           ("COPY", "Dockerfile:3")]


def test_layer_step_records_its_layer_digest(build):
    r = build("FROM scratch\nENV A=1\nCOPY ctx.txt /\nWORKDIR /\nADD ctx.txt /again\n", {"ctx.txt": "c\n"})
    digests = {s.keyword + " " + s.location: s.layer_digest for s in r.record.steps}
    layers = [layer.digest for layer in r.image.layers]
    assert digests == {"ENV Dockerfile:2": None, "COPY Dockerfile:3": layers[0], "WORKDIR Dockerfile:4": None,
                       "ADD Dockerfile:5": layers[1]}
