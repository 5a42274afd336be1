"""COPY sources reached through symlinks never read the build host's files.

``COPY --from=<stage|image>``: every symlink in the source path (middle components, wildcard
matches, the top-level source itself) is resolved inside that stage's or image's root as if it
were ``/`` (BuildKit's rule), so ``/leak -> /tmp/x/secret`` means ``<root>/tmp/x/secret``.
Build context: a symlink may not lead to a ``.dockerignore``d file (BuildKit never sends that
file, so the link dangles: "not found").

SAFETY: the "host secret" is a sentinel file in a temp directory this test creates.
"""

from __future__ import annotations

import json
import os
import tarfile
import uuid
from pathlib import Path

import pytest

from tests.support.tools import run_executor

pytestmark = pytest.mark.integration


def _sentinel(tmp_path: Path) -> tuple[Path, str]:
    d = tmp_path / "sentinel"
    d.mkdir()
    token = "HOST-SECRET-" + uuid.uuid4().hex
    (d / "secret.txt").write_text(token + "\n")
    return d, token


def _build(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None, links: dict[str, str] | None = None,
           registry=None, ignore: str | None = None):
    ctx = tmp_path / f"ctx-{uuid.uuid4().hex[:6]}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(dockerfile)
    for name, content in (files or {}).items():
        (ctx / name).parent.mkdir(parents=True, exist_ok=True)
        (ctx / name).write_text(content)
    for name, target in (links or {}).items():
        os.symlink(target, ctx / name)
    if ignore is not None:
        (ctx / ".dockerignore").write_text(ignore)
    layout = ctx.parent / (ctx.name + "-layout")
    args = ["--context", str(ctx), "--no-push", "--oci-layout-path", str(layout), "--log-format", "text",
            "--kaniko-dir", str(ctx.parent / (ctx.name + "-work"))]
    if registry is not None:
        args += ["--insecure-registry", registry.host]
    p = run_executor(args, check=False)
    return p, layout


def _files(layout: Path) -> dict[str, tarfile.TarInfo | bytes]:
    """Every entry of every layer (later layers win): name -> file bytes, or the TarInfo of a non-file."""
    blobs = layout / "blobs" / "sha256"
    idx = json.loads((layout / "index.json").read_text())
    man = json.loads((blobs / idx["manifests"][0]["digest"][7:]).read_text())
    out: dict[str, tarfile.TarInfo | bytes] = {}
    for layer in man["layers"]:
        with tarfile.open(blobs / layer["digest"][7:]) as t:
            for m in t.getmembers():
                name = m.name.lstrip("./").rstrip("/")
                out[name] = t.extractfile(m).read() if m.isreg() else m
    return out


def _assert_no_leak(p, layout: Path, token: str) -> None:
    assert token not in p.stdout + p.stderr
    if layout.exists():
        for blob in (layout / "blobs" / "sha256").iterdir():
            data = blob.read_bytes()
            assert token.encode() not in data
            if data[:2] == b"\x1f\x8b":
                import gzip
                assert token.encode() not in gzip.decompress(data)


LEAK_CASES = {
    "file-symlink": "COPY --from=a /leakfile /got-file",
    "dir-symlink": "COPY --from=a /leakdir /got-dir",
    "via-parent": "COPY --from=a /leakdir/secret.txt /got-via-parent",
    "via-parent-wildcard": "COPY --from=a /leakdir/*.txt /got/",
    "wildcard-match-is-link": "COPY --from=a /leak* /got/",
    "relative-escape": "COPY --from=a /up/SENTINEL/secret.txt /got-rel",
}


@pytest.mark.parametrize("case", sorted(LEAK_CASES))
def test_copy_from_stage_does_not_follow_symlinks_on_host(registry, busybox, tmp_path, case):
    sentinel, token = _sentinel(tmp_path)
    copy = LEAK_CASES[case].replace("SENTINEL", str(sentinel).lstrip("/"))
    dockerfile = (f"FROM {busybox} AS a\n"
                  f"RUN ln -s {sentinel}/secret.txt /leakfile && ln -s {sentinel} /leakdir && ln -s {'../' * 30} /up\n"
                  f"FROM {busybox}\n"
                  f"{copy}\n")
    p, layout = _build(tmp_path, dockerfile, registry=registry)
    _assert_no_leak(p, layout, token)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert "not found" in p.stderr and "Dockerfile:4" in p.stderr, p.stderr
    assert not layout.exists()


