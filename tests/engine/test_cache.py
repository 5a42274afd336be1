"""The layer cache around steps, in-process with the OCI-layout store (``--cache-repo oci:DIR``):
hits on a rebuild, a miss exactly where an input changed (with the key components recorded),
and a corrupt or missing cached blob counted as a miss (the step runs, the image is right)."""

from __future__ import annotations

import json

from executor.engine.step import CacheUse

DOCKERFILE = """\
    FROM scratch AS base
    COPY rootfs/ /
    FROM base
    RUN echo built > /built
    COPY app.txt /app.txt
    RUN cat /app.txt /built > /both
    """


def _uses(built) -> list[tuple[str, CacheUse]]:
    return [(s.keyword, s.cache) for s in built.record.steps if s.keyword in ("RUN", "COPY")]


def _build(root_build, tmp_path, ctx, **kw):
    """One cached build; ``finish(built)`` (waits for the background cache writes and removes the
    work dir) must run before the next build, after the layers were read."""
    return root_build(DOCKERFILE, context=ctx, cache=True, cache_repo=f"oci:{tmp_path / 'cache'}", **kw)


def finish(built):
    built.build.cleanup()
    return built


def test_rebuild_hits_then_a_changed_file_misses_from_its_copy_on(root_build, tmp_path):
    ctx = root_build.context({"app.txt": "one\n"})
    first = finish(_build(root_build, tmp_path, ctx))
    assert {u for _, u in _uses(first)} == {CacheUse.MISS}
    second = finish(_build(root_build, tmp_path, ctx))
    assert {u for _, u in _uses(second)} == {CacheUse.HIT}
    assert [layer.digest for layer in second.image.layers] == [layer.digest for layer in first.image.layers]
    (ctx / "app.txt").write_text("two\n")
    third = finish(_build(root_build, tmp_path, ctx))
    assert _uses(third) == [("COPY", CacheUse.HIT), ("RUN", CacheUse.HIT), ("COPY", CacheUse.MISS),
                            ("RUN", CacheUse.MISS)]
    copy2, copy3 = [[s for s in b.record.steps if s.text == "COPY app.txt /app.txt"][0] for b in (second, third)]
    changed = {k for k in copy2.components if copy2.components[k] != copy3.components.get(k)}
    assert changed == {"source 0 app.txt"}, changed  # the named component that explains the miss


def test_a_corrupt_cached_layer_is_a_miss_and_the_step_runs(root_build, tmp_path, caplog):
    ctx = root_build.context({"app.txt": "one\n"})
    first = finish(_build(root_build, tmp_path, ctx))
    run = [s for s in first.record.steps if s.text == "RUN echo built > /built"][0]
    blob = tmp_path / "cache" / "blobs" / "sha256" / run.layer_digest.split(":")[1]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, wrong bytes
    blob.write_bytes(bytes(data))
    caplog.set_level("WARNING", logger="executor.cache")
    second = _build(root_build, tmp_path, ctx)
    assert _uses(second)[1] == ("RUN", CacheUse.MISS), _uses(second)
    assert "is corrupt" in caplog.text
    # the rebuilt layer is right, and the step after it still sees /built
    assert second.read("built") == b"built\n" and second.read("both") == b"one\nbuilt\n"
    finish(second)
    rerun = [s for s in second.record.steps if s.text == "RUN echo built > /built"][0]
    (blob.parent / rerun.layer_digest.split(":")[1]).unlink()  # the new entry's blob, now missing: a miss again
    third = _build(root_build, tmp_path, ctx)
    assert _uses(third)[1] == ("RUN", CacheUse.MISS), _uses(third)
    assert third.read("both") == b"one\nbuilt\n"
    finish(third)
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index["manifests"], "entries were written"


def test_cache_from_hits_are_recorded_with_their_source(root_build, tmp_path):
    """``--cache-from``: a hit from a read-only source carries the source's name in the step
    record (``StepRecord.cache_source``); hits from ``--cache-repo`` carry ''."""
    ctx = root_build.context({"app.txt": "one\n"})
    finish(_build(root_build, tmp_path, ctx))
    main = f"oci:{tmp_path / 'cache'}"
    (ctx / "app.txt").write_text("two\n")
    pr = finish(root_build(DOCKERFILE, context=ctx, cache=True, cache_repo=f"oci:{tmp_path / 'pr'}",
                           cache_from=[main]))
    steps = [s for s in pr.record.steps if s.keyword in ("RUN", "COPY")]
    assert [(s.cache, s.cache_source) for s in steps] == [(CacheUse.HIT, main), (CacheUse.HIT, main),
                                                           (CacheUse.MISS, ""), (CacheUse.MISS, "")]
    again = finish(root_build(DOCKERFILE, context=ctx, cache=True, cache_repo=f"oci:{tmp_path / 'pr'}",
                              cache_from=[main]))
    assert [(s.cache, s.cache_source) for s in again.record.steps if s.keyword in ("RUN", "COPY")] == \
        [(CacheUse.HIT, main)] * 2 + [(CacheUse.HIT, "")] * 2
