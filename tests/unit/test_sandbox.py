"""RUN isolation at the runner level (executor.engine.runroot.run_in_root + the sandbox child)
on hand-made roots: a static busybox plus small static C probes. Real processes, real
namespaces, both isolation modes; every escape attempt aims at a sentinel temp directory.

Needs root (chroot, mknod) and, for the probes, gcc with a static libc; skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from executor.engine.runroot import run_in_root
from executor.engine.sandbox import DEFAULT_CAPS, caps_mask, detect_mode
from executor.engine.userns import userns_refusal

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="RUN isolation needs root")

BUSYBOX = shutil.which("busybox")
PROBES = Path(__file__).resolve().parents[1] / "support" / "probes"


def _modes() -> list[str]:
    """Every mode this machine can run: namespace (CAP_SYS_ADMIN), userns (user namespaces
    allowed; root may create one even with CAP_SYS_ADMIN), chroot (always)."""
    if os.geteuid() != 0:
        return ["chroot"]
    modes = ["namespace"] if detect_mode() == "namespace" else []
    return modes + (["userns"] if userns_refusal() is None else []) + ["chroot"]


MODES = _modes()


def _static(name: str, out_dir: Path) -> Path:
    """Compile tests/support/probes/NAME.c statically (skip when the toolchain is missing)."""
    gcc = shutil.which("gcc")
    if gcc is None or not Path("/usr/lib/x86_64-linux-gnu/libc.a").exists() and not Path("/usr/lib/libc.a").exists():
        pytest.skip("gcc with a static libc is needed to build the probe programs")
    out = out_dir / name
    subprocess.run([gcc, "-static", "-O", "-o", str(out), str(PROBES / f"{name}.c")], check=True)
    return out


def _busybox_static() -> str:
    if BUSYBOX is None:
        pytest.skip("busybox missing")
    out = subprocess.run(["file", "-L", BUSYBOX], capture_output=True, text=True).stdout \
        if shutil.which("file") else "statically linked"
    if "statically linked" not in out and "static-pie" not in out:
        pytest.skip("busybox is not statically linked")
    return BUSYBOX


def make_root(tmp: Path, *probes: str) -> Path:
    root = tmp / "root"
    (root / "bin").mkdir(parents=True)
    shutil.copy(_busybox_static(), root / "bin" / "busybox")
    for applet in ("sh", "cat", "ls", "rm", "ln", "grep", "hostname", "echo", "mkdir", "true"):
        os.symlink("busybox", root / "bin" / applet)
    for name in probes:
        shutil.copy(_static(name, tmp), root / "bin" / name)
    return root


def run(root: Path, tmp: Path, argv: list[str], mode: str, proc: bool = True) -> tuple[int, str]:
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    out = tmp / f"out-{len(list(tmp.glob('out-*')))}"
    with open(out, "wb") as f:
        rc = run_in_root(root, argv, {"PATH": "/bin"}, cwd="/", uid=0, gid=0, groups=(), mode=mode,
                         network="default", workdir=work, stdout=f, stderr=subprocess.STDOUT, proc=proc)
    return rc, out.read_text()


def snapshot(d: Path) -> dict[str, tuple]:
    """Every entry under ``d`` with type, mode, size, mtime and content (for regular files)."""
    out = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        body = p.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(p) if p.is_symlink() else None
        out[str(p.relative_to(d))] = (stat.S_IFMT(st.st_mode), st.st_mode, st.st_size, st.st_mtime_ns, body)
    return out


@pytest.fixture
def sentinel(tmp_path) -> Path:
    s = tmp_path / "sentinel"
    (s / "etcdir").mkdir(parents=True)
    (s / "devdir").mkdir()
    (s / "etcdir" / "resolv.conf").write_text("nameserver 192.0.2.1 # sentinel original\n")
    (s / "etcdir" / "hosts").write_text("sentinel hosts\n")
    (s / "devdir" / "null").write_bytes(b"")  # empty regular file: the old clean-up unlinked such files
    (s / "probe").write_text("host only\n")
    return s


@pytest.mark.parametrize("mode", MODES)
def test_chroot_escape_from_run_stays_in_the_root(tmp_path, sentinel, mode):
    """mkdir x; chroot x; chdir("..") x64; chroot(".") must not reach the host: the probe file
    (host only) stays invisible and nothing is created in the sentinel directory."""
    root = make_root(tmp_path, "escape")
    before = snapshot(sentinel)
    rc, out = run(root, tmp_path, ["/bin/escape", str(sentinel / "probe"), str(sentinel / "pwned")], mode)
    assert rc == 0, out
    assert "ESCAPED" not in out, out
    assert f"contained: {sentinel / 'probe'} not visible" in out, out
    assert snapshot(sentinel) == before
    if mode == "chroot":  # no CAP_SYS_CHROOT left: the first chroot already fails
        assert "chroot1 failed: Operation not permitted" in out, out


@pytest.mark.parametrize("mode", MODES)
def test_capability_bounding_set_is_dockers_default(tmp_path, mode):
    root = make_root(tmp_path, "caps")
    rc, out = run(root, tmp_path, ["/bin/caps"], mode)
    assert rc == 0, out
    want = sum(1 << b for b in DEFAULT_CAPS.values())
    if mode == "chroot":
        want &= ~(1 << DEFAULT_CAPS["CAP_SYS_CHROOT"])
    assert want == caps_mask(mode)
    assert f"bnd={want:016x} eff={want:016x}" in out, out
    assert want & (1 << 21) == 0  # CAP_SYS_ADMIN is gone in both modes


@pytest.mark.parametrize("mode", MODES)
def test_no_inherited_descriptor_reaches_the_command(tmp_path, mode):
    root = make_root(tmp_path)
    fd = os.open(tmp_path, os.O_RDONLY)  # a directory fd outside the root, inheritable
    os.set_inheritable(fd, True)
    try:
        rc, out = run(root, tmp_path, ["/bin/sh", "-c", "ls /proc/self/fd 2>/dev/null; echo end"], mode)
    finally:
        os.close(fd)
    assert rc == 0, out
    if mode == "namespace":
        assert sorted(out.split()[:-1]) == ["0", "1", "2", "3"], out  # 3 = the ls's own directory fd


@pytest.mark.parametrize("mode", [m for m in MODES if m != "chroot"] or
                         [pytest.param("namespace", marks=pytest.mark.skip(reason="needs CAP_SYS_ADMIN or userns"))])
def test_namespace_mode_uts_proc_sys_hardening(tmp_path, mode):
    root = make_root(tmp_path)
    host_name = os.uname().nodename
    rc, out = run(root, tmp_path, ["/bin/sh", "-c", "hostname; echo ---; cat /proc/self/mountinfo"], mode)
    assert rc == 0, out
    name, _, mountinfo = out.partition("---\n")
    assert name.strip() == "executor"
    assert os.uname().nodename == host_name  # the host's hostname is untouched
    mounts = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        sep = fields.index("-")
        mounts[fields[4]] = (set(fields[5].split(",")), fields[sep + 1])
    for ro in ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus"):
        if ro in mounts or os.path.exists(ro):
            assert "ro" in mounts[ro][0], (ro, mounts.get(ro))
    for masked in ("/proc/kcore", "/proc/keys", "/proc/timer_list"):
        if os.path.exists(masked):
            assert masked in mounts, masked
    if "/sys" in mounts:  # a fresh sysfs, read-only, and none of the host's submounts (cgroup)
        opts, fstype = mounts["/sys"]
        assert fstype == "sysfs" and {"ro", "nosuid", "nodev", "noexec"} <= opts
        assert not any(m.startswith("/sys/fs/cgroup") for m in mounts)
    assert mounts["/"][1] != "proc"
    assert sorted(os.listdir(root)) == ["bin"]  # no old-root dir, no placeholders left


@pytest.mark.parametrize("mode", MODES)
def test_image_etc_and_dev_absolute_symlinks_are_resolved_in_the_root(tmp_path, sentinel, mode):
    """An image whose /etc and /dev are absolute symlinks into a host directory: resolv.conf,
    hosts, /dev nodes and mount points are placed in the root (resolved as a chroot would),
    never in the sentinel, and are gone afterwards."""
    root = make_root(tmp_path)
    os.symlink(str(sentinel / "etcdir"), root / "etc")
    os.symlink(str(sentinel / "devdir"), root / "dev")
    before = snapshot(sentinel)
    rc, out = run(root, tmp_path, ["/bin/sh", "-c", "echo ran"], mode)
    assert rc == 0, out
    assert "ran" in out
    assert snapshot(sentinel) == before
    # what the command saw was placed in-root, at the symlinks' in-root targets, and removed again
    assert sorted(os.listdir(root)) == ["bin", "dev", "etc"]
    assert not (root / sentinel.relative_to("/")).exists() or not any(
        (root / sentinel.relative_to("/")).rglob("*"))


@pytest.mark.parametrize("mode", MODES)
def test_cleanup_after_command_swaps_dev_and_etc_for_host_symlinks(tmp_path, sentinel, mode):
    """The command replaces /dev and /etc (which the runner populated) by symlinks to a host
    directory: the clean-up must not follow them (it removes only the inodes it created)."""
    root = make_root(tmp_path)
    (root / "etc").mkdir()
    (root / "etc" / "resolv.conf").write_text("image resolv\n")
    before = snapshot(sentinel)
    script = (f"rm -rf /dev /etc 2>/dev/null; ln -s {sentinel / 'devdir'} /dev && "
              f"ln -s {sentinel / 'etcdir'} /etc && echo swapped")
    rc, out = run(root, tmp_path, ["/bin/sh", "-c", script], mode)
    assert "swapped" in out, out
    assert snapshot(sentinel) == before


@pytest.mark.skipif("userns" not in MODES, reason="user namespaces refused here")
def test_userns_without_a_fresh_proc_keeps_the_pid_namespace(tmp_path):
    """Where the kernel refuses a fresh /proc (a pod's masked /proc), a userns RUN gets an empty
    /proc (as in chroot mode) but keeps its own PID namespace: it is pid 1 and cannot signal
    a process outside (its pid does not exist there)."""
    root = make_root(tmp_path)
    (root / "proc").mkdir()
    outside = subprocess.Popen(["sleep", "600"])
    try:
        rc, out = run(root, tmp_path, ["/bin/sh", "-c", f"echo pid=$$; ls -A /proc | grep -c .; kill -TERM {outside.pid}"],
                      "userns", proc=False)
        assert outside.poll() is None, out
    finally:
        outside.kill()
        outside.wait()
    assert rc != 0, out
    assert out.splitlines()[:2] == ["pid=1", "0"], out
