"""RUN --mount=type=secret: the command reads the secret, nothing of it reaches the layer, and
in namespace mode no byte of it is ever written to a disk (it lives in a memfd and a tmpfs
private to the RUN's mount namespace), so even a SIGKILL of the executor leaves no copy."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from executor.engine.sandbox import detect_mode
from executor.options import SecretSource

SECRET = b"s3cr3t-" + os.urandom(8).hex().encode()
REPO = Path(__file__).resolve().parents[2]


def _files_holding(top: Path, needle: bytes) -> list[Path]:
    found = []
    for dirpath, _, files in os.walk(top):
        for name in files:
            p = Path(dirpath) / name
            try:
                if not p.is_symlink() and p.is_file() and needle in p.read_bytes():
                    found.append(p)
            except OSError:
                pass
    return found


def _namespace_only():
    if os.geteuid() != 0 or detect_mode() != "namespace":
        pytest.skip("memory-backed secrets need namespace isolation (root with CAP_SYS_ADMIN)")


def test_secret_is_read_but_never_on_disk(root_build, tmp_path):
    _namespace_only()
    src = tmp_path / "secret.txt"
    src.write_bytes(SECRET)
    src_copy = SECRET  # the source file itself is the user's; nothing else may hold the bytes
    src.chmod(0o600)
    seen: list[Path] = []
    stop = threading.Event()
    work_root = tmp_path

    def watch():
        while not stop.is_set():
            seen.extend(p for p in _files_holding(work_root, src_copy) if p != src)
            time.sleep(0.05)

    t = threading.Thread(target=watch)
    t.start()
    try:
        built = root_build("""\
            FROM scratch AS base
            COPY rootfs/ /
            FROM base
            RUN --mount=type=secret,id=tok cat /run/secrets/tok | wc -c > /checked && sleep 1
            """, secrets={"tok": SecretSource(id="tok", path=src)})
    finally:
        stop.set()
        t.join()
    assert built.read("checked").strip() == str(len(SECRET)).encode()
    assert not seen, f"secret bytes written to disk: {sorted(set(seen))}"


def test_sigkill_of_the_executor_leaves_no_secret_copy(tmp_path):
    _namespace_only()
    ctx = tmp_path / "ctx"
    (ctx / "rootfs" / "bin").mkdir(parents=True)
    os.link("/bin/busybox", ctx / "rootfs/bin/busybox") if os.stat("/bin").st_dev == os.stat(tmp_path).st_dev \
        else (ctx / "rootfs/bin/busybox").write_bytes(Path("/bin/busybox").read_bytes())
    os.chmod(ctx / "rootfs/bin/busybox", 0o755)
    for applet in ("sh", "sleep", "cat"):
        os.symlink("busybox", ctx / "rootfs/bin" / applet)
    (ctx / "Dockerfile").write_text("FROM scratch AS base\nCOPY rootfs/ /\nFROM base\n"
                                    "RUN --mount=type=secret,id=tok cat /run/secrets/tok >/dev/null && sleep 60\n")
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOK": SECRET.decode()}
    p = subprocess.Popen([sys.executable, "-m", "executor", "--context", str(ctx), "--no-push",
                          "--secret", "id=tok,env=TOK", "--kaniko-dir", str(work), "--log-format", "text"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait until the RUN's sleep runs
            out = subprocess.run(["pgrep", "-f", "sleep 60"], capture_output=True, text=True).stdout.split()
            if out:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the RUN never started")
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
    finally:
        if p.poll() is None:
            p.kill()
    time.sleep(0.5)  # the sandbox dies with its parent (PDEATHSIG)
    assert work.exists()
    assert not _files_holding(work, SECRET), "a copy of the secret survived the kill"
    subprocess.run(["pkill", "-9", "-f", "sleep 60"], check=False)
