#!/usr/bin/env python3
"""Side-by-side build benchmark: executor vs buildah (chroot, vfs) vs Docker's classic builder.

Usage (normally through ``make bench`` -> scripts/bench.sh):

    benchmarks/run.py [--runs N] [--cases tiny,apt,...] [--builders executor,buildah,docker]
                      [--modes cold,warm,change] [--no-push-bench] [--no-snapshot-micro] [--no-unpack-bench]

Everything runs on this machine against a private loopback registry (scripts/start-registry.sh)
seeded with the bases the cases use (scripts/make-busybox-image.sh, make-debian-image.sh).
Per case, mode and run the builders are run one after another in a rotating order
(run 1: executor, buildah, docker; run 2: buildah, docker, executor; ...), so slow drifts of
the machine hit all of them alike.

* cold: empty caches. executor: a fresh work directory, no --cache; buildah: a fresh --root and
  --runroot (vfs); docker: a fresh dockerd data root. Every run pushes to a fresh repository.
* warm: the same build again with the cache enabled and nothing changed (executor ``--cache
  --cache-copy-layers`` with a per-case cache repository, buildah ``--layers`` with a kept storage root, docker its
  layer cache). One untimed priming build first. The stages cases run cold only (CASE_MODES).
* change: one file of the context (CHANGE_FILES) rewritten before every timed build, after a priming
  build, cache on as in warm mode (the copychange case only: a cached expensive RUN, a COPY miss).

Issue 12's rows (targets.py) are reported under the table: the executor beside BuildKit's figures
from the issue (fixed reference numbers) and the ratio to the physical floor of the case.

Cold docker builds pass ``--no-cache``: a fresh data root has no cache, but the classic builder
would otherwise reuse one stage's RUN for an identical RUN of another stage of the same build
(stages3), which the other builders do not do.

Wall time covers build + push (buildah and docker push in a second command). Peak RSS comes from
``/usr/bin/time -v`` (maximum resident set of the largest process of the command's tree); for
docker it is the daemon's VmHWM over the build and push (the client does no work), so it
excludes containerd/runc of RUN steps.

Results: benchmarks/results/<UTC time>.{json,md}; the markdown table is printed. Ratios only:
nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from targets import physical_floor, target_lines

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SCRIPTS = REPO / "scripts"
CASES_DIR = HERE / "cases"
RESULTS = HERE / "results"
ALL_CASES = ["tiny", "apt", "python", "multistage", "smallfiles", "biglayer", "stages1", "stages3", "debian100",
             "copychange"]
BASES = {  # case -> base images it needs (name in the registry, make script, extra args)
    "tiny": ["busybox"], "multistage": ["busybox"], "smallfiles": ["busybox"], "biglayer": ["busybox"],
    "apt": ["debian"], "python": ["debian-ca"], "stages1": ["busybox"], "stages3": ["busybox"],
    "debian100": ["debian"], "copychange": ["debian"],
}
# cases measured in some modes only (a warm stages build is all cache hits: nothing to overlap)
CASE_MODES = {"stages1": ["cold"], "stages3": ["cold"], "copychange": ["change"]}
#: modes a case not in CASE_MODES runs in ("change" needs a file to change: CHANGE_FILES)
DEFAULT_MODES = ["cold", "warm"]
#: "change" mode: this file of the case's context is rewritten before every timed build
CHANGE_FILES = {"copychange": "app.txt"}
# derived ratios: name -> (numerator case, denominator case), per builder and mode. stages3/stages1
# is the build graph: three independent 2 s stages cost ~1x one stage when built concurrently, ~3x
# one after another
PAIRS = {"stages3/stages1": ("stages3", "stages1")}
VENV_BIN = REPO / ".venv" / "bin"
TIME = "/usr/bin/time"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class Sample:
    wall: float
    rss_kb: int
    ok: bool = True
    error: str = ""


@dataclass
class Env:
    work: Path
    registry: str
    registry_pid: int
    bases: dict[str, str] = field(default_factory=dict)
    contexts: dict[str, Path] = field(default_factory=dict)  # case -> a writable copy ("change" mode)

    def case_dir(self, case: str) -> Path:
        return self.contexts.get(case, CASES_DIR / case)


def sh(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)


def timed(cmd: list[str], logfile: Path, env: dict | None = None, cwd: Path | None = None) -> Sample:
    """Run ``cmd`` under /usr/bin/time -v; wall time (monotonic) and peak RSS (kB)."""
    tf = logfile.with_suffix(".time")
    t0 = time.monotonic()
    with open(logfile, "ab") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        rc = subprocess.call([TIME, "-v", "-o", str(tf)] + cmd, stdout=out, stderr=subprocess.STDOUT,
                             env=env, cwd=cwd)
    wall = time.monotonic() - t0
    rss = 0
    for line in tf.read_text(errors="replace").splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.rsplit(":", 1)[1])
    if rc != 0:
        tail = logfile.read_text(errors="replace").splitlines()[-15:]
        return Sample(wall, rss, False, f"exit {rc}: " + " | ".join(tail))
    return Sample(wall, rss)


def merge(*samples: Sample) -> Sample:
    return Sample(sum(s.wall for s in samples), max(s.rss_kb for s in samples), all(s.ok for s in samples),
                  " ; ".join(s.error for s in samples if s.error))


# ----------------------------------------------------------------------------------- setup
def setup(work: Path, cases: list[str]) -> Env:
    state = work / "registry"
    host = sh([str(SCRIPTS / "start-registry.sh"), str(state)]).stdout.strip()
    env = Env(work=work, registry=host, registry_pid=int((state / "registry.pid").read_text()))
    need = {b for c in cases for b in BASES[c]}
    for base in sorted(need):
        t0 = time.monotonic()
        if base == "busybox":
            sh([str(SCRIPTS / "make-busybox-image.sh"), host, "bench/busybox:latest"])
        elif base == "debian":
            sh([str(SCRIPTS / "make-debian-image.sh"), host, "bench/debian:bookworm"])
        elif base == "debian-ca":  # TEST ONLY: this machine's proxy CA so pip reaches PyPI
            sh([str(SCRIPTS / "make-debian-image.sh"), host, "bench/debian-ca:bookworm", "--with-host-ca"])
        log(f"base {base} pushed to {host} in {time.monotonic() - t0:.1f}s")
    return env


def teardown(env: Env) -> None:
    try:
        os.kill(env.registry_pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


# ----------------------------------------------------------------------------------- builders
class Builder:
    name = "?"
    available = True
    reason = ""

    def __init__(self, env: Env):
        self.env = env

    def build(self, case: str, mode: str, logfile: Path) -> Sample:
        raise NotImplementedError

    def start_warm(self, case: str, logfile: Path) -> None:
        """Prepare the warm state for ``case`` (untimed priming build)."""

    def end_warm(self, case: str) -> None:
        pass

    def close(self) -> None:
        pass


def _ref(env: Env, builder: str, case: str, fresh: bool) -> str:
    tag = uuid.uuid4().hex[:10] if fresh else "warm"
    repo = f"bench/{case}-{builder}-{uuid.uuid4().hex[:8]}" if fresh else f"bench/{case}-{builder}-warm"
    return f"{env.registry}/{repo}:{tag}"


class Executor(Builder):
    name = "executor"

    def __init__(self, env: Env, extra: list[str] | None = None):
        super().__init__(env)
        self.extra = extra or []
        self.warm_ref: dict[str, str] = {}

    def _cmd(self, case: str, ref: str, workdir: Path, cache: bool) -> list[str]:
        cmd = [str(VENV_BIN / "executor"), "--context", str(self.env.case_dir(case)),
               "--dockerfile", str(self.env.case_dir(case) / "Dockerfile"), "--destination", ref,
               "--build-arg", f"REGISTRY={self.env.registry}", "--insecure", "--insecure-pull",
               "--kaniko-dir", str(workdir), "--log-format", "text"] + self.extra
        if cache:
            # --cache-copy-layers: buildah --layers and docker cache COPY steps too (Kaniko's
            # default does not, and then every COPY makes the executor unpack the base)
            cmd += ["--cache", "--cache-copy-layers", "--cache-repo", f"{self.env.registry}/bench/cache-{case}-{self.uid}"]
        return cmd

    def start_warm(self, case: str, logfile: Path) -> None:
        self.uid = uuid.uuid4().hex[:8]
        self.warm_ref[case] = _ref(self.env, self.name, case, fresh=True)
        work = Path(tempfile.mkdtemp(prefix="ex-", dir=self.env.work))
        s = timed(self._cmd(case, self.warm_ref[case], work, True), logfile)
        shutil.rmtree(work, ignore_errors=True)
        if not s.ok:
            raise RuntimeError(f"executor priming build failed: {s.error}")

    def build(self, case: str, mode: str, logfile: Path) -> Sample:
        work = Path(tempfile.mkdtemp(prefix="ex-", dir=self.env.work))
        try:
            if mode == "cold":
                return timed(self._cmd(case, _ref(self.env, self.name, case, True), work, False), logfile)
            return timed(self._cmd(case, self.warm_ref[case], work, True), logfile)
        finally:
            shutil.rmtree(work, ignore_errors=True)


class Buildah(Builder):
    name = "buildah"

    def __init__(self, env: Env):
        super().__init__(env)
        self.policy = env.work / "policy.json"
        self.policy.write_text('{"default":[{"type":"insecureAcceptAnything"}]}')
        self.warm: dict[str, tuple[Path, str]] = {}
        if not shutil.which("buildah"):
            self.available, self.reason = False, "buildah is not installed"

    def _store(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="buildah-", dir=self.env.work))

    def _run(self, case: str, store: Path, ref: str, layers: bool, logfile: Path) -> Sample:
        common = ["--root", str(store / "root"), "--runroot", str(store / "runroot"), "--storage-driver", "vfs"]
        env = dict(os.environ, BUILDAH_ISOLATION="chroot", TMPDIR=str(store))
        bud = ["buildah"] + common + ["bud", "--isolation", "chroot", "--signature-policy", str(self.policy),
                                      "--tls-verify=false", f"--layers={'true' if layers else 'false'}",
                                      "--build-arg", f"REGISTRY={self.env.registry}",
                                      "-f", str(self.env.case_dir(case) / "Dockerfile"), "-t", ref,
                                      str(self.env.case_dir(case))]
        b = timed(bud, logfile, env=env)
        if not b.ok:
            return b
        push = ["buildah"] + common + ["push", "--signature-policy", str(self.policy), "--tls-verify=false",
                                       ref, f"docker://{ref}"]
        return merge(b, timed(push, logfile, env=env))

    def start_warm(self, case: str, logfile: Path) -> None:
        store, ref = self._store(), _ref(self.env, self.name, case, True)
        self.warm[case] = (store, ref)
        s = self._run(case, store, ref, True, logfile)
        if not s.ok:
            raise RuntimeError(f"buildah priming build failed: {s.error}")

    def end_warm(self, case: str) -> None:
        store, _ = self.warm.pop(case, (None, None))
        if store:
            _rm_store(store)

    def build(self, case: str, mode: str, logfile: Path) -> Sample:
        if mode != "cold":  # warm, change: the kept storage of the priming build
            store, ref = self.warm[case]
            return self._run(case, store, ref, True, logfile)
        store = self._store()
        try:
            return self._run(case, store, _ref(self.env, self.name, case, True), False, logfile)
        finally:
            _rm_store(store)


def _rm_store(store: Path) -> None:
    subprocess.call(["buildah", "--root", str(store / "root"), "--runroot", str(store / "runroot"),
                     "--storage-driver", "vfs", "rm", "--all"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.call(["umount", "-R", str(store / "root")], stderr=subprocess.DEVNULL)
    shutil.rmtree(store, ignore_errors=True)


class Docker(Builder):
    """Docker's classic builder on a private dockerd (own socket, data root, exec root)."""

    name = "docker"

    def __init__(self, env: Env):
        super().__init__(env)
        self.proc: subprocess.Popen | None = None
        self.dockerd = shutil.which("dockerd")
        self.client = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker")
        if not self.dockerd or not self.client:
            self.available, self.reason = False, "dockerd not installed (apt-get install docker.io failed?)"
            return
        try:  # probe: can a daemon start here at all?
            self._start()
        except RuntimeError as e:
            self.available, self.reason = False, str(e)
        finally:
            self._stop()

    def _start(self) -> None:
        d = Path(tempfile.mkdtemp(prefix="dockerd-", dir=self.env.work))
        self.dir = d
        self.sock = d / "docker.sock"
        # exec-root path length matters (unix sockets): keep it short
        self.exec_root = Path(tempfile.mkdtemp(prefix="dx-", dir="/tmp"))
        cmd = [self.dockerd, "--data-root", str(d / "data"), "--exec-root", str(self.exec_root),
               "-H", f"unix://{self.sock}", "--pidfile", str(d / "dockerd.pid"), "--bridge=none",
               "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--insecure-registry", self.env.registry,
               "--userland-proxy=false", "--log-level=warn"]
        self.log = open(d / "dockerd.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(300):
            if self.proc.poll() is not None:
                break
            if subprocess.call([self.client, "-H", f"unix://{self.sock}", "version"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL) == 0:
                return
            time.sleep(0.1)
        tail = (d / "dockerd.log").read_text(errors="replace").strip().splitlines()[-3:]
        self._stop()
        raise RuntimeError("dockerd did not start: " + " | ".join(tail))

    def _stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc = None
            self.log.close()
            subprocess.call(["umount", "-R", str(self.dir / "data")], stderr=subprocess.DEVNULL)
            subprocess.call(["umount", "-R", str(self.exec_root)], stderr=subprocess.DEVNULL)
            shutil.rmtree(self.dir, ignore_errors=True)
            shutil.rmtree(self.exec_root, ignore_errors=True)

    def _reset_hwm(self) -> None:
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
        except OSError:
            pass

    def _hwm_kb(self) -> int:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self, case: str, ref: str, logfile: Path, no_cache: bool = False) -> Sample:
        c = [self.client, "-H", f"unix://{self.sock}"]
        env = dict(os.environ, DOCKER_BUILDKIT="0")
        self._reset_hwm()
        b = timed(c + ["build", "--network", "host", "--build-arg", f"REGISTRY={self.env.registry}"]
                  + (["--no-cache"] if no_cache else []) + ["-f", str(self.env.case_dir(case) / "Dockerfile"), "-t", ref, str(self.env.case_dir(case))], logfile, env=env)
        s = merge(b, timed(c + ["push", ref], logfile, env=env)) if b.ok else b
        s.rss_kb = self._hwm_kb()
        return s

    def start_warm(self, case: str, logfile: Path) -> None:
        self._start()
        self.warm_ref = _ref(self.env, self.name, case, True)
        s = self._run(case, self.warm_ref, logfile)
        if not s.ok:
            raise RuntimeError(f"docker priming build failed: {s.error}")

    def end_warm(self, case: str) -> None:
        self._stop()

    def build(self, case: str, mode: str, logfile: Path) -> Sample:
        if mode != "cold":  # warm, change: the daemon and layer cache of the priming build
            return self._run(case, self.warm_ref, logfile)
        self._start()  # fresh data root: no layer cache, no pulled base
        try:
            return self._run(case, _ref(self.env, self.name, case, True), logfile, no_cache=True)
        finally:
            self._stop()

    def close(self) -> None:
        self._stop()


# ----------------------------------------------------------------------------------- extras
def push_bench(env: Env, runs: int, logdir: Path) -> dict:
    """Push of a 1 GB image: executor's registry client vs ``skopeo copy`` from the same OCI layout."""
    lay = env.work / "push-layout"
    work = env.work / "push-work"
    work.mkdir()
    ctx = work / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {env.registry}/bench/busybox:latest\n"
                                    "RUN head -c 1073741824 /dev/urandom > /big.bin\n")
    s = timed([str(VENV_BIN / "executor"), "--context", str(ctx), "--no-push", "--oci-layout-path", str(lay),
               "--insecure-pull", "--kaniko-dir", str(work / "k"), "--log-format", "text"], logdir / "push-prep.log")
    if not s.ok:
        return {"error": s.error}
    size = sum(f.stat().st_size for f in (lay / "blobs" / "sha256").iterdir())
    helper = HERE / "push_layout.py"
    ex, sk = [], []
    for i in range(runs):
        order = [("executor", ex), ("skopeo", sk)] if i % 2 == 0 else [("skopeo", sk), ("executor", ex)]
        for who, out in order:
            ref = f"{env.registry}/bench/push-{who}-{uuid.uuid4().hex[:8]}:1"
            if who == "skopeo":
                cmd = ["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{lay}", f"docker://{ref}"]
            else:
                cmd = [str(VENV_BIN / "python"), str(helper), str(lay), ref]
            r = timed(cmd, logdir / f"push-{who}.log")
            if not r.ok:
                return {"error": f"{who}: {r.error}"}
            out.append(r)
            # unlink the blobs from that repository again: otherwise the next push (skopeo
            # remembers where it put a blob) is a cross-repository mount, not an upload
            _unlink_blobs(ref, lay)
    me, ms = statistics.median(s.wall for s in ex), statistics.median(s.wall for s in sk)
    return {"bytes": size, "executor_s": me, "skopeo_s": ms, "executor_MBps": size / me / 1e6,
            "skopeo_MBps": size / ms / 1e6, "throughput_ratio": ms / me,
            "executor_rss_kb": max(s.rss_kb for s in ex), "skopeo_rss_kb": max(s.rss_kb for s in sk)}


