"""The executor's own umask must not reach an image: a RUN starts with umask 0022 (as under
Docker and BuildKit) and whatever the runner places in a root has fixed modes.

Real sandbox (executor.engine.runroot.run_in_root), hand-made busybox roots, both modes; the
test process runs under ``umask 077`` as a caller with a strict umask would.
"""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from executor.engine.runroot import run_in_root
from tests.unit.test_sandbox import MODES, make_root

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="RUN isolation needs root")


@pytest.fixture
def strict_umask():
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def _run(root, tmp, script, mode, uid=0):
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    out = tmp / "out"
    with open(out, "wb") as f:
        rc = run_in_root(root, ["/bin/sh", "-c", script], {"PATH": "/bin"}, cwd="/", uid=uid, gid=uid,
                         groups=(), mode=mode, network="default", workdir=work, stdout=f,
                         stderr=subprocess.STDOUT)
    return rc, out.read_text()


def _mode(p) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


@pytest.mark.parametrize("mode", MODES)
def test_run_creates_files_0644_and_dirs_0755_under_a_strict_caller_umask(tmp_path, mode, strict_umask):
    root = make_root(tmp_path)
    rc, out = _run(root, tmp_path, "echo x > /f; mkdir /d; mkdir -p /a/b; echo y > /a/b/g; umask", mode)
    assert rc == 0, out
    assert out.strip().splitlines()[-1] in ("0022", "022"), out
    assert _mode(root / "f") == 0o644
    assert _mode(root / "d") == 0o755
    assert _mode(root / "a") == 0o755
    assert _mode(root / "a" / "b") == 0o755
    assert _mode(root / "a" / "b" / "g") == 0o644


@pytest.mark.parametrize("mode", MODES)
def test_directories_placed_by_the_runner_do_not_depend_on_the_umask(tmp_path, mode, strict_umask):
    """The root has no /etc: the runner creates it (namespace mode: for the /etc/hosts and
    resolv.conf mount points; chroot mode: for resolv.conf). A command that writes into it
    keeps it, so its mode reaches the layer: 0755, never 0700."""
    root = make_root(tmp_path)
    rc, out = _run(root, tmp_path, "echo k > /etc/kept; ls -ld /etc /dev", mode)
    assert rc == 0, out
    assert _mode(root / "etc") == 0o755, out
    assert _mode(root / "etc" / "kept") == 0o644


@pytest.mark.parametrize("mode", MODES)
def test_non_root_run_can_read_the_resolv_conf_and_hosts_copies(tmp_path, mode, strict_umask):
    """The resolv.conf (and, namespace mode, hosts) the runner provides and the /dev it
    creates are usable by a non-root command whatever the umask."""
    root = make_root(tmp_path)
    os.chmod(root, 0o755)
    os.chmod(root / "bin", 0o755)
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    rc, out = _run(root, tmp_path, "cat /etc/resolv.conf > /dev/null && { [ ! -e /etc/hosts ] || "
                   "cat /etc/hosts > /dev/null; } && echo READ-OK > /dev/null && echo READ-OK", mode, uid=1000)
    assert rc == 0 and "READ-OK" in out, out
