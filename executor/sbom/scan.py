"""Find the packages of an image by reading its layer tars in order, never unpacking them.

Works from the layer blobs alone (gzip, zstd or plain tar, sniffed), so it needs no root
directory: a build whose every step was a cache hit has none. Union semantics of the OCI
image-spec (layer.md "Applying changesets"): a later layer's file replaces an earlier one;
``DIR/.wh.NAME`` removes ``DIR/NAME`` and everything under it; ``DIR/.wh..wh..opq`` hides
everything an earlier layer put under ``DIR``; a non-regular entry (directory, symlink, ...)
over a tracked file stops tracking it.

Attribution: each package names the layer that brought its name and version: when a later
layer rewrites a database (``apt-get install`` rewrites the whole dpkg status file), packages
already listed with the same version keep their earlier layer.
"""

from __future__ import annotations

import logging
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import LayerError
from ..layers.decompress import open_decompressed
from . import catalogers, gobuild
from .model import Inventory, Package

log = logging.getLogger("executor.sbom")

WH = ".wh."
WH_OPAQUE = ".wh..wh..opq"


@dataclass
class _File:
    kind: str
    layer: str
    data: bytes = b""
    packages: list[Package] = field(default_factory=list)


def _clean(name: str) -> str:
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return "/".join(parts)


def scan_layers(layers: Iterable[tuple[str, Path]]) -> Inventory:
    """Packages of the image whose layers are ``(digest, blob path)`` in manifest order.

    Raises LayerError for a blob that is not a readable (compressed) tar.
    """
    files: dict[str, _File] = {}
    inv = Inventory()
    for digest, blob in layers:
        inv.layers.append(digest)
        _apply(digest, blob, files)
    distro: dict[str, str] = {}
    for p in catalogers.OS_RELEASE:
        if p in files:
            distro = catalogers.parse_os_release(files[p].data)
            break
    inv.distro = {k: distro[k] for k in ("ID", "VERSION_ID", "PRETTY_NAME") if k in distro}
    # the distro is only known at the end: re-parse databases whose purls carry it
    for path, f in sorted(files.items()):
        if f.kind == "os-release":
            continue
        pkgs = f.packages
        if f.kind in ("deb", "apk") and distro:
            by_id = {p.identity: p.layer for p in pkgs}
            pkgs = catalogers.parse(f.kind, path, f.data, distro)
            for p in pkgs:
                p.layer = by_id.get(p.identity, f.layer)
        inv.packages.extend(pkgs)
    inv.packages.sort(key=lambda p: (p.ecosystem, p.name.lower(), p.version, p.path))
    return inv


def _apply(digest: str, blob: Path, files: dict[str, _File]) -> None:
    added: set[str] = set()
    # ancestors of tracked files (may be stale after deletions: then only a wasted scan)
    dirs = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    try:
        with open(blob, "rb") as raw, open_decompressed(raw) as data, \
                tarfile.open(fileobj=data, mode="r|", errorlevel=1) as tf:
            for m in tf:
                path = _clean(m.name)
                if not path:
                    continue
                head, _, base = path.rpartition("/")
                if base == WH_OPAQUE:
                    prefix = head + "/" if head else ""
                    for p in [p for p in files if p.startswith(prefix) and p not in added]:
                        del files[p]
                    continue
                if base.startswith(WH):
                    gone = (head + "/" if head else "") + base[len(WH):]
                    for p in [p for p in files if p == gone or p.startswith(gone + "/")]:
                        del files[p]
                    continue
                if path in dirs and not m.isdir():
                    for p in [p for p in files if p.startswith(path + "/")]:
                        del files[p]  # a directory replaced by a file, link or device
                if not m.isreg():
                    files.pop(path, None)
                    continue

                kind = catalogers.kind_of(path)
                if kind is None:
                    if m.mode & 0o111 and m.size >= gobuild.HEADER:
                        _go_binary(tf, m, path, digest, files, added)
                    elif files.get(path) is not None and files[path].kind == "go":
                        del files[path]  # a Go binary replaced by a file that is not executable
                    continue
                limit = catalogers.MAX_DB_BYTES if kind in ("deb", "apk") else catalogers.MAX_META_BYTES
                if m.size > limit:
                    log.warning("sbom: %s in layer %s is %d bytes; skipped (over %d)", path, digest[:19], m.size, limit)
                    files.pop(path, None)
                    continue
                fobj = tf.extractfile(m)
                content = fobj.read() if fobj is not None else b""
                pkgs = [] if kind == "os-release" else catalogers.parse(kind, path, content, {})
                before = {p.identity: p.layer for p in files[path].packages} if path in files else {}
                for p in pkgs:
                    p.layer = before.get(p.identity, digest)
                files[path] = _File(kind, digest, content if kind in ("deb", "apk", "os-release") else b"", pkgs)
                added.add(path)
                dirs.update("/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1))
    except (tarfile.TarError, EOFError) as e:
        raise LayerError(f"sbom: layer {digest}: not a readable tar ({e})") from None


def _go_binary(tf: tarfile.TarFile, m: tarfile.TarInfo, path: str, digest: str, files: dict[str, _File],
               added: set[str]) -> None:
    """Track ``path`` as a Go binary when its content holds Go build info, else stop tracking it."""
    fobj = tf.extractfile(m)
    found = gobuild.find_buildinfo(fobj, m.size) if fobj is not None else None
    if found is None:
        files.pop(path, None)
        return
    before = {p.identity: p.layer for p in files[path].packages} if path in files else {}
    pkgs = gobuild.packages(found[0], found[1], path)
    for p in pkgs:
        p.layer = before.get(p.identity, digest)
    files[path] = _File("go", digest, b"", pkgs)
    added.add(path)
