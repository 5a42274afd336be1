"""Go binaries' embedded build information: the Go version, the main module and every module
the binary was linked from, as ``pkg:golang`` packages.

Format (Go 1.18+, read as Go's ``debug/buildinfo`` does): the linker puts a blob in the
``.go.buildinfo`` section of the data segment, aligned to 16 bytes::

    "\\xff Go buildinf:" (14 bytes) | pointer size (1) | flags (1) | 16 bytes unused
    | uvarint length + Go version string ("go1.21.0")      -- only when flags & 2 ("inline"):
    | uvarint length + module info string                  -- older blobs hold pointers instead

The module info string is framed by two 16-byte sentinels (``cmd/go/internal/modload``'s
``infoStart`` / ``infoEnd``) and holds tab-separated lines (``runtime/debug.ParseBuildInfo``)::

    path  <main package path>
    mod   <module path> <version> [<sum>]        the main module
    dep   <module path> <version> [<sum>]        one per dependency
    =>    <module path> <version> [<sum>]        replaces the mod/dep line before it
    build <key>=<value>                          GOOS, GOARCH, -compiler, vcs.revision, ...

Only ELF files (``\\x7fELF``) are searched, by streaming them (no section table is needed: the
first 16-aligned magic whose blob decodes wins). Binaries of Go before 1.18 (pointer form) are
skipped. Packages: ``stdlib`` at the Go version (``pkg:golang/stdlib@1.21.0``, as syft names it),
the main module (the ``path`` when the binary was built outside module mode, with no version),
and every dependency at its replacement's path and version when replaced.
"""

from __future__ import annotations

from typing import BinaryIO

from packageurl import PackageURL

from .model import Package

MAGIC = b"\xff Go buildinf:"
ALIGN = 16
HEADER = 32
FLAG_INLINE = 2
ELF_MAGIC = b"\x7fELF"
CHUNK = 1 << 20
MAX_BLOB = 1 << 20      # module info of a large program is tens of KiB
MAX_BINARY = 1 << 30    # larger files are not searched


def _uvarint(data: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while i < len(data) and shift < 64:
        b = data[i]
        i += 1
        n |= (b & 0x7F) << shift
        if b < 0x80:
            return n, i
        shift += 7
    raise ValueError("truncated varint")


def decode_blob(blob: bytes) -> tuple[str, str] | None:
    """(Go version, module info text without its sentinels) of a blob that starts with the
    magic; None for the pre-1.18 pointer form or anything malformed."""
    if len(blob) < HEADER or not blob.startswith(MAGIC) or not blob[15] & FLAG_INLINE:
        return None
    try:
        n, i = _uvarint(blob, HEADER)
        version = blob[i:i + n]
        if len(version) != n:
            return None
        m, j = _uvarint(blob, i + n)
        mod = blob[j:j + m]
        if len(mod) != m:
            return None
    except ValueError:
        return None
    if not version.startswith(b"go") and not version.startswith(b"devel"):
        return None
    text = mod[16:-16].decode("utf-8", "replace") if len(mod) >= 33 and mod[-17:-16] == b"\n" else ""
    return version.decode("utf-8", "replace"), text


def find_buildinfo(f: BinaryIO, size: int) -> tuple[str, str] | None:
    """Read the ELF file ``f`` (``size`` bytes) once from its start and return its build info
    (see :func:`decode_blob`), or None when it is not an ELF file or holds no Go build info."""
    head = f.read(len(ELF_MAGIC))
    if head != ELF_MAGIC or size > MAX_BINARY:
        return None
    buf, base = head, 0  # buf holds the file's bytes from offset ``base``
    eof = False
    while True:
        start = 0
        while (k := buf.find(MAGIC, start)) >= 0:
            if (base + k) % ALIGN:
                start = k + 1
                continue
            while len(buf) - k < MAX_BLOB and not eof:
                more = f.read(CHUNK)
                eof = not more
                buf += more
            found = decode_blob(buf[k:k + MAX_BLOB])
            if found is not None:
                return found
            start = k + 1
        if eof:
            return None
        kept = buf[-(len(MAGIC) - 1):]
        base += len(buf) - len(kept)
        buf = kept
        more = f.read(CHUNK)
        eof = not more
        buf += more


def _purl(path: str, version: str | None) -> str:
    ns, _, name = path.rpartition("/")
    return PackageURL(type="golang", namespace=ns or None, name=name, version=version or None).to_string()


def packages(version: str, modinfo: str, path: str) -> list[Package]:
    """Packages of one Go binary at ``path`` (no leading ``/``) from its build info."""
    settings: dict[str, str] = {}
    main_path = None
    modules: list[list[str]] = []   # [kind, module path, version]
    for line in modinfo.splitlines():
        f = line.split("\t")
        if f[0] == "path" and len(f) >= 2:
            main_path = f[1]
        elif f[0] in ("mod", "dep") and len(f) >= 3:
            modules.append([f[0], f[1], f[2]])
        elif f[0] == "=>" and len(f) >= 3 and modules:
            modules[-1][1:] = [f[1], f[2]]
        elif f[0] == "build" and len(f) >= 2:
            k, _, v = f[1].partition("=")
            settings[k] = v
    arch = settings.get("GOARCH") or None
    out = []
    go = version.removeprefix("go").split(" ")[0]
    out.append(Package("golang", "stdlib", version, _purl("stdlib", go), "BSD-3-Clause", path=path, arch=arch))
    if not any(kind == "mod" for kind, _, _ in modules) and main_path:
        out.append(Package("golang", main_path, "", _purl(main_path, None), None, path=path, arch=arch))
    for kind, mod_path, mod_version in modules:
        v = None if mod_version == "(devel)" else mod_version
        out.append(Package("golang", mod_path, mod_version, _purl(mod_path, v), None, path=path, arch=arch))
    return out
