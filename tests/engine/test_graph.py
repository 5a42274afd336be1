"""The stage graph: concurrent scheduling, stage selection, failure, and which layers are written.

Three independent stages (``a``, ``b``, ``c``, each a RUN that sleeps) feed a final stage
through ``COPY --from``. With ``jobs=N`` at most N of their RUN intervals overlap, and with
``jobs >= 3`` all three do (asserted from the build record's ``started``/``seconds``, not from
wall-time budgets). Stages the target does not need are not built; ``--target`` picks a stage.
A failing stage stops the build with its own error while the others are killed (no hang) and
nothing new starts. Layers of stages nothing exports are never written: the blob store holds
exactly the final image's layers, which are the layers of the final stage's FROM chain.
"""

from __future__ import annotations

import os
import time

import pytest

from executor.errors import RunFailed

from .conftest import BASE, read_layer

SLEEP = 0.5

GRAPH = BASE + f"""
FROM base AS a
RUN sleep {SLEEP}; echo a > /a
FROM base AS b
RUN sleep {SLEEP}; echo b > /b
FROM base AS c
RUN sleep {SLEEP}; echo c > /c
FROM base AS unused
RUN echo never > /never; exit 1
FROM {{final_base}}
COPY --from=a /a /from-a
COPY --from=b /b /from-b
COPY --from=c /c /from-c
"""



@pytest.fixture(scope="module")
def graph(tmp_path_factory, rootfs_template, client):
    """``graph(final_base, jobs=3, target=None) -> Built`` of GRAPH, built once per argument set
    in this module (the tests only read the results)."""
    from .conftest import Builder, needs_root
    needs_root()
    builder = Builder(tmp=tmp_path_factory.mktemp("graph"), template=rootfs_template, client=client)
    done: dict = {}

    def get(final_base: str, jobs: int = 3, target: str | None = None):
        key = (final_base, jobs, target)
        if key not in done:
            done[key] = builder(GRAPH.format(final_base=final_base), jobs=jobs, target=target)
        return done[key]

    yield get
    builder.close()


def run_intervals(record) -> dict[str, tuple[float, float]]:
    """stage label -> (start, end) of its RUN step."""
    return {s.stage: (s.started, s.started + s.seconds) for s in record.steps if s.keyword == "RUN"}


def max_overlap(intervals) -> int:
    """The largest number of intervals open at one instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    cur = best = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


@pytest.mark.parametrize("jobs", [1, 2, 3])
def test_jobs_bounds_how_many_stages_run_at_once(graph, jobs):
    r = graph("scratch", jobs=jobs)
    iv = run_intervals(r.record)
    assert set(iv) == {"a", "b", "c"}
    assert max_overlap(iv.values()) == jobs, iv
    if jobs == 1:  # one after the other, in file order
        ends = [iv[s][1] for s in "abc"]
        starts = [iv[s][0] for s in "abc"]
        assert starts[1] >= ends[0] and starts[2] >= ends[1]
    if jobs == 3:  # all three RUNs were running at the same instant
        assert max(s for s, _ in iv.values()) < min(e for _, e in iv.values())
    assert {k: v[1] for k, v in r.files().items()} == {"from-a": b"a\n", "from-b": b"b\n", "from-c": b"c\n"}


def test_unneeded_stages_are_not_built(graph):
    r = graph("scratch")
    assert r.result.stages_built == [0, 1, 2, 3, 5]
    assert "unused" not in {s.stage for s in r.record.steps}
    # (the work directory cannot show it: every stage root is removed once the build ends)


@pytest.mark.parametrize("target, built, files", [
    ("a", [0, 1], {"a"}),
    ("base", [0], set()),
    ("unused", None, None),
])
def test_target_selects_a_stage_and_its_dependencies(graph, target, built, files):
    if built is None:
        with pytest.raises(RunFailed) as e:
            graph("scratch", target=target)
        assert str(e.value).startswith("Dockerfile:11:")
        return
    r = graph("scratch", target=target)
    assert r.result.stages_built == built
    assert set(r.files()) == files


def test_unknown_target_is_a_user_error(build):
    from executor.errors import UserError
    with pytest.raises(UserError) as e:
        build("FROM scratch AS one\nFROM scratch AS two\n", target="three")
    assert "three" in str(e.value) and "one, two" in str(e.value)


def _children() -> list[int]:
    me = str(os.getpid())
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if f.read().rsplit(")", 1)[1].split()[1] == me:
                        out.append(int(entry))
            except (OSError, IndexError):
                pass
    return out


@pytest.mark.timeout(90)
def test_failing_stage_stops_the_build_and_kills_the_others(root_build):
    b = root_build.start(BASE + """
