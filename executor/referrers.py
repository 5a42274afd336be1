"""Attach documents to an image as OCI 1.1 artifacts that refer to it, and find them again.

An artifact (OCI image-spec v1.1 manifest.md "Guidelines for Artifact Usage") is an OCI image
manifest with ``artifactType`` (e.g. ``application/spdx+json``), the empty config descriptor
(``application/vnd.oci.empty.v1+json``, content ``{}``), one layer holding the document, and
``subject`` = the descriptor of the image manifest (or index) it describes. It is pushed by
digest, so attaching never changes the image or moves a tag.

Discovery (OCI distribution-spec v1.1, spec.md "Pushing Manifests with Subject", "Listing
Referrers", "Referrers Tag Schema"): a registry with the referrers API indexes the subject
itself; it says so by answering the artifact's PUT with an ``OCI-Subject`` header, and
``GET /v2/<name>/referrers/<digest>`` answers an OCI index. Then nothing else is written.
Otherwise (docker-registry 2.8, ...) the client keeps the index at the tag ``<alg>-<hex>`` of
the subject digest (``sha256-<64 hex>``): read it (404: start empty), add one descriptor
(``mediaType``, ``digest``, ``size``, ``artifactType``, ``annotations``) unless present, write it.

Concurrent writers of one subject's tag: the update is conditional where the registry allows
it -- the PUT carries ``If-Match`` with the ETag of the index it started from (``If-None-Match:
*`` when there was none), and a 412 answer starts the read-merge-write again. Registries are
not required to honour those headers (distribution 2.8 sends an ETag on GET but ignores
``If-Match`` on PUT), so every write is also read back: when the entry is missing (another
writer's index replaced ours) it is merged again, up to :data:`ATTEMPTS` times. On a registry
that honours ``If-Match`` no entry is lost; on one that does not, a lost entry needs two
writers to overwrite each other after both verified, which the read-back makes unlikely but
cannot exclude.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace

from .errors import RegistryError
from .reference import Reference
from .registry.auth import scope_for
from .registry.client import OCI_INDEX, OCI_MANIFEST, RegistryClient

log = logging.getLogger("executor.push")

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
EMPTY_DESCRIPTOR = {"mediaType": EMPTY_MEDIA_TYPE, "digest": "sha256:" + hashlib.sha256(EMPTY_JSON).hexdigest(),
                    "size": 2, "data": "e30="}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def referrers_tag(digest: str) -> str:
    """The fallback tag of ``digest``: ``<alg>-<hex>`` (alg truncated to 32, hex to 64 characters)."""
    alg, _, hexd = digest.partition(":")
    return f"{alg[:32]}-{hexd[:64]}"


def artifact_manifest(document: bytes, artifact_type: str, subject: dict,
                      annotations: dict[str, str] | None = None) -> bytes:
    """The artifact manifest's bytes (compact JSON) for ``document`` of ``artifact_type``;
    ``subject``: the image descriptor (``mediaType``, ``digest``, ``size``)."""
    manifest = {
        "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": artifact_type,
        "config": EMPTY_DESCRIPTOR,
        "layers": [{"mediaType": artifact_type, "digest": _digest(document), "size": len(document)}],
        "subject": {k: subject[k] for k in ("mediaType", "digest", "size")},
    }
    if annotations:
        manifest["annotations"] = dict(annotations)
    return json.dumps(manifest, separators=(",", ":")).encode()


def referrers_api(client: RegistryClient, repo: Reference, digest: str) -> dict | None:
    """``GET /v2/<name>/referrers/<digest>``: the OCI index when the registry has the API, else
    None (404, 405, 400 or a body that is not an index). Raises RegistryError for 401/403."""
    scopes = (scope_for(repo.repository, "pull"),)

    def once(ep):
        resp = client._transport.send(ep, "GET", client._url(ep, repo, "referrers", digest), scopes,
                                      headers={"Accept": OCI_INDEX})
        resp.read()
        return resp

    resp = client._call(repo.registry, True, f"listing referrers of {repo.name}@{digest}", once)
    if resp.status_code in (401, 403):
        raise client._fail(repo, "the referrers listing", resp)
    if resp.status_code != 200:
        return None
    try:
        index = json.loads(resp.content)
    except ValueError:
        return None
    if not isinstance(index, dict) or index.get("mediaType", OCI_INDEX) != OCI_INDEX \
            or not isinstance(index.get("manifests"), list):
        return None
    return index


def _tag_get(client: RegistryClient, repo: Reference, digest: str) -> tuple[dict | None, str | None]:
    """(index at the referrers tag of ``digest`` or None when absent, its ETag or None).
    Raises RegistryError when the tag holds something that is not an OCI index."""
    tag = referrers_tag(digest)
    scopes = (scope_for(repo.repository, "pull"),)

    def once(ep):
        resp = client._transport.send(ep, "GET", client._url(ep, repo, "manifests", tag), scopes,
                                      headers={"Accept": OCI_INDEX})
        resp.read()
        return resp

    resp = client._call(repo.registry, True, f"fetching referrers tag {repo.name}:{tag}", once)
    if resp.status_code == 404:
        return None, None
    if resp.status_code != 200:
        raise client._fail(repo, f"the referrers tag {tag} fetch", resp)
    try:
        index = json.loads(resp.content)
    except ValueError:
        index = None
    if not isinstance(index, dict) or index.get("mediaType") != OCI_INDEX or not isinstance(index.get("manifests"), list):
        raise RegistryError(f"{repo.name}:{tag} is not an OCI index ({resp.headers.get('Content-Type')}); it cannot "
                            "hold the referrers of that digest: delete or rename that tag")
    return index, resp.headers.get("ETag")


def _tag_index(client: RegistryClient, repo: Reference, digest: str) -> dict | None:
    return _tag_get(client, repo, digest)[0]


def _put(client: RegistryClient, repo: Reference, ident: str, data: bytes, media_type: str,
         headers: dict[str, str] | None = None):
    """``PUT /v2/<name>/manifests/<ident>``; returns the response (2xx or 412), raises
    RegistryError for any other answer."""
    scopes = (scope_for(repo.repository, "pull,push"),)

    def once(ep):
        resp = client._transport.send(ep, "PUT", client._url(ep, repo, "manifests", ident), scopes,
                                      headers={"Content-Type": media_type, **(headers or {})}, content=data)
        resp.read()
        return resp

    resp = client._call(repo.registry, False, f"pushing manifest {repo.name}:{ident}", once)
    if resp.status_code not in (200, 201, 202, 412):
        raise client._fail(repo, "the push", resp)
    return resp


def list_referrers(client: RegistryClient, repo: Reference, digest: str, artifact_type: str | None = None) -> list[dict]:
    """Descriptors of the artifacts referring to ``digest`` in ``repo``'s repository, through the
    referrers API or else the referrers tag; only ``artifact_type`` ones when given."""
    index = referrers_api(client, repo, digest) or _tag_index(client, repo, digest) or {"manifests": []}
    return [d for d in index["manifests"] if artifact_type is None or d.get("artifactType") == artifact_type]


ATTEMPTS = 5


def attach(client: RegistryClient, repo: Reference, subject: dict, document: bytes, artifact_type: str,
           annotations: dict[str, str] | None = None) -> str:
    """Push ``document`` as an artifact referring to ``subject`` in ``repo``'s repository (tag and
    digest of ``repo`` are ignored); returns the artifact manifest digest. Blobs first, then the
    manifest by digest, then -- unless the registry has the referrers API -- the referrers tag's
    index (conditional update, read back; see the module docstring). Raises RegistryError."""
    repo = replace(repo, tag=None, digest=None)
    manifest = artifact_manifest(document, artifact_type, subject, annotations)
    digest = _digest(manifest)
    client.upload_blob(repo, EMPTY_JSON, EMPTY_DESCRIPTOR["digest"], 2)
    client.upload_blob(repo, document, _digest(document), len(document))
    resp = _put(client, repo, digest, manifest, OCI_MANIFEST)
    got = resp.headers.get("Docker-Content-Digest")
    if resp.status_code == 412 or (got and got.startswith("sha256:") and got != digest):
        raise RegistryError(f"registry {repo.registry} did not store artifact {repo.name}@{digest} as sent "
                            f"({resp.status_code}, digest {got})")
    if resp.headers.get("OCI-Subject") == subject["digest"] or \
            referrers_api(client, repo, subject["digest"]) is not None:
        log.info("attached %s %s to %s@%s (referrers API)", artifact_type, digest, repo.name, subject["digest"])
        return digest
    tag = referrers_tag(subject["digest"])
    entry = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest), "artifactType": artifact_type}
    if annotations:
        entry["annotations"] = dict(annotations)
    index, etag = _tag_get(client, repo, subject["digest"])
    for _ in range(ATTEMPTS):
        if index is not None and any(d.get("digest") == digest for d in index["manifests"]):
            log.info("attached %s %s to %s@%s (referrers tag %s)", artifact_type, digest, repo.name,
                     subject["digest"], tag)
            return digest
        new = dict(index or {"schemaVersion": 2, "mediaType": OCI_INDEX})
        new["manifests"] = [*(index or {}).get("manifests", []), entry]
        cond = {"If-Match": etag} if etag else {"If-None-Match": "*"}
        resp = _put(client, repo, tag, json.dumps(new, separators=(",", ":")).encode(), OCI_INDEX, cond)
        if resp.status_code == 412:
            log.info("referrers tag %s:%s changed while we updated it; merging again", repo.name, tag)
        index, etag = _tag_get(client, repo, subject["digest"])  # read back: another writer may have replaced it
    raise RegistryError(f"registry {repo.registry}: the referrers tag {repo.name}:{tag} kept changing under other "
                        f"writers; artifact {digest} is pushed but not listed there: run the build again")
