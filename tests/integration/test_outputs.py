"""Outputs end to end: --reproducible, compression, platform, labels, digest files,
--tar-path and --oci-layout-path, checked with skopeo/umoci and Python's tarfile."""

from __future__ import annotations

import json
import os
import tarfile
import textwrap
import uuid
from pathlib import Path

import pytest

from tests.support.tools import run, run_executor, skopeo_inspect

pytestmark = pytest.mark.integration


def make_ctx(where: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    where.mkdir(parents=True)
    (where / "Dockerfile").write_text(textwrap.dedent(dockerfile))
    for name, content in (files or {}).items():
        (where / name).write_text(content)
    return where


def layout_image(layout: Path, tag: str | None = None) -> tuple[dict, dict, Path]:
    """(manifest, config, blobs dir) of the (only or ``tag``) image in an OCI layout."""
    index = json.loads((layout / "index.json").read_text())
    entries = index["manifests"]
    if tag:
        entries = [m for m in entries if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag]
    blobs = layout / "blobs" / "sha256"
    man = json.loads((blobs / entries[-1]["digest"].split(":")[1]).read_text())
    cfg = json.loads((blobs / man["config"]["digest"].split(":")[1]).read_text())
    return man, cfg, blobs


def test_reproducible_same_digest_in_two_fresh_runs(busybox, tmp_path):
    df = f"""
        FROM {busybox}
        COPY app.txt /app/app.txt
        RUN echo built > /app/built && mkdir -p /app/d
        """
    digests, layouts = [], []
    for i in range(2):
        ctx = make_ctx(tmp_path / f"ctx{i}", df, {"app.txt": "same content\n"})
        os.utime(ctx / "app.txt", (1_000_000 + i * 5000, 1_000_000 + i * 5000))  # different mtimes
        layout = tmp_path / f"layout{i}"
        run_executor(["--context", str(ctx), "--no-push", "--reproducible", "--kaniko-dir", str(tmp_path / f"work{i}"),
                      "--oci-layout-path", str(layout), "--digest-file", str(tmp_path / f"digest{i}"),
                      "--insecure-registry", busybox.split("/")[0]], env={"SOURCE_DATE_EPOCH": ""})
        digests.append((tmp_path / f"digest{i}").read_text())
        layouts.append(layout)
    assert digests[0] == digests[1]
    man, cfg, blobs = layout_image(layouts[0])
    assert cfg["created"].startswith("1970-01-01T00:00:00")
    assert all(h["created"].startswith("1970-01-01T00:00:00") for h in cfg["history"][-2:])
    for layer in man["layers"][-2:]:
        with tarfile.open(blobs / layer["digest"].split(":")[1]) as t:
            assert {m.mtime for m in t.getmembers()} == {0}


def test_reproducible_uses_source_date_epoch(busybox, tmp_path):
    ctx = make_ctx(tmp_path / "ctx", f"FROM {busybox}\nRUN echo x > /x\n")
    layout = tmp_path / "layout"
    run_executor(["--context", str(ctx), "--no-push", "--reproducible", "--oci-layout-path", str(layout),
                  "--insecure-registry", busybox.split("/")[0]], env={"SOURCE_DATE_EPOCH": "1700000000"})
    man, cfg, blobs = layout_image(layout)
    assert cfg["created"].startswith("2023-11-14T22:13:20")
    with tarfile.open(blobs / man["layers"][-1]["digest"].split(":")[1]) as t:
        assert max(m.mtime for m in t.getmembers()) <= 1700000000


def test_zstd_compression_levels_and_docker_schema_base(registry, busybox, tmp_path):
    # a Docker schema 2 copy of the base
    docker_base = f"{registry.host}/outputs/busybox-v2s2:latest"
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--format", "v2s2",
         f"docker://{busybox}", f"docker://{docker_base}"])
    assert skopeo_inspect(docker_base, raw=True)["mediaType"].startswith("application/vnd.docker")
    ctx = make_ctx(tmp_path / "ctx", f"FROM {docker_base}\nRUN seq 1 20000 > /numbers\n")
    dest = f"{registry.host}/outputs/zstd:{uuid.uuid4().hex[:6]}"
    run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", registry.host,
                  "--compression", "zstd", "--compression-level", "19"])
    raw = skopeo_inspect(dest, raw=True)
    assert raw["mediaType"] == "application/vnd.oci.image.manifest.v1+json"  # converted, see README
    assert raw["layers"][-1]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+zstd"
    assert all(la["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip" for la in raw["layers"][:-1])
    layout = tmp_path / "zstd-layout"
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{dest}", f"oci:{layout}:img"])
    man, cfg, blobs = layout_image(layout, "img")  # skopeo verified every blob digest on the copy
    import zstandard  # umoci cannot read zstd layers; decode with the reference library instead
    with open(blobs / man["layers"][-1]["digest"].split(":")[1], "rb") as f, \
            zstandard.ZstdDecompressor().stream_reader(f) as z, tarfile.open(fileobj=z, mode="r|") as t:
        for m in t:
            if m.name == "numbers":
                assert t.extractfile(m).read().decode().splitlines()[-1] == "20000"
                break
        else:
            raise AssertionError("/numbers is not in the zstd layer")
    # gzip levels change the blob, not the content
    sizes, diff_ids = {}, set()
    for level in ("1", "9"):
        lay = tmp_path / f"gz{level}"
        run_executor(["--context", str(ctx), "--no-push", "--reproducible", "--oci-layout-path", str(lay),
                      "--compression-level", level, "--insecure-registry", registry.host])
        man, cfg, _ = layout_image(lay)
        sizes[level] = man["layers"][-1]["size"]
        diff_ids.add(cfg["rootfs"]["diff_ids"][-1])
    assert sizes["1"] != sizes["9"] and len(diff_ids) == 1  # (zlib level 1 beats 9 on seq output)
    bad = run_executor(["--context", str(ctx), "--no-push", "--compression", "brotli"], check=False)
    assert bad.returncode != 0 and "gzip or zstd" in bad.stderr and "Traceback" not in bad.stderr
    bad = run_executor(["--context", str(ctx), "--no-push", "--compression-level", "99",
                        "--insecure-registry", registry.host], check=False)
    assert bad.returncode != 0 and "--compression-level" in bad.stderr and "Traceback" not in bad.stderr


def test_custom_platform_and_labels(registry, tmp_path):
    ctx = make_ctx(tmp_path / "ctx", "FROM scratch\nCOPY f /f\nLABEL from.dockerfile=yes\n", {"f": "x"})
    dest = f"{registry.host}/outputs/platform:{uuid.uuid4().hex[:6]}"
    run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", registry.host,
                  "--custom-platform", "linux/arm64/v8", "--label", "a=b", "--label", "c=d=e"])
    cfg = skopeo_inspect(dest, config=True)
    assert (cfg["os"], cfg["architecture"]) == ("linux", "arm64")
    assert cfg["config"]["Labels"] == {"a": "b", "c": "d=e", "from.dockerfile": "yes"}
    bad = run_executor(["--context", str(ctx), "--no-push", "--label", "novalue"], check=False)
    assert bad.returncode != 0 and "--label" in bad.stderr and "Traceback" not in bad.stderr


