"""Issue 16 proof: RUN isolation where the executor has no CAP_SYS_ADMIN (a Kubernetes pod's
default capabilities) but may create a user namespace, through whole ``executor`` builds.

The executor runs under ``setpriv`` with Docker's default capability set as its bounding set
(so root without CAP_SYS_ADMIN, as in a pod), detection picks ``userns``, and the RUN steps
that in plain chroot mode signalled processes outside the build (``kill -TERM <pid>``,
``kill -9 $PPID``, ``kill -STOP $PPID``) reach nothing outside it; ``ps`` lists only the RUN's
own processes; owners set by a RUN (chown 1000:1000, a USER 1000 step) land in the pushed layer.
The RUN's user, PID, mount, IPC and UTS namespaces are none of the executor's, its /proc is a
fresh procfs, its ids map 1:1 (an image owner 1000 is 1000 inside). With user namespaces disabled
(``/proc/sys/user/max_user_namespaces`` = 0 in the test's own user namespace) or unshare refused
by a seccomp filter (as containerd's RuntimeDefault profile does), the executor falls back to
chroot and says why in one line. Root of a pod's own user namespace (``hostUsers: false``, here a
user namespace the test maps onto host uids 300000..) gets userns isolation too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.integration.test_build_core import make_context
from tests.integration.test_dockerfile_features import fetch_layout
from tests.support.tools import executor_cmd, run
from tests.unit.test_sandbox import MODES

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="simulates a root pod without CAP_SYS_ADMIN: needs root"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing"),
    pytest.mark.skipif("userns" not in MODES, reason="this kernel/seccomp refuses user namespaces to root"),
]

#: Docker's default capability set (a pod's default): no CAP_SYS_ADMIN.
POD_CAPS = ("-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,+net_bind_service,"
            "+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap")
POD = ["setpriv", "--bounding-set", POD_CAPS, "--inh-caps", "-all", "--"]

#: Runs argv in a new user namespace of the test (ids mapped 1:1) where user namespaces are then
#: disabled (max_user_namespaces = 0 there only), then drops CAP_SYS_ADMIN like a pod.
NO_USERNS = [sys.executable, "-c", """\
import os, sys
from executor.engine.userns import enter_user_namespace
enter_user_namespace(0)
with open('/proc/sys/user/max_user_namespaces', 'w') as f:
    f.write('0')
