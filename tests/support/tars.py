"""Hand-built tar archives for layer tests (hostile and odd entries that real tools refuse to make)."""

from __future__ import annotations

import io
import tarfile


def make_tar(*entries: dict) -> bytes:
    """PAX tar from dicts: name, type ('f','d','l','h','c','b','p'), data, link, mode, uid, gid, mtime, pax."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            ti = tarfile.TarInfo(e["name"])
            kind = e.get("type", "f")
            ti.mode = e.get("mode", 0o755 if kind == "d" else 0o644)
            ti.mtime = e.get("mtime", 1_600_000_000)
            ti.uid, ti.gid = e.get("uid", 0), e.get("gid", 0)
            data = e.get("data", b"")
            ti.type = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "h": tarfile.LNKTYPE,
                       "c": tarfile.CHRTYPE, "b": tarfile.BLKTYPE, "p": tarfile.FIFOTYPE}[kind]
            if kind in "lh":
                ti.linkname = e["link"]
            if kind in "cb":
                ti.devmajor, ti.devminor = e.get("dev", (1, 3))
            if kind == "f":
                ti.size = len(data)
            if "pax" in e:
                ti.pax_headers = e["pax"]
            tf.addfile(ti, io.BytesIO(data) if kind == "f" else None)
    return buf.getvalue()