def test_digest_files_tar_path_and_oci_layout(registry, busybox, tmp_path):
    ctx = make_ctx(tmp_path / "ctx", f"FROM {busybox}\nRUN echo hi > /hi\n")
    tag1, tag2 = uuid.uuid4().hex[:6], uuid.uuid4().hex[:6]
    d1 = f"{registry.host}/outputs/multi:{tag1}"
    d2 = f"{registry.host}/outputs/other:{tag2}"
    out = tmp_path / "out"
    run_executor(["--context", str(ctx), "--destination", d1, "--destination", d2,
                  "--insecure-registry", registry.host,
                  "--digest-file", str(out / "digest"),
                  "--image-name-with-digest-file", str(out / "name"),
                  "--image-name-tag-with-digest-file", str(out / "nametag"),
                  "--tar-path", str(out / "image.tar"), "--oci-layout-path", str(out / "layout")])
    digest = (out / "digest").read_text()
    assert digest.startswith("sha256:") and len(digest) == 71  # Kaniko: the bare digest, no newline
    assert skopeo_inspect(d1)["Digest"] == digest and skopeo_inspect(d2)["Digest"] == digest
    assert (out / "name").read_text() == (f"{registry.host}/outputs/multi@{digest}\n"
                                          f"{registry.host}/outputs/other@{digest}\n")
    assert (out / "nametag").read_text() == f"{d1}@{digest}\n{d2}@{digest}\n"
    with tarfile.open(out / "image.tar") as t:
        manifest = json.load(t.extractfile("manifest.json"))
    assert manifest[0]["RepoTags"] == [d1, d2]
    info = json.loads(run(["skopeo", "inspect", f"docker-archive:{out / 'image.tar'}:{d2}"]).stdout)
    assert len(info["Layers"]) == len(skopeo_inspect(d1)["Layers"])
    # the OCI layout holds the very image that was pushed, readable by skopeo and umoci
    index = json.loads((out / "layout" / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [digest]
    bundle = tmp_path / "bundle"
    ref_name = index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"]
    run(["umoci", "unpack", "--image", f"{out / 'layout'}:{ref_name}", str(bundle)])
    assert (bundle / "rootfs" / "hi").read_text() == "hi\n"


def test_no_push_tar_path_uses_kanikos_placeholder_tag(busybox, tmp_path):
    ctx = make_ctx(tmp_path / "ctx", f"FROM {busybox}\n")
    run_executor(["--context", str(ctx), "--no-push", "--tar-path", str(tmp_path / "i.tar"),
                  "--insecure-registry", busybox.split("/")[0]])
    with tarfile.open(tmp_path / "i.tar") as t:
        assert json.load(t.extractfile("manifest.json"))[0]["RepoTags"] == [
            "docker.io/unset-repo/unset-image-name:latest"]


def test_zstd_tar_path_names_layers_by_compression_and_layout_has_no_lock(busybox, tmp_path):
    """--compression zstd --tar-path: the built layers are ``<hex>.tar.zst`` (zstd bytes), the
    base's gzip layers ``<hex>.tar.gz``; the --oci-layout-path directory holds only what
    image-layout.md defines (no index.json.lock)."""
    ctx = make_ctx(tmp_path / "ctx", f"FROM {busybox}\nRUN echo z > /z\nCOPY a.txt /a.txt\n", {"a.txt": "a\n"})
    out = tmp_path / "out"
    run_executor(["--context", str(ctx), "--no-push", "--compression", "zstd", "--tar-path", str(out / "i.tar"),
                  "--oci-layout-path", str(out / "layout"), "--insecure-registry", busybox.split("/")[0]])
    with tarfile.open(out / "i.tar") as t:
        layers = json.load(t.extractfile("manifest.json"))[0]["Layers"]
        heads = {name: t.extractfile(name).read(4) for name in layers}
    assert len(layers) >= 3
    for name, head in heads.items():
        if head == b"\x28\xb5\x2f\xfd":
            assert name.endswith(".tar.zst"), layers
        elif head[:2] == b"\x1f\x8b":
            assert name.endswith(".tar.gz"), layers
        else:
            assert name.endswith(".tar"), layers
    assert [n.endswith(".tar.zst") for n in layers[-2:]] == [True, True], layers
    assert sorted(os.listdir(out / "layout")) == ["blobs", "index.json", "oci-layout"]
    run(["skopeo", "inspect", f"docker-archive:{out / 'i.tar'}"])
    run(["skopeo", "inspect", f"oci:{out / 'layout'}"])