os.execvp(sys.argv[1], sys.argv[1:])
"""]


def pod_build(registry, ctx: Path, repo: str, *extra: str, prefix: list[str] = POD, timeout: int = 300):
    dest = f"{registry.host}/{repo}:{uuid.uuid4().hex[:8]}"
    p = subprocess.run(prefix + executor_cmd() + ["--context", str(ctx), "--destination", dest,
                                                  "--insecure-registry", registry.host, "--log-format", "text",
                                                  *extra],
                       capture_output=True, text=True, timeout=timeout, cwd=Path(__file__).resolve().parents[2])
    return dest, p


def isolation_line(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "RUN isolation:" in line]


def layer_members(layers: list[Path]) -> dict[str, tarfile.TarInfo]:
    """Every entry of the layer blobs (later layers win), by name."""
    out = {}
    for blob in layers:
        with tarfile.open(blob, "r:*") as t:
            for m in t.getmembers():
                out[m.name.rstrip("/")] = m
    return out


def test_userns_run_cannot_reach_the_executor_and_owners_survive(registry, busybox, tmp_path):
    """kill -9 $PPID and kill -STOP $PPID reach nothing outside the RUN (the build finishes, the
    executor reports its own result), ps sees only the RUN, no secret copy is left in the work
    directory, and owners 1000:1000 (chown, USER 1000) are in the pushed layer."""
    secret_value = f"S3CRET-{uuid.uuid4().hex}"
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN kill -STOP $PPID; kill -STOP 1; echo not-frozen > /stop-out
        RUN --mount=type=secret,id=tok,target=/run/secrets/tok \\
            kill -9 $PPID; kill -9 1; cat /run/secrets/tok | wc -c > /kill-out
        RUN sleep 600 & while [ "$(cat /proc/$!/comm 2>/dev/null)" != sleep ]; do :; done; \\
            ps -o pid,ppid,args > /ps-out
        RUN mkdir -p /owned && touch /owned/f && chown -R 1000:1000 /owned
        USER 1000:1000
        RUN mkdir /owned/by-user && touch /owned/by-user/g
        """, {"secret.txt": secret_value})
    work = tmp_path / "work"
    dest, p = pod_build(registry, ctx, "rootless/iso", "--secret", f"id=tok,src={ctx / 'secret.txt'}",
                        "--kaniko-dir", str(work), "--no-cleanup", timeout=240)  # frozen: timeout raises
    assert p.returncode == 0, p.stderr
    lines = isolation_line(p.stderr)
    assert len(lines) == 1 and "RUN isolation: userns" in lines[0], p.stderr
    assert "not namespace: no CAP_SYS_ADMIN" in lines[0], lines
    layout, _, layers, _ = fetch_layout(dest, tmp_path)
    members = layer_members(layers)
    bundle = tmp_path / "unpacked"
    run(["umoci", "unpack", "--image", f"{layout}:x", str(bundle)])
    rootfs = bundle / "rootfs"
    assert (rootfs / "stop-out").read_text() == "not-frozen\n"
    assert (rootfs / "kill-out").read_text().strip() == str(len(secret_value))
    ps = (rootfs / "ps-out").read_text().splitlines()
    procs = [line.split(None, 2) for line in ps[1:]]
    assert all("sleep 600" in args or "ps -o" in args for _, _, args in procs), ps  # the RUN's own only
    assert len(procs) == 2, ps  # its shell (ps runs in it: a busybox NOFORK applet) and the sleep
    assert all(int(pid) < 10 for pid, _, _ in procs), ps  # its own PID namespace: pid 1 is the RUN's shell
    assert any(pid == "1" for pid, _, _ in procs), ps
    for name in ("owned", "owned/f", "owned/by-user", "owned/by-user/g"):
        assert (members[name].uid, members[name].gid) == (1000, 1000), name
        st = (rootfs / name).lstat()
        assert (st.st_uid, st.st_gid) == (1000, 1000), name
    leftovers = [q for q in work.rglob("*") if q.is_file() and not q.is_symlink()
                 and secret_value.encode() in q.read_bytes()]
    assert leftovers == []
    assert "Traceback" not in p.stderr


def test_userns_run_cannot_signal_a_process_outside(registry, busybox, tmp_path):
    """RUN kill -TERM <pid of a sleep the test started>: the pid does not exist in the RUN's PID
    namespace, the kill fails, the build fails with one error line, the sleep lives on."""
    outside = subprocess.Popen(["sleep", "600"])
    try:
        ctx = make_context(tmp_path, f"""\
            FROM {busybox}
            RUN kill -TERM {outside.pid}
            """)
        dest, p = pod_build(registry, ctx, "rootless/kill")
        assert outside.poll() is None, "the RUN killed a process outside the build"
        assert p.returncode == 1, p.stderr
        errors = [line for line in p.stderr.splitlines() if line.startswith("error")]
        assert len(errors) == 1 and "Dockerfile:2" in errors[0] and "returned a non-zero code: 1" in errors[0], \
            p.stderr
        assert "Traceback" not in p.stderr
        assert run(["skopeo", "inspect", "--tls-verify=false", f"docker://{dest}"], check=False).returncode != 0
    finally:
        outside.kill()
        outside.wait()


