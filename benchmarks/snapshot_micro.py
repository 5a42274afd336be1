#!/usr/bin/env python3
"""Snapshot micro-benchmark: a 30 000-file / 1 GB root, a RUN that changes one file, and the
time from the end of the RUN to the layer blob on disk, measured the way the executor's RUN
step does it (executor.engine.builder.Builder.do_run + commit_layer):

    after = FsIndex.scan(root)            # lstat walk of the whole root
    changes = diff(before, after)         # the change set
    write_layer(root, changes, ...)       # tar + compress + digest, one pass, to disk

``before`` is the index the previous step left behind (not timed, as in a build). Reports the
median of ``--reps`` repetitions and the split between walk, diff and layer write.

Usage: snapshot_micro.py [--files 30000] [--total-mb 1024] [--reps 7] [--dir TMPPARENT] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from executor.fs.snapshot import FsIndex, diff  # noqa: E402
from executor.layers.writer import layer_threads, write_layer  # noqa: E402

EXCLUDE = ("proc", "sys", "dev")


def make_root(root: Path, files: int, total: int) -> None:
    per_dir = 100
    size = total // files
    block = os.urandom(size)
    for i in range(files):
        d = root / "usr" / "share" / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True)
        with open(d / f"f{i % per_dir:03d}", "wb") as f:
            f.write(block)
    for m in EXCLUDE:
        (root / m).mkdir()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=30000)
    ap.add_argument("--total-mb", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="snapmicro-", dir=a.dir))
    try:
        root = tmp / "rootfs"
        root.mkdir()
        t0 = time.monotonic()
        make_root(root, a.files, a.total_mb * 1024 * 1024)
        setup_s = time.monotonic() - t0
        before = FsIndex.scan(root, exclude=EXCLUDE)
        target = root / "usr" / "share" / "d000" / "f000"
        walks, diffs, writes, totals = [], [], [], []
        for rep in range(a.reps):
            # the "RUN": change one file (content and size)
            with open(target, "ab") as f:
                f.write(b"changed %d\n" % rep)
            t0 = time.monotonic()
            after = FsIndex.scan(root, exclude=EXCLUDE)
            t1 = time.monotonic()
            changes = diff(before, after)
            t2 = time.monotonic()
            res = write_layer(root, changes, tmp / f"layer-{rep}", threads=layer_threads())
            t3 = time.monotonic()
            assert changes.changed[-1] == "usr/share/d000/f000", changes
            walks.append(t1 - t0)
            diffs.append(t2 - t1)
            writes.append(t3 - t2)
            totals.append(t3 - t0)
            before = after
            os.unlink(res.path)
        out = {"files": len(before), "root_bytes": a.total_mb * 1024 * 1024, "setup_s": round(setup_s, 2),
               "reps": a.reps, "median_ms": round(statistics.median(totals) * 1000, 1),
               "walk_ms": round(statistics.median(walks) * 1000, 1),
               "diff_ms": round(statistics.median(diffs) * 1000, 1),
               "write_layer_ms": round(statistics.median(writes) * 1000, 1),
               "changed_paths": len(changes.changed), "target_ms": 150}
        if a.json:
            print(json.dumps(out))
        else:
            for k, v in out.items():
                print(f"{k}: {v}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