def test_copy_from_stage_resolves_symlinks_inside_the_stage(registry, busybox, tmp_path):
    """The same symlinks resolve to the stage's own files when it has them; links inside a copied
    directory stay links."""
    sentinel, token = _sentinel(tmp_path)
    dockerfile = (f"FROM {busybox} AS a\n"
                  f"RUN mkdir -p {sentinel} && echo in-stage > {sentinel}/secret.txt"
                  f" && ln -s {sentinel}/secret.txt /leakfile && ln -s {sentinel} /leakdir"
                  f" && mkdir /tree && ln -s {sentinel}/secret.txt /tree/abs-link\n"
                  f"FROM {busybox}\n"
                  f"COPY --from=a /leakfile /got-file\n"
                  f"COPY --from=a /leakdir /got-dir\n"
                  f"COPY --from=a /leakdir/secret.txt /got-via-parent\n"
                  f"COPY --from=a /tree/ /tree/\n")
    p, layout = _build(tmp_path, dockerfile, registry=registry)
    assert p.returncode == 0, p.stderr
    _assert_no_leak(p, layout, token)
    files = _files(layout)
    assert files["got-file"] == b"in-stage\n"
    assert files["got-dir/secret.txt"] == b"in-stage\n"
    assert files["got-via-parent"] == b"in-stage\n"
    link = files["tree/abs-link"]
    assert isinstance(link, tarfile.TarInfo) and link.issym() and link.linkname == f"{sentinel}/secret.txt"


def test_copy_from_image_does_not_follow_symlinks_on_host(registry, tmp_path):
    """``COPY --from=<image>`` whose layer holds absolute symlinks to a host path."""
    from tests.integration.test_hostile_base import _entry, push_hostile_image
    sentinel, token = _sentinel(tmp_path)
    entries = [_entry("leakfile", tarfile.SYMTYPE, f"{sentinel}/secret.txt"),
               _entry("leakdir", tarfile.SYMTYPE, str(sentinel)),
               _entry("okfile")]
    ref = push_hostile_image(registry, tmp_path / "img-layout", entries, f"symlinks-{uuid.uuid4().hex[:8]}")
    for i, copy in enumerate(["COPY --from=IMG /leakfile /got", "COPY --from=IMG /leakdir /got/",
                              "COPY --from=IMG /leakdir/secret.txt /got"]):
        p, layout = _build(tmp_path, "FROM scratch\n" + copy.replace("IMG", ref) + "\n", registry=registry)
        _assert_no_leak(p, layout, token)
        assert p.returncode == 1 and "not found" in p.stderr and "Traceback" not in p.stderr, (copy, p.stderr)
    p, layout = _build(tmp_path, f"FROM scratch\nCOPY --from={ref} /okfile /ok\n", registry=registry)
    assert p.returncode == 0, p.stderr
    assert _files(layout)["ok"] == b"pwned\n"


IGNORE_CASES = {
    # name: (links, COPY line, expected: "not found" or the file names that must exist)
    "link-to-ignored-file": ({"innocent": "secret.env"}, "COPY innocent /innocent", "not found"),
    "link-to-ignored-file-wildcard": ({"innocent": "secret.env"}, "COPY inno* /d/", "not found"),
    "link-to-ignored-dir-file": ({"linkdir": "private"}, "COPY linkdir/key.pem /key", "not found"),
    "dir-via-link-keeps-ignore": ({"pubdir": "public"}, "COPY pubdir /d/", ["d/ok.txt"]),
}


@pytest.mark.parametrize("case", sorted(IGNORE_CASES))
def test_dockerignored_file_not_copyable_through_context_symlink(tmp_path, case):
    links, copy, expected = IGNORE_CASES[case]
    token = "IGNORED-" + uuid.uuid4().hex
    files = {"secret.env": token, "private/key.pem": token, "public/ok.txt": "ok", "public/hidden.env": token}
    p, layout = _build(tmp_path, f"FROM scratch\n{copy}\n", files=files, links=links,
                       ignore="secret.env\nprivate\npublic/hidden.env\n")
    _assert_no_leak(p, layout, token)
    assert "Traceback" not in p.stderr
    if expected == "not found":
        assert p.returncode == 1, p.stderr
        assert "not found" in p.stderr and "Dockerfile:2" in p.stderr, p.stderr
    else:
        assert p.returncode == 0, p.stderr
        names = sorted(n for n, v in _files(layout).items() if isinstance(v, bytes))
        assert names == expected


def test_context_symlink_to_included_file_still_copies(tmp_path):
    p, layout = _build(tmp_path, "FROM scratch\nCOPY innocent /innocent\n", files={"real.txt": "fine\n"},
                       links={"innocent": "real.txt"}, ignore="secret.env\n")
    assert p.returncode == 0, p.stderr
    assert _files(layout)["innocent"] == b"fine\n"
