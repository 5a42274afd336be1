"""Layers cross-checked with umoci (an independent Go implementation of OCI layers)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from executor.fs.snapshot import FsIndex, diff
from executor.layers.extract import apply_layer
from executor.layers.writer import LayerResult, directory_changeset, write_layer
from tests.support.tools import have, run

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(bool(have("umoci")), reason="umoci not installed (scripts/install-deps.sh)")]

CAP = b"\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"


def tree(root: Path) -> dict[str, tuple]:
    """Type, mode, owner, mtime, content/target, hardlink grouping and xattrs of a tree."""
    out = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            rel = str(p.relative_to(root))
            st = os.lstat(p)
            rec = [stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, int(st.st_mtime)]
            if stat.S_ISLNK(st.st_mode):
                rec.append(os.readlink(p))
            else:
                if stat.S_ISREG(st.st_mode):
                    rec.append(hashlib.sha256(p.read_bytes()).hexdigest())
                    if st.st_nlink > 1:
                        rec.append(inodes.setdefault(st.st_ino, rel))
                rec.append(tuple(sorted((k, os.getxattr(p, k)) for k in os.listxattr(p)
                                        if k != "security.selinux")))
            out[rel] = tuple(rec)
    return out


def put_blob(layout: Path, data: bytes) -> dict:
    d = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / d).write_bytes(data)
    return {"digest": "sha256:" + d, "size": len(data)}


def make_layout(layout: Path, layers: list[LayerResult], tag: str = "t") -> str:
    """An OCI image layout with one manifest over ``layers``; returns ``layout:tag``."""
    (layout / "blobs/sha256").mkdir(parents=True)
    (layout / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    descs = []
    for lr in layers:
        dst = layout / "blobs/sha256" / lr.digest.split(":", 1)[1]
        shutil.copyfile(lr.path, dst)
        descs.append({"mediaType": lr.media_type, "digest": lr.digest, "size": lr.size})
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [lr.diff_id for lr in layers]}}
    cd = put_blob(layout, json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cd}, "layers": descs}
    md = put_blob(layout, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **md,
                                                "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (layout / "index.json").write_text(json.dumps(index))
    return f"{layout}:{tag}"


def populate(r: Path) -> None:
    (r / "etc").mkdir(parents=True)
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (r / "usr/lib/x").mkdir(parents=True)
    (r / "usr/lib/x/y").write_text("y")
    (r / "usr/lib/x/z").write_text("z")
    (r / "usr/bin").mkdir()
    (r / "usr/bin/tool").write_bytes(os.urandom(50_000))
    os.chmod(r / "usr/bin/tool", 0o755)
    os.symlink("usr/bin", r / "bin")
    (r / "tmp").mkdir()
    os.chmod(r / "tmp", 0o1777)


def mutate(r: Path) -> None:
    (r / "app/empty").mkdir(parents=True)
    (r / "app/prog").write_bytes(os.urandom(200_000))
    os.chown(r / "app/prog", 1000, 1000)
    os.chmod(r / "app/prog", 0o4750)
    os.setxattr(r / "app/prog", "security.capability", CAP)
    os.link(r / "app/prog", r / "app/prog-hard")
    os.symlink("/app/prog", r / "usr/bin/prog")
    (r / "app/sp ace ünï").write_text("x")
    os.setxattr(r / "app/sp ace ünï", "user.k", b"v")
    deep = r / "app" / ("long" * 30) / ("name" * 40)
    deep.mkdir(parents=True)
    (deep / ("file" * 25)).write_text("deep")
    os.symlink("target" * 30, deep / "ln")
    shutil.rmtree(r / "usr/lib/x")
    os.unlink(r / "etc/passwd")
    (r / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/app:/bin/sh\n")
    os.unlink(r / "bin")
    (r / "bin").mkdir()  # symlink replaced by a directory
    (r / "bin/sh").write_text("#!")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="umoci unpack of foreign owners needs root")


@needs_root
@pytest.mark.parametrize("codec", ["gzip", "zstd"])
def test_umoci_unpacks_our_layers(tmp_path, codec):
    src = tmp_path / "src"
    populate(src)
    base = write_layer(src, directory_changeset(src, [p.name for p in src.iterdir()]), tmp_path / "l1",
                       compression=codec, threads=2)
    before = FsIndex.scan(src)
    mutate(src)
    cs = diff(before, FsIndex.scan(src))
    assert "usr/lib/x" in cs.deleted
    top = write_layer(src, cs, tmp_path / "l2", compression=codec)
    ref = make_layout(tmp_path / "layout", [base, top])
    if codec == "zstd":  # umoci 0.4 has no zstd: let skopeo (Go's klauspost zstd) decode and re-gzip
        assert not have("skopeo")
        run(["skopeo", "copy", "-q", "--dest-compress-format=gzip", f"oci:{ref}", f"oci:{tmp_path}/regz:t"])
        ref = f"{tmp_path}/regz:t"
    bundle = tmp_path / "bundle"
    run(["umoci", "unpack", "--image", ref, str(bundle)])
    got = tree(bundle / "rootfs")
    want = tree(src)
    # directories whose children were removed by whiteouts get umoci's extraction mtime
    for t in (got, want):
        for k in ("usr/lib", "usr", "etc"):
            t[k] = t[k][:4]
    assert got == want


@needs_root
def test_apply_layer_matches_umoci_on_umoci_made_layers(tmp_path):
    layout = tmp_path / "oci"
    run(["umoci", "init", "--layout", str(layout)])
    run(["umoci", "new", "--image", f"{layout}:img"])
    bundle = tmp_path / "b"
    run(["umoci", "unpack", "--image", f"{layout}:img", str(bundle)])
    populate(bundle / "rootfs")
    run(["umoci", "repack", "--image", f"{layout}:img", str(bundle)])
    shutil.rmtree(bundle)
    run(["umoci", "unpack", "--image", f"{layout}:img", str(bundle)])
    mutate(bundle / "rootfs")
    run(["umoci", "repack", "--image", f"{layout}:img", str(bundle)])

    # ours: apply each layer blob of the manifest in order
    idx = json.loads((layout / "index.json").read_text())
    mdesc = next(m for m in idx["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "img")
    manifest = json.loads((layout / "blobs/sha256" / mdesc["digest"].split(":")[1]).read_text())
    assert len(manifest["layers"]) == 2
    ours = tmp_path / "ours"
    ours.mkdir()
    whiteouts = 0
    for ld in manifest["layers"]:
        with open(layout / "blobs/sha256" / ld["digest"].split(":")[1], "rb") as f:
            st = apply_layer(f, ours, media_type=ld["mediaType"])
        assert st.skipped == []
        whiteouts += st.whiteouts
    assert whiteouts >= 1

    theirs = tmp_path / "theirs"
    run(["umoci", "unpack", "--image", f"{layout}:img", str(theirs)])
    got, want = tree(ours), tree(theirs / "rootfs")
    for t in (got, want):  # dirs that lost children get each extractor's own clock
        for k in ("usr/lib", "usr", "etc"):
            t[k] = t[k][:4]
    assert got == want
    assert got["app/prog"][1] == 0o4750 and got["app/prog"][2] == 1000
    assert ("security.capability", CAP) in got["app/prog"][-1]
