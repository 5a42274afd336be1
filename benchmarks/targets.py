"""Issue 12's rows in the benchmark: the physical floor of a case and the BuildKit figures.

* **Physical floor** of a case: the time its RUN commands take on this machine (run directly,
  no builder), plus compressing the bytes they (or the changed COPY source) write with
  ``gzip -1`` (or, for incompressible bytes, which any builder stores, one copy of them), plus
  uploading that blob to the loopback registry (one monolithic
  ``POST``/``PUT``). A builder cannot do less work than that; ``executor/floor`` says how far it
  is from it. Measured once per case (median of three), in the benchmark's work directory.
* **BuildKit**: it cannot run on this machine (no Docker daemon with BuildKit, no buildkitd).
  The figures of issue 12 -- measured elsewhere on the same kind of machine (2 cores, loopback
  registry, median of 3, build + push) -- are reported beside the executor's as fixed
  reference numbers, with the issue's targets.
"""

from __future__ import annotations

import hashlib
import http.client
import shutil
import statistics
import subprocess
import time
import urllib.parse
from pathlib import Path

#: case/mode -> (BuildKit seconds from issue 12, the issue's target for the executor in seconds,
#: the issue's row). "Measured elsewhere on the same kind of machine"; not measured here.
BUILDKIT_REF = {
    "debian100/cold": (3.3, 3.3, "Debian minbase + RUN writing 100 MB + RUN touch"),
    "apt/cold": (7.9, 7.9, "Debian + apt-get install of 3 small packages"),
    "stages3/cold": (3.5, 3.5, "three independent stages + COPY --from each"),
    "debian100/warm": (0.21, 0.25, "nothing changed, cache on (registry cache for BuildKit)"),
    "copychange/change": (4.3, 1.5, "one copied file changed after an expensive RUN, cache on"),
}

#: case/mode -> (RUN commands as run on the host, {dir} = a scratch directory; files whose bytes
#: are new). copychange/change: the RUN is a cache hit; only the changed COPY source is new.
FLOOR_CASES = {
    "debian100/cold": (["head -c 100000000 /dev/urandom > {dir}/data.bin", "touch {dir}/touched"], ["data.bin"]),
    "copychange/change": ([], ["app.txt"]),
    # the three stages' RUNs at the same time (the build graph runs them concurrently)
    "stages3/cold": (["for i in 1 2 3; do (sleep 2 && head -c 20000000 /dev/urandom > {dir}/blob$i) & done; wait"],
                     ["blob1", "blob2", "blob3"]),
    "stages1/cold": (["sleep 2 && head -c 20000000 /dev/urandom > {dir}/blob1"], ["blob1"]),
}


def _upload(registry: str, repo: str, blob: Path) -> None:
    """Monolithic blob upload (distribution-spec: POST then PUT ?digest=) over plain HTTP."""
    digest = "sha256:" + hashlib.sha256(blob.read_bytes()).hexdigest()
    conn = http.client.HTTPConnection(registry, timeout=120)
    try:
        conn.request("POST", f"/v2/{repo}/blobs/uploads/")
        r = conn.getresponse()
        r.read()
        loc = urllib.parse.urlsplit(r.headers["Location"])
        sep = "&" if loc.query else "?"
        with open(blob, "rb") as f:
            conn.request("PUT", f"{loc.path}?{loc.query}{sep}digest={digest}", body=f,
                         headers={"Content-Type": "application/octet-stream",
                                  "Content-Length": str(blob.stat().st_size)})
            r = conn.getresponse()
            r.read()
        if r.status != 201:
            raise RuntimeError(f"blob upload answered {r.status}")
    finally:
        conn.close()


def physical_floor(key: str, context: Path, work: Path, registry: str, reps: int = 3) -> dict | None:
    """Median over ``reps`` of (RUN time, gzip -1 time, upload time) for ``key`` (case/mode);
    None when no floor is defined for it (FLOOR_CASES)."""
    if key not in FLOOR_CASES:
        return None
    runs, new_files = FLOOR_CASES[key]
    case = key.split("/")[0]
    samples = []
    for i in range(reps):
        d = work / f"floor-{case}-{i}"
        d.mkdir(parents=True)
        try:
            t0 = time.monotonic()
            for cmd in runs:
                subprocess.run(["sh", "-c", cmd.format(dir=d)], check=True)
            t_run = time.monotonic() - t0
            for name in new_files:
                if not (d / name).exists():
                    shutil.copy(context / name, d / name)
            blob = d / "layer.gz"
            t0 = time.monotonic()
            with open(blob, "wb") as out:
                subprocess.run(["sh", "-c", "cat \"$@\" | gzip -1 -n", "-"] + [str(d / n) for n in new_files],
                               check=True, stdout=out)
            t_gzip = time.monotonic() - t0
            raw = sum((d / n).stat().st_size for n in new_files)
            if raw and blob.stat().st_size >= 0.98 * raw:
                # incompressible (random) bytes: a builder stores them (deflate's stored blocks, as
                # the executor's writer does); the floor's "compress" is then one copy of them
                t0 = time.monotonic()
                with open(blob, "wb") as out:
                    subprocess.run(["cat"] + [str(d / n) for n in new_files], check=True, stdout=out)
                t_gzip = time.monotonic() - t0
            t0 = time.monotonic()
            _upload(registry, f"bench/floor-{case}-{i}", blob)
            t_up = time.monotonic() - t0
            samples.append((t_run, t_gzip, t_up))
        finally:
            shutil.rmtree(d, ignore_errors=True)
    run_s, gzip_s, up_s = (statistics.median(s[k] for s in samples) for k in range(3))
    return {"run_s": run_s, "gzip_s": gzip_s, "upload_s": up_s, "floor_s": run_s + gzip_s + up_s}


def target_lines(results: dict, floors: dict) -> list[str]:
    """Markdown lines: per issue-12 row, the executor's median, BuildKit's reference figure, the
    ratio to it and to the target, and the ratio to the physical floor where one is defined."""
    out = ["", "### Issue 12 rows: executor vs BuildKit (reference) and the physical floor", "",
           "BuildKit figures: measured elsewhere on the same kind of machine (issue 12); BuildKit cannot "
           "run here, and were measured on a quieter machine: on a busy one read the executor/floor ratio. "
           "Floor: RUN time + gzip -1 of the new bytes (a copy when they are incompressible) + upload, "
           "measured here.", "",
           "| row | case/mode | executor | BuildKit (ref) | executor/BuildKit | target | met | floor | executor/floor |",
           "|---|---|---|---|---|---|---|---|---|"]
    for key, (bk, target, row) in BUILDKIT_REF.items():
        r = results.get(key, {}).get("executor")
        if not r:
            continue
        ex = r.get("median_s")
        fl = floors.get(key)
        cells = [row, key, f"{ex:.2f}s" if ex else "failed", f"{bk:.2f}s", f"{ex / bk:.2f}x" if ex else "-",
                 f"<= {target:.2f}s", ("yes" if ex <= target else f"no (+{ex - target:.2f}s)") if ex else "-",
                 f"{fl['floor_s']:.2f}s" if fl else "-", f"{ex / fl['floor_s']:.1f}x" if fl and ex else "-"]
        out.append("| " + " | ".join(cells) + " |")
    return out