def _unlink_blobs(ref: str, lay: Path) -> None:
    import urllib.request
    host, rest = ref.split("/", 1)
    repo = rest.rsplit(":", 1)[0]
    for f in (lay / "blobs" / "sha256").iterdir():
        if f.stat().st_size > 1 << 20:
            req = urllib.request.Request(f"http://{host}/v2/{repo}/blobs/sha256:{f.name}", method="DELETE")
            try:
                urllib.request.urlopen(req, timeout=30).close()
            except OSError as e:
                log(f"could not unlink blob {f.name[:12]} from {repo}: {e}")


# ----------------------------------------------------------------------------------- report
def fmt_t(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}s"


def fmt_mb(kb: int | None) -> str:
    return "-" if not kb else f"{kb / 1024:.0f} MB"


def table(results: dict, builders: list[str], unavailable: dict[str, str]) -> str:
    peers = [b for b in builders if b != "executor"]
    head = ["case", "mode"] + [f"{b} (median)" for b in builders] + [f"executor/{p}" for p in peers] \
        + [f"peak RSS {b}" for b in builders]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, row in results.items():
        case, mode = key.split("/")
        med = {}
        cells = [case, mode]
        for b in builders:
            r = row.get(b)
            if b in unavailable:
                cells.append("n/a")
            elif not r or not r["ok"]:
                cells.append("failed")
            else:
                med[b] = r["median_s"]
                cells.append(fmt_t(r["median_s"]))
        for p in peers:
            cells.append(f"{med['executor'] / med[p]:.2f}x" if "executor" in med and p in med else "-")
        for b in builders:
            r = row.get(b)
            cells.append(fmt_mb(r["peak_rss_kb"]) if r and r["ok"] else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def git_tree() -> str:
    """The commit being measured, and whether executor/ has changes not committed (others edit it)."""
    try:
        rev = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]).stdout.strip()
        dirty = sh(["git", "-C", str(REPO), "status", "--porcelain", "--", "executor"]).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (no git)"
    return f"{rev} + uncommitted changes in executor/" if dirty else rev


