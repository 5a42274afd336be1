"""The SBOM scanner and writers on hand-made layers: union order, whiteouts, attribution, each
package database, and both documents checked by their own validators."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from executor.sbom import ImageInfo, sbom_document, scan_layers
from executor.sbom.catalogers import kind_of

DPKG = """Package: base-files
Status: install ok installed
Architecture: amd64
Maintainer: Santiago Vila <sanvila@debian.org>
Version: 12.4
Description: Debian base system miscellaneous files
 continued line

Package: gone
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

"""
DPKG2 = DPKG + """Package: curl
Status: install ok installed
Architecture: amd64
Source: curl (7.88.1-10)
Version: 7.88.1-10+deb12u5

"""
APK = "C:Q1abc=\nP:musl\nV:1.2.4-r2\nA:x86_64\nL:MIT\n\nP:busybox\nV:1.36.1-r5\nA:x86_64\nL:GPL-2.0-only\n\n"
METADATA = "Metadata-Version: 2.1\nName: Requests\nVersion: 2.31.0\nLicense: Apache 2.0\n\nbody\n"
OS_RELEASE = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'


def layer(tmp: Path, name: str, files: dict[str, str | None]) -> tuple[str, Path]:
    """A gzip layer blob; a None value is a plain directory entry."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for path, text in files.items():
            info = tarfile.TarInfo(path)
            if text is None:
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
            else:
                data = text.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    p = tmp / name
    p.write_bytes(gzip.compress(buf.getvalue()))
    return f"sha256:{name:0>64}", p


def test_kinds():
    assert kind_of("var/lib/dpkg/status") == "deb"
    assert kind_of("var/lib/dpkg/status.d/libssl1.1") == "deb"
    assert kind_of("var/lib/dpkg/status.d/libssl1.1.md5sums") is None
    assert kind_of("usr/lib/python3/dist-packages/x-1.0.dist-info/METADATA") == "pypi"
    assert kind_of("usr/lib/python3.11/site-packages/foo.egg-info") == "pypi"
    assert kind_of("app/node_modules/@scope/x/package.json") == "npm"
    assert kind_of("app/node_modules/x/package.json") == "npm"
    assert kind_of("app/node_modules/x/lib/package.json") is None
    assert kind_of("app/package.json") is None


def test_union_whiteouts_and_attribution(tmp_path):
    l1 = layer(tmp_path, "a1", {"etc/os-release": OS_RELEASE, "var/lib/dpkg/status": DPKG,
                                "app/node_modules/left/package.json": '{"name":"left","version":"1.0.0"}',
                                "lib/apk/db/installed": APK})
    l2 = layer(tmp_path, "b2", {"var/lib/dpkg/status": DPKG2, "app/node_modules/.wh.left": "",
                                "lib/apk/db/.wh..wh..opq": "",
                                "srv/x.dist-info/METADATA": METADATA,
                                "app/node_modules/@s/y/package.json":
                                    '{"name":"@s/y","version":"2.0.0","license":{"type":"ISC"}}'})
    inv = scan_layers([l1, l2])
    got = {(p.ecosystem, p.name): p for p in inv.packages}
    assert set(got) == {("deb", "base-files"), ("deb", "curl"), ("pypi", "Requests"), ("npm", "@s/y")}
    assert got["deb", "base-files"].layer == l1[0]  # unchanged by the rewrite of the status file
    assert got["deb", "curl"].layer == l2[0]
    assert got["deb", "curl"].purl == "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u5?arch=amd64&distro=debian-12&upstream=curl"
    assert got["pypi", "Requests"].purl == "pkg:pypi/requests@2.31.0"
    assert got["npm", "@s/y"].purl == "pkg:npm/%40s/y@2.0.0" and got["npm", "@s/y"].license == "ISC"
    assert inv.distro["ID"] == "debian"


def test_a_file_over_a_tracked_directory(tmp_path):
    l1 = layer(tmp_path, "c1", {"app/node_modules/x/package.json": '{"name":"x","version":"1.0.0"}'})
    l2 = layer(tmp_path, "c2", {"app/node_modules": "now a file"})
    assert scan_layers([l1, l2]).packages == []
    assert len(scan_layers([l1]).packages) == 1


def test_apk(tmp_path):
    inv = scan_layers([layer(tmp_path, "d1", {"lib/apk/db/installed": APK,
                                               "etc/os-release": "ID=alpine\nVERSION_ID=3.19.1\n"})])
    assert [(p.name, p.purl, p.license) for p in inv.packages] == [
        ("busybox", "pkg:apk/alpine/busybox@1.36.1-r5?arch=x86_64&distro=alpine-3.19.1", "GPL-2.0-only"),
        ("musl", "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.19.1", "MIT")]


IMAGE = ImageInfo(name="registry.example/app", digest="sha256:" + "ab" * 32, tag="v1", platform="linux/amd64")


@pytest.fixture
def inventory(tmp_path):
    return scan_layers([layer(tmp_path, "e1", {"etc/os-release": OS_RELEASE, "var/lib/dpkg/status": DPKG2,
                                               "srv/x.dist-info/METADATA": METADATA, "lib/apk/db/installed": APK,
                                               "n/node_modules/q/package.json":
                                                   '{"name":"q","version":"0.1.0","license":"(MIT OR Apache-2.0)"}'})])


