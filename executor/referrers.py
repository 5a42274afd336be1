"""Attach documents to an image as OCI 1.1 artifacts that refer to it, and find them again.

An artifact (OCI image-spec v1.1 manifest.md "Guidelines for Artifact Usage") is an OCI image
manifest with ``artifactType`` (e.g. ``application/spdx+json``), the empty config descriptor
(``application/vnd.oci.empty.v1+json``, content ``{}``), one layer holding the document, and
``subject`` = the descriptor of the image manifest (or index) it describes. It is pushed by
digest, so attaching never changes the image or moves a tag.

Discovery (OCI distribution-spec v1.1, spec.md "Listing Referrers" / "Referrers Tag Schema"):
a registry with the referrers API (``GET /v2/<name>/referrers/<digest>`` answers an OCI index)
indexes the subject itself. Otherwise (docker-registry 2.8, ...) the client keeps the index at
the tag ``<alg>-<hex>`` of the subject digest (``sha256-<64 hex>``), read-modify-write: the
existing index (if any) gains one descriptor (``mediaType``, ``digest``, ``size``,
``artifactType``, ``annotations``). Writers racing on the same subject can lose an entry; the
registry offers no conditional PUT to prevent it (the spec's ETag/If-Match is optional).
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


def _tag_index(client: RegistryClient, repo: Reference, digest: str) -> dict | None:
    got = client.get_manifest_or_none(replace(repo, tag=referrers_tag(digest), digest=None), (OCI_INDEX,))
    if got is None:
        return None
    data, media_type, _ = got
    index = json.loads(data)
    if media_type != OCI_INDEX or not isinstance(index.get("manifests"), list):
        raise RegistryError(f"{repo.name}:{referrers_tag(digest)} is not an OCI index ({media_type}); it cannot hold "
                            "the referrers of that digest: delete or rename that tag")
    return index


def list_referrers(client: RegistryClient, repo: Reference, digest: str, artifact_type: str | None = None) -> list[dict]:
    """Descriptors of the artifacts referring to ``digest`` in ``repo``'s repository, through the
    referrers API or else the referrers tag; only ``artifact_type`` ones when given."""
    index = referrers_api(client, repo, digest) or _tag_index(client, repo, digest) or {"manifests": []}
    return [d for d in index["manifests"] if artifact_type is None or d.get("artifactType") == artifact_type]


def attach(client: RegistryClient, repo: Reference, subject: dict, document: bytes, artifact_type: str,
           annotations: dict[str, str] | None = None) -> str:
    """Push ``document`` as an artifact referring to ``subject`` in ``repo``'s repository (tag and
    digest of ``repo`` are ignored); returns the artifact manifest digest. Blobs first, then the
    manifest by digest, then (without the referrers API) the referrers tag's index."""
    repo = replace(repo, tag=None, digest=None)
    manifest = artifact_manifest(document, artifact_type, subject, annotations)
    digest = _digest(manifest)
    client.upload_blob(repo, EMPTY_JSON, EMPTY_DESCRIPTOR["digest"], 2)
    client.upload_blob(repo, document, _digest(document), len(document))
    client.put_manifest(replace(repo, digest=digest), manifest, OCI_MANIFEST)
    if referrers_api(client, repo, subject["digest"]) is not None:
        log.info("attached %s %s to %s@%s (referrers API)", artifact_type, digest, repo.name, subject["digest"])
        return digest
    tag = referrers_tag(subject["digest"])
    index = _tag_index(client, repo, subject["digest"]) or {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    entry = {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest), "artifactType": artifact_type}
    if annotations:
        entry["annotations"] = dict(annotations)
    if not any(d.get("digest") == digest for d in index["manifests"]):
        index["manifests"].append(entry)
        client.put_manifest(replace(repo, tag=tag), json.dumps(index, separators=(",", ":")).encode(), OCI_INDEX)
    log.info("attached %s %s to %s@%s (referrers tag %s)", artifact_type, digest, repo.name, subject["digest"], tag)
    return digest