def pair_ratios(results: dict) -> dict:
    """PAIRS over the results: {"stages3/stages1/cold": {builder: ratio of the medians}}."""
    out: dict[str, dict[str, float]] = {}
    for name, (num, den) in PAIRS.items():
        for key in results:
            case, mode = key.split("/")
            if case != num or f"{den}/{mode}" not in results:
                continue
            a, b = results[key], results[f"{den}/{mode}"]
            out[f"{name}/{mode}"] = {n: a[n]["median_s"] / b[n]["median_s"] for n in a
                                     if n in b and a[n]["median_s"] and b[n]["median_s"]}
    return out


def pair_lines(ratios: dict, builders: list[str]) -> list[str]:
    lines = []
    for key, row in ratios.items():
        name, mode = key.rsplit("/", 1)
        cells = ", ".join(f"{b} {row[b]:.2f}x" for b in builders if b in row)
        lines.append(f"- {name} ({mode}, ratio of the medians): {cells or 'no data'}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "3")))
    ap.add_argument("--cases", default=os.environ.get("BENCH_CASES", ",".join(ALL_CASES)))
    ap.add_argument("--builders", default=os.environ.get("BENCH_BUILDERS", "executor,buildah,docker"))
    ap.add_argument("--modes", default=os.environ.get("BENCH_MODES", "cold,warm,change"))
    ap.add_argument("--executor-args", default=os.environ.get("BENCH_EXECUTOR_ARGS", ""),
                    help="extra executor flags, e.g. '--compression zstd'")
    ap.add_argument("--no-push-bench", action="store_true")
    ap.add_argument("--no-snapshot-micro", action="store_true")
    ap.add_argument("--no-unpack-bench", action="store_true", help="skip the unpack-vs-tar row")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    a = ap.parse_args()
    # stop cleanly (registry, dockerd, temp dirs) on SIGTERM, and on SIGINT even when started in
    # the background by a shell that ignores it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    cases = [c for c in a.cases.split(",") if c]
    for c in cases:
        if c not in ALL_CASES:
            ap.error(f"unknown case {c!r} (known: {', '.join(ALL_CASES)})")
    wanted = [b for b in a.builders.split(",") if b]
    modes = [m for m in a.modes.split(",") if m]

    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = Path(tempfile.mkdtemp(prefix="executor-bench-"))
    logdir = RESULTS / f"{stamp}-logs"
    logdir.mkdir()
    log(f"work dir {work}, logs {logdir}")
    tree = git_tree()
    log(f"executor tree: {tree}")
    env = setup(work, cases)
    builders: list[Builder] = []
    unavailable: dict[str, str] = {}
    try:
        for name in wanted:
            b = {"executor": lambda: Executor(env, a.executor_args.split()), "buildah": lambda: Buildah(env),
                 "docker": lambda: Docker(env)}[name]()
            if b.available:
                builders.append(b)
            else:
                unavailable[name] = b.reason
                log(f"{name}: not available: {b.reason}")
        results: dict[str, dict] = {}
        for case in cases:
            for mode in modes:
                allowed = CASE_MODES.get(case, DEFAULT_MODES)
                if mode not in allowed:
                    log(f"{case}/{mode}: skipped (this case runs in {', '.join(allowed)} mode only)")
                    continue
                samples: dict[str, list[Sample]] = {b.name: [] for b in builders}
                failed: dict[str, str] = {}
                if mode == "change":  # a writable copy of the context: one file changes before each build
                    env.contexts[case] = work / f"ctx-{case}"
                    shutil.copytree(CASES_DIR / case, env.contexts[case])
                if mode in ("warm", "change"):
                    for b in builders:
                        try:
                            b.start_warm(case, logdir / f"{case}-{mode}-{b.name}.log")
                        except RuntimeError as e:
                            failed[b.name] = str(e)
                            log(f"{case}/{mode}/{b.name}: {e}")
                for i in range(a.runs):
                    order = builders[i % len(builders):] + builders[:i % len(builders)]
                    for b in order:
                        if b.name in failed:
                            continue
                        if mode == "change":
                            (env.contexts[case] / CHANGE_FILES[case]).write_text(f"run {i} {b.name} {uuid.uuid4()}\n")
                        s = b.build(case, mode, logdir / f"{case}-{mode}-{b.name}.log")
                        log(f"{case}/{mode} run {i + 1}/{a.runs} {b.name}: {s.wall:.2f}s, "
                            f"{s.rss_kb / 1024:.0f} MB{'' if s.ok else ' FAILED ' + s.error[:300]}")
                        if not s.ok:
                            failed[b.name] = s.error
                        samples[b.name].append(s)
                if mode in ("warm", "change"):
                    for b in builders:
                        b.end_warm(case)
                row = {}
                for b in builders:
                    ss = samples[b.name]
                    ok = b.name not in failed and bool(ss)
                    row[b.name] = {"ok": ok, "error": failed.get(b.name, ""),
                                   "walls_s": [round(s.wall, 3) for s in ss],
                                   "median_s": statistics.median(s.wall for s in ss) if ok else None,
                                   "peak_rss_kb": max((s.rss_kb for s in ss), default=0)}
                results[f"{case}/{mode}"] = row
                partial = table(results, wanted, unavailable)
                (RESULTS / f"{stamp}.md").write_text(partial + "\n")
        extra: dict = {}
        floors: dict = {}
        for key in results:
            try:
                fl = physical_floor(key, env.case_dir(key.split("/")[0]), work, env.registry)
            except (OSError, RuntimeError, subprocess.CalledProcessError) as e:
                log(f"{key}: physical floor not measured: {e}")
                fl = None
            if fl is not None:
                floors[key] = fl
                log(f"{key}: physical floor {fl['floor_s']:.2f}s (RUN {fl['run_s']:.2f}s, gzip -1 {fl['gzip_s']:.2f}s, "
                    f"upload {fl['upload_s']:.2f}s)")
        extra["floors"] = floors
        if not a.no_push_bench:
            log("push benchmark: 1 GB image, executor's client vs skopeo copy")
            extra["push"] = push_bench(env, a.runs, logdir)
        if not a.no_snapshot_micro:
            log("snapshot micro-benchmark")
            out = subprocess.run([str(VENV_BIN / "python"), str(HERE / "snapshot_micro.py"), "--json",
                                  "--dir", str(work)], capture_output=True, text=True)
            extra["snapshot"] = json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr[-2000:]}
        if not a.no_unpack_bench:
            log("unpack benchmark: Debian base layer, executor vs tar -xzf")
            out = subprocess.run([str(VENV_BIN / "python"), str(HERE / "unpack.py"), "--json",
                                  "--runs", str(max(a.runs, 5)), "--dir", str(work)], capture_output=True, text=True)
            extra["unpack"] = json.loads(out.stdout) if out.returncode == 0 else {"error": out.stderr[-2000:]}
    finally:
        for b in builders:
            b.close()
        teardown(env)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)

    md = [f"## executor benchmark {stamp}", "",
          f"{os.cpu_count()} CPUs; {a.runs} runs per builder, alternating; median wall time of build + push "
          "to a loopback registry; peak RSS = max over runs (docker: dockerd's VmHWM). "
          f"executor tree: {tree}.", "",
          table(results, wanted, unavailable), ""]
    ratios = pair_ratios(results)
    md += pair_lines(ratios, wanted)
    md += target_lines(results, extra.get("floors", {}))
    for name, why in unavailable.items():
        md.append(f"- {name}: not run: {why}")
    for key, row in results.items():
        for name, r in row.items():
            if not r["ok"]:
                md.append(f"- {key} {name} failed: {r['error'][:400]}")
    if "push" in extra:
        p = extra["push"]
        md += ["", "### Push of a 1 GB image (loopback registry)", ""]
        if "error" in p:
            md.append(f"failed: {p['error'][:400]}")
        else:
            md.append(f"{p['bytes'] / 1e6:.0f} MB: executor {p['executor_s']:.2f}s ({p['executor_MBps']:.0f} MB/s, "
                      f"RSS {fmt_mb(p['executor_rss_kb'])}), skopeo copy {p['skopeo_s']:.2f}s "
                      f"({p['skopeo_MBps']:.0f} MB/s, RSS {fmt_mb(p['skopeo_rss_kb'])}); "
                      f"executor throughput = {p['throughput_ratio']:.2f}x skopeo")
    if "unpack" in extra:
        u = extra["unpack"]
        md += ["", "### Unpack of the Debian test base (one gzip layer) vs tar -xzf", ""]
        md.append(f"failed: {u['error'][:400]}" if "error" in u else
                  f"{u['blob_bytes'] / 1e6:.0f} MB blob: executor {u['executor_s']:.2f}s, GNU tar -xzf {u['tar_s']:.2f}s, "
                  f"executor/tar = {u['ratio']:.2f}x (median of {u['runs']} alternating pairs; target <= 1.2x)")
    if "snapshot" in extra:
        md += ["", "### Snapshot micro-benchmark", "", "```", json.dumps(extra["snapshot"], indent=1), "```"]
    text = "\n".join(md) + "\n"
    (RESULTS / f"{stamp}.md").write_text(text)
    (RESULTS / f"{stamp}.json").write_text(json.dumps({"stamp": stamp, "runs": a.runs, "results": results,
                                                       "pair_ratios": ratios, "unavailable": unavailable, **extra}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
