"""Media types of the OCI image-spec and the Docker image manifest v2 schema 2.

Sources: OCI image-spec (media-types.md), Docker "Image Manifest V2, Schema 2".
"""

from __future__ import annotations

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)


def is_oci(manifest_media_type: str) -> bool:
    """True for OCI manifest/index media types, False for Docker v2 schema 2 ones."""
    return manifest_media_type in (OCI_MANIFEST, OCI_INDEX)


def config_type_for(manifest_media_type: str) -> str:
    """The config media type that goes with a manifest media type."""
    return OCI_CONFIG if is_oci(manifest_media_type) else DOCKER_CONFIG


def layer_type(oci: bool, compression: str) -> str:
    """Layer media type for an OCI or Docker manifest and a compression (gzip|zstd|none).

    Raises ValueError for zstd in a Docker manifest (Docker schema 2 has no zstd type).
    """
    if compression == "gzip":
        return OCI_LAYER_GZIP if oci else DOCKER_LAYER_GZIP
    if compression == "zstd":
        if not oci:
            raise ValueError("zstd layers need an OCI manifest")
        return OCI_LAYER_ZSTD
    if compression == "none":
        return OCI_LAYER if oci else "application/vnd.docker.image.rootfs.diff.tar"
    raise ValueError(f"unknown compression {compression!r}")


def convert_layer_type(media_type: str, oci: bool) -> str:
    """Map a layer media type to the same compression in the OCI or Docker vocabulary."""
    compression = "zstd" if media_type.endswith("zstd") else ("gzip" if "gzip" in media_type else "none")
    if compression == "zstd" and not oci:
        return media_type
    return layer_type(oci, compression)