def _builds_in_chroot_saying_why(registry, busybox, tmp_path, repo: str, prefix: list[str], why_not_userns: str):
    """A RUN built under ``prefix`` (no user namespaces for a pod-like root): one isolation line,
    chroot, naming why neither stronger mode was possible; the RUN's file is in the layer."""
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN echo fallback > /fb
        """)
    dest, p = pod_build(registry, ctx, repo, prefix=prefix)
    assert p.returncode == 0, p.stderr
    lines = isolation_line(p.stderr)
    assert len(lines) == 1, p.stderr
    assert "RUN isolation: chroot" in lines[0], lines
    assert "not namespace: no CAP_SYS_ADMIN" in lines[0], lines
    assert f"not userns: {why_not_userns}" in lines[0], lines
    assert "Traceback" not in p.stderr
    assert "fb" in layer_members(fetch_layout(dest, tmp_path)[2])


def test_without_user_namespaces_falls_back_to_chroot_and_says_why(registry, busybox, tmp_path):
    _builds_in_chroot_saying_why(registry, busybox, tmp_path, "rootless/fallback", NO_USERNS + POD,
                                 "user namespaces disabled: /proc/sys/user/max_user_namespaces is 0")


#: Runs argv under a seccomp filter that refuses unshare(2) with EPERM (what containerd's
#: RuntimeDefault profile does to a process without CAP_SYS_ADMIN), then drops CAP_SYS_ADMIN like a
#: pod. The classic-BPF program is written by hand (seccomp(2) "EXAMPLES"): x86-64 only.
DENY_UNSHARE = [sys.executable, "-c", """\
import ctypes, os, struct, sys
AUDIT_ARCH_X86_64, NR_UNSHARE = 0xC000003E, 272
prog = b"".join(struct.pack("HBBI", *insn) for insn in (
    (0x20, 0, 0, 4),                   # A = seccomp_data.arch
    (0x15, 0, 3, AUDIT_ARCH_X86_64),   # not x86-64: allow
    (0x20, 0, 0, 0),                   # A = seccomp_data.nr
    (0x15, 0, 1, NR_UNSHARE),
    (0x06, 0, 0, 0x00050000 | 1),      # SECCOMP_RET_ERRNO | EPERM
    (0x06, 0, 0, 0x7FFF0000),          # SECCOMP_RET_ALLOW
))
buf = ctypes.create_string_buffer(prog)
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) != 0:  # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
    sys.exit(f"seccomp filter refused: {os.strerror(ctypes.get_errno())}")
