"""Push while building (issue 12, executor/registry/uploads.py), through whole ``executor`` builds
against a real docker-registry on loopback, with a busybox base seeded by skopeo.

* A layer's upload starts when the build writes it: the 24 MB COPY layer's upload has completed
  (its "uploaded blob" line) before the last RUN (``sleep 4``) has written its layer; with the
  pool off (``EXECUTOR_PUSH_WHILE_BUILDING=0``) it is uploaded after "built image in"; both
  builds give the same image digest and the same ``pushed blobs`` summary.
* A read-only destination (405 on the upload) stops the build at its next layer with the
  push's own one-line error; a destination whose uploads keep failing (503 from a proxy)
  fails with the push's error and no tag.
* Two destinations and two platforms: every manifest complete (each blob HEAD 200); the second
  repository mounts the layers from the first.
* With --cache (cache repository in the same registry) the new layer is uploaded once and mounted
  into the other repository; small layers too, whichever writer (cache, pool) finishes first, and
  the push summary counts each layer once, as the registry's request log shows.
* SIGTERM while an early upload is in flight and a RUN is running: out within 2.5 s, exit 143,
  no request started after it, no tag.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.fault_proxy import Fault, FaultProxy
from tests.support.registry_server import start_custom_registry
from tests.support.tools import executor_cmd

pytestmark = pytest.mark.integration

BIG = 24_000_000
ACCEPT = ", ".join(["application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json"])


def context(tmp: Path, dockerfile: str, seed: int = 12) -> Path:
    """A context with ``big.bin`` (BIG incompressible bytes, the same for the same ``seed``)."""
    ctx = tmp / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    (ctx / "big.bin").write_bytes(random.Random(seed).randbytes(BIG))
    (ctx / "small.txt").write_text("small\n")
    return ctx


def build(ctx: Path, dests: list[str], *flags: str, early: bool = True, timeout: int = 300):
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"}
    env["EXECUTOR_PUSH_WHILE_BUILDING"] = "1" if early else "0"
    args = ["--log-format", "text", "--context", str(ctx), "--reproducible", *flags]
    for d in dests:
        args += ["--destination", d]
    return subprocess.run(executor_cmd() + args, capture_output=True, text=True, env=env, timeout=timeout)


def show(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\nstderr:\n{p.stderr[-6000:]}"


def index_of(lines: list[str], pattern: str) -> int:
    found = [i for i, line in enumerate(lines) if re.search(pattern, line)]
    assert found, f"no line matches {pattern!r}:\n" + "\n".join(lines)
    return found[-1]


def big_digest(stderr: str) -> str:
    """The digest of the big layer, from its "uploaded blob" line."""
    m = re.search(r"uploaded blob (sha256:[0-9a-f]{64}) \((\d{8,}) bytes\)", stderr)
    assert m and int(m[2]) > BIG // 2, stderr
    return m[1]


def complete(host: str, repo: str, ref: str) -> dict:
    """The manifest (or index) at ``repo:ref``; asserts every manifest, config and layer it
    names is in ``repo`` (HEAD 200)."""
    with httpx.Client(timeout=30) as c:
        def get(r: str) -> dict:
            resp = c.get(f"http://{host}/v2/{repo}/manifests/{r}", headers={"Accept": ACCEPT})
            assert resp.status_code == 200, (repo, r, resp.status_code, resp.text[:300])
            return resp.json()

        top = get(ref)
        for man in [get(m["digest"]) for m in top["manifests"]] if "manifests" in top else [top]:
            for d in [man["config"]["digest"], *(layer["digest"] for layer in man["layers"])]:
                assert c.head(f"http://{host}/v2/{repo}/blobs/{d}").status_code == 200, (repo, ref, d)
        return top


def tag_absent(host: str, repo: str, tag: str) -> bool:
    with httpx.Client(timeout=30) as c:
        return c.get(f"http://{host}/v2/{repo}/manifests/{tag}", headers={"Accept": ACCEPT}).status_code == 404


def test_layer_uploads_while_the_next_step_runs_same_digest(registry, busybox, tmp_path):
    ctx = context(tmp_path, f"""\
        FROM {busybox}
        COPY big.bin /big.bin
        RUN sleep 4 && touch /done
        """)
    runs = {}
    for early in (True, False):
        repo = f"early/{'on' if early else 'off'}-{uuid.uuid4().hex[:6]}"
        digest_file = tmp_path / f"digest-{early}"
        p = build(ctx, [f"{registry.host}/{repo}:v1"], "--digest-file", str(digest_file), early=early)
        assert p.returncode == 0, show(p)
        runs[early] = (p, repo, digest_file.read_text())
    (on, repo_on, digest_on), (off, repo_off, digest_off) = runs[True], runs[False]
    assert digest_on == digest_off, (digest_on, digest_off)
    for p, repo in ((on, repo_on), (off, repo_off)):
        assert re.search(rf"pushed blobs to {re.escape(registry.host)}/{repo}: 2 uploaded, 1 mounted", p.stderr), show(p)
        complete(registry.host, repo, "v1")
    # pool on: the 24 MB layer's upload completed before the last RUN wrote its layer
    lines = on.stderr.splitlines()
    big = big_digest(on.stderr)
    uploaded = index_of(lines, rf"uploaded blob {big} ")
    last_run = index_of(lines, r"RUN sleep 4 && touch /done")
    last_layer = index_of(lines, r"INFO\[engine\] layer \w+: 1 paths changed, 0 deleted")
    built = index_of(lines, r"built image in")
    assert last_run < last_layer < built, show(on)
    assert uploaded < last_layer, show(on)
    # pool off: the same upload only after the build
    lines = off.stderr.splitlines()
    assert index_of(lines, r"built image in") < index_of(lines, rf"uploaded blob {big_digest(off.stderr)} "), show(off)


def test_read_only_destination_stops_the_build_with_the_push_error(registry, busybox, tmp_path):
    ctx = context(tmp_path, f"""\
        FROM {busybox}
        COPY big.bin /big.bin
        RUN sleep 4 && touch /done
        RUN touch /after
        """)
    with start_custom_registry(tmp_path / "ro", storage_extra={"maintenance": {"readonly": {"enabled": True}}}) as ro:
        dest = f"{ro.host}/ro/app:v1"
        errors = {}
        for early in (True, False):
            p = build(ctx, [dest], early=early)
            assert p.returncode == 1, show(p)
            assert "Traceback" not in p.stderr, show(p)
            errs = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
            assert len(errs) == 1 and f"registry {ro.host} refused" in errs[0] and "405" in errs[0], show(p)
            errors[early] = (errs[0], p)
        assert errors[True][0] == errors[False][0]  # the push's own message
        # early: the refusal stopped the build before its last step ran; late: after building
        assert "RUN touch /after" not in errors[True][1].stderr, show(errors[True][1])
        assert "built image in" not in errors[True][1].stderr, show(errors[True][1])
        assert "built image in" in errors[False][1].stderr, show(errors[False][1])
        assert tag_absent(ro.host, "ro/app", "v1")


def test_failing_uploads_fail_the_push_and_tag_nothing(registry, busybox, tmp_path):
    """Every blob-upload PUT answered 503 by a proxy: the early upload runs out of its budget,
    the output step raises that error (one line), no manifest is put."""
    ctx = context(tmp_path, f"""\
        FROM {busybox}
        COPY big.bin /big.bin
        RUN touch /done
        """)
    host, port = registry.host.split(":")
    repo, tag = f"early/fail-{uuid.uuid4().hex[:6]}", "v1"
    with FaultProxy((host, int(port))) as proxy:
        proxy.add(Fault("status", "PUT|PATCH", "/blobs/uploads/", status=503, times=10**6))
        p = build(ctx, [f"{proxy.host}/{repo}:{tag}"], "--insecure-registry", proxy.host)
        manifest_puts = [x for x in proxy.log if x[0] == "PUT" and "/manifests/" in x[1]]
    assert p.returncode == 1, show(p)
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errs) == 1 and "503" in errs[0] and "--push-retry" in errs[0], show(p)
    assert "Traceback" not in p.stderr, show(p)
    assert manifest_puts == [], manifest_puts
    assert tag_absent(registry.host, repo, tag)


def test_two_destinations_and_two_platforms_push_complete_images(registry, tmp_path):
    ctx = context(tmp_path, """\
        FROM scratch
        COPY big.bin /big.bin
        COPY small.txt /small.txt
        """, seed=7)
    repos = [f"early/multi-{uuid.uuid4().hex[:6]}", f"early/multi-{uuid.uuid4().hex[:6]}"]
    p = build(ctx, [f"{registry.host}/{r}:v1" for r in repos], "--custom-platform", "linux/amd64,linux/arm64",
              "--digest-file", str(tmp_path / "digest"))
    assert p.returncode == 0, show(p)
    digest = (tmp_path / "digest").read_text()
    for repo in repos:
        index = complete(registry.host, repo, "v1")
        assert sorted(m["platform"]["architecture"] for m in index["manifests"]) == ["amd64", "arm64"], index
        complete(registry.host, repo, digest)
    # the layers went to the first repository once (shared by both platforms), then were mounted
    assert len(re.findall(rf"uploaded blob \S+ \(24\d{{6}} bytes\) to {re.escape(registry.host)}/{repos[0]}\n",
                          p.stderr)) == 1, show(p)
    first = re.findall(rf"pushed blobs to {re.escape(registry.host)}/{repos[0]}: (.*)", p.stderr)
    second = re.findall(rf"pushed blobs to {re.escape(registry.host)}/{repos[1]}: (.*)", p.stderr)
    assert first == ["2 uploaded", "2 exists"] and second == ["2 mounted", "2 exists"], show(p)


def test_sigterm_during_a_run_stops_the_early_upload(registry, busybox, tmp_path):
    """The COPY layer uploads through a throttled proxy (1 MiB/s) while ``RUN sleep 30`` runs;
    SIGTERM then: out within 2.5 s, 143, no request started after it, no tag."""
    ctx = context(tmp_path, f"""\
        FROM {busybox}
        COPY big.bin /big.bin
        RUN sleep 30
        """)
    host, port = registry.host.split(":")
    repo, tag = f"early/term-{uuid.uuid4().hex[:6]}", "v1"
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_CONFIG"}
    with FaultProxy((host, int(port))) as proxy:
        proxy.add(Fault("throttle", "PATCH|PUT", "/blobs/uploads/", rate=1 << 20, times=10**6))
        proc = subprocess.Popen(executor_cmd() + ["--log-format", "text", "--context", str(ctx),
                                                  "--destination", f"{proxy.host}/{repo}:{tag}",
                                                  "--insecure-registry", proxy.host],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            end = time.monotonic() + 120
            while proxy.body_bytes < 3 << 20:  # the big layer's upload is under way (the base is mounted)
                assert proc.poll() is None and time.monotonic() < end, proc.communicate()
                time.sleep(0.05)
            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate()
            elapsed = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        late = [(round(t - t0, 2), m, path) for t, m, path in proxy.started if t > t0 + 0.5]
    report = f"exit {proc.returncode} after {elapsed:.2f}s\nstderr:\n{err[-3000:]}"
    assert "RUN sleep 30" in err and "built image in" not in err, report  # the signal came during the RUN
    assert proc.returncode == 143, report
    assert elapsed < 2.5, report
    assert late == [], report
    assert [ln for ln in err.splitlines() if ln.startswith("error: ")] == ["error: interrupted"], report
    assert tag_absent(registry.host, repo, tag)


def test_a_layer_the_cache_and_the_destination_store_is_sent_once(registry, busybox, tmp_path):
    """--cache with the cache repository in the destination's registry (the default,
    <destination>/cache): the new 24 MB layer is uploaded to one of them and mounted into the
    other (before, it was uploaded to both); both hold it and the image is complete."""
    ctx = context(tmp_path, f"""\
        FROM {busybox}
        COPY big.bin /big.bin
        RUN touch /done
        """, seed=21)
    repo = f"early/cached-{uuid.uuid4().hex[:6]}"
    p = build(ctx, [f"{registry.host}/{repo}:v1"], "--cache")
    assert p.returncode == 0, show(p)
    big = big_digest(p.stderr)
    sent = re.findall(rf"uploaded blob {big} \(\d+ bytes\) to {re.escape(registry.host)}/(\S+)", p.stderr)
    mounted = re.findall(rf"mounted {big} from (\S+) into {re.escape(registry.host)}/(\S+)", p.stderr)
    assert len(sent) == 1 and len(mounted) == 1, show(p)
    assert {sent[0], mounted[0][1]} == {repo, f"{repo}/cache"} and mounted[0][0] == sent[0], show(p)
    complete(registry.host, repo, "v1")
    with httpx.Client(timeout=30) as c:
        assert c.head(f"http://{registry.host}/v2/{repo}/cache/blobs/{big}").status_code == 200


def blob_requests(log: list[tuple[str, str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """From a proxy log: the blob uploads committed, as (repository, digest) -- the ``PUT ...?digest=``
    closing each upload --, and the mounts asked for, as (repository, digest, from repository)."""
    puts, mounts = [], []
    for method, target, _ in log:
        url = urlsplit(target)
        query = parse_qs(url.query)
        repo = url.path.removeprefix("/v2/").partition("/blobs/")[0]
        if method == "PUT" and "/blobs/uploads/" in url.path and "digest" in query:
            puts.append((repo, query["digest"][0]))
        elif method == "POST" and "mount" in query:
            mounts.append((repo, query["mount"][0], query.get("from", [""])[0]))
    return puts, mounts


def test_small_layers_the_cache_and_the_destination_store_are_sent_once(proxy, busybox, tmp_path):
    """--cache-repo HOST/x/cache beside --destination HOST/x/app, small COPY layers: each new layer
    (and the config, which the final-config entry stores too) is uploaded once, to whichever
    repository asked first, and mounted into the other. Before, a writer that came after the other
    writer's upload had *completed* (the usual case for a small layer) uploaded it again. The push
    summary names every layer of the image once, as what happened to it in the destination:
    uploaded, mounted, or already there (the request log says which)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    for name in ("a", "b", "c"):
        (ctx / f"{name}.txt").write_text(f"{name} {uuid.uuid4().hex}\n")
    (ctx / "Dockerfile").write_text(f"FROM {proxy.host}/busybox:latest\n"
                                    "COPY a.txt /a.txt\nCOPY b.txt /b.txt\nCOPY c.txt /c.txt\n")
    top = f"once-{uuid.uuid4().hex[:6]}"
    app, cache = f"{top}/app", f"{top}/cache"
    proxy.log.clear()
    p = build(ctx, [f"{proxy.host}/{app}:v1"], "--cache", "--cache-repo", f"{proxy.host}/{cache}",
              "--insecure-registry", proxy.host)
    log = list(proxy.log)
    assert p.returncode == 0, show(p)
    puts, mounts = blob_requests(log)
    manifest = complete(proxy.host, app, "v1")
    layers = [layer["digest"] for layer in manifest["layers"]]
    base = layers[0]
    new = [*layers[1:], manifest["config"]["digest"]]
    assert len(set(layers)) == 4, layers
    report = show(p) + "\nuploads: " + "\n".join(map(str, puts)) + "\nmounts: " + "\n".join(map(str, mounts))

    sent_twice = {d: n for d, n in Counter(d for _, d in puts).items() if n > 1}
    assert not sent_twice, report
    for digest in new:
        [(first, _)] = [put for put in puts if put[1] == digest]
        other = cache if first == app else app
        assert first in (app, cache), report
        assert [m for m in mounts if m[1] == digest] == [(other, digest, first)], report
    with httpx.Client(timeout=30) as c:
        for digest in layers[1:]:
            assert c.head(f"http://{proxy.host}/v2/{cache}/blobs/{digest}").status_code == 200, digest

    # the summary: each layer once, under what the requests into the destination show
    def outcome(digest: str) -> str:
        if (app, digest) in puts:
            return "uploaded"
        return "mounted" if any(m[:2] == (app, digest) for m in mounts) else "exists"

    assert outcome(base) == "mounted", report  # from busybox, same registry
    seen = Counter(outcome(d) for d in layers)
    want = ", ".join(f"{seen[k]} {k}" for k in ("uploaded", "mounted", "exists") if seen[k])
    summaries = re.findall(rf"pushed blobs to {re.escape(proxy.host)}/{app}: (.*)", p.stderr)
    assert summaries == [want], report
