"""One build, several platforms (``--custom-platform linux/amd64,linux/arm64``), through the CLI
against a real loopback registry; results read back with skopeo, umoci and runc.

The pushed index lists both platforms; each manifest's config has its architecture; a RUN
writes ``uname -m`` (x86_64 natively, aarch64 under qemu through binfmt_misc); the arm64 image
runs under runc; a ``FROM --platform=$BUILDPLATFORM`` stage runs once for both; the digest file
holds the index digest; ``skopeo copy --all`` accepts the index. One platform given: a plain
manifest of that platform. No emulator: a clean, immediate failure.
"""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from pathlib import Path

from tests.support.tools import run, run_executor, runc_run, skopeo_inspect, umoci_unpack

DOCKERFILE = """\
FROM --platform=$BUILDPLATFORM {base} AS tools
RUN echo built-once-on-$(uname -m) > /tool
FROM {base}
ARG TARGETARCH
COPY --from=tools /tool /tool
RUN uname -m > /arch && echo $TARGETARCH > /targetarch
CMD ["cat", "/arch"]
"""


def _ctx(tmp: Path, base: str) -> Path:
    ctx = tmp / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(DOCKERFILE.format(base=base))
    return ctx


def test_two_platforms_one_index(registry, busybox_multi, binfmt_arm64, tmp_path):
    ctx = _ctx(tmp_path, busybox_multi)
    dest = f"{registry.host}/multi/hello-{uuid.uuid4().hex[:6]}:1"
    digest_file = tmp_path / "digest"
    t0 = time.monotonic()
    p = run_executor(["--context", str(ctx), "--destination", dest, "--custom-platform", "linux/amd64,linux/arm64",
                      "--insecure-registry", registry.host, "--digest-file", str(digest_file), "--log-format", "text"])
    wall = time.monotonic() - t0
    log = p.stdout + p.stderr
    assert "does not depend on the target platform: built once for linux/amd64, linux/arm64" in log, log
    assert log.count("RUN echo built-once-on-$(uname -m) > /tool") == 1, log  # the tools stage ran once
    index = skopeo_inspect(dest, raw=True)
    assert index["mediaType"] in ("application/vnd.oci.image.index.v1+json",
                                  "application/vnd.docker.distribution.manifest.list.v2+json")
    by_arch = {m["platform"]["architecture"]: m for m in index["manifests"]}
    assert set(by_arch) == {"amd64", "arm64"}
    repo = dest.rpartition(":")[0]
    raw = subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{dest}"],
                         capture_output=True, check=True).stdout
    assert digest_file.read_text() == "sha256:" + hashlib.sha256(raw).hexdigest()  # the index digest
    want = {"amd64": "x86_64", "arm64": "aarch64"}
    for arch, m in by_arch.items():
        ref = f"{repo}@{m['digest']}"
        assert skopeo_inspect(ref, config=True)["architecture"] == arch
        bundle = umoci_unpack(ref, tmp_path / arch)
        rootfs = bundle / "rootfs"
        assert (rootfs / "arch").read_text().strip() == want[arch]
        assert (rootfs / "targetarch").read_text().strip() == arch
        assert (rootfs / "tool").read_text().strip() == "built-once-on-x86_64"  # the native tools stage
    arm = umoci_unpack(f"{repo}@{by_arch['arm64']['digest']}", tmp_path / "run-arm64")
    name = f"multi-{uuid.uuid4().hex[:6]}"
    r = runc_run(arm, name)
    subprocess.run(["runc", "delete", "-f", name], capture_output=True)
    assert r.returncode == 0 and r.stdout.strip() == "aarch64", r.stderr
    run(["skopeo", "copy", "--all", "--src-tls-verify=false", f"docker://{dest}", f"oci:{tmp_path / 'all'}:x"])
    print(f"two-platform build wall time: {wall:.2f}s")


def test_one_platform_is_a_plain_manifest_of_that_platform(registry, busybox_multi, binfmt_arm64, tmp_path):
    ctx = _ctx(tmp_path, busybox_multi)
    dest = f"{registry.host}/multi/one-{uuid.uuid4().hex[:6]}:1"
    run_executor(["--context", str(ctx), "--destination", dest, "--custom-platform", "linux/arm64",
                  "--insecure-registry", registry.host])
    raw = skopeo_inspect(dest, raw=True)
    assert "manifests" not in raw and raw["mediaType"].endswith(("manifest.v1+json", "manifest.v2+json"))
    assert skopeo_inspect(dest, config=True)["architecture"] == "arm64"


def test_no_emulator_fails_cleanly_before_building(registry, busybox_multi, tmp_path):
    ctx = _ctx(tmp_path, busybox_multi)
    empty = tmp_path / "binfmt"
    empty.mkdir()
    dest = f"{registry.host}/multi/none-{uuid.uuid4().hex[:6]}:1"
    t0 = time.monotonic()
    p = run_executor(["--context", str(ctx), "--destination", dest, "--custom-platform", "linux/amd64,linux/arm64",
                      "--insecure-registry", registry.host], check=False, env={"EXECUTOR_BINFMT_DIR": str(empty)})
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "linux/arm64" in last and "qemu-user-static" in last and "executor index" in last, last
    assert time.monotonic() - t0 < 20
    assert "pulling base image" not in p.stderr  # failed before anything ran
    gone = subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{dest}"], capture_output=True)
    assert gone.returncode != 0  # nothing tagged


def test_a_base_without_the_requested_platform_is_an_error(registry, busybox, tmp_path):
    """``busybox`` is a single-platform amd64 image: asking for arm64 fails with one line."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {busybox}\nLABEL x=1\n")
    p = run_executor(["--context", str(ctx), "--no-push", "--custom-platform", "linux/arm64",
                      "--insecure-registry", registry.host], check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "is linux/amd64, not the requested linux/arm64" in last, last


def test_a_base_missing_one_of_several_platforms_fails_before_any_stage(registry, busybox, tmp_path):
    """Every FROM image is resolved for its platform before the stages run: with an amd64-only
    base and two platforms, the build fails on arm64 before the amd64 stage pulls anything."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "a.txt").write_text("a\n")
    (ctx / "Dockerfile").write_text(f"FROM {busybox}\nCOPY a.txt /a.txt\n")
    p = run_executor(["--context", str(ctx), "--no-push", "--custom-platform", "linux/amd64,linux/arm64",
                      "--insecure-registry", registry.host], check=False)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "is linux/amd64, not the requested linux/arm64" in last, last
    assert "pulling base image" not in p.stderr, p.stderr
