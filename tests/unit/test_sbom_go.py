"""Go binaries' embedded build info in the SBOM (executor/sbom/gobuild.py).

Two kinds of input: a real Go binary (umoci, which the integration tests need anyway; Debian
builds it outside module mode, so it names its package path and Go version but no modules), and
crafted files: an ELF magic followed by a build-info blob laid out as Go's linker writes it
(debug/buildinfo's format: magic, pointer size, flags with the inline bit, varint-prefixed
version and module info framed by cmd/go's infoStart/infoEnd sentinels). No Go toolchain is
installed here; the crafted blobs carry modules, dependencies and a replacement."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
from packageurl import PackageURL

from executor.sbom import gobuild, scan_layers

INFO_START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")  # cmd/go/internal/modload infoStart
INFO_END = bytes.fromhex("f932433186182072008242104116d8f2")
MODINFO = ("path\texample.com/hello/cmd/hello\n"
           "mod\texample.com/hello\tv1.4.0\th1:abc=\n"
           "dep\tgithub.com/google/uuid\tv1.6.0\th1:xyz=\n"
           "dep\tgolang.org/x/sys\tv0.1.0\th1:old=\n"
           "=>\tgolang.org/x/sys\tv0.20.0\th1:new=\n"
           "build\t-compiler=gc\nbuild\tGOARCH=arm64\nbuild\tGOOS=linux\n")


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def blob(version: str = "go1.22.3", modinfo: str = MODINFO, flags: int = 2) -> bytes:
    mod = INFO_START + modinfo.encode() + INFO_END
    head = gobuild.MAGIC + bytes([8, flags]) + bytes(16)
    return head + _uvarint(len(version)) + version.encode() + _uvarint(len(mod)) + mod


#: an aligned magic whose "version" is not a Go version (as a string constant of a program that
#: reads build info could look): skipped, the real blob 48 bytes later is read
DECOY = (gobuild.MAGIC + bytes([8, 2]) + bytes(16) + b"\x05nogo!").ljust(48, b"\0")


def elf(payload: bytes, offset: int = 4096) -> bytes:
    """An ELF magic, filler, then ``payload`` at ``offset`` (not a loadable ELF: the reader
    streams the file and needs no section table)."""
    return gobuild.ELF_MAGIC + bytes(offset - 4) + payload + bytes(64)


def layer(tmp_path: Path, name: str, files: dict[str, tuple[bytes, int]]) -> tuple[str, Path]:
    path = tmp_path / name
    with tarfile.open(path, "w") as tf:
        for member, (data, mode) in files.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode = len(data), mode
            tf.addfile(info, io.BytesIO(data))
    return "sha256:" + name.encode().hex().ljust(64, "0")[:64], path


def test_crafted_blob_gives_stdlib_main_module_and_deps_with_replacements(tmp_path):
    inv = scan_layers([layer(tmp_path, "l1", {"usr/bin/hello": (elf(blob()), 0o755)})])
    got = {p.name: (p.version, p.purl) for p in inv.packages}
    assert got == {
        "stdlib": ("go1.22.3", "pkg:golang/stdlib@1.22.3"),
        "example.com/hello": ("v1.4.0", "pkg:golang/example.com/hello@v1.4.0"),
        "github.com/google/uuid": ("v1.6.0", "pkg:golang/github.com/google/uuid@v1.6.0"),
        "golang.org/x/sys": ("v0.20.0", "pkg:golang/golang.org/x/sys@v0.20.0"),  # the => replacement
    }
    assert {p.path for p in inv.packages} == {"usr/bin/hello"} and {p.arch for p in inv.packages} == {"arm64"}
    for _, purl in got.values():
        assert PackageURL.from_string(purl).to_string() == purl and PackageURL.from_string(purl).type == "golang"


def test_magic_must_be_aligned_inline_and_in_an_executable_elf(tmp_path):
    files = {
        "a/unaligned": (elf(blob(), offset=4100), 0o755),         # not on a 16-byte boundary
        "a/pointer-form": (elf(blob(flags=0)), 0o755),            # Go < 1.18: pointers, skipped
        "a/not-elf": (b"#!/bin/sh\n" + bytes(4086) + blob(), 0o755),
        "a/not-executable": (elf(blob()), 0o644),
        "a/decoy-then-real": (elf(DECOY + blob(version="go1.21.1")), 0o755),
    }
    inv = scan_layers([layer(tmp_path, "l1", files)])
    assert {(p.path, p.name, p.version) for p in inv.packages if p.name == "stdlib"} == {
        ("a/decoy-then-real", "stdlib", "go1.21.1")}


def test_blob_across_read_chunks_and_deep_in_the_file(tmp_path):
    at = gobuild.CHUNK - 16 * 3  # the magic starts just before a chunk boundary, its strings after it
    inv = scan_layers([layer(tmp_path, "l1", {"bin/x": (elf(blob(), offset=at), 0o755)})])
    assert inv.count("golang") == 4


def test_later_layers_replace_or_remove_the_binary(tmp_path):
    first = layer(tmp_path, "l1", {"bin/a": (elf(blob()), 0o755), "bin/b": (elf(blob()), 0o755),
                                   "bin/c": (elf(blob()), 0o755)})
    second = layer(tmp_path, "l2", {"bin/a": (b"now a text file", 0o644), "bin/.wh.b": (b"", 0o644),
                                    "bin/c": (elf(blob(version="go1.23.0")), 0o755)})
    inv = scan_layers([first, second])
    assert {(p.path, p.version) for p in inv.packages if p.name == "stdlib"} == {("bin/c", "go1.23.0")}
    assert {p.layer for p in inv.packages if p.name == "stdlib"} == {second[0]}
    # the same modules in the rewritten binary keep the layer that first brought them
    assert {p.layer for p in inv.packages if p.name == "github.com/google/uuid"} == {first[0]}


def test_real_go_binary(tmp_path):
    umoci = shutil.which("umoci")
    if umoci is None:
        pytest.skip("umoci (a Go binary from Debian) is not installed: run scripts/install-deps.sh")
    inv = scan_layers([layer(tmp_path, "l1", {"usr/local/bin/umoci": (Path(umoci).read_bytes(), 0o755)})])
    by_name = {p.name: p for p in inv.packages}
    assert by_name["stdlib"].version.startswith("go1.")
    assert by_name["stdlib"].purl == "pkg:golang/stdlib@" + by_name["stdlib"].version.removeprefix("go")
    # Debian builds outside module mode: the package path, no module version
    assert by_name["github.com/opencontainers/umoci/cmd/umoci"].purl == "pkg:golang/github.com/opencontainers/umoci/cmd/umoci"


def test_decode_blob_rejects_truncation():
    b = blob()
    assert gobuild.decode_blob(b) == ("go1.22.3", MODINFO)
    assert gobuild.decode_blob(b[:40]) is None
    assert gobuild.decode_blob(b[:20]) is None
