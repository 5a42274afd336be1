"""Stage roots as overlayfs mounts (issue 12): the same image as unpack-and-copy roots.

Real builds against the session registry, real overlay mounts (the tests run as root), each
Dockerfile built twice with ``--reproducible``: once with overlay roots (the layer store in a
temporary directory) and once with the internal switch ``EXECUTOR_OVERLAY=off``; the digests
must be equal. Skipped where this machine cannot mount overlayfs.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest

from executor.engine.overlayroot import probe
from executor.fs.overlay import mounts_below
from tests.support.tools import run_executor


@pytest.fixture(scope="module")
def overlay_ok(tmp_path_factory) -> None:
    d = tmp_path_factory.mktemp("probe")
    choice = probe(d, d / "store", environ={})
    if not choice.enabled:
        pytest.skip(f"overlayfs not usable here: {choice.reason}")


def _build(registry, tmp: Path, dockerfile: str, *, overlay: bool, store: Path, files: dict | None = None,
           extra: list[str] | None = None, name: str = "ov"):
    ctx = tmp / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for k, v in (files or {}).items():
        (ctx / k).write_text(v)
    work = tmp / f"work-{uuid.uuid4().hex[:6]}"
    digest = tmp / f"digest-{uuid.uuid4().hex[:6]}"
    dest = f"{registry.host}/overlay/{name}:{uuid.uuid4().hex[:8]}"
    env = {"EXECUTOR_OVERLAY": "auto" if overlay else "off", "EXECUTOR_LAYER_STORE": str(store),
           "TMPDIR": str(work.parent)}
    p = run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", registry.host,
                      "--reproducible", "--log-format", "text", "--verbosity", "debug",
                      "--digest-file", str(digest)] + (extra or []), env=env, timeout=600)
    return digest.read_text().strip(), p.stderr


def _both(registry, tmp: Path, dockerfile: str, **kw) -> tuple[str, str]:
    store = tmp / "store"
    d_ov, log_ov = _build(registry, tmp, dockerfile, overlay=True, store=store, **kw)
    assert "stage roots: overlayfs" in log_ov, log_ov
    assert "snapshot from the upper directory" in log_ov
    assert "not stacking" not in log_ov, log_ov
    d_copy, log_copy = _build(registry, tmp, dockerfile, overlay=False, store=store, **kw)
    assert "stage roots: unpacked and copied directories (no overlayfs: overlayfs turned off" in log_copy
    assert d_ov == d_copy, f"overlay {d_ov} != copy {d_copy}\n--- overlay log:\n{log_ov}\n--- copy log:\n{log_copy}"
    assert not mounts_below(tmp), "mounts left behind"
    return log_ov, log_copy


EDITS = """\
FROM {base}
RUN rm -rf /usr/share/doc /etc/cron.daily && rm /etc/debian_version
RUN rm -rf /usr/share/man && mkdir -p /usr/share/man/man1 && echo hi > /usr/share/man/man1/x.1
RUN chmod 600 /etc/issue && chown 1:1 /etc/issue.net && chmod 1777 /var/tmp
RUN echo a > /a && ln /a /b && ln /etc/host.conf /hostconf-link && ln -s /a /sym && ln -sf /etc/motd /etc/motd.link
COPY f /f
RUN cat /f > /g && rm /f && exec 3>>/etc/passwd
WORKDIR /w
RUN touch x && mkdir -p /opt/new/dir && echo 1 > /opt/new/dir/f && echo 1 > /opt/new/keep
RUN rm -rf /opt/new && mkdir -p /opt/new/dir && echo 2 > /opt/new/g
RUN true
RUN rm -rf /var/lib/dpkg/info && mkdir /var/lib/dpkg/info && rm /bin/mv && echo x > /usr/bin/mv.new
"""


def test_run_edits_same_digest_as_copy_mode(registry, debian_base, overlay_ok, tmp_path):
    """Deletes (whiteouts), rm -rf then mkdir (opaque directories), chmod/chown only,
    hardlinks (new and to a base file), symlinks, a COPY before a RUN, a file opened for
    writing but not written, an empty RUN: one digest either way."""
    log_ov, log_copy = _both(registry, tmp_path, EDITS.format(base=debian_base), files={"f": "from context\n"})
    assert log_ov.count("snapshot from the upper directory") == 9
    layers = re.findall(r"layer [0-9a-f]{12}: \d+ paths changed, \d+ deleted", log_ov)
    assert layers == re.findall(r"layer [0-9a-f]{12}: \d+ paths changed, \d+ deleted", log_copy)
    assert len(layers) == 10, layers  # 8 RUNs that change something, COPY, WORKDIR


STAGES = """\
FROM {base} AS a
RUN echo a > /a && rm /etc/debian_version
FROM a AS b
RUN echo b > /b && rm /a && rm -rf /usr/share/doc
FROM a AS c
RUN echo c > /c && echo changed > /a
FROM b
COPY --from=c /c /a /from-c/
RUN ls /from-c && test ! -e /a && test ! -e /etc/debian_version
"""


def test_two_readers_of_one_stage_stack_instead_of_copy(registry, debian_base, overlay_ok, tmp_path):
    """Stages b and c both build on a (no copytree: stacked), the final stage on b reads c."""
    log_ov, _ = _both(registry, tmp_path, STAGES.format(base=debian_base))
    assert log_ov.count("stacked 1 layers") == 1  # only stage a mounts the base: b and c stack on a


def test_layer_store_reused_by_the_next_cold_build(registry, debian_base, overlay_ok, tmp_path):
    """A second cold build (fresh work directory) mounts the stored base without unpacking it."""
    store = tmp_path / "store"
    df = f"FROM {debian_base}\nRUN echo one > /one\n"
    _, first = _build(registry, tmp_path, df, overlay=True, store=store)
    assert "unpacked into the layer store" in first
    _, second = _build(registry, tmp_path, df + "RUN echo two > /two\n", overlay=True, store=store)
    assert "stage roots: overlayfs" in second
    assert "unpacked into the layer store" not in second
    assert "stacked 1 layers" in second
    entries = list((store / "trusted").iterdir())
    assert len(entries) == 1 and (entries[0] / "fs" / "etc" / "passwd").is_file()
    assert not os.listdir(store / "tmp")


def test_fallback_when_overlay_is_off_logs_the_reason(registry, debian_base, tmp_path):
    _, log = _build(registry, tmp_path, f"FROM {debian_base}\nRUN rm /etc/issue\n", overlay=False,
                    store=tmp_path / "store")
    assert "stage roots: unpacked and copied directories (no overlayfs: overlayfs turned off" in log
    assert "unpacked 1 layers" in log
    assert not (tmp_path / "store").exists()


def _executor_popen(registry, tmp: Path, dockerfile: str, store: Path):
    import subprocess
    from tests.support.tools import executor_cmd
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    env = dict(os.environ, EXECUTOR_OVERLAY="auto", EXECUTOR_LAYER_STORE=str(store), TMPDIR=str(tmp))
    return subprocess.Popen(executor_cmd() + ["--context", str(ctx), "--no-push", "--insecure-registry", registry.host,
                                              "--log-format", "text"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)


def test_sigterm_during_a_run_unmounts_the_stage_roots(registry, debian_base, overlay_ok, tmp_path):
    import signal
    import time
    proc = _executor_popen(registry, tmp_path, f"FROM {debian_base}\nRUN touch /started && sleep 120\n",
                           tmp_path / "store")
    try:
        deadline = time.monotonic() + 120
        while not any("started" in os.listdir(r)
                      if os.path.isdir(r) else False for r in mounts_below(tmp_path)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 143
    assert mounts_below(tmp_path) == []


def test_failed_run_unmounts_and_a_killed_runs_mounts_are_removed(registry, debian_base, overlay_ok, tmp_path):
    """A failing RUN leaves no mount; a work directory a SIGKILLed run left with its stage root
    still mounted is unmounted and removed by the next start."""
    import signal
    import time
    store = tmp_path / "store"
    with pytest.raises(AssertionError, match="non-zero code: 3"):
        _build(registry, tmp_path, f"FROM {debian_base}\nRUN exit 3\n", overlay=True, store=store)
    assert mounts_below(tmp_path) == []
    killed = tmp_path / "killed"
    killed.mkdir()
    proc = _executor_popen(registry, killed, f"FROM {debian_base}\nRUN touch /started && sleep 120\n", store)
    try:
        deadline = time.monotonic() + 120
        while not mounts_below(killed):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    stale = mounts_below(killed)
    assert stale, "the SIGKILLed run should have left its stage root mounted"
    for pid in [p for p in os.listdir("/proc") if p.isdigit()]:  # its RUN's sleep, orphaned
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if cmdline.startswith(b"sleep\x00120") or b"touch /started && sleep 120" in cmdline:
                os.kill(int(pid), signal.SIGKILL)
        except OSError:
            pass
    work_dirs = [p for p in killed.iterdir() if p.name.startswith("executor-")]
    assert work_dirs
    _, log = _build(registry, killed, f"FROM {debian_base}\nRUN true\n", overlay=True, store=store)
    assert "removed the work directory" in log
    assert mounts_below(killed) == []
    assert not any(p.exists() for p in work_dirs)


CACHED = """\
FROM {base}
RUN chmod 0750 /srv && echo x > /srv/f
RUN echo y >> /srv/f
ARG V=1
RUN stat -c %a /srv > /mode && echo $V > /v
"""


def test_cached_layers_stacked_from_the_store_give_the_copy_modes_image(registry, debian_base, overlay_ok, tmp_path):
    """Cache hits for the first two RUNs, a miss for the third: the root is stacked from the base
    and the two cached layers (unpacked into the store), and the image equals the one a copy-mode
    build without cache makes. (The executor's own layers name every parent directory, so no
    fix-up layer is needed here; tests/engine/test_overlay_upperdiff.py covers layers that do not.)"""
    store = tmp_path / "store"
    df = CACHED.format(base=debian_base)
    cache = ["--cache", "--cache-repo", f"{registry.host}/overlay/cache-{uuid.uuid4().hex[:6]}"]
    _build(registry, tmp_path, df, overlay=True, store=store, extra=cache)
    d_ov, log = _build(registry, tmp_path, df, overlay=True, store=store, extra=cache + ["--build-arg", "V=2"])
    assert "stacked 3 layers" in log, log
    fresh = ["--cache", "--cache-repo", f"{registry.host}/overlay/cache-{uuid.uuid4().hex[:6]}"]
    d_copy, _ = _build(registry, tmp_path, df, overlay=False, store=store, extra=fresh + ["--build-arg", "V=2"])
    assert d_ov == d_copy
