"""Micro-benchmark: a RUN's change set by the lstat walk of the whole root vs from the overlay
upper directory, on an unpacked base (e.g. a layer-store entry's ``fs`` directory).

Usage (root): python benchmarks/overlay_snapshot.py LOWER_DIR [--runs N]
Each run: mount an overlay of LOWER_DIR, make one small change (a new file, an edited
/etc file), then time (a) FsIndex.scan of the root + diff against the scan before (what the
walk-based RUN does after the command; the "before" index is kept from the previous step) and
(b) upper_changes of the upper directory. Prints min/median/max milliseconds of each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from executor.engine.overlayroot import OverlayRoot
from executor.fs.overlay import OverlayFlavor
from executor.fs.snapshot import FsIndex, diff

EXCLUDE = ["proc", "sys", "dev"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("lower", type=Path)
    ap.add_argument("--runs", type=int, default=7)
    a = ap.parse_args()
    walk, upper = [], []
    for i in range(a.runs):
        with tempfile.TemporaryDirectory() as t:
            ov = OverlayRoot(root=Path(t) / "root", base=Path(t) / "ov", lowers=[a.lower], flavor=OverlayFlavor())
            ov.mount()
            try:
                before = FsIndex.scan(ov.root, exclude=EXCLUDE)
                (ov.root / "usr" / "local" / "bin" / f"tool{i}").write_text("x")
                with open(ov.root / "etc" / "hostname", "a") as f:
                    f.write("x\n")
                t0 = time.perf_counter()
                w = diff(before, FsIndex.scan(ov.root, exclude=EXCLUDE))
                t1 = time.perf_counter()
                u = ov.changes(EXCLUDE)
                t2 = time.perf_counter()
                assert w == u, (w, u)
                walk.append((t1 - t0) * 1000)
                upper.append((t2 - t1) * 1000)
            finally:
                ov.close()
    for name, xs in (("walk + diff", walk), ("upper dir", upper)):
        print(f"{name}: min {min(xs):.1f} ms, median {statistics.median(xs):.1f} ms, max {max(xs):.1f} ms "
              f"({len(before)} paths in the root)")


if __name__ == "__main__":
    main()
