"""Blob downloads: streamed to a file, digest-verified, resumed after a broken connection.

OCI distribution-spec v1.1, spec.md "Pulling blobs" (``GET /v2/<name>/blobs/<digest>``,
redirects to storage, ``Range`` requests).
"""

from __future__ import annotations

import hashlib
import logging
from typing import BinaryIO

import httpx

from executor.errors import NotFound, RegistryError
from executor.reference import Reference
from executor.registry.auth import scope_for
from executor.registry.core import ClientCore
from executor.registry.messages import STATUS_HINTS, status_text
from executor.registry.endpoints import Endpoint
from executor.registry.transport import IntegrityError, TransientError

log = logging.getLogger("executor.registry")

#: Bytes read from the network per write to the destination.
READ_CHUNK = 1024 * 1024


class BlobDownloads(ClientCore):
    """Blob download operations of :class:`~executor.registry.client.RegistryClient`."""

    def fetch_blob(self, ref: Reference, digest: str, dest: BinaryIO) -> int:
        """Stream blob ``digest`` (``sha256:<hex>``) of ``ref``'s repository into ``dest``
        from its current position (spec.md "Pulling blobs"); returns the bytes written.

        Follows redirects (without forwarding Authorization to another host) and verifies
        the sha256 digest. Retries, within the pull budget (``--image-download-retry``):
        a broken or timed-out connection resumes with ``Range`` (or restarts if the server
        ignores Range); bytes that do not hash to ``digest`` are thrown away (``dest`` is
        rewound and truncated) and the blob is downloaded again from scratch. Mirrors are
        tried first. Raises :class:`~executor.errors.NotFound` on 404, RegistryError (one
        line naming registry and blob) otherwise; a non-seekable ``dest`` cannot be rewound,
        so a corrupt or unresumable download of one fails at once.
        """
        start = _tell(dest)

        def from_start(candidate: Reference) -> int:
            if start is not None:  # an earlier mirror may have written part of the blob
                dest.seek(start)
                dest.truncate()
            return self._fetch_blob_direct(candidate, digest, dest)
        return self._with_mirrors(ref, from_start)

    def _fetch_blob_direct(self, ref: Reference, digest: str, dest: BinaryIO) -> int:
        algo, _, expected_hex = digest.partition(":")
        if algo != "sha256":
            raise RegistryError(f"blob {digest} of {ref.name}: only sha256 digests are supported")
        start = _tell(dest)
        state = {"hasher": hashlib.sha256(), "written": 0}
        scopes = (scope_for(ref.repository, "pull"),)

        def start_over(why: str) -> None:
            if start is None:
                raise RegistryError(f"download of blob {digest} from {ref.registry}/{ref.repository}: {why}, and the "
                                    "destination cannot be rewound to start over; retry the build")
            dest.seek(start)
            dest.truncate()
            state["hasher"], state["written"] = hashlib.sha256(), 0

        def once(ep: Endpoint) -> int:
            headers = {}
            if state["written"]:
                headers["Range"] = f"bytes={state['written']}-"
            url = self._url(ep, ref, "blobs", digest)
            resp = self._transport.send(ep, "GET", url, scopes, headers=headers, stream=True)
            hops = 0
            while resp.status_code in (301, 302, 303, 307, 308) and hops < 5:
                loc = resp.headers.get("Location")
                resp.close()
                if not loc:
                    break
                hops += 1
                target = httpx.URL(url).join(loc)
                # Different origin (e.g. S3): no Authorization, plain client with default TLS.
                same = target.host == httpx.URL(url).host and target.port == httpx.URL(url).port
                cl = self._transport.client(ep)
                h = dict(headers)
                if same:
                    resp = self._transport.send(ep, "GET", str(target), scopes, headers=h, stream=True)
                else:
                    self._cancel.check(f"downloading blob {digest}")
                    resp = cl.send(cl.build_request("GET", target, headers=h, extensions=self._transport.extensions),
                                   stream=True)
                    if resp.status_code in (429, 500, 502, 503, 504):
                        resp.close()
                        raise TransientError(f"blob redirect target answered {resp.status_code}", None, resp.status_code)
                url = str(target)
            try:
                if resp.status_code == 200 and state["written"]:
                    start_over("the connection broke and the registry does not support resuming")  # Range ignored
                if resp.status_code not in (200, 206):
                    resp.read()
                    return -resp.status_code
                for chunk in resp.iter_raw(READ_CHUNK):
                    self._cancel.check(f"registry {ref.registry}: downloading blob {digest}")
                    dest.write(chunk)
                    state["hasher"].update(chunk)
                    state["written"] += len(chunk)
                got = state["hasher"].hexdigest()
                if got != expected_hex:
                    n = state["written"]
                    start_over(f"the {n} bytes received hash to sha256:{got}")
                    raise IntegrityError(f"received {n} bytes hashing to sha256:{got}")
                return state["written"]
            except (httpx.TransportError) as e:
                log.debug("blob %s download interrupted after %d bytes: %s", digest, state["written"], type(e).__name__)
                raise
            finally:
                resp.close()

        n = self._call(ref.registry, True, f"downloading blob {digest} of {ref.name}", once)
        if n < 0:
            code = -n
            if code == 404:
                raise NotFound(f"registry {ref.registry}: blob {digest} of repo '{ref.repository}' not found (404); "
                               "the image is incomplete on the registry; re-push it")
            raise RegistryError(f"registry {ref.registry} refused the download of blob {digest} of repo "
                                f"'{ref.repository}' ({status_text(code)}): {STATUS_HINTS.get(code, 'check the registry logs')}",
                                status=code)
        return n


def _tell(f: BinaryIO) -> int | None:
    """``f``'s position when it can be rewound to it, else None."""
    try:
        return f.tell() if f.seekable() else None
    except (OSError, AttributeError, ValueError):
        return None
