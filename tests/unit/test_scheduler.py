"""The stage scheduler (executor.engine.scheduler): dependency order, concurrency bound,
failure propagation, and the CPU count it defaults to (affinity and cgroup quotas)."""

from __future__ import annotations

import threading
import time

import pytest

from executor.engine.scheduler import available_cpus, default_jobs, run_graph


def _graph_run(order, deps, jobs, fail=None, hold=0.05):
    started, finished, lock = {}, {}, threading.Lock()
    active, peak = [0], [0]

    def work(i):
        with lock:
            started[i] = time.monotonic()
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(hold)
        with lock:
            active[0] -= 1
            finished[i] = time.monotonic()
        if i == fail:
            raise ValueError(f"stage {i} failed")

    run_graph(order, {i: frozenset(deps.get(i, ())) for i in order}, work, jobs)
    return started, finished, peak[0]


def test_each_stage_starts_after_its_dependencies_finish():
    deps = {1: {0}, 2: {0}, 3: {1, 2}}
    started, finished, _ = _graph_run([0, 1, 2, 3], deps, jobs=4)
    for i, ds in deps.items():
        assert all(started[i] >= finished[d] for d in ds), (i, started, finished)


def test_independent_stages_run_together_up_to_jobs():
    _, _, peak = _graph_run([0, 1, 2, 3], {}, jobs=3, hold=0.2)
    assert peak == 3
    _, _, peak = _graph_run([0, 1, 2], {}, jobs=1)
    assert peak == 1  # never more than --jobs, and jobs=1 does not deadlock


def test_a_failure_is_raised_and_dependants_never_start():
    with pytest.raises(ValueError, match="stage 0 failed"):
        _graph_run([0, 1, 2], {1: {0}, 2: {1}}, jobs=2, fail=0)


def test_dependencies_outside_the_order_are_ignored():
    started, _, _ = _graph_run([1, 2], {2: {0, 1}}, jobs=2)
    assert set(started) == {1, 2}


def test_on_abort_runs_when_a_stage_fails_while_others_run():
    aborted = threading.Event()

    def work(i):
        if i == 0:
            raise RuntimeError("boom")
        aborted.wait(5)  # a long stage that only ends when aborted

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="boom"):
        run_graph([0, 1], {0: frozenset(), 1: frozenset()}, work, 2, on_abort=aborted.set)
    assert aborted.is_set() and time.monotonic() - t0 < 4


def test_cpus_follow_the_cgroup_v2_quota(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert available_cpus(tmp_path) == min(2, available_cpus(tmp_path / "none"))
    assert default_jobs(tmp_path) == 2 * available_cpus(tmp_path)
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(tmp_path) == available_cpus(tmp_path / "none")


def test_cpus_follow_the_cgroup_v1_quota(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert available_cpus(tmp_path) == 1