os.execvp(sys.argv[1], sys.argv[1:])
"""]


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="the hand-written seccomp filter is x86-64 only")
def test_seccomp_refusing_unshare_falls_back_to_chroot_and_says_why(registry, busybox, tmp_path):
    """Root without CAP_SYS_ADMIN under a seccomp filter that refuses unshare (a pod with the
    RuntimeDefault profile): one isolation line, chroot, naming the refused unshare; the RUN
    still builds."""
    check = subprocess.run(DENY_UNSHARE + ["unshare", "--user", "true"], capture_output=True, text=True)
    assert check.returncode != 0 and "Operation not permitted" in check.stderr, check  # the filter works
    _builds_in_chroot_saying_why(registry, busybox, tmp_path, "rootless/seccomp", DENY_UNSHARE + POD,
                                 "unshare(CLONE_NEWUSER) refused: EPERM (seccomp, or user namespaces disabled?)")


NAMESPACES = ("user", "pid", "mnt", "ipc", "uts")


def test_userns_run_has_its_own_namespaces_fresh_proc_and_in_image_owners(registry, busybox, tmp_path):
    """In userns mode a RUN is in a user, PID, mount, IPC and UTS namespace of its own (none is the
    executor's), its /proc is a fresh procfs of its PID namespace (pid 1 is its shell), its ids map
    1:1 (uid_map = the executor's), and a file the image gave owner 1000 is 1000 inside the RUN."""
    ns = " ".join(f"$(readlink /proc/self/ns/{n})" for n in NAMESPACES)
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        COPY --chown=1000:1000 f.txt /owned-1000
        RUN echo {ns} > /ns-out; cat /proc/self/uid_map /proc/self/gid_map > /map-out; \\
            stat -c %u:%g /owned-1000 /bin/sh > /stat-out; hostname > /uts-out; \\
            cat /proc/1/cmdline | tr '\\0' ' ' > /pid1-out; ls /proc | grep -E '^[0-9]+$' > /pids-out; \\
            cat /proc/self/mountinfo > /mountinfo-out
        """, {"f.txt": "f\n"})
    dest, p = pod_build(registry, ctx, "rootless/ns")
    assert p.returncode == 0, p.stderr
    lines = isolation_line(p.stderr)
    assert len(lines) == 1 and "RUN isolation: userns" in lines[0] and "empty /proc" not in lines[0], lines
    layout, _, _, _ = fetch_layout(dest, tmp_path)
    bundle = tmp_path / "unpacked"
    run(["umoci", "unpack", "--image", f"{layout}:x", str(bundle)])
    rootfs = bundle / "rootfs"
    inside = (rootfs / "ns-out").read_text().split()
    outside = [os.readlink(f"/proc/self/ns/{n}") for n in NAMESPACES]  # the executor's (setpriv keeps them)
    assert len(inside) == len(NAMESPACES) and all(n.startswith(f"{k}:[") for n, k in zip(inside, NAMESPACES)), inside
    assert [a for a, b in zip(inside, outside) if a == b] == [], (inside, outside)
    assert (rootfs / "map-out").read_text() == (Path("/proc/self/uid_map").read_text()
                                                + Path("/proc/self/gid_map").read_text())
    assert (rootfs / "stat-out").read_text().split() == ["1000:1000", "0:0"]
    assert (rootfs / "uts-out").read_text().strip() != os.uname().nodename
    assert (rootfs / "pid1-out").read_text().startswith("/bin/sh -c echo ")  # pid 1: the RUN's own shell
    pids = (rootfs / "pids-out").read_text().split()  # the shell (1), and the ls and grep of the pipeline
    assert "1" in pids and len(pids) <= 3, pids
    at_proc = [line.split() for line in (rootfs / "mountinfo-out").read_text().splitlines() if line.split()[4] == "/proc"]
    assert [f[f.index("-") + 1] for f in at_proc] == ["proc"], at_proc  # a procfs mounted at /proc, not a bind


#: A pod with ``hostUsers: false``: the test unshares a user namespace whose root is host uid
#: HOST_BASE (ids 0..65535 -> HOST_BASE..), as the kubelet does, then drops CAP_SYS_ADMIN.
HOST_BASE = 300000
HOSTUSERS_FALSE = [sys.executable, "-c", f"""\
import os, sys
from executor.engine.userns import unshare_mapped
def maps(pid):
    for kind in ("uid", "gid"):
        with open(f"/proc/{{pid}}/{{kind}}_map", "w") as f:
            f.write("0 {HOST_BASE} 65536\\n")
    return ""
unshare_mapped(0, maps)
os.setresgid(0, 0, 0)
os.setresuid(0, 0, 0)
os.execvp(sys.argv[1], sys.argv[1:])
"""]


def test_hostusers_false_pod_gets_userns_and_keeps_owners(registry, busybox, tmp_path):
    """Root of a pod's own user namespace (uid 0 = an unprivileged host uid) with the default
    capabilities: the RUN gets userns isolation (its id map nested in the pod's), the log names the
    outside uid, and owners 0 and 1000 land in the layer as written."""
    from tests.support.rootless import python_for, shared_dir
    base = shared_dir("executor-hostusers-")
    try:
        python, extra = python_for(HOST_BASE)  # the interpreter the pod's root (host uid HOST_BASE) may run
        work = base / "work"
        work.mkdir()
        os.chown(work, HOST_BASE, HOST_BASE)
        ctx = make_context(base, f"""\
            FROM {busybox}
            RUN cat /proc/self/uid_map > /map-out; mkdir /owned && touch /owned/f && chown -R 1000:1000 /owned
            """)
        for q in [ctx, *ctx.rglob("*")]:
            q.chmod(0o755 if q.is_dir() else 0o644)
        env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "XDG_RUNTIME_DIR", "TMPDIR")}
        env.update(extra, HOME=str(work))
        dest = f"{registry.host}/rootless/hostusers:{uuid.uuid4().hex[:8]}"
        p = subprocess.run(HOSTUSERS_FALSE + POD + python + ["-m", "executor", "--context", str(ctx),
                                                             "--destination", dest, "--insecure-registry",
                                                             registry.host, "--log-format", "text"],
                           capture_output=True, text=True, timeout=300, env=env, cwd="/")
        assert p.returncode == 0, p.stderr
        assert "Traceback" not in p.stderr
        lines = isolation_line(p.stderr)
        assert len(lines) == 1 and "RUN isolation: userns" in lines[0], p.stderr
        assert f"in a user namespace: uid 0 = uid {HOST_BASE} outside" in lines[0], lines
        layout, _, layers, _ = fetch_layout(dest, tmp_path)
        members = layer_members(layers)
        for name in ("owned", "owned/f"):
            assert (members[name].uid, members[name].gid) == (1000, 1000), name
        assert (members["map-out"].uid, members["map-out"].gid) == (0, 0)
        bundle = tmp_path / "unpacked"
        run(["umoci", "unpack", "--image", f"{layout}:x", str(bundle)])
        assert (bundle / "rootfs" / "map-out").read_text().split() == ["0", "0", "65536"]  # the pod's ids, 1:1
    finally:
        shutil.rmtree(base, ignore_errors=True)