def test_spdx_validates_with_spdx_tools(inventory, tmp_path):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    doc = sbom_document(inventory, IMAGE, "spdx")
    path = tmp_path / "sbom.spdx.json"
    path.write_bytes(doc)
    parsed = parse_file(str(path))
    assert validate_full_spdx_document(parsed) == []
    data = json.loads(doc)
    by_name = {p["name"]: p for p in data["packages"]}
    assert by_name["q"]["licenseDeclared"] == "MIT OR Apache-2.0"
    assert by_name["Requests"]["licenseDeclared"] == "NOASSERTION" and "Apache 2.0" in by_name["Requests"]["licenseComments"]
    assert by_name[IMAGE.name]["versionInfo"] == IMAGE.digest


def test_cyclonedx_validates(inventory):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator
    doc = sbom_document(inventory, IMAGE, "cyclonedx")
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(doc.decode()) is None
    data = json.loads(doc)
    assert data["specVersion"] == "1.6" and data["metadata"]["component"]["version"] == IMAGE.digest
    names = {c["name"]: c for c in data["components"]}
    assert set(names) == {"base-files", "curl", "Requests", "q", "musl", "busybox"}
    props = {p["name"]: p["value"] for p in names["curl"]["properties"]}
    assert props["executor:layer_digest"] == f"sha256:{'e1':0>64}"


def test_spdx_comes_from_spdx_tools_model_with_layers_suppliers_and_purls(inventory):
    from spdx_tools.spdx.model import ActorType, Document, RelationshipType
    from executor.sbom.spdx import spdx_model
    doc = spdx_model(inventory, IMAGE)
    assert isinstance(doc, Document) and doc.creation_info.creators[0].actor_type == ActorType.TOOL
    assert doc.creation_info.document_namespace.startswith(f"urn:executor:spdx:{IMAGE.name}@{IMAGE.digest}:")
    data = json.loads(sbom_document(inventory, IMAGE, "spdx"))
    assert data["creationInfo"]["creators"] == ["Tool: executor-" + __import__("executor").__version__]
    by_name = {p["name"]: p for p in data["packages"]}
    curl = by_name["curl"]
    assert curl["sourceInfo"] == f"layer=sha256:{'e1':0>64} path=/var/lib/dpkg/status"
    assert "annotations" not in curl  # (spdx-tools' writer is quadratic in per-package annotations)
    assert curl["externalRefs"][0]["referenceLocator"] == \
        "pkg:deb/debian/curl@7.88.1-10%2Bdeb12u5?arch=amd64&distro=debian-12&upstream=curl"
    assert by_name["base-files"]["supplier"] == "Organization: Santiago Vila (sanvila@debian.org)"
    assert by_name["musl"]["licenseDeclared"] == "MIT" and by_name["busybox"]["licenseDeclared"] == "GPL-2.0-only"
    assert by_name[IMAGE.name]["primaryPackagePurpose"] == "CONTAINER"
    assert by_name[IMAGE.name]["description"] == "operating system: Debian GNU/Linux 12 (bookworm)"
    assert by_name[IMAGE.name]["externalRefs"][0]["referenceLocator"] == IMAGE.purl
    rels = {(r["spdxElementId"], r["relationshipType"], r["relatedSpdxElement"]) for r in data["relationships"]}
    assert ("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image") in rels
    assert {r for r in rels if r[1] == "CONTAINS"} == {("SPDXRef-Image", "CONTAINS", p["SPDXID"])
                                                       for p in data["packages"] if p["SPDXID"] != "SPDXRef-Image"}
    assert [r.relationship_type for r in doc.relationships][:1] == [RelationshipType.DESCRIBES]


@pytest.mark.parametrize("declared, written", [
    ("GPL-2.0+", "GPL-2.0-or-later"), ("mit", "MIT"), ("(MIT OR Apache-2.0) AND BSD-3-Clause", None),
    ("MIT AND", "NOASSERTION"), ("Apache 2.0", "NOASSERTION"), ("LicenseRef-mine", "NOASSERTION"),
    ("GPL-2.0-only WITH MIT", "NOASSERTION"), ("((", "NOASSERTION"), ("MIT / BSD", "NOASSERTION"),
    ("Classpath-exception-2.0", "NOASSERTION"), ("  ", None)])
def test_spdx_declared_licenses_never_break_the_document(declared, written):
    from executor.sbom import Inventory, Package
    inv = Inventory([Package("npm", "x", "1.0.0", "pkg:npm/x@1.0.0", declared, layer="sha256:" + "1" * 64,
                             path="n/node_modules/x/package.json")])
    pkg = json.loads(sbom_document(inv, IMAGE, "spdx"))["packages"][1]
    want = written or (declared.strip() and declared) or "NOASSERTION"
    assert pkg["licenseDeclared"] == want
    assert ("licenseComments" in pkg) == (want == "NOASSERTION" and bool(declared.strip()))
    if "licenseComments" in pkg:
        assert declared in pkg["licenseComments"]


def test_the_written_spdx_document_passes_spdx_tools_validation(inventory):
    """The executor does not validate while the build waits (quadratic in spdx-tools); this is
    where its documents are validated: parsed back by spdx-tools and checked whole."""
    from spdx_tools.spdx.parser.json.json_parser import parse_from_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    import tempfile
    with tempfile.NamedTemporaryFile("wb", suffix=".spdx.json") as f:
        f.write(sbom_document(inventory, IMAGE, "spdx"))
        f.flush()
        doc = parse_from_file(f.name)
    assert validate_full_spdx_document(doc) == []
    assert len(doc.packages) == 1 + len(inventory.packages)
