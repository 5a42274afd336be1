"""RUN isolation proven through whole `executor` builds, in both isolation modes: a chroot
escape attempt, the capability bounding set, namespace-mode /proc, /sys and hostname, a
hostile base whose /etc and /dev are absolute symlinks to a host directory, a secret kept
through a hard link, and SIGINT/SIGTERM in the middle of a RUN.

Every escape attempt aims at a sentinel temp directory created by the test; a regression
lands there and is detected. Results are read from the pushed image with skopeo/umoci.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import tarfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.test_build_core import make_context
from tests.integration.test_dockerfile_features import build
from tests.integration.test_hostile_base import _entry, push_hostile_image
from tests.support.tools import executor_cmd, run, umoci_unpack
from tests.unit.test_sandbox import MODES, _static, snapshot

pytestmark = pytest.mark.integration

DOCKER_CAPS = 0x00000000a80425fb               # Docker's default set (capabilities(7) bit numbers)
DOCKER_CAPS_NO_CHROOT = DOCKER_CAPS & ~(1 << 18)


@pytest.fixture
def sentinel(tmp_path) -> Path:
    s = tmp_path / "sentinel"
    (s / "etcdir").mkdir(parents=True)
    (s / "devdir").mkdir()
    (s / "etcdir" / "resolv.conf").write_text("nameserver 192.0.2.1 # sentinel original\n")
    (s / "devdir" / "null").write_bytes(b"")
    (s / "probe").write_text("host only\n")
    return s


@pytest.mark.parametrize("mode", MODES)
def test_chroot_escape_and_capabilities_in_a_real_build(registry, busybox, tmp_path, sentinel, mode):
    probes = tmp_path / "probes"
    probes.mkdir()
    escape = _static("escape", probes).read_bytes()
    caps = _static("caps", probes).read_bytes()
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        COPY --chmod=0755 escape caps /bin/
        RUN /bin/escape {sentinel / 'probe'} {sentinel / 'pwned'} > /escape-out
        RUN /bin/caps > /caps-out
        RUN if [ -r /proc/self/status ]; then grep -E '^Cap(Bnd|Eff)' /proc/self/status; fi > /status-out
        RUN hostname > /hostname-out; cat /proc/self/mountinfo > /mountinfo-out 2>/dev/null || true
        """, {"escape": escape, "caps": caps})
    before = snapshot(sentinel)
    dest, p = build(registry, ctx, f"iso/escape-{mode}", "--run-isolation", mode)
    assert snapshot(sentinel) == before, "a RUN reached the host filesystem"
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"
    out = (rootfs / "escape-out").read_text()
    assert "ESCAPED" not in out and "contained" in out, out
    want = DOCKER_CAPS if mode != "chroot" else DOCKER_CAPS_NO_CHROOT
    assert (rootfs / "caps-out").read_text() == f"bnd={want:016x} eff={want:016x}\n"
    if mode == "chroot":
        assert "chroot1 failed: Operation not permitted" in out
    else:
        status = (rootfs / "status-out").read_text()
        assert f"CapBnd:\t{want:016x}" in status and f"CapEff:\t{want:016x}" in status, status
        assert (rootfs / "hostname-out").read_text() == "executor\n"
        mounts = {}
        for line in (rootfs / "mountinfo-out").read_text().splitlines():
            fields = line.split()
            mounts[fields[4]] = (set(fields[5].split(",")), fields[fields.index("-") + 1])
        for ro in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"):
            if os.path.exists(ro):  # (this kernel may lack some)
                assert "ro" in mounts[ro][0], (ro, mounts.get(ro))
        if "/sys" in mounts:
            assert mounts["/sys"][1] == "sysfs" and "ro" in mounts["/sys"][0]
            assert not any(m.startswith("/sys/fs/cgroup") for m in mounts)
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize("mode", MODES)
def test_hostile_base_etc_and_dev_symlinks_to_host(registry, busybox, tmp_path, sentinel, mode):
    """A base image whose /etc and /dev are absolute symlinks to a host directory: the RUN's
    resolv.conf, hosts, /dev nodes and mount points never appear there, nothing there changes."""
    token = uuid.uuid4().hex[:10]
    base = push_hostile_image(registry, tmp_path / "layout",
                              [_entry("etc", tarfile.SYMTYPE, str(sentinel / "etcdir")),
                               _entry("dev", tarfile.SYMTYPE, str(sentinel / "devdir"))], f"etcdev-{mode}-{token}")
    ctx = make_context(tmp_path, f"""\
        FROM {busybox} AS bb
        FROM {base}
        COPY --from=bb /bin/busybox /bin/busybox
        RUN ["/bin/busybox", "sh", "-c", "/bin/busybox ls /dev > /seen-dev; /bin/busybox cat /etc/resolv.conf > /seen-resolv"]
        """)
    before = snapshot(sentinel)
    dest, p = build(registry, ctx, f"iso/etcdev-{mode}", "--run-isolation", mode, "--insecure-pull")
    assert snapshot(sentinel) == before, p.stderr
    rootfs = umoci_unpack(dest, tmp_path / "u") / "rootfs"
    assert os.readlink(rootfs / "etc") == str(sentinel / "etcdir")  # the image keeps its symlinks
    assert "null" in (rootfs / "seen-dev").read_text()               # the command had its /dev, in-root
    assert "sentinel original" not in (rootfs / "seen-resolv").read_text()


