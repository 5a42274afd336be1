"""``executor push`` through the CLI against a real loopback registry: an image built with
``--no-push --tar-path`` / ``--oci-layout-path`` is pushed later; the registry (skopeo) reports
the digest the build reported, and umoci unpacks what was pushed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from tests.support.tools import run, run_executor, skopeo_inspect, umoci_unpack

pytestmark = pytest.mark.integration


def _build(tmp_path: Path, base: str, extra: list[str] | None = None) -> tuple[str, Path, Path]:
    """Build ``base`` + a COPY and a RUN with --no-push into a tarball and a layout; return
    (digest the build reported, tarball, layout)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(textwrap.dedent(f"""\
        FROM {base} AS base
        RUN echo from-run > /run.txt
        FROM base
        COPY hello.txt /hello.txt
        """))
    (ctx / "hello.txt").write_text("hello push\n")
    tar, layout, digest = tmp_path / "image.tar", tmp_path / "layout", tmp_path / "build-digest"
    run_executor(["--context", str(ctx), "--no-push", "--tar-path", str(tar), "--oci-layout-path", str(layout),
                  "--digest-file", str(digest), "--insecure-registry", base.split("/")[0],
                  "--destination", f"{base.split('/')[0]}/built/app:1", *(extra or [])])
    return digest.read_text().strip(), tar, layout


@pytest.mark.parametrize("source", ["--tar-path", "--oci-layout-path"])
def test_push_reports_the_build_digest_and_umoci_unpacks_it(registry, busybox, tmp_path, source):
    digest, tar, layout = _build(tmp_path, busybox)
    path = tar if source == "--tar-path" else layout
    dests = [f"{registry.host}/pushed{source.replace('-', '')}/app:1", f"{registry.host}/pushed{source.replace('-', '')}/other:2"]
    p = run_executor(["push", source, str(path), "--destination", dests[0], "--destination", dests[1],
                      "--digest-file", str(tmp_path / "push-digest"), "--insecure-registry", registry.host,
                      "--log-format", "text"])
    assert p.stdout.strip() == digest
    assert (tmp_path / "push-digest").read_text() == digest
    # blobs before the manifest: every "pushed blobs" line precedes every "pushed REF@" line
    lines = p.stderr.splitlines()
    blobs = [i for i, line in enumerate(lines) if "pushed blobs to" in line]
    manifests = [i for i, line in enumerate(lines) if "INFO[push] pushed " in line and "@sha256:" in line]
    assert len(blobs) == 2 and len(manifests) == 2 and max(blobs) < min(manifests)
    for ref in dests:
        assert skopeo_inspect(ref)["Digest"] == digest
    bundle = umoci_unpack(dests[1], tmp_path / "unpack")
    assert (bundle / "rootfs" / "hello.txt").read_text() == "hello push\n"
    assert (bundle / "rootfs" / "run.txt").read_text() == "from-run\n"
    assert (bundle / "rootfs" / "bin" / "busybox").exists()


def test_push_of_a_docker_format_archive_with_image_format_docker(registry, busybox, tmp_path):
    """A classic docker-archive keeps config and layers but not the manifest: with --image-format
    docker the same Docker schema 2 manifest (same config, layers, media types) is rebuilt. The
    base's layer descriptor came from skopeo with its keys in another order, which the archive
    cannot record, so only the OCI layout push is byte-exact here (same digest)."""
    docker_base = f"{registry.host}/pushcmd/busybox-v2s2:latest"
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--format", "v2s2",
         f"docker://{busybox}", f"docker://{docker_base}"])
    digest, tar, layout = _build(tmp_path, docker_base)
    built = json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_text())
    dest = f"{registry.host}/pushcmd/docker-format:1"
    p = run_executor(["push", "--tar-path", str(tar), "--image-format", "docker", "-d", dest,
                      "--insecure-registry", registry.host])
    assert skopeo_inspect(dest, raw=True) == built
    assert skopeo_inspect(dest)["Digest"] == p.stdout.strip()
    exact = f"{registry.host}/pushcmd/docker-format-layout:1"
    p = run_executor(["push", "--oci-layout-path", str(layout), "-d", exact, "--insecure-registry", registry.host])
    assert p.stdout.strip() == digest == skopeo_inspect(exact)["Digest"]


def test_push_to_an_unreachable_registry_is_one_line_and_writes_no_digest_file(busybox, tmp_path):
    _, _, layout = _build(tmp_path, busybox)
    p = run_executor(["push", "--oci-layout-path", str(layout), "-d", "127.0.0.1:9/nothing/here:1",
                      "--insecure-registry", "127.0.0.1:9", "--digest-file", str(tmp_path / "d")], check=False)
    assert p.returncode != 0
    assert p.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "127.0.0.1:9" in p.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "d").exists()


def test_push_of_a_tarball_holding_an_oci_layout_is_byte_exact(registry, busybox, tmp_path):
    """Docker 25+ ``docker save`` tarballs hold an OCI layout (index.json, blobs/) beside manifest.json:
    its manifest is pushed as stored."""
    import tarfile
    digest, _, layout = _build(tmp_path, busybox)
    tar = tmp_path / "docker25.tar"
    with tarfile.open(tar, "w") as t:
        for name in ("oci-layout", "index.json", "blobs"):
            t.add(layout / name, arcname=name)
        (tmp_path / "manifest.json").write_text("[]")
        t.add(tmp_path / "manifest.json", arcname="manifest.json")
    dest = f"{registry.host}/pushcmd/docker25:1"
    p = run_executor(["push", "--tar-path", str(tar), "-d", dest, "--insecure-registry", registry.host])
    assert p.stdout.strip() == digest == skopeo_inspect(dest)["Digest"]


def test_push_of_a_layout_with_sbom_and_provenance_attaches_them(registry, busybox, tmp_path):
    """A layout written with --sbom --provenance lists the image and two artifacts: executor push
    picks the image without --ref-name and attaches both artifacts to what it pushed, found from
    the image digest alone through the referrers tag (the test registry has no referrers API)."""
    digest, _, layout = _build(tmp_path, busybox, ["--sbom", "--provenance"])
    listed = json.loads((layout / "index.json").read_text())["manifests"]
    assert sorted(bool(m.get("artifactType")) for m in listed) == [False, True, True]
    dest = f"{registry.host}/pushed-attached/app:1"
    p = run_executor(["push", "--oci-layout-path", str(layout), "-d", dest, "--insecure-registry", registry.host])
    assert p.stdout.strip() == digest
    assert skopeo_inspect(dest)["Digest"] == digest
    tag = "sha256-" + digest.split(":")[1]
    raw = run(["skopeo", "inspect", "--tls-verify=false", "--raw", f"docker://{registry.host}/pushed-attached/app:{tag}"])
    referrers = json.loads(raw.stdout)["manifests"]
    assert sorted(m["artifactType"] for m in referrers) == ["application/spdx+json", "application/vnd.in-toto+json"]
    for m in referrers:
        art = json.loads(run(["skopeo", "inspect", "--tls-verify=false", "--raw",
                              f"docker://{registry.host}/pushed-attached/app@{m['digest']}"]).stdout)
        assert art["subject"]["digest"] == digest
