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


def _image_with_layer(registry, tmp: Path, base: str, data: bytes, name: str, *, blob_data: bytes | None = None) -> str:
    """``base`` plus one layer holding the file /good with ``data``; with ``blob_data`` the
    layer's blob holds that instead while the config keeps ``data``'s diff_id (a lying image)."""
    import gzip
    import hashlib
    import io
    import json
    import subprocess
    import tarfile

    def tar(content: bytes) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as t:
            ti = tarfile.TarInfo("good")
            ti.size = len(content)
            t.addfile(ti, io.BytesIO(content))
        return buf.getvalue()
    lay = tmp / f"layout-{uuid.uuid4().hex[:6]}"
    subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{base}", f"oci:{lay}:latest"],
                   check=True)
    blob = lambda d: lay / "blobs" / "sha256" / d.split(":")[1]  # noqa: E731
    idx = json.loads((lay / "index.json").read_text())
    man = json.loads(blob(idx["manifests"][0]["digest"]).read_text())
    cfg = json.loads(blob(man["config"]["digest"]).read_text())
    raw, shipped = tar(data), tar(blob_data if blob_data is not None else data)
    gz = gzip.compress(shipped, mtime=0)
    gd = "sha256:" + hashlib.sha256(gz).hexdigest()
    blob(gd).write_bytes(gz)
    cfg["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(raw).hexdigest())
    cb = json.dumps(cfg).encode()
    cd = "sha256:" + hashlib.sha256(cb).hexdigest()
    blob(cd).write_bytes(cb)
    man["config"].update(digest=cd, size=len(cb))
    man["layers"].append({"mediaType": man["layers"][0]["mediaType"], "digest": gd, "size": len(gz)})
    mb = json.dumps(man).encode()
    md = "sha256:" + hashlib.sha256(mb).hexdigest()
    blob(md).write_bytes(mb)
    idx["manifests"][0].update(digest=md, size=len(mb))
    (lay / "index.json").write_text(json.dumps(idx))
    ref = f"{registry.host}/overlay/{name}:{uuid.uuid4().hex[:8]}"
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{lay}:latest", f"docker://{ref}"],
                   check=True)
    return ref


def test_a_stored_layer_stands_only_for_blobs_verified_against_it(registry, busybox, overlay_ok, tmp_path):
    """An image whose layer blob does not hold the content its config's diff_id names fails as
    in copy mode, even when the store already holds a layer with that diff_id (the pushed
    image names the blob, so RUN must see what the blob holds); a damaged entry is not used."""
    store = tmp_path / "store"
    good = _image_with_layer(registry, tmp_path, busybox, b"benign\n", "good")
    evil = _image_with_layer(registry, tmp_path, busybox, b"benign\n", "evil", blob_data=b"EVIL\n")
    _build(registry, tmp_path, f"FROM {good}\nRUN cat /good\n", overlay=True, store=store)
    for mode in (True, False):
        with pytest.raises(AssertionError) as failed:
            _build(registry, tmp_path, f"FROM {evil}\nRUN cat /good\n", overlay=mode, store=store)
        last = str(failed.value).rstrip().splitlines()[-1]  # (--verbosity debug also prints the traceback)
        assert last.startswith("error: layer ") and "but the image config says diff_id" in last, last
    for meta in (store / "trusted").glob("*/meta.json"):
        meta.write_text("{garbage")
    _, log = _build(registry, tmp_path, f"FROM {good}\nRUN cat /good\n", overlay=True, store=store)
    assert "is damaged" in log and "Traceback" not in log
