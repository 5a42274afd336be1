"""ADD from a URL: download (streamed), verify ``--checksum``, set mtime from Last-Modified.

Source: Docker Dockerfile reference (ADD: remote files are not unpacked; mode 0600;
``--checksum=sha256:...``; destination ending in ``/`` gets the URL's file name), plus local
tar archive detection (gzip, bzip2, xz, zstd) and ``--checksum`` for local files (Docker
accepts it only for URLs; verifying a local file too is a strict superset), and the git URL
check (ADD of a git repository is not supported: a clear error).
"""

from __future__ import annotations

import bz2
import errno
import email.utils
import gzip
import hashlib
import lzma
import os
import posixpath
import re
import shutil
import urllib.parse
from pathlib import Path
from typing import BinaryIO

import httpx

from ...errors import BuildError
from ...fs.owners import set_owner
from ...fs.paths import relpath_in_root, resolve_in_root


CHECKSUM_ALGORITHMS = ("sha256", "sha384", "sha512")
_GIT_URL = re.compile(r"^(git@|git://|github\.com/|https?://.*\.git(#.+)?$)")


def is_git_url(source: str) -> bool:
    """True for what Docker treats as a git repository (moby urlutil.IsGitURL): ``git@...``,
    ``git://...``, ``github.com/...``, or an http(s) URL whose path ends in ``.git`` (``#ref`` allowed)."""
    return bool(_GIT_URL.match(source))


def parse_checksum(checksum: str) -> tuple[str, str]:
    """``sha256:<hex>`` (or sha384/sha512) -> (algorithm, lower-case hex); BuildError otherwise."""
    alg, _, want = checksum.partition(":")
    alg = alg.lower()
    size = {"sha256": 64, "sha384": 96, "sha512": 128}.get(alg)
    if size is None or not re.fullmatch(r"[0-9a-fA-F]{%d}" % size, want):
        raise BuildError(f"--checksum={checksum}: expected ALGORITHM:HEX with ALGORITHM one of "
                         f"{', '.join(CHECKSUM_ALGORITHMS)} (e.g. sha256:<64 hex digits>)")
    return alg, want.lower()


def verify_file_checksum(path: Path, checksum: str) -> None:
    """Raise BuildError unless the content of local file ``path`` has digest ``checksum``."""
    alg, want = parse_checksum(checksum)
    if not path.is_file():
        raise BuildError("--checksum applies to a single file, not a directory")
    h = hashlib.new(alg)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    if h.hexdigest() != want:
        raise BuildError(f"checksum mismatch: expected {alg}:{want}, got {alg}:{h.hexdigest()}")


_MAGICS = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"))


def open_archive(path: Path) -> BinaryIO | None:
    """A readable stream of the plain tar inside ``path`` when it is a tar archive (uncompressed or
    compressed with gzip, bzip2, xz or zstd, told by magic bytes as Docker does), else None.

    Source: Docker Dockerfile reference, ADD ("identity, gzip, bzip2 or xz" local archives are
    unpacked; BuildKit also reads zstd). The caller closes the stream."""
    try:
        if not path.is_file():
            return None
        with open(path, "rb") as f:
            head = f.read(8)
        kind = next((k for m, k in _MAGICS if head.startswith(m)), "none")
        with _open_kind(path, kind) as stream:
            block = stream.read(512)
        if len(block) < 262 or block[257:262] != b"ustar":
            return None
        return _open_kind(path, kind)
    except Exception:  # unreadable, not decompressible or truncated: an ordinary file, copied as is
        return None


def _open_kind(path: Path, kind: str) -> BinaryIO:
    if kind == "gzip":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if kind == "bzip2":
        return bz2.open(path, "rb")  # type: ignore[return-value]
    if kind == "xz":
        return lzma.open(path, "rb")  # type: ignore[return-value]
    if kind == "zstd":
        import zstandard
        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)  # type: ignore[return-value]
    return open(path, "rb")


def url_filename(url: str) -> str:
    """Last path component of ``url`` (what ``ADD URL /dir/`` names the file)."""
    name = posixpath.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise BuildError("cannot determine a file name from the URL; give a destination file name")
    return name


def download_to(root: Path, url: str, dest: str, chown: tuple[int, int] | None, chmod: int | None,
                checksum: str | None, tmp: Path) -> tuple[list[str], str]:
    """Download ``url`` to in-root ``dest``; returns (the written relpaths, ``alg:hex`` of the
    bytes fetched; the algorithm of ``checksum``, else sha256).

    Raises BuildError on HTTP errors or a checksum mismatch (nothing is written then).
    """
    if is_git_url(url):
        raise BuildError("ADD of a git repository is not supported; clone it in a previous stage "
                         "(RUN git clone ...) and COPY --from that stage")
    if not url.startswith(("http://", "https://")):
        raise BuildError("only http:// and https:// URLs can be added")
    alg, want = parse_checksum(checksum) if checksum else ("sha256", "")
    final = posixpath.join(dest, url_filename(url)) if dest.endswith("/") else dest
    h = hashlib.new(alg)
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as r:
            if r.status_code != 200:
                raise BuildError(f"download failed: HTTP {r.status_code}")
            last_modified = r.headers.get("last-modified")
            with open(tmp, "wb") as f:
                for chunk in r.iter_bytes(1 << 20):
                    h.update(chunk)
                    f.write(chunk)
    except httpx.HTTPError as e:
        raise BuildError(f"download failed: {e}") from None
    if want and h.hexdigest() != want:
        tmp.unlink(missing_ok=True)
        raise BuildError(f"checksum mismatch: expected {alg}:{want}, got {alg}:{h.hexdigest()}")
    parent = resolve_in_root(root, posixpath.dirname(final) or "/")
    written = []
    if not parent.is_dir():
        os.makedirs(parent, 0o755)
        os.chmod(parent, 0o755)  # mkdir applied the caller's umask
        written.append(relpath_in_root(root, parent))
    target = resolve_in_root(root, final, follow_final=False)
    if os.path.lexists(target) and not os.path.isdir(target):
        os.unlink(target)
    try:
        os.replace(tmp, target)
    except OSError as e:
        if e.errno != errno.EXDEV:  # the root is another filesystem (an overlay stage root)
            raise
        shutil.copyfile(tmp, target)
        os.unlink(tmp)
    uid, gid = chown or (0, 0)
    set_owner(target, uid, gid)  # before chmod: a read-only file takes no user.* attribute
    os.chmod(target, chmod if chmod is not None else 0o600)
    if last_modified:
        try:
            ts = email.utils.parsedate_to_datetime(last_modified).timestamp()
            os.utime(target, (ts, ts))
        except (TypeError, ValueError):
            pass
    written.append(relpath_in_root(root, target))
    return written, f"{alg}:{h.hexdigest()}"
