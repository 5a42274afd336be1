"""CycloneDX 1.6 JSON (https://cyclonedx.org/docs/1.6/json/) of an :class:`~.model.Inventory`,
written with cyclonedx-python-lib.

Shape: ``metadata.component`` is the image (type ``container``, version = manifest digest,
purl ``pkg:oci/NAME@DIGEST?repository_url=...``); ``metadata.tools.components`` names the
executor; one ``library`` component per package with ``purl``, ``licenses`` (an SPDX
expression / id when the declared text is one, else a named license) and properties
``executor:layer_digest`` (the layer that brought it), ``executor:path`` (file it was read from)
and ``executor:ecosystem``; ``dependencies``: the image depends on every package.
"""

from __future__ import annotations

import datetime as _dt
import uuid

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.contact import OrganizationalEntity
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from .. import __version__

try:  # cyclonedx-python-lib >= 11.x moved it; the old path still works but warns
    from cyclonedx.contrib.license.factories import LicenseFactory
except ImportError:  # pragma: no cover
    from cyclonedx.factory.license import LicenseFactory
from .model import ImageInfo, Inventory

MEDIA_TYPE = "application/vnd.cyclonedx+json"


def cyclonedx_document(inv: Inventory, image: ImageInfo, created: _dt.datetime | None = None) -> bytes:
    """The CycloneDX 1.6 JSON document (UTF-8 bytes) for ``inv`` found in ``image``."""
    lf = LicenseFactory()
    root = Component(name=image.name, version=image.digest, type=ComponentType.CONTAINER,
                     bom_ref=f"image:{image.digest}", purl=PackageURL.from_string(image.purl),
                     properties=[Property(name="executor:platform", value=image.platform)] if image.platform else None)
    tool = Component(name="executor", version=__version__, type=ComponentType.APPLICATION)
    bom = Bom(serial_number=uuid.uuid4(),
              metadata=BomMetaData(component=root, tools=ToolRepository(components=[tool]),
                                   timestamp=created or _dt.datetime.now(_dt.timezone.utc)))
    if inv.distro.get("ID"):
        bom.metadata.properties.add(Property(name="executor:distro",
                                             value=f"{inv.distro['ID']}-{inv.distro.get('VERSION_ID', '')}".rstrip("-")))
    seen: set[str] = set()
    comps = []
    for i, p in enumerate(inv.packages):
        ref = p.purl if p.purl not in seen else f"{p.purl}#{i}"
        seen.add(ref)
        licenses = [lf.make_from_string(p.license)] if p.license else None
        props = [Property(name="executor:layer_digest", value=p.layer), Property(name="executor:path", value="/" + p.path),
                 Property(name="executor:ecosystem", value=p.ecosystem)]
        supplier = OrganizationalEntity(name=p.supplier) if p.supplier else None
        c = Component(name=p.name, version=p.version or None, type=ComponentType.LIBRARY, bom_ref=ref,
                      purl=PackageURL.from_string(p.purl), licenses=licenses, properties=props, supplier=supplier)
        comps.append(c)
        bom.components.add(c)
    bom.register_dependency(root, comps)
    return JsonV1Dot6(bom).output_as_string(indent=None).encode()
