"""SPDX 2.3 JSON (https://spdx.github.io/spdx-spec/v2.3/, schema spdx-schema.json v2.3) of an
:class:`~.model.Inventory`.

Written directly as JSON (the shape is small and fixed); tests check it with spdx-tools' parser
and validator. Shape: document ``SPDXRef-DOCUMENT`` DESCRIBES the image package
``SPDXRef-Image`` (``primaryPackagePurpose`` CONTAINER, ``versionInfo`` = manifest digest, purl
``pkg:oci/...``), which CONTAINS one package per found package: ``name``, ``versionInfo``, a
``PACKAGE-MANAGER purl`` external reference, ``licenseDeclared`` (the declared text when it is
a valid SPDX expression, else NOASSERTION with the text in ``licenseComments``), ``supplier``
when the package database names a maintainer, and an annotation (``annotationType`` OTHER)
whose comment is ``layer=<digest> path=/<file>``: the layer that brought the package and the
file it was read from.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import uuid

from license_expression import ExpressionError, get_spdx_licensing
from packageurl import PackageURL

from .. import __version__
from .model import ImageInfo, Inventory

MEDIA_TYPE = "application/spdx+json"
#: documentNamespace prefix: a URN (SPDX 2.3 asks for a unique absolute URI, not a reachable
#: one; the project has no web address to put there)
NAMESPACE_BASE = "urn:executor:spdx"
_ID_CHARS = re.compile(r"[^A-Za-z0-9.-]+")
_licensing = None


def image_purl(image: ImageInfo) -> str:
    """``pkg:oci/NAME@DIGEST?repository_url=REGISTRY/REPO[&tag=T]`` (purl-spec, type oci)."""
    q = {"repository_url": image.name}
    if image.tag:
        q["tag"] = image.tag
    if image.platform:
        q["arch"] = image.platform.split("/")[1] if "/" in image.platform else image.platform
    return PackageURL(type="oci", name=image.name.rsplit("/", 1)[-1], version=image.digest, qualifiers=q).to_string()


def spdx_license(text: str | None) -> str | None:
    """``text`` normalised when it is a valid SPDX license expression, else None."""
    global _licensing
    if not text:
        return None
    if _licensing is None:
        _licensing = get_spdx_licensing()
    try:
        info = _licensing.validate(text, strict=True)
    except ExpressionError:
        return None
    if info.errors or info.invalid_symbols:
        return None
    return info.normalized_expression


def spdx_document(inv: Inventory, image: ImageInfo, created: _dt.datetime | None = None) -> bytes:
    """The SPDX 2.3 JSON document (UTF-8 bytes) for ``inv`` found in ``image``."""
    when = (created or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
    tool = f"Tool: executor-{__version__}"
    image_pkg = {
        "SPDXID": "SPDXRef-Image", "name": image.name, "versionInfo": image.digest,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False, "primaryPackagePurpose": "CONTAINER",
        "licenseConcluded": "NOASSERTION", "licenseDeclared": "NOASSERTION", "copyrightText": "NOASSERTION",
        "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                          "referenceLocator": image_purl(image)}],
    }
    packages = [image_pkg]
    relationships = [{"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                      "relatedSpdxElement": "SPDXRef-Image"}]
    used: set[str] = set()
    for p in inv.packages:
        sid = base = "SPDXRef-Package-" + _ID_CHARS.sub("-", f"{p.ecosystem}-{p.name}-{p.version}").strip("-")
        n = 1
        while sid in used:
            n += 1
            sid = f"{base}-{n}"
        used.add(sid)
        lic = spdx_license(p.license)
        pkg = {
            "SPDXID": sid, "name": p.name, "versionInfo": p.version, "downloadLocation": "NOASSERTION",
            "filesAnalyzed": False, "licenseConcluded": "NOASSERTION", "licenseDeclared": lic or "NOASSERTION",
            "copyrightText": "NOASSERTION",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": p.purl}],
            "annotations": [{"annotator": tool, "annotationDate": when, "annotationType": "OTHER",
                             "comment": f"layer={p.layer} path=/{p.path}"}],
        }
        if not p.version:
            del pkg["versionInfo"]  # a Go main package built outside module mode has none
        if p.license and not lic:
            pkg["licenseComments"] = f"declared license (not an SPDX expression): {p.license}"
        if p.supplier:
            pkg["supplier"] = "Organization: " + p.supplier.replace("\n", " ")
        packages.append(pkg)
        relationships.append({"spdxElementId": "SPDXRef-Image", "relationshipType": "CONTAINS",
                              "relatedSpdxElement": sid})
    doc = {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{image.name}@{image.digest}",
        "documentNamespace": f"{NAMESPACE_BASE}:{image.name}@{image.digest}:{uuid.uuid4()}",
        "creationInfo": {"created": when, "creators": [tool],
                         "comment": "packages found in the image's layers (dpkg, apk, Python, npm, "
                                    "Go binaries' build info)"},
        "packages": packages, "relationships": relationships,
    }
    if inv.distro.get("PRETTY_NAME"):
        image_pkg["description"] = f"operating system: {inv.distro['PRETTY_NAME']}"
    return json.dumps(doc, indent=1, ensure_ascii=False).encode()
