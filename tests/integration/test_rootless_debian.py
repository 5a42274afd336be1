"""Issue 16 proof: an unprivileged user with /etc/subuid and /etc/subgid ranges builds the
Debian example (apt-get install, pip install, useradd, a non-root USER) with no sudo and no
capability, RUN steps included, and the unpacked image equals the root-built one
(``debian_example``, tests/integration/conftest.py): the same paths with the same types,
modes, owners, symlink targets and content.

The executor enters a user namespace mapped by newuidmap/newgidmap (executor/rootless.py:
0 -> the user, 1..65536 -> its subordinate range) and runs the RUN steps in ``namespace``
mode there. Content that records when it was made (logs, caches, byte-code) is compared by
presence, type, mode and owner only; the list is below. Both wall times are printed (run with
``-s``), with the executor's own 'done in' and each build's stage-root kind: the root build (the
session's ``debian_example``, which also writes an SBOM and provenance) stacks overlayfs roots, a
rootless build copies directories (no overlayfs in its mount namespace), which makes it slower.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import time
import uuid
from pathlib import Path

import pytest

from tests.support.rootless import ensure_rootless_user, run_executor_as, shared_dir
from tests.support.tools import REPO, umoci_unpack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Files whose bytes hold the time they were written (or a cache keyed on it): not compared by content.
TIME_STAMPED = ("var/log/", "var/cache/ldconfig/aux-cache", "var/cache/debconf/", "var/cache/apt/", "var/lib/dpkg/lock",
                "etc/shadow", "etc/shadow-", "etc/gshadow")


def tree(rootfs: Path) -> dict[str, tuple]:
    """path -> (type, mode, uid, gid, link target or content digest) of every entry under ``rootfs``."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(rootfs):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(rootfs))
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            elif stat.S_ISREG(st.st_mode) and not rel.startswith(TIME_STAMPED) and not rel.endswith(".pyc"):
                body = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                body = None
            out[rel] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, body)
    return out


def _done_in(log: str) -> str:
    m = re.search(r"done in ([0-9.]+s)", log)
    return m.group(1) if m else "?"


def _stage_roots(log: str) -> str:
    """The build's 'stage roots: ...' line (overlayfs for root; copied directories rootless)."""
    return next((line.split("] ", 1)[-1] for line in log.splitlines() if "stage roots:" in line), "stage roots: ?")


@pytest.fixture
def rootless_home():
    pw = ensure_rootless_user()
    base = shared_dir("executor-rootless-debian-")
    home = base / "home"
    home.mkdir()
    os.chown(home, pw.pw_uid, pw.pw_gid)
    yield pw, base, home
    shutil.rmtree(base, ignore_errors=True)  # as root: the user's work tree holds subordinate owners


def test_debian_example_built_rootless_equals_the_root_build(registry, debian_base, debian_example, rootless_home,
                                                            tmp_path):
    pw, base, home = rootless_home
    ctx = base / "ctx"
    shutil.copytree(REPO / "examples" / "debian-python", ctx)
    for p in [ctx, *ctx.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    dest = f"{registry.host}/examples/debian-python-rootless:{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()
    p = run_executor_as(pw.pw_name, ["--context", str(ctx), "--build-arg", f"BASE={debian_base}",
                                     "--destination", dest, "--insecure-registry", registry.host,
                                     "--log-format", "text"], home, timeout=900, bounding=True)
    seconds = time.monotonic() - t0
    print(f"\nDebian example wall time: root {debian_example.seconds:.1f}s (with --sbom/--provenance), "
          f"rootless {seconds:.1f}s; the executor's own 'done in': root {_done_in(debian_example.stderr)}, "
          f"rootless {_done_in(p.stderr)}\n  root {_stage_roots(debian_example.stderr)}\n"
          f"  rootless {_stage_roots(p.stderr)}")
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert "RUN isolation: namespace" in p.stderr and f"uid 0 = uid {pw.pw_uid} outside" in p.stderr, p.stderr
    assert (home / ".cache" / "executor" / "work").is_dir()  # its work directory is under its home

    rootless = tree(umoci_unpack(dest, tmp_path / "rootless") / "rootfs")
    root = tree(debian_example.bundle / "rootfs")
    assert sorted(set(root) ^ set(rootless)) == []
    differ = {k: (root[k], rootless[k]) for k in root if root[k] != rootless[k]}
    assert differ == {}
    owners = {(v[2], v[3]) for v in rootless.values()}
    assert (1001, 1001) in owners and (0, 0) in owners  # appuser's home (useradd --uid 1001) and root's files
    assert rootless["home/appuser"][2:4] == (1001, 1001)