FROM base AS slow
RUN sleep 60; echo done > /slow
FROM base AS bad
RUN sleep 0.3; exit 3
FROM scratch
COPY --from=slow /slow /slow
COPY --from=bad /bad /bad
""", jobs=3)
    t0 = time.monotonic()
    with pytest.raises(RunFailed) as e:
        b.build()
    elapsed = time.monotonic() - t0
    assert str(e.value).startswith("Dockerfile:7:") and e.value.exit_code == 3
    assert elapsed < 30, f"the build waited {elapsed:.1f}s for the slow stage instead of stopping it"
    runs = {s.stage: s for s in b.services.record.steps if s.keyword == "RUN"}
    assert set(runs) == {"slow", "bad"}
    assert runs["slow"].seconds < 30  # killed, not finished
    assert "2" not in {s.stage for s in b.services.record.steps}  # the final stage never started
    assert _children() == []


@pytest.mark.timeout(90)
def test_failure_with_one_job_starts_nothing_after_it(root_build):
    b = root_build.start(BASE + """
FROM base AS bad
RUN exit 4
FROM base AS later
RUN touch /later
FROM scratch
COPY --from=bad /x /x
COPY --from=later /later /later
""", jobs=1)
    with pytest.raises(RunFailed) as e:
        b.build()
    assert e.value.exit_code == 4 and str(e.value).startswith("Dockerfile:5:")
    assert {s.stage for s in b.services.record.steps} == {"base", "bad"}


def test_stage_reads_the_finished_state_of_a_stage_used_twice(root_build):
    """A stage read by two others (FROM and COPY --from) is built once and both see its files."""
    r = root_build(BASE + """
FROM base AS shared
RUN echo shared > /shared
FROM shared AS child
RUN cat /shared > /child
FROM base
COPY --from=shared /shared /s
COPY --from=child /child /c
""", jobs=3)
    assert [s.stage for s in r.record.steps if s.keyword == "RUN"].count("shared") == 1
    assert {k: v[1] for k, v in r.files().items()} == {"s": b"shared\n", "c": b"shared\n"}


# ---------------------------------------------------------------- layers of unexported stages

def blob_digests(built) -> set[str]:
    d = built.build.work / "blobs" / "sha256"
    return {"sha256:" + p.name for p in d.iterdir()} if d.exists() else set()


def layered_history(built) -> list[str]:
    return [h["created_by"] for h in built.image.config["history"] if not h.get("empty_layer")]


def test_final_image_has_exactly_the_layers_of_its_from_chain(graph):
    r = graph("base")
    assert layered_history(r) == ["COPY rootfs/ /", "COPY --from=a /a /from-a", "COPY --from=b /b /from-b",
                                  "COPY --from=c /c /from-c"]
    assert len(r.image.layers) == 4 == len(r.image.config["rootfs"]["diff_ids"])
    assert [layer.diff_id for layer in r.image.layers] == r.image.config["rootfs"]["diff_ids"]
    # the intermediate stages' RUN layers were never written
    assert blob_digests(r) == {layer.digest for layer in r.image.layers}
    for layer in r.image.layers[1:]:
        assert len(read_layer(layer)) == 1


def test_from_scratch_final_stage_writes_only_its_own_layers(graph):
    r = graph("scratch")
    assert layered_history(r) == ["COPY --from=a /a /from-a", "COPY --from=b /b /from-b", "COPY --from=c /c /from-c"]
    assert blob_digests(r) == {layer.digest for layer in r.image.layers}
    assert len(blob_digests(r)) == 3  # not even the base stage's busybox layer


def test_target_stage_and_its_ancestors_are_exported(graph):
    r = graph("scratch", target="b")
    assert layered_history(r) == ["COPY rootfs/ /", f"RUN /bin/sh -c sleep {SLEEP}; echo b > /b"]
    assert blob_digests(r) == {layer.digest for layer in r.image.layers}
    assert read_layer(r.image.layers[1])["b"][1] == b"b\n"
