"""Issue 16 proof: a Dockerfile without RUN builds as uid 1000 with every capability dropped
(the Pod Security "restricted" mode), and the image equals the one root builds.

Owners cannot be set on disk without root: they are recorded (executor/fs/owners.py) and
written in the layer headers, so ``COPY --chown=0:0``, ``--chown=1000``, owners kept by
``COPY --from`` (a stage's and a pulled image's, whose layers were unpacked without root) and
setuid modes land as written. Both builds use ``--reproducible``: the same digest proves the
same layers, config and manifest; the layer listing and a umoci unpack are checked too.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.integration.test_dockerfile_features import fetch_layout
from tests.support.rootless import run_executor_as, shared_dir
from tests.support.tools import executor_cmd, run

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0, reason="switches to uid 1000 with setpriv: needs root"),
              pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) missing")]

UID = 1000


@pytest.fixture
def shared_tmp():
    """A temp directory uid 1000 can read (pytest's tmp_path is under a 0700 directory of root)."""
    d = shared_dir("executor-rootless-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def user_home(base: Path) -> Path:
    home = base / "home"
    home.mkdir()
    os.chown(home, UID, UID)
    return home


def listing(layers: list[Path]) -> list[list[tuple]]:
    """Per layer: (name, type, mode, uid, gid, link, size) of every entry, in order."""
    out = []
    for blob in layers:
        with tarfile.open(blob, "r:*") as t:
            out.append([(m.name, m.type, m.mode, m.uid, m.gid, m.linkname, m.size) for m in t.getmembers()])
    return out


def test_no_run_build_as_uid_1000_without_capabilities_equals_the_root_build(registry, busybox, shared_tmp):
    ctx = shared_tmp / "ctx"
    (ctx / "dir" / "sub").mkdir(parents=True)
    (ctx / "app.txt").write_text("hello\n")
    (ctx / "app.txt").chmod(0o4755)
    (ctx / "dir" / "y").write_text("y\n")
    (ctx / "dir" / "sub" / "z").write_text("z\n")
    os.symlink("y", ctx / "dir" / "link")
    for p in [ctx, *ctx.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode | 0o755 if p.is_dir() else p.stat().st_mode | 0o444)
    # A pulled image whose layers hold owners 1000 and 0 (built by root first, below).
    (ctx / "Dockerfile.base").write_text(f"""\
FROM {busybox}
COPY --chown=1000:1000 dir /owned
COPY dir /rootowned
""")
    base = f"{registry.host}/rootless/norun-base:{uuid.uuid4().hex[:8]}"
    run(executor_cmd() + ["--context", str(ctx), "--dockerfile", "Dockerfile.base", "--destination", base,
                          "--insecure-registry", registry.host])
    (ctx / "Dockerfile").write_text(f"""\
FROM {busybox} AS src
COPY --chown=1000:1000 dir /src
COPY --chown=0:0 app.txt /src/root-owned

FROM {busybox}
COPY --chown=0:0 app.txt /app/root-owned
COPY --chown=1000 dir /app/user-owned
COPY --chown=1000:65534 app.txt /app/mixed
COPY app.txt /app/default
COPY --from=src /src /app/from-stage
COPY --from={base} /owned /app/from-image-1000
COPY --from={base} /rootowned /app/from-image-0
WORKDIR /app/work
USER 1000
""")
    args = ["--context", str(ctx), "--insecure-registry", registry.host, "--reproducible"]
    dest_root = f"{registry.host}/rootless/norun:root"
    root_build = run(executor_cmd() + args + ["--destination", dest_root])
    home = user_home(shared_tmp)
    dest_user = f"{registry.host}/rootless/norun:uid{UID}"
    p = run_executor_as(UID, args + ["--destination", dest_user, "--digest-file", str(home / "digest")], home)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert (home / ".cache" / "executor" / "work").is_dir()  # its work directory: under its own home

    layout, _, layers, config = fetch_layout(dest_user, shared_tmp)
    entries = {e[0].rstrip("/"): e for layer in listing(layers) for e in layer}
    want = {
        "app/root-owned": (0o4755, 0, 0), "app/default": (0o4755, 0, 0), "app/mixed": (0o4755, 1000, 65534),
        "app/user-owned": (0o755, 1000, 1000), "app/user-owned/y": (0o644, 1000, 1000),
        "app/user-owned/sub/z": (0o644, 1000, 1000), "app/user-owned/link": (0o777, 1000, 1000),
        "app/from-stage/y": (0o644, 1000, 1000), "app/from-stage/root-owned": (0o4755, 0, 0),
        "app/from-image-1000/sub/z": (0o644, 1000, 1000), "app/from-image-0/sub/z": (0o644, 0, 0),
        "app/work": (0o755, 0, 0),
    }
    got = {name: (entries[name][2], entries[name][3], entries[name][4]) for name in want}
    assert got == want
    assert not any("executor.owner" in k for layer in listing(layers) for k in layer)
    _, _, root_layers, _ = fetch_layout(dest_root, shared_tmp)
    assert listing(layers) == listing(root_layers)
    # The same bytes as root's build: the same digest (--reproducible).
    digest_root = root_build.stderr.rsplit("sha256:", 1)[-1].split()[0]
    assert (home / "digest").read_text() == f"sha256:{digest_root}", (p.stderr, root_build.stderr)
    bundle = shared_tmp / "bundle"
    run(["umoci", "unpack", "--image", f"{layout}:x", str(bundle)])
    st = (bundle / "rootfs" / "app" / "mixed").lstat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 65534, 0o4755)
    assert b'"User":"1000"' in config.replace(b" ", b"")


def test_run_without_root_or_subordinate_ids_fails_in_one_line(registry, busybox, shared_tmp):
    """uid 1000 (no /etc/subuid range, no capabilities) and a RUN: one error line naming what is
    missing, no traceback, nothing pushed."""
    ctx = shared_tmp / "ctx"
    ctx.mkdir(mode=0o755)
    (ctx / "Dockerfile").write_text(f"FROM {busybox}\nRUN true\n")
    (ctx / "Dockerfile").chmod(0o644)
    dest = f"{registry.host}/rootless/needs-root:{uuid.uuid4().hex[:8]}"
    p = run_executor_as(UID, ["--context", str(ctx), "--destination", dest, "--insecure-registry", registry.host],
                        user_home(shared_tmp))
    assert p.returncode == 1, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and "RUN needs root or a rootless user namespace" in errors[0], p.stderr
    assert f"runs as uid {UID}" in errors[0] and "/etc/subuid" in errors[0], errors
    assert "Traceback" not in p.stderr
    assert run(["skopeo", "inspect", "--tls-verify=false", f"docker://{dest}"], check=False).returncode != 0
