"""Issue 16 proof: RUN isolation where the executor has no CAP_SYS_ADMIN (a Kubernetes pod's
default capabilities) but may create a user namespace, through whole ``executor`` builds.

The executor runs under ``setpriv`` with Docker's default capability set as its bounding set
(so root without CAP_SYS_ADMIN, as in a pod), detection picks ``userns``, and the RUN steps
that in plain chroot mode signalled processes outside the build (``kill -TERM <pid>``,
``kill -9 $PPID``, ``kill -STOP $PPID``) reach nothing outside it; ``ps`` lists only the RUN's
own processes; owners set by a RUN (chown 1000:1000, a USER 1000 step) land in the pushed layer.
With user namespaces disabled (``/proc/sys/user/max_user_namespaces`` = 0 in the test's own user
namespace) the executor falls back to chroot and says why in one line.
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


def test_without_user_namespaces_falls_back_to_chroot_and_says_why(registry, busybox, tmp_path):
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN echo fallback > /fb
        """)
    dest, p = pod_build(registry, ctx, "rootless/fallback", prefix=NO_USERNS + POD)
    assert p.returncode == 0, p.stderr
    lines = isolation_line(p.stderr)
    assert len(lines) == 1, p.stderr
    assert "RUN isolation: chroot" in lines[0], lines
    assert "not namespace: no CAP_SYS_ADMIN" in lines[0], lines
    assert "not userns: user namespaces disabled: /proc/sys/user/max_user_namespaces is 0" in lines[0], lines
    assert "fb" in layer_members(fetch_layout(dest, tmp_path)[2])
