"""Blob pushes to one repository, and the upload pool that starts them while the build runs.

A push puts every blob of an image before its manifest (OCI distribution-spec, spec.md
"Pushing blobs" / "Pushing Manifests"). :func:`push_blob` is one blob: HEAD (already there),
else a cross-repository mount from the repository it came from (same registry), else an
upload streamed from its file.

:class:`UploadPool` (issue 12, "push while building") runs :func:`push_blob` for each layer of
an output image as soon as the build writes it, on ``workers`` background threads, to the first
destination repository, while the next steps run. The output step then *takes* each layer of
the final image from the pool (:meth:`UploadPool.take`: waits for its upload, or pushes it
itself if it was never started) and puts the config and the manifest last, as before: a tag
never points at an image with a missing blob.

A layer uploaded early that ends up in no pushed manifest (the build failed later, or the
layer is not in the final image) is harmless: an unreferenced blob, which the registry's
garbage collection removes; nothing names it.

Errors: an early upload is the push's own upload (same requests, same ``--push-retry``
budget), so its error is the one the push would raise. Refused with 401, 403 or 405 (no
permission, a read-only registry) it is *fatal* -- the push cannot succeed -- and the build
stops at its next layer (:meth:`UploadPool.submit` raises it). Any other failure (the retry
budget exhausted, say) is raised by the output step when it takes that layer, before any
manifest is put; it is not retried with a second budget. Cancellation (SIGINT/SIGTERM: the
client's token, see :mod:`executor.registry.cancel`) stops the uploads in flight within
milliseconds and no new one starts; :meth:`UploadPool.close` with ``abort=True`` (a failed
build) drops the queued ones and stops the running ones within one 1 MiB piece.

Counts: :meth:`UploadPool.take` returns what the early push did (``uploaded``, ``mounted``,
``exists``), so the push's ``pushed blobs ...: N uploaded, M mounted`` summary reads as
before; a layer taken again (the same layer in a second platform's image) is ``exists``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from executor.errors import RegistryError
from executor.reference import Reference, parse_reference
from executor.registry.cancel import Cancelled

log = logging.getLogger("executor.push")

#: HTTP statuses of an upload refusal no retry can fix: the build stops early with it.
FATAL_STATUSES = frozenset({401, 403, 405})


@dataclass(frozen=True)
class BlobToPush:
    """One blob of an image to push: ``fetch()`` gives its local file (or bytes) when it must be
    uploaded; ``source`` ("registry/repo") a repository it may be mounted from, or None."""

    digest: str
    size: int
    fetch: Callable[[], Path | bytes]
    source: str | None = None


def push_blob(client, dest: Reference, blob: BlobToPush, stop: threading.Event | None = None) -> str:
    """Make ``blob`` present in ``dest``'s repository; returns what it took: ``"exists"``,
    ``"mounted"`` or ``"uploaded"``. ``stop``: abandons an upload when set (Cancelled).
    Raises RegistryError naming the registry."""
    if client.blob_exists(dest, blob.digest):
        return "exists"
    if blob.source:
        src = parse_reference(blob.source)
        if src.registry == dest.registry and src.repository != dest.repository:
            if client.mount_blob(dest, blob.digest, src.repository):
                return "mounted"
    extra = {"stop": stop} if stop is not None else {}
    # (the HEAD above found it missing: upload_absent_blob does not ask a second time)
    outcome = client.upload_absent_blob(dest, blob.fetch(), blob.digest, blob.size, **extra)
    return outcome if isinstance(outcome, str) else "uploaded"


def fatal(error: BaseException) -> bool:
    """True for an upload error that ends the build at once (see the module docstring)."""
    return isinstance(error, RegistryError) and not isinstance(error, Cancelled) and error.status in FATAL_STATUSES


class UploadPool:
    """Early blob pushes to ``destination`` (a Reference; its repository is what counts) through
    ``client`` (a RegistryClient), at most ``workers`` at a time, at most once per digest.

    Thread-safe: stages submit from their own threads, the output step takes from its pool.
    """

    def __init__(self, client, destination: Reference, workers: int = 2):
        self.client = client
        self.destination = destination
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload")
        self._futures: dict[str, Future] = {}
        self._taken: set[str] = set()
        self._lock = threading.Lock()
        self._fatal: RegistryError | None = None
        self._closed = False
        self._stop = threading.Event()

    def serves(self, ref: Reference) -> bool:
        """True when ``ref`` is in the repository this pool uploads to."""
        return (ref.registry, ref.repository) == (self.destination.registry, self.destination.repository)

    def check(self) -> None:
        """Raise the fatal error of an early upload, if one happened (the push's own message)."""
        if self._fatal is not None:
            raise self._fatal

    def submit(self, blob: BlobToPush) -> None:
        """Start pushing ``blob`` in the background (once per digest; later calls are no-ops).
        Raises the fatal error of an earlier upload, if any, so the build stops."""
        self.check()
        with self._lock:
            if self._closed or blob.digest in self._futures:
                return
            log.debug("starting the upload of %s (%d bytes) to %s while building", blob.digest, blob.size,
                      self.destination.name)
            self._futures[blob.digest] = self._pool.submit(self._run, blob)

    def submit_layers(self, layers: list, fetch: Callable) -> None:
        """:meth:`submit` each of ``layers`` (:class:`~executor.oci.image.Layer`) whose blob is
        local, or whose source repository is in the destination's registry (a mount, no
        bytes); ``fetch(layer)`` gives a layer's local file. Others (a base image of another
        registry not downloaded yet) are left to the output step: starting them here could
        download a blob the stage is downloading too."""
        for layer in layers:
            local = layer.path is not None and Path(layer.path).exists()
            near = bool(layer.source) and parse_reference(layer.source).registry == self.destination.registry
            if local or near:
                self.submit(BlobToPush(layer.digest, layer.size, lambda la=layer: fetch(la), layer.source))

    def _run(self, blob: BlobToPush) -> str:
        try:
            outcome = push_blob(self.client, self.destination, blob, self._stop)
        except RegistryError as e:
            if fatal(e) and self._fatal is None:
                self._fatal = e
            log.debug("early upload of %s to %s failed: %s", blob.digest, self.destination.name, e)
            raise
        log.debug("early push of %s to %s: %s", blob.digest, self.destination.name, outcome)
        return outcome

    def take(self, blob: BlobToPush) -> str:
        """``blob`` present in the pool's repository, as :func:`push_blob` would return it: waits
        for its early upload, or pushes it now (never submitted, or still queued: not started).
        Raises the upload's RegistryError."""
        with self._lock:
            fut = self._futures.get(blob.digest)
            again = blob.digest in self._taken  # an earlier image (platform) took it: "exists" now
            self._taken.add(blob.digest)
        if again and fut is not None and not fut.cancelled():
            fut.result()
            return "exists"
        if fut is not None and fut.cancel():  # queued, not started: the caller's thread does it now
            fut = None
        if fut is None:
            return push_blob(self.client, self.destination, blob)
        return fut.result()

    def close(self, abort: bool = False) -> None:
        """Stop the pool: no new uploads; waits for the running ones. ``abort`` (the build
        failed): queued uploads are dropped and the running ones stop within one 1 MiB piece."""
        with self._lock:
            self._closed = True
        if abort:
            self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=abort)
