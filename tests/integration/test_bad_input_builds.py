"""Bad input that needs a registry: each case fails with one clear line, exit 1, no traceback,
and nothing is tagged.

* base images whose manifest/config lie about their layers (diff_ids, counts, sizes), pushed
  by hand over the registry API (skopeo would refuse or repair them);
* output paths and destinations checked before the build starts;
* instructions that hit an OS error (named with their Dockerfile line).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import socket
import tarfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.tools import run_executor

pytestmark = pytest.mark.integration


# -- helpers -------------------------------------------------------------------------------------

def _tar(files: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def _upload(client: httpx.Client, base: str, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = client.post(f"{base}/v2/{repo}/blobs/uploads/")
    assert r.status_code == 202, r.text
    loc = httpx.URL(base).join(r.headers["Location"]).copy_add_param("digest", digest)
    r = client.put(loc, content=data,
                   headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 201, r.text
    return digest


def push_raw_image(registry, repo: str, layers: list[bytes], *, diff_ids: list[str] | None = None,
                   sizes: list[int] | None = None) -> str:
    """Push gzip layers ``layers`` with a config (``diff_ids``: the true ones unless given) and a
    manifest (descriptor ``sizes``: the true ones unless given) straight through the registry API."""
    base = f"http://{registry.host}"
    with httpx.Client(timeout=30) as c:
        blobs = [gzip.compress(raw) for raw in layers]
        digests = [_upload(c, base, repo, b) for b in blobs]
        true_ids = ["sha256:" + hashlib.sha256(raw).hexdigest() for raw in layers]
        config = {"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": true_ids if diff_ids is None else diff_ids}}
        cfg = json.dumps(config).encode()
        cfg_digest = _upload(c, base, repo, cfg)
        manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest,
                               "size": len(cfg)},
                    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d,
                                "size": (sizes[i] if sizes else len(b))}
                               for i, (d, b) in enumerate(zip(digests, blobs))]}
        r = c.put(f"{base}/v2/{repo}/manifests/latest", content=json.dumps(manifest).encode(),
                  headers={"Content-Type": manifest["mediaType"]})
        assert r.status_code == 201, r.text
    return f"{registry.host}/{repo}:latest"


def tag_exists(registry, ref: str) -> bool:
    repo_tag = ref.split("/", 1)[1]
    repo, _, tag = repo_tag.rpartition(":")
    r = httpx.head(f"http://{registry.host}/v2/{repo}/manifests/{tag}",
                   headers={"Accept": "application/vnd.oci.image.manifest.v1+json,"
                                      "application/vnd.docker.distribution.manifest.v2+json"})
    return r.status_code == 200


def _ctx(tmp_path: Path, dockerfile: str) -> Path:
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    return ctx


def _executor(registry, ctx: Path, *extra: str):
    dest = f"{registry.host}/bad-input/out:{uuid.uuid4().hex[:8]}"
    p = run_executor(["--context", str(ctx), "--destination", dest, "--insecure-registry", registry.host,
                      "--log-format", "text", "--kaniko-dir", str(ctx) + "-work", *extra], check=False)
    return dest, p


def assert_clean_failure(p, *needles: str) -> None:
    assert p.returncode == 1, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), p.stderr
    for n in needles:
        assert n in last, (n, p.stderr)


# -- 2. base images that lie about their layers -------------------------------------------------

LAYER_A = _tar({"a.txt": b"layer a\n"})
LAYER_B = _tar({"b.txt": b"layer b\n"})
TRUE_IDS = ["sha256:" + hashlib.sha256(x).hexdigest() for x in (LAYER_A, LAYER_B)]
WRONG_ID = "sha256:" + "0" * 64

BAD_IMAGES = {
    # case: (push_raw_image kwargs, words the error line must contain)
    "wrong-diff-id": ({"diff_ids": [TRUE_IDS[0], WRONG_ID]}, ["diff_id", WRONG_ID, "bad-image/wrong-diff-id"]),
    "diff-ids-swapped": ({"diff_ids": [TRUE_IDS[1], TRUE_IDS[0]]}, ["diff_id"]),
    "extra-diff-id": ({"diff_ids": TRUE_IDS + [WRONG_ID]}, ["2 layer(s)", "3 rootfs.diff_ids", "extra-diff-id"]),
    "missing-diff-id": ({"diff_ids": TRUE_IDS[:1]}, ["2 layer(s)", "1 rootfs.diff_ids", "missing-diff-id"]),
    "no-diff-ids": ({"diff_ids": []}, ["2 layer(s)", "0 rootfs.diff_ids"]),
    "size-2-pow-50": ({"sizes": [None, 2 ** 50]}, [str(2 ** 50), "manifest says"]),
    "size-too-small": ({"sizes": [None, 10]}, ["manifest says 10"]),
    "size-one-too-big": ({"sizes": [None, "+1"]}, ["manifest says"]),
}


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_base_image_that_lies_about_its_layers_fails_the_build(registry, tmp_path, case):
    kwargs, needles = BAD_IMAGES[case]
    if "sizes" in kwargs:
        true = [len(gzip.compress(x)) for x in (LAYER_A, LAYER_B)]
        kwargs = {"sizes": [true[i] if s is None else (true[i] + 1 if s == "+1" else s)
                            for i, s in enumerate(kwargs["sizes"])]}
    base = push_raw_image(registry, f"bad-image/{case}", [LAYER_A, LAYER_B], **kwargs)
    ctx = _ctx(tmp_path, f"FROM {base}\nLABEL case={case}\n")
    dest, p = _executor(registry, ctx)
    assert_clean_failure(p, *needles)
    assert not tag_exists(registry, dest)
    # the same failure through COPY --from=<image>
    ctx = _ctx(tmp_path, f"FROM scratch\nCOPY --from={base} /a.txt /a.txt\n")
    dest, p = _executor(registry, ctx)
    assert_clean_failure(p, *needles)
    assert not tag_exists(registry, dest)


def test_honest_raw_image_builds(registry, tmp_path):
    """The helper itself makes a valid image: the same build succeeds and is tagged."""
    base = push_raw_image(registry, "bad-image/honest", [LAYER_A, LAYER_B])
    ctx = _ctx(tmp_path, f"FROM {base}\nLABEL ok=1\n")
    dest, p = _executor(registry, ctx)
    assert p.returncode == 0, p.stderr
    assert tag_exists(registry, dest)


# -- 3. outputs checked before the build and the push ----------------------------------------------

@pytest.mark.parametrize("flag", ["--digest-file", "--image-name-with-digest-file",
                                  "--image-name-tag-with-digest-file", "--tar-path"])
def test_output_path_that_is_a_directory_fails_before_pushing(registry, busybox, tmp_path, flag):
    outdir = tmp_path / "outdir"
    outdir.mkdir()
    ctx = _ctx(tmp_path, f"FROM {busybox}\nRUN echo built > /built\n")
    dest, p = _executor(registry, ctx, flag, str(outdir))
    assert_clean_failure(p, flag, "is a directory")
    assert "stage 0" not in p.stderr  # nothing was built
    assert not tag_exists(registry, dest)  # and, above all, nothing was pushed
    assert list(outdir.iterdir()) == []


def test_unreachable_second_destination_fails_before_the_build(registry, busybox, tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    dead = f"127.0.0.1:{s.getsockname()[1]}"
    s.close()
    ctx = _ctx(tmp_path, f"FROM {busybox}\nRUN sleep 600\n")
    t0 = time.monotonic()
    dest, p = _executor(registry, ctx, "--destination", f"{dead}/x/y:1", "--insecure-registry", dead)
    assert time.monotonic() - t0 < 30
    assert_clean_failure(p, f"--destination {dead}/x/y:1", "cannot reach registry")
    assert not tag_exists(registry, dest)


# -- 4. OS errors and huge lines in instructions -------------------------------------------------

def test_workdir_through_dangling_absolute_symlink_in_base(registry, tmp_path):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("etc")
        info.type, info.linkname, info.mode = tarfile.SYMTYPE, "/a/b/c", 0o777
        t.addfile(info)
    base = push_raw_image(registry, "bad-image/dangling-etc", [raw.getvalue()])
    ctx = _ctx(tmp_path, f"FROM {base}\nLABEL x=y\nWORKDIR /etc/x\n")
    dest, p = _executor(registry, ctx)
    assert_clean_failure(p, "Dockerfile:3: WORKDIR: No such file or directory: /a/b/c")
    assert not tag_exists(registry, dest)


def test_huge_run_command_line_is_not_echoed(registry, busybox, tmp_path):
    """2 MB in one RUN line: the kernel refuses the exec (E2BIG); the error and the logs show
    about 200 characters of it, never the whole line."""
    ctx = _ctx(tmp_path, f"FROM {busybox}\nRUN echo {'y' * 2_000_000} > /out\n")
    dest, p = _executor(registry, ctx)
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("error: Dockerfile:2: RUN"), last[:300]
    assert len(last) < 400, len(last)
    assert len(p.stdout) + len(p.stderr) < 20_000
    assert not tag_exists(registry, dest)


def test_mistyped_copy_from_stage_names_the_line_and_the_stage(registry, busybox, tmp_path):
    """``COPY --from=buidler`` (a typo of the stage ``builder``) is an image reference by
    BuildKit's rule; when that image cannot be had, the error names the Dockerfile line and the
    stage the user probably meant, not only the registry (here Docker Hub is mapped to the test
    registry, which has no library/buidler: 404, no retries)."""
    ctx = _ctx(tmp_path, f"FROM {busybox} AS builder\nRUN echo hi > /x\nFROM {busybox}\nCOPY --from=buidler /x /x\n")
    dest, p = _executor(registry, ctx, "--registry-map", f"docker.io={registry.host}",
                        "--insecure-pull")
    assert_clean_failure(p, "Dockerfile:4:", "--from=buidler", "no stage is named 'buidler'",
                         "did you mean stage 'builder'?", "buidler")
    assert not tag_exists(registry, dest)


def test_copy_from_this_or_a_later_stage_by_number_is_one_line(registry, busybox, tmp_path):
    """``COPY --from=1`` inside stage 1 is refused at that line without asking any registry for
    an image named "1"."""
    ctx = _ctx(tmp_path, f"FROM {busybox} AS a\nRUN echo a > /a\nFROM {busybox}\nCOPY --from=1 /a /a\n")
    dest, p = _executor(registry, ctx)
    assert_clean_failure(p, "Dockerfile:4:", "--from=1: stage 1 is this stage; a stage copies from an earlier one")
    assert "docker.io" not in p.stderr
    assert not tag_exists(registry, dest)
