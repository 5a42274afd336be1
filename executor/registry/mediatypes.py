"""Manifest media types the registry client asks for and understands, and size limits.

Sources: OCI image-spec media-types.md (image manifest, image index); Docker image
manifest v2 schema 2 (manifest, manifest list); schema 1 is recognised only to refuse it.
"""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
IMAGE_MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
#: The ``Accept`` list of a manifest GET/HEAD that takes any image or index.
ALL_MANIFEST_TYPES: tuple[str, ...] = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

#: Bytes: distribution's own limit for a manifest body.
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
#: Bytes: the largest image config blob we read into memory.
MAX_CONFIG_BYTES = 16 * 1024 * 1024
