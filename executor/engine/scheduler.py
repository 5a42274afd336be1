"""Run the stages of a plan concurrently, each as soon as the stages it reads are built.

A stage is submitted to a pool of ``jobs`` threads when all its dependencies have finished,
so a worker never waits on another (no deadlock whatever ``jobs`` is). The first failure
stops new submissions; stages already running finish, then the failure is raised.
``--jobs`` defaults to twice the CPUs this process may use (affinity and a cgroup v2/v1 CPU
quota): a stage spends most of its time waiting (on its RUN commands' processes, pulls,
sleeps, network), so one stage per CPU would leave CPUs idle while another stage waits.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path

log = logging.getLogger("executor.engine")


def available_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """CPUs this process may use: the affinity mask, lowered by a cgroup CPU quota (v2
    ``cpu.max``, v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us``), rounded up; at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota(cgroup_root)
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _cgroup_quota(root: Path) -> float | None:
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
        return None
    except (OSError, ValueError, IndexError):
        pass
    try:
        q = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        p = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return q / p if q > 0 and p > 0 else None
    except (OSError, ValueError):
        return None


def default_jobs(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Stages built at once when ``--jobs`` is not given: 2 x :func:`available_cpus`."""
    return 2 * available_cpus(cgroup_root)


def run_graph(order: Sequence[Hashable], deps: Mapping, work: Callable[[Hashable], None],
              jobs: int, on_abort: Callable[[], None] | None = None) -> None:
    """Call ``work(i)`` for every ``i`` in ``order`` after ``work(d)`` returned for all ``d`` in
    ``deps[i]``; at most ``jobs`` at a time. Re-raises the first exception (by completion).
    ``on_abort`` runs when the waiting thread is interrupted (signal) or a stage fails while
    others still run, to make running work stop (e.g. kill RUN processes)."""
    pending = {i: set(deps[i]) & set(order) for i in order}
    done: set[int] = set()
    running: dict[Future, int] = {}
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="stage") as pool:
        try:
            while pending or running:
                if error is None:  # never queue more than the pool runs: a failure then starts nothing new
                    for i in [i for i, d in pending.items() if d <= done][:max(1, jobs) - len(running)]:
                        del pending[i]
                        running[pool.submit(work, i)] = i
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = running.pop(fut)
                    exc = fut.exception()
                    if exc is not None:
                        if error is None:
                            error = exc
                            if running and on_abort is not None:
                                on_abort()
                    else:
                        done.add(i)
                if error is not None and not running:
                    break
        except BaseException:
            for fut in running:
                fut.cancel()
            if on_abort is not None:
                on_abort()
            raise
    if error is not None:
        raise error
    if pending:
        raise RuntimeError(f"stages {sorted(pending)} never became ready (dependency cycle)")
