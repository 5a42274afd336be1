"""Software bill of materials of a built image: packages found by reading its layers
(:mod:`.scan`, :mod:`.catalogers`), written as SPDX 2.3 JSON (:mod:`.spdx`) or CycloneDX 1.6
JSON (:mod:`.cyclonedx`)."""

from __future__ import annotations

from .model import ImageInfo, Inventory, Package
from .scan import scan_layers

FORMATS = ("spdx", "cyclonedx")
MEDIA_TYPES = {"spdx": "application/spdx+json", "cyclonedx": "application/vnd.cyclonedx+json"}


def sbom_document(inv: Inventory, image: ImageInfo, fmt: str = "spdx") -> bytes:
    """The document of ``inv`` in ``fmt`` (``spdx`` | ``cyclonedx``), UTF-8 JSON bytes."""
    if fmt == "cyclonedx":
        from .cyclonedx import cyclonedx_document
        return cyclonedx_document(inv, image)
    from .spdx import spdx_document
    return spdx_document(inv, image)


__all__ = ["FORMATS", "MEDIA_TYPES", "ImageInfo", "Inventory", "Package", "sbom_document", "scan_layers"]
