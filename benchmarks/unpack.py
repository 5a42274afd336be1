#!/usr/bin/env python3
"""Unpack benchmark: the executor's base-layer extraction against GNU tar on the same blob.

The blob is the Debian bookworm minbase test base (scripts/lib/debian-base.sh: debootstrap,
cached) as one gzip layer (``gzip -6``, as umoci and most registries' images are compressed;
cached next to the rootfs tar). Each run, alternating (executor first on even runs, tar first
on odd ones), extracts it into a fresh directory on the same filesystem:

* executor: ``executor.engine.images.apply_verified_layer`` in this process -- what a build
  does for a base layer (decompress, diff_id check, owners, modes, mtimes, xattrs, whiteouts),
  timed from opening the blob to the verified result;
* tar: ``tar -C DIR --numeric-owner -xzf BLOB`` (GNU tar + gzip, C), wall time of the process.

Before each run the page cache is flushed to disk (``sync``, not timed) and the previous trees
are removed, so one run's writeback does not land in the next. Reports the median of each and
the median of the per-pair ratios executor/tar (the issue's target: at most 1.2x).

Usage: unpack.py [--runs 7] [--blob PATH.tar.gz] [--dir TMPPARENT] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from executor.engine.images import apply_verified_layer  # noqa: E402
from executor.oci.image import Layer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def debian_blob() -> Path:
    """The Debian minbase rootfs as a gzip blob (made once, cached beside the rootfs tar)."""
    tar = subprocess.run(["bash", "-c", f'. "{REPO}/scripts/lib/debian-base.sh" && '
                          'cached_rootfs debian-bookworm-minbase ""'],
                         check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
    blob = Path(tar + ".gz")
    if not blob.exists():
        part = blob.with_suffix(".gz.partial")
        with open(part, "wb") as out:
            subprocess.run(["gzip", "-6", "-n", "-c", tar], check=True, stdout=out)
        os.replace(part, blob)
    return blob


def diff_id(blob: Path) -> str:
    h = hashlib.sha256()
    p = subprocess.Popen(["gzip", "-dc", str(blob)], stdout=subprocess.PIPE)
    for chunk in iter(lambda: p.stdout.read(1 << 20), b""):
        h.update(chunk)
    if p.wait() != 0:
        raise RuntimeError(f"gzip -dc {blob} failed")
    return "sha256:" + h.hexdigest()


def run_executor(blob: Path, dest: Path, layer: Layer) -> float:
    dest.mkdir()
    t0 = time.monotonic()
    with open(blob, "rb") as f:
        apply_verified_layer(f, dest, layer)
    return time.monotonic() - t0


def run_tar(blob: Path, dest: Path) -> float:
    dest.mkdir()
    t0 = time.monotonic()
    subprocess.run(["tar", "-C", str(dest), "--numeric-owner", "-xzf", str(blob)], check=True)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--blob", type=Path, help="a gzip layer blob (default: the Debian minbase test base)")
    ap.add_argument("--dir", type=Path, help="parent of the temporary extraction directories")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    a = ap.parse_args()
    blob = a.blob or debian_blob()
    layer = Layer(descriptor={"digest": "sha256:" + "0" * 64, "size": blob.stat().st_size,
                              "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"},
                  diff_id=diff_id(blob), path=None, source=None)
    work = Path(tempfile.mkdtemp(prefix="unpack-bench-", dir=a.dir))
    ex: list[float] = []
    tar: list[float] = []
    try:
        for i in range(a.runs + 1):  # run 0 is a warm-up (page cache of the blob), not counted
            order = ("executor", "tar") if i % 2 == 0 else ("tar", "executor")
            for who in order:
                dest = work / f"{who}-{i}"
                subprocess.run(["sync"], check=True)
                t = run_executor(blob, dest, layer) if who == "executor" else run_tar(blob, dest)
                if i:
                    (ex if who == "executor" else tar).append(t)
                shutil.rmtree(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = [e / t for e, t in zip(ex, tar)]
    out = {"blob": str(blob), "blob_bytes": blob.stat().st_size, "runs": a.runs,
           "executor_s": statistics.median(ex), "tar_s": statistics.median(tar),
           "ratio": statistics.median(ratios), "executor_walls_s": [round(x, 3) for x in ex],
           "tar_walls_s": [round(x, 3) for x in tar]}
    if a.json:
        print(json.dumps(out))
    else:
        print(f"unpack of {blob.name} ({out['blob_bytes'] / 1e6:.0f} MB): executor {out['executor_s']:.2f}s, "
              f"tar -xzf {out['tar_s']:.2f}s, executor/tar {out['ratio']:.2f}x (median of {a.runs} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