@pytest.mark.parametrize("mode", MODES)
def test_hard_link_to_a_secret_fails_the_build(registry, busybox, tmp_path, mode):
    secret_value = f"S3CRET-{uuid.uuid4().hex}"
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN --mount=type=secret,id=f,target=/sec ln /sec /kept
        """, {"secret.txt": secret_value})
    dest, p = build(registry, ctx, f"iso/hardlink-{mode}", "--run-isolation", mode,
                    "--secret", f"id=f,src={ctx / 'secret.txt'}", "--kaniko-dir", str(tmp_path / "work"),
                    "--no-cleanup", check=False)
    assert p.returncode != 0, p.stderr
    assert "Traceback" not in p.stderr
    if mode == "chroot":
        assert "Dockerfile:2" in p.stderr and "hard link to secret f" in p.stderr, p.stderr
        assert "secrets never enter layers" in p.stderr
    else:  # the secret is a bind mount: link(2) across mounts fails with EXDEV
        assert "Dockerfile:2" in p.stderr and "returned a non-zero code" in p.stderr, p.stderr
    assert run(["skopeo", "inspect", "--tls-verify=false", f"docker://{dest}"], check=False).returncode != 0
    leftovers = [q for q in (tmp_path / "work").rglob("*")
                 if q.is_file() and not q.is_symlink() and secret_value.encode() in q.read_bytes()]
    assert leftovers == [], leftovers


def _start_build(ctx: Path, registry, dest: str, mode: str, work: Path, secret: Path) -> tuple[subprocess.Popen, list]:
    proc = subprocess.Popen(executor_cmd() + ["--context", str(ctx), "--destination", dest,
                                              "--insecure-registry", registry.host, "--log-format", "text",
                                              "--run-isolation", mode, "--kaniko-dir", str(work), "--no-cleanup",
                                              "--secret", f"id=tok,src={secret}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    started = threading.Event()

    def reader() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "RUN-STARTED" in line and "echo" not in line:
                started.set()
        started.set()
    threading.Thread(target=reader, daemon=True).start()
    assert started.wait(240), "".join(lines)
    return proc, lines


def _procs_with(marker: str) -> list[int]:
    """Pids whose argv contains ``marker`` (words separated by spaces; argv is NUL-separated)."""
    want = marker.replace(" ", "\0").encode() + b"\0"
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if want in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(int(pid))
        except OSError:
            pass
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_kills_everything_and_cleans_up(registry, busybox, tmp_path, mode, sig):
    secret_value = f"S3CRET-{uuid.uuid4().hex}"
    n = 8_000_000 + int(uuid.uuid4().int % 999_999)  # unique sleep arguments: the argv markers
    marker_fg, marker_bg = f"sleep {n}", f"sleep {n + 1}"
    ctx = make_context(tmp_path, f"""\
        FROM {busybox}
        RUN --mount=type=secret,id=tok,target=/run/secrets/tok \\
            (setsid sleep {n + 1} >/dev/null 2>&1 &) ; sleep 0 && echo RUN-STARTED && sleep {n}
        """)
    secret = tmp_path / "secret.txt"
    secret.write_text(secret_value)
    work = tmp_path / "work"
    dest = f"{registry.host}/iso/interrupt:{uuid.uuid4().hex[:8]}"
    proc, lines = _start_build(ctx, registry, dest, mode, work, secret)
    try:
        for _ in range(300):  # the sleep starts right after the echo
            if _procs_with(marker_fg) and _procs_with(marker_bg):
                break
            time.sleep(0.1)
        assert _procs_with(marker_fg) and _procs_with(marker_bg), "".join(lines)
        proc.send_signal(sig)
        rc = proc.wait(120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _procs_with(marker_fg) + _procs_with(marker_bg):  # never leave them behind
            if proc.returncode != 128 + sig:
                os.kill(pid, signal.SIGKILL)
    out = "".join(lines)
    assert rc == 128 + sig, out
    assert "error: interrupted" in out and "Traceback" not in out, out
    leftover = _procs_with(marker_fg) + _procs_with(marker_bg)
    for pid in leftover:  # do not leave them behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert leftover == [], out
    secrets_left = [q for q in work.rglob("*") if q.is_file() and not q.is_symlink()
                    and secret_value.encode() in q.read_bytes()]
    assert secrets_left == []
    roots = list(work.glob("executor-*/stages/*/rootfs"))  # (the run's own dir inside --kaniko-dir)
    assert roots
    for root in roots:  # nothing placed for the RUN is left in the stage root
        assert not os.path.lexists(root / "run" / "secrets" / "tok")
        assert not (root / "etc" / "resolv.conf").exists() or "sentinel" not in (root / "etc" / "resolv.conf").read_text()
        for name in ("null", "zero", "tty"):
            node = root / "dev" / name
            assert not (os.path.lexists(node) and stat.S_ISCHR(node.lstat().st_mode)), node
    assert run(["skopeo", "inspect", "--tls-verify=false", f"docker://{dest}"], check=False).returncode != 0
