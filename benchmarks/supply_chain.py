#!/usr/bin/env python3
"""What ``--sbom --provenance`` add to a build: package counts and extra wall time.

Usage (from the repository, with the venv's interpreter):

    .venv/bin/python benchmarks/supply_chain.py [--cases debian,python] [--modes warm,change,cold]
                                                [--runs 5] [--cold-runs 1]

Cases: ``debian`` is the Debian example (examples/debian-python: apt-get install python3 jq,
a venv, pip install six), ``python`` the Python benchmark case (benchmarks/cases/python:
python3-pip from apt, pip install requests, attrs, six). Both start from the Debian minbase made
by scripts/make-debian-image.sh ``--with-host-ca`` (TEST ONLY: this machine's proxy CA, so pip
reaches PyPI through it), pushed to a private loopback docker-registry.

Per case and mode, pairs of builds: the same build without and with ``--sbom --provenance``, in
alternating order (plain first, then documents first, ...), each pushed to a fresh tag.

* warm: every step a cache hit (``--cache --cache-repo oci:DIR``, primed by one untimed build).
* change: app.py rewritten before every build (the last COPY and what follows are misses, the
  apt-get and pip steps hits), cache as in warm: the usual CI rebuild.
* cold: no cache (every RUN runs: apt-get and pip over the network).

Reported: the median wall time of each variant, the median of the per-pair differences, and the
executor's own timings of the added work from its log (SBOM scan, provenance, attaching).
Results also go to benchmarks/results/supply-chain-<UTC time>.json. Nothing asserts a time: the
machine is shared, read the medians.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPTS = REPO / "scripts"
BASE = "bench/debian-ca:bookworm"
CASES = {"debian": REPO / "examples" / "debian-python", "python": HERE / "cases" / "python"}
TIMINGS = {"sbom": re.compile(r"sbom \(\w+\): (\d+) packages \(([^)]*)\).*, ([\d.]+)s$"),
           "provenance": re.compile(r"provenance: .*, ([\d.]+)s$"),
           "attach": re.compile(r"attached \d+ documents? to .* in ([\d.]+)s$")}


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def build(case: str, ctx: Path, host: str, docs: bool, cache: Path | None, logdir: Path) -> dict:
    tag = uuid.uuid4().hex[:8]
    args = [sys.executable, "-m", "executor", "--context", str(ctx), "--destination", f"{host}/sc/{case}:{tag}",
            "--insecure-registry", host, "--log-format", "text",
            "--build-arg", f"BASE={host}/{BASE}", "--build-arg", f"REGISTRY={host}"]
    if cache is not None:
        args += ["--cache", "--cache-repo", f"oci:{cache}"]
    if docs:
        args += ["--sbom", "--provenance"]
    t0 = time.monotonic()
    p = subprocess.run(args, capture_output=True, text=True, cwd=REPO)
    wall = time.monotonic() - t0
    (logdir / f"{case}-{tag}-{'docs' if docs else 'plain'}.log").write_text(p.stderr)
    if p.returncode != 0:
        raise SystemExit(f"build failed ({case}, docs={docs}):\n" + "\n".join(p.stderr.splitlines()[-20:]))
    out = {"wall": wall}
    for line in p.stderr.splitlines():
        for key, rx in TIMINGS.items():
            m = rx.search(line)
            if m:
                out[key] = float(m.groups()[-1])
                if key == "sbom":
                    out["packages"], out["by_type"] = int(m.group(1)), m.group(2)
    return out


def touch_app(ctx: Path) -> None:
    app = ctx / "app.py"
    text = "\n".join(ln for ln in app.read_text().splitlines() if not ln.startswith("# run ")) + "\n"
    app.write_text(text + f"# run {uuid.uuid4().hex}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="debian,python")
    ap.add_argument("--modes", default="warm,change,cold")
    ap.add_argument("--runs", type=int, default=5, help="pairs per case in the warm and change modes")
    ap.add_argument("--cold-runs", type=int, default=1, help="pairs per case in the cold mode")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="sc-bench-"))
    logdir = work / "logs"
    logdir.mkdir()
    state = work / "registry"
    host = sh([str(SCRIPTS / "start-registry.sh"), str(state)]).stdout.strip()
    pid = int((state / "registry.pid").read_text())
    rows = []
    try:
        sh([str(SCRIPTS / "make-debian-image.sh"), host, BASE, "--with-host-ca"])
        for case in a.cases.split(","):
            ctx = work / f"ctx-{case}"
            shutil.copytree(CASES[case], ctx)
            for mode in a.modes.split(","):
                cache = work / f"cache-{case}-{mode}" if mode != "cold" else None
                if cache is not None:
                    build(case, ctx, host, False, cache, logdir)  # priming, untimed
                n = a.cold_runs if mode == "cold" else a.runs
                pairs = []
                for i in range(n):
                    pair = {}
                    for docs in ((False, True) if i % 2 == 0 else (True, False)):
                        if mode == "change":
                            touch_app(ctx)
                        pair["docs" if docs else "plain"] = build(case, ctx, host, docs, cache, logdir)
                    pairs.append(pair)
                    print(f"{case} {mode} {i + 1}/{n}: plain {pair['plain']['wall']:.1f}s, "
                          f"docs {pair['docs']['wall']:.1f}s", file=sys.stderr, flush=True)
                med = lambda xs: round(statistics.median(xs), 2)  # noqa: E731
                d = [p["docs"] for p in pairs]
                rows.append({"case": case, "mode": mode, "pairs": n,
                             "plain": med([p["plain"]["wall"] for p in pairs]), "docs": med([x["wall"] for x in d]),
                             "extra": med([p["docs"]["wall"] - p["plain"]["wall"] for p in pairs]),
                             "sbom": med([x.get("sbom", 0) for x in d]),
                             "provenance": med([x.get("provenance", 0) for x in d]),
                             "attach": med([x.get("attach", 0) for x in d]),
                             "packages": d[0].get("packages"), "by_type": d[0].get("by_type"),
                             "samples": pairs})
    finally:
        os.kill(pid, signal.SIGTERM)
    print("\n| case | mode | pairs | plain | with --sbom --provenance | extra (median of pair differences) "
          "| SBOM scan | provenance | attach | packages |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['case']} | {r['mode']} | {r['pairs']} | {r['plain']:.1f} s | {r['docs']:.1f} s | "
              f"{r['extra']:+.1f} s | {r['sbom']:.2f} s | {r['provenance']:.2f} s | {r['attach']:.2f} s | "
              f"{r['packages']} ({r['by_type']}) |")
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (results / f"supply-chain-{stamp}.json").write_text(json.dumps(rows, indent=1))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
