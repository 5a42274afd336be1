"""Blob uploads: existence check, cross-repository mount, monolithic or chunked upload with resume.

OCI distribution-spec v1.1, spec.md "Checking if content exists", "Mounting a blob from
another repository", "Pushing blobs" (POST then PUT, or POST, PATCH chunks, PUT) and
"Resuming an upload" (``GET`` on the session: ``Range: 0-<last byte>``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from executor.errors import RegistryError
from executor.reference import Reference
from executor.registry.auth import scope_for
from executor.registry.cancel import Cancelled, CancelToken
from executor.registry.core import ClientCore
from executor.registry.messages import error_detail
from executor.registry.endpoints import Endpoint
from executor.registry.transport import IntegrityError, TransientError

log = logging.getLogger("executor.registry")

#: Bytes handed to the connection per body piece.
SEND_PIECE = 1024 * 1024


class BlobUploads(ClientCore):
    """Blob push operations of :class:`~executor.registry.client.RegistryClient`."""

    def blob_exists(self, ref: Reference, digest: str) -> bool:
        """``HEAD /v2/<name>/blobs/<digest>``: True on 200 (or a redirect to storage), False on 404
        (spec.md "Checking if content exists"). Asks for ``pull,push`` scope, as a push is
        what follows. Raises RegistryError (with ``status``) for any other answer."""
        scopes = (scope_for(ref.repository, "pull,push"),)

        def once(ep: Endpoint):
            return self._transport.send(ep, "HEAD", self._url(ep, ref, "blobs", digest), scopes)

        resp = self._call(ref.registry, False, f"checking blob {digest} in {ref.name}", once)
        if resp.status_code == 200:
            return True
        if resp.status_code == 404:
            return False
        # Some registries answer 307 to HEAD for redirected storage: it exists.
        if resp.status_code in (301, 302, 307, 308):
            return True
        raise self._fail(ref, "the blob check (before pushing)", resp)

    def mount_blob(self, ref: Reference, digest: str, from_repository: str) -> bool:
        """``POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<repo>`` (spec.md
        "Mounting a blob from another repository"). True if mounted (201); False
        when the registry opened an upload instead (202; that session is cancelled) or
        refused the source (401/403/404: the caller uploads instead). Raises RegistryError
        (with ``status``) for any other answer."""
        scopes = (scope_for(ref.repository, "pull,push"), scope_for(from_repository, "pull"))

        def once(ep: Endpoint):
            return self._transport.send(ep, "POST", f"{ep.base}/v2/{ref.repository}/blobs/uploads/", scopes,
                                        params={"mount": digest, "from": from_repository}, content=b"")

        resp = self._call(ref.registry, False, f"mounting blob {digest} into {ref.name}", once)
        if resp.status_code == 201:
            log.info("mounted %s from %s into %s", digest, from_repository, ref.name)
            return True
        if resp.status_code == 202:
            loc = resp.headers.get("Location")
            if loc:
                ep = self._endpoint(ref.registry, False)
                try:
                    self._transport.send(ep, "DELETE", str(httpx.URL(ep.base + "/").join(loc)), scopes).close()
                except Exception:  # noqa: BLE001 - cancelling is best effort
                    pass
            return False
        if resp.status_code in (401, 403, 404):
            return False
        raise self._fail(ref, "the blob mount", resp)

    def upload_blob(self, ref: Reference, path_or_bytes: Path | bytes, digest: str, size: int,
                    stop: threading.Event | None = None) -> str:
        """Upload a blob unless it already exists (spec.md "Pushing blobs"); returns
        ``"exists"``, ``"mounted"`` or ``"uploaded"``.

        ``POST`` opens a session; blobs up to ``chunk_size`` bytes go in one
        ``PUT ?digest=``; larger ones as ``PATCH`` chunks with ``Content-Range``,
        then a closing ``PUT``. After a broken connection the upload resumes from
        the offset the registry reports (``GET`` the session, ``Range: 0-N``),
        or restarts with a new session if the session is gone; when the registry
        answers the commit with ``DIGEST_INVALID`` (bytes corrupted on the way) the blob
        is uploaded again from scratch. All within the push budget (``--push-retry``).
        ``path_or_bytes`` is streamed from disk when it is a Path; ``size`` in bytes.

        One upload of a blob per registry (this client's threads): a second upload of the same
        digest to the same registry -- while the first is in flight (it waits for it) or after
        the first completed -- mounts the blob from that repository (spec.md "Mounting a blob
        from another repository") instead of sending the bytes again, e.g. a layer the layer
        cache and the destination both store, whichever of them comes first; it uploads only
        when the registry refuses the mount. ``stop`` (set from another thread) abandons the
        upload between 1 MiB pieces with :class:`~executor.registry.cancel.Cancelled`, this
        client staying usable.
        Raises RegistryError naming the registry and the blob.
        """
        if self.blob_exists(ref, digest):
            log.debug("blob %s already in %s; skipping upload", digest, ref.name)
            return "exists"
        return self.upload_absent_blob(ref, path_or_bytes, digest, size, stop)

    def upload_absent_blob(self, ref: Reference, path_or_bytes: Path | bytes, digest: str, size: int,
                           stop: threading.Event | None = None) -> str:
        """:meth:`upload_blob` for a caller that has just found ``digest`` missing from ``ref``'s
        repository (``HEAD`` 404): the same claim, mount and upload, without asking again.
        Returns ``"exists"``, ``"mounted"`` or ``"uploaded"``; raises as upload_blob."""
        with _in_flight(self).claim(ref, digest, self._cancel, stop) as holder:
            if holder == ref.repository and self.blob_exists(ref, digest):
                return "exists"
            if holder is not None and holder != ref.repository and self.mount_blob(ref, digest, holder):
                return "mounted"
            self._upload_new(ref, path_or_bytes, digest, size, stop)
            return "uploaded"

    def _upload_new(self, ref: Reference, path_or_bytes: Path | bytes, digest: str, size: int,
                    stop: threading.Event | None) -> None:
        src = BlobSource(path_or_bytes, size, self._cancel, stop)
        scopes = (scope_for(ref.repository, "pull,push"),)
        chunk = max(1, int(self.options.chunk_size))
        state: dict = {"location": None, "offset": 0, "confirmed": 0, "rewinds": 0}

        def open_session(ep: Endpoint) -> None:
            resp = self._transport.send(ep, "POST", f"{ep.base}/v2/{ref.repository}/blobs/uploads/", scopes, content=b"")
            if resp.status_code not in (202, 201):
                raise self._fail(ref, "the push", resp)
            loc = resp.headers.get("Location")
            if not loc:
                raise RegistryError(f"registry {ref.registry} opened an upload for {ref.name} without a Location header",
                                    status=resp.status_code)
            state["location"] = str(httpx.URL(ep.base + "/").join(loc))
            state["offset"] = state["confirmed"] = 0

        def resume_offset(ep: Endpoint) -> None:
            """Ask the registry how much of the session it has (spec.md "Resuming an upload")."""
            resp = self._transport.send(ep, "GET", state["location"], scopes)
            if resp.status_code == 204 and (rng := resp.headers.get("Range")):
                end = int(rng.split("-")[-1])
                # distribution reports "0-0" both for 0 and for 1 byte received: trust our own
                # last confirmed offset to tell them apart.
                state["offset"] = end + 1 if end > 0 else min(state["confirmed"], 1)
                if resp.headers.get("Location"):
                    state["location"] = str(httpx.URL(state["location"]).join(resp.headers["Location"]))
            else:
                state["location"] = None

        def once(ep: Endpoint) -> None:
            if state.get("broken"):
                state["broken"] = False
                if state["location"] is not None and size > chunk:
                    resume_offset(ep)
                else:
                    state["location"] = None
            if state["location"] is None:
                open_session(ep)
            try:
                if size <= chunk:
                    put = self._transport.send(
                        ep, "PUT", _with_digest(state["location"], digest), scopes,
                        headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                        content=lambda: src.iter_range(0, size))
                else:
                    while state["offset"] < size:
                        off = state["offset"]
                        end = min(size, off + chunk)
                        resp = self._transport.send(
                            ep, "PATCH", state["location"], scopes,
                            headers={"Content-Type": "application/octet-stream", "Content-Length": str(end - off),
                                     "Content-Range": f"{off}-{end - 1}"},
                            content=lambda off=off, end=end: src.iter_range(off, end))
                        if resp.status_code == 416:
                            state["rewinds"] += 1
                            if state["rewinds"] > 3:
                                raise self._fail(ref, "the push (upload offsets keep disagreeing)", resp)
                            resume_offset(ep)
                            if state["location"] is None:
                                raise TransientError("upload session lost")
                            continue
                        if resp.status_code != 202:
                            raise self._fail(ref, "the push", resp)
                        if resp.headers.get("Location"):
                            state["location"] = str(httpx.URL(state["location"]).join(resp.headers["Location"]))
                        rng = resp.headers.get("Range")
                        state["offset"] = state["confirmed"] = int(rng.split("-")[-1]) + 1 if rng else end
                    put = self._transport.send(ep, "PUT", _with_digest(state["location"], digest), scopes,
                                               headers={"Content-Length": "0"}, content=b"")
            except (httpx.TransportError, TransientError):
                state["broken"] = True
                raise
            if put.status_code == 404 and size > chunk:
                state["location"] = None
                raise TransientError("upload session vanished before commit")
            if put.status_code == 400 and "DIGEST_INVALID" in (detail := error_detail(put)):
                local = src.sha256()
                if local != digest:   # our own bytes are not that blob: no retry can help
                    raise RegistryError(
                        f"registry {ref.registry} refused blob {digest} for repo '{ref.repository}' (400 bad request: "
                        f"{detail}): the data being pushed hashes to {local}; the file changed while it was pushed "
                        "or is not that blob", status=400)
                # Our bytes are right, the registry hashed what it received to something else: they
                # were corrupted on the way. That session is useless; upload again from scratch.
                state["location"] = None
                raise IntegrityError(f"the registry received bytes that do not hash to {digest} ({detail})")
            if put.status_code not in (201, 204):
                raise self._fail(ref, "the push", put)

        self._call(ref.registry, False, f"uploading blob {digest} ({size} bytes) to {ref.name}", once)
        log.info("uploaded blob %s (%d bytes) to %s", digest, size, ref.name)


class BlobSource:
    """Byte ranges of a file or bytes object of ``size`` bytes, streamed in 1 MiB pieces.

    Raises RegistryError when the source's size differs from ``size`` (at creation) or
    the file shrinks while it is being read; :class:`~executor.registry.cancel.Cancelled`
    between pieces once ``cancel`` is cancelled (ending the request body mid-way)."""

    def __init__(self, src: Path | bytes, size: int, cancel: CancelToken | None = None,
                 stop: threading.Event | None = None):
        self.src = src
        self.size = size
        self.cancel = cancel
        self.stop = stop
        if isinstance(src, (bytes, bytearray, memoryview)):
            actual = len(src)
        else:
            actual = os.stat(src).st_size
        if actual != size:
            raise RegistryError(f"blob source {'<bytes>' if isinstance(src, (bytes, bytearray, memoryview)) else src} "
                                f"is {actual} bytes, expected {size}")

    def sha256(self) -> str:
        """``sha256:<hex>`` of the whole source, read again (only to explain a failed upload)."""
        h = hashlib.sha256()
        for piece in self.iter_range(0, self.size):
            h.update(piece)
        return "sha256:" + h.hexdigest()

    def _check(self) -> None:
        what = f"uploading {self.src if isinstance(self.src, Path) else 'a blob'}"
        if self.cancel is not None:
            self.cancel.check(what)
        if self.stop is not None and self.stop.is_set():
            raise Cancelled(f"{what} stopped")

    def iter_range(self, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``[start, end)``."""
        if isinstance(self.src, (bytes, bytearray, memoryview)):
            mv = memoryview(self.src)
            for off in range(start, end, SEND_PIECE):
                self._check()
                yield bytes(mv[off:min(end, off + SEND_PIECE)])
            return
        with open(self.src, "rb") as f:
            f.seek(start)
            left = end - start
            while left > 0:
                self._check()
                b = f.read(min(SEND_PIECE, left))
                if not b:
                    raise RegistryError(f"blob source {self.src} shrank while uploading")
                left -= len(b)
                yield b


class UploadsInFlight:
    """The blob uploads of one client, by (registry, digest): those in progress, and the
    repository each one that completed put its blob in (see :meth:`BlobUploads.upload_blob`).
    Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now: dict[tuple[str, str], tuple[str, threading.Event, list[bool]]] = {}
        self._done: dict[tuple[str, str], str] = {}  # -> the first repository a claim completed in

    @contextmanager
    def claim(self, ref: Reference, digest: str, cancel: CancelToken,
              stop: threading.Event | None = None) -> Iterator[str | None]:
        """Hold the upload of ``digest`` to ``ref``'s registry for the ``with`` body. Yields the
        repository an earlier claim of it completed in -- the blob is there, to mount from --
        after waiting for one in flight; None when there is none. A body that ends without an
        exception records ``ref``'s repository as holding the blob. Waiting ends with Cancelled
        once ``cancel`` is cancelled or ``stop`` is set."""
        key = (ref.registry, digest)
        holder: str | None = None
        while True:
            with self._lock:
                current = self._now.get(key)
                if current is None:
                    holder = holder or self._done.get(key)
                    mine = (ref.repository, threading.Event(), [False])
                    self._now[key] = mine
                    break
            repo, done, ok = current
            log.debug("blob %s is being uploaded to %s/%s; waiting for it", digest, ref.registry, repo)
            while not done.wait(0.05):
                what = f"waiting for the upload of {digest} to {ref.registry}/{repo}"
                cancel.check(what)
                if stop is not None and stop.is_set():
                    raise Cancelled(f"{what} stopped")
            if ok[0]:
                holder = repo
        try:
            yield holder
            mine[2][0] = True
        finally:
            with self._lock:
                self._now.pop(key, None)
                if mine[2][0]:
                    self._done.setdefault(key, ref.repository)
            mine[1].set()


def _in_flight(client) -> UploadsInFlight:
    """``client``'s UploadsInFlight (made on first use; dict.setdefault is atomic)."""
    return client.__dict__.setdefault("_uploads_in_flight", UploadsInFlight())


def _with_digest(location: str, digest: str) -> str:
    """The upload ``location`` with ``digest=`` added, keeping its own query (e.g. ``_state``)."""
    return str(httpx.URL(location).copy_merge_params({"digest": digest}))
