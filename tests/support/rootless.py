"""Running ``executor`` as an unprivileged user in tests (issue 16: rootless and no-RUN builds).

The venv's interpreter may live under /root (pyenv), which another user cannot enter; the
system python3 of the same minor version loads the same packages (the ABI is stable within a
minor version), with this checkout and the venv's site-packages on PYTHONPATH.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.support.tools import REPO

#: The test user of rootless builds: created with useradd, which gives it /etc/subuid and
#: /etc/subgid ranges (login.defs SUB_UID_COUNT); ranges are added when missing.
ROOTLESS_USER = "exrootless"


def no_privileges(uid: int | str, bounding: bool = False) -> list[str]:
    """setpriv(1) prefix: run as ``uid`` (number or name) with no groups and no capabilities;
    the bounding set emptied too unless ``bounding`` (an ordinary login keeps it full, which
    newuidmap/newgidmap need to gain their file capabilities)."""
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all",
            *([] if bounding else ["--bounding-set=-all"]), "--"]


def python_for(uid: int | str) -> tuple[list[str], dict[str, str]]:
    """(interpreter argv, extra environment) that ``uid`` may run with the executor importable;
    skips when there is none. The system's python3 first: an interpreter reached through a
    directory only root may search (pyenv under /root) must not be the one the executor
    re-runs for its RUN sandboxes."""
    for cand in (Path("/usr/bin/python3"), Path(sys.base_prefix) / "bin" / "python3", Path(sys.executable)):
        if not cand.exists():
            continue
        probe = subprocess.run(no_privileges(uid) + [str(cand), "-c", "import sys; print(sys.version_info[:2])"],
                               capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == str(tuple(sys.version_info[:2])):
            site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
            return [str(cand)], {"PYTHONPATH": f"{REPO}:{site}"}
    pytest.skip(f"no python{sys.version_info[0]}.{sys.version_info[1]} that uid {uid} may run")


def run_executor_as(uid: int | str, args: list[str], home: Path, timeout: int = 300,
                    bounding: bool = False) -> subprocess.CompletedProcess:
    """``executor ARGS`` as ``uid`` with no capabilities (see :func:`no_privileges`), HOME=``home``
    and no XDG/TMPDIR overrides (the executor picks its own directories)."""
    python, extra = python_for(uid)
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "XDG_RUNTIME_DIR", "TMPDIR")}
    env.update(extra, HOME=str(home))
    return subprocess.run(no_privileges(uid, bounding) + python + ["-m", "executor"] + args, capture_output=True, text=True,
                          env=env, timeout=timeout, cwd="/")


def shared_dir(prefix: str) -> Path:
    """A fresh 0755 directory under /tmp that other users can read (pytest's tmp_path is not)."""
    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d


def ensure_rootless_user() -> pwd.struct_passwd:
    """The rootless test user with a home and subordinate id ranges (skip when useradd/usermod
    or newuidmap/newgidmap are missing, or when not root)."""
    if os.geteuid() != 0:
        pytest.skip("creating the rootless test user needs root")
    missing = [t for t in ("useradd", "usermod", "newuidmap", "newgidmap", "setpriv") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing (scripts/install-deps.sh installs uidmap)")
    try:
        pw = pwd.getpwnam(ROOTLESS_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", ROOTLESS_USER], check=True)
        pw = pwd.getpwnam(ROOTLESS_USER)
    for path, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
        text = Path(path).read_text() if Path(path).exists() else ""
        if not any(line.split(":")[0] in (ROOTLESS_USER, str(pw.pw_uid)) for line in text.splitlines()):
            subprocess.run(["usermod", flag, "300000-365535", ROOTLESS_USER], check=True)
    return pw
