"""ADD from a URL: download (streamed), verify ``--checksum``, set mtime from Last-Modified.

Source: Docker Dockerfile reference (ADD: remote files are not unpacked; mode 0600;
``--checksum=sha256:...``; destination ending in ``/`` gets the URL's file name).
"""

from __future__ import annotations

import email.utils
import hashlib
import os
import posixpath
import urllib.parse
from pathlib import Path

import httpx

from ...errors import BuildError
from ..fsutil import relpath_in_root, resolve_in_root


def url_filename(url: str) -> str:
    """Last path component of ``url`` (what ``ADD URL /dir/`` names the file)."""
    name = posixpath.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise BuildError("cannot determine a file name from the URL; give a destination file name")
    return name


def download_to(root: Path, url: str, dest: str, chown: tuple[int, int] | None, chmod: int | None,
                checksum: str | None, tmp: Path) -> list[str]:
    """Download ``url`` to in-root ``dest``; returns the written relpaths.

    Raises BuildError on HTTP errors or a checksum mismatch (nothing is written then).
    """
    if url.startswith(("git@", "git://")) or url.endswith(".git") or "github.com/" in url and "#" in url:
        raise BuildError("ADD of a git repository is not supported; clone it in a previous stage and COPY --from")
    final = posixpath.join(dest, url_filename(url)) if dest.endswith("/") else dest
    h = hashlib.sha256()
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
    if checksum:
        alg, _, want = checksum.partition(":")
        if alg != "sha256" or not want:
            raise BuildError(f"--checksum={checksum}: only sha256:<hex> is supported")
        if h.hexdigest() != want:
            tmp.unlink(missing_ok=True)
            raise BuildError(f"checksum mismatch: expected sha256:{want}, got sha256:{h.hexdigest()}")
    parent = resolve_in_root(root, posixpath.dirname(final) or "/")
    written = []
    if not parent.is_dir():
        os.makedirs(parent, 0o755)
        written.append(relpath_in_root(root, parent))
    target = resolve_in_root(root, final, follow_final=False)
    if os.path.lexists(target) and not os.path.isdir(target):
        os.unlink(target)
    os.replace(tmp, target)
    os.chmod(target, chmod if chmod is not None else 0o600)
    uid, gid = chown or (0, 0)
    os.lchown(target, uid, gid)
    if last_modified:
        try:
            ts = email.utils.parsedate_to_datetime(last_modified).timestamp()
            os.utime(target, (ts, ts))
        except (TypeError, ValueError):
            pass
    written.append(relpath_in_root(root, target))
    return written
