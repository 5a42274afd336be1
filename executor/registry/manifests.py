"""Manifests: pull, check and push.

OCI distribution-spec v1.1, spec.md "Pulling manifests", "Checking if content exists",
"Pushing manifests"; OCI image-spec manifest.md and image-index.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence

import httpx

from executor.errors import ImmutableTagError, NotFound, RegistryError
from executor.reference import Reference
from executor.registry.auth import scope_for
from executor.registry.core import ClientCore
from executor.registry.mediatypes import ALL_MANIFEST_TYPES, DOCKER_SCHEMA1, MAX_MANIFEST_BYTES, OCI_INDEX, OCI_MANIFEST
from executor.registry.endpoints import Endpoint
from executor.registry.messages import status_text
from executor.registry.transport import IntegrityError

#: Digest algorithms a manifest can be verified with (OCI image-spec descriptor.md "Digests").
_VERIFIABLE = frozenset({"sha256", "sha384", "sha512"})

log = logging.getLogger("executor.registry")


def sha256_digest(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ManifestOps(ClientCore):
    """Manifest operations of :class:`~executor.registry.client.RegistryClient`."""

    def get_manifest(self, ref: Reference, accept: Sequence[str] = ALL_MANIFEST_TYPES) -> tuple[bytes, str, str]:
        """``GET /v2/<name>/manifests/<digest|tag>`` (spec.md "Pulling manifests"); ``accept``
        is the ``Accept`` list of media types.

        Returns (raw bytes, media type, ``sha256:`` digest of the bytes). The bytes are
        verified: fetched by digest they must hash to it; fetched by tag they must hash to
        the ``Docker-Content-Digest`` header when the registry sends one (sha256/384/512).
        A mismatch is retried within the pull budget and then raises RegistryError naming
        both digests. Mirrors are tried first for pulls. Schema-1 manifests are rejected.
        Raises :class:`~executor.errors.NotFound` on 404 (see :meth:`get_manifest_or_none`).
        """
        return self._with_mirrors(ref, lambda r: self._get_manifest_direct(r, accept))

    def get_manifest_or_none(self, ref: Reference,
                             accept: Sequence[str] = ALL_MANIFEST_TYPES) -> tuple[bytes, str, str] | None:
        """:meth:`get_manifest`, but None when the registry answers 404 (no such tag, digest or
        repository) instead of raising :class:`~executor.errors.NotFound`.

        For lookups where absence is normal (e.g. a layer-cache entry). Every other failure
        still raises RegistryError (with ``status`` when an HTTP answer caused it). With
        mirrors, None means the last candidate tried answered 404.
        """
        try:
            return self.get_manifest(ref, accept)
        except NotFound:
            return None

    def _get_manifest_direct(self, ref: Reference, accept: Sequence[str]) -> tuple[bytes, str, str]:
        scopes = (scope_for(ref.repository, "pull"),)

        def once(ep: Endpoint):
            resp = self._transport.send(ep, "GET", self._url(ep, ref, "manifests", ref.identifier), scopes,
                                        headers={"Accept": ", ".join(accept)}, stream=True)
            try:
                if resp.status_code != 200:
                    resp.read()
                    return resp, b""
                data = _read_limited(resp, MAX_MANIFEST_BYTES, f"manifest {ref}")
                _verify(ref, data, resp.headers.get("Docker-Content-Digest"))
                return resp, data
            finally:
                resp.close()

        resp, data = self._call(ref.registry, True, f"fetching manifest {ref}", once)
        if resp.status_code == 404:
            what = f"tag '{ref.tag}'" if ref.digest is None else f"digest {ref.digest}"
            raise NotFound(f"registry {ref.registry}: repository '{ref.repository}' has no {what} "
                           f"(manifest not found, 404): check the image name and tag")
        if resp.status_code != 200:
            raise self._fail(ref, "the manifest fetch", resp)
        digest = sha256_digest(data)
        media_type = _media_type(resp.headers.get("Content-Type", ""), data)
        if media_type in DOCKER_SCHEMA1:
            raise RegistryError(f"{ref} uses the deprecated Docker schema 1 manifest format, which is not supported; "
                                "re-push the image with a current tool")
        return data, media_type, digest

    def head_manifest(self, ref: Reference) -> tuple[str, str] | None:
        """``HEAD /v2/<name>/manifests/<ref>`` -> (digest ``algo:hex``, media type), or None
        on 404 (spec.md "Checking if content exists").

        Digest from ``Docker-Content-Digest``; falls back to a (verified) GET when the header
        or a specific Content-Type is absent. Raises RegistryError (with ``status``) for any
        other refusal, after the pull retry budget for 429/5xx and connection errors.
        """
        scopes = (scope_for(ref.repository, "pull"),)

        def once(ep: Endpoint):
            return self._transport.send(ep, "HEAD", self._url(ep, ref, "manifests", ref.identifier), scopes,
                                        headers={"Accept": ", ".join(ALL_MANIFEST_TYPES)})

        resp = self._call(ref.registry, True, f"checking manifest {ref}", once)
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self._fail(ref, "the manifest check", resp)
        digest = resp.headers.get("Docker-Content-Digest")
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip()
        if not digest or not ctype or ctype == "application/json":
            _, ctype2, digest2 = self._get_manifest_direct(ref, ALL_MANIFEST_TYPES)
            return digest2, ctype2
        return digest, ctype

    def put_manifest(self, ref: Reference, data: bytes, media_type: str) -> str:
        """``PUT /v2/<name>/manifests/<tag|digest>`` (spec.md "Pushing manifests").

        ``data`` is sent as-is with ``Content-Type: media_type``. Returns the ``sha256:``
        digest of ``data``. If ``ref`` has a digest it must match (RegistryError before any
        request). Tag wins over digest when both are set (the digest is then only checked).
        Raises RegistryError (with ``status``) when the registry refuses it -- e.g. 400
        ``MANIFEST_BLOB_UNKNOWN`` when a blob it names is missing -- or stores it under
        another ``Docker-Content-Digest``; :class:`~executor.errors.ImmutableTagError` when it
        refuses to move an existing immutable tag (:mod:`executor.registry.immutable`). Push retry budget (``--push-retry``).
        """
        digest = sha256_digest(data)
        if ref.digest and ref.digest != digest:
            raise RegistryError(f"manifest for {ref} hashes to {digest}, not the digest in the reference")
        ident = ref.tag or digest
        scopes = (scope_for(ref.repository, "pull,push"),)

        def once(ep: Endpoint):
            return self._transport.send(ep, "PUT", self._url(ep, ref, "manifests", ident), scopes,
                                        headers={"Content-Type": media_type}, content=data)

        resp = self._call(ref.registry, False, f"pushing manifest {ref.name}{':' if ref.tag else '@'}{ident}", once)
        if resp.status_code not in (200, 201, 202):
            from executor.registry.immutable import immutable_tag_refusal
            detail = immutable_tag_refusal(resp.status_code, resp.content) if ref.tag else None
            if detail:
                raise ImmutableTagError(
                    f"registry {ref.registry} refused to move tag '{ref.tag}' of repo '{ref.repository}' "
                    f"({status_text(resp.status_code)}: {detail}): the tag exists and the repository keeps its tags "
                    "immutable; push under a new tag", status=resp.status_code, reference=f"{ref.name}:{ref.tag}",
                    detail=detail)
            raise self._fail(ref, "the push", resp)
        got = resp.headers.get("Docker-Content-Digest")
        if got and got.startswith("sha256:") and got != digest:
            raise RegistryError(f"registry {ref.registry} stored manifest {ref} with digest {got}, expected {digest}")
        log.info("pushed manifest %s%s%s (%s)", ref.name, ":" if ref.tag else "@", ident, digest)
        return digest

    def delete_manifest(self, ref: Reference) -> None:
        """``DELETE /v2/<name>/manifests/<digest>`` (spec.md "Deleting manifests"); ``ref`` must
        carry a digest (deleting by tag is not portable). The registry also drops the tags that
        pointed at it; blobs stay until the registry's garbage collection.

        Raises RegistryError with ``status``: 405 when the registry has deletion disabled
        (docker-registry: ``storage: delete: enabled: true``), 401/403 for missing rights,
        :class:`~executor.errors.NotFound` (404) when the manifest is already gone. Push retry
        budget (``--push-retry``).
        """
        if not ref.digest:
            raise RegistryError(f"deleting {ref}: a manifest is deleted by digest, not by tag")
        scopes = (scope_for(ref.repository, "pull,push,delete"),)

        def once(ep: Endpoint):
            return self._transport.send(ep, "DELETE", self._url(ep, ref, "manifests", ref.digest), scopes)

        resp = self._call(ref.registry, False, f"deleting manifest {ref.name}@{ref.digest}", once)
        if resp.status_code == 404:
            raise NotFound(f"registry {ref.registry}: repository '{ref.repository}' has no manifest {ref.digest}")
        if resp.status_code not in (200, 202):
            raise self._fail(ref, "the manifest deletion", resp)

    def list_tags(self, ref: Reference, page_size: int = 1000) -> list[str]:
        """Every tag of ``ref``'s repository: ``GET /v2/<name>/tags/list?n=<page_size>``,
        following ``Link: <...>; rel="next"`` pages (spec.md "Listing tags"). An unknown
        repository (404) has no tags. Raises RegistryError (with ``status``) otherwise."""
        scopes = (scope_for(ref.repository, "pull"),)
        tags: list[str] = []
        path = f"/v2/{ref.repository}/tags/list?n={page_size}"
        for _ in range(100000):
            def once(ep: Endpoint, path=path):
                resp = self._transport.send(ep, "GET", ep.base + path, scopes)
                resp.read()
                return resp

            resp = self._call(ref.registry, True, f"listing tags of {ref.name}", once)
            if resp.status_code == 404:
                return tags
            if resp.status_code != 200:
                raise self._fail(ref, "the tag listing", resp)
            doc = _parse_json(resp.content, f"tag list of {ref.name}")
            tags += [t for t in doc.get("tags") or [] if isinstance(t, str)]
            nxt = resp.links.get("next", {}).get("url")
            if not nxt:
                return tags
            path = nxt if nxt.startswith("/") else "/" + str(httpx.URL(nxt).raw_path, "ascii")
        return tags


def _digest_of(data: bytes, digest: str) -> str | None:
    """``data`` hashed with ``digest``'s algorithm as ``algo:hex``; None for an algorithm we lack."""
    algo = digest.partition(":")[0]
    if algo not in _VERIFIABLE:
        return None
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def _verify(ref: Reference, data: bytes, header: str | None) -> None:
    """Check manifest bytes against the digest they were asked for (``ref.digest``) or, for a
    tag, the ``Docker-Content-Digest`` the registry sent. Raises IntegrityError (retried)."""
    if ref.digest:
        got = _digest_of(data, ref.digest)
        if got is not None and got != ref.digest:
            raise IntegrityError(f"received bytes hashing to {got}")
        return
    if header:
        header = header.strip()
        got = _digest_of(data, header)
        if got is not None and got != header:
            raise IntegrityError(f"received bytes hashing to {got}, not to their Docker-Content-Digest {header}")


def _read_limited(resp: httpx.Response, limit: int, what: str) -> bytes:
    buf = bytearray()
    for chunk in resp.iter_bytes():
        buf += chunk
        if len(buf) > limit:
            raise RegistryError(f"{what} is larger than {limit} bytes; refusing it")
    return bytes(buf)


def _parse_json(data: bytes, what: str) -> dict:
    try:
        doc = json.loads(data)
    except ValueError:
        raise RegistryError(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise RegistryError(f"{what} is not a JSON object")
    return doc


def _media_type(content_type: str, data: bytes) -> str:
    """Manifest media type: the body's ``mediaType`` when present, else Content-Type."""
    ct = content_type.split(";")[0].strip()
    try:
        mt = json.loads(data).get("mediaType")
    except (ValueError, AttributeError):
        mt = None
    if isinstance(mt, str) and mt:
        return mt
    if ct and ct not in ("application/json", "text/plain", "application/octet-stream"):
        return ct
    try:
        doc = json.loads(data)
        if "manifests" in doc:
            return OCI_INDEX
        if doc.get("schemaVersion") == 1:
            return DOCKER_SCHEMA1[0]
    except (ValueError, AttributeError):
        pass
    return OCI_MANIFEST
