"""SBOM and provenance of the Debian example (apt-get install jq, pip install six), read from
the build the `debian_example` fixture makes once for the session (no extra Debian build):
the SBOM passes spdx-tools' validator, names jq at the version `dpkg -s jq` prints inside the
image run under runc and six at the version of its dist-info, every purl parses back; the
provenance names the pushed digest, the base image by digest and the context; both are found
from the image digest alone through the referrers tag."""

from __future__ import annotations

import json
import shutil
import uuid

import pytest
from packageurl import PackageURL

from tests.integration.test_supply_chain import referrers
from tests.support.tools import run_executor, runc_run, skopeo_inspect

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _in_image(example, *args: str) -> str:
    r = runc_run(example.bundle, f"sc-{uuid.uuid4().hex[:8]}", args=list(args))
    assert r.returncode == 0, r.stderr
    return r.stdout


def _packages(example) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in json.loads(example.sbom.read_text())["packages"]:
        out.setdefault(p["name"], []).append(p)
    return out


def _purl(pkg: dict) -> str:
    return next(r["referenceLocator"] for r in pkg["externalRefs"] if r["referenceType"] == "purl")


def test_sbom_validates_and_names_jq_and_six_as_the_image_does(debian_example):
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document
    assert validate_full_spdx_document(parse_file(str(debian_example.sbom))) == []
    pkgs = _packages(debian_example)

    status = _in_image(debian_example, "dpkg", "-s", "jq")
    dpkg_version = next(line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith("Version:"))
    [jq] = pkgs["jq"]
    assert jq["versionInfo"] == dpkg_version
    purl = PackageURL.from_string(_purl(jq))
    assert (purl.type, purl.namespace, purl.name, purl.version) == ("deb", "debian", "jq", dpkg_version)
    assert purl.qualifiers["distro"] == "debian-12" and purl.qualifiers["arch"] == "amd64"

    six_version = _in_image(debian_example, "python", "-c",
                            "import importlib.metadata as m; print(m.version('six'))").strip()
    assert six_version == "1.16.0"  # the pinned requirement
    six = [p for p in pkgs["six"] if "site-packages" in p["sourceInfo"]]
    assert [p["versionInfo"] for p in six] == [six_version]
    assert _purl(six[0]) == f"pkg:pypi/six@{six_version}"
    assert "path=/opt/app/lib/python3.11/site-packages/six-1.16.0.dist-info/METADATA" in six[0]["sourceInfo"]

    # jq came with the apt-get RUN, six with the pip RUN: two different layers of the image
    layers = [d["digest"] for d in skopeo_inspect(debian_example.dest, raw=True)["layers"]]
    layer_of = lambda p: p["sourceInfo"].split()[0].removeprefix("layer=")  # noqa: E731
    assert layer_of(jq) in layers and layer_of(six[0]) in layers
    assert layers.index(layer_of(jq)) < layers.index(layer_of(six[0]))

    purls = [_purl(p) for ps in pkgs.values() for p in ps]
    for text in purls:
        assert PackageURL.from_string(text).to_string() == text  # well-formed: parses back to itself
    counts = {t: sum(1 for u in purls if u.startswith(f"pkg:{t}/")) for t in ("deb", "pypi", "golang")}
    assert counts["deb"] > 100 and counts["pypi"] >= 2  # debootstrap minbase + python3, pip, setuptools, six
    print(f"\nDebian example SBOM: {len(purls) - 1} packages {counts}, build with SBOM+provenance "
          f"{debian_example.seconds:.1f}s")


def test_cyclonedx_of_the_same_layers_validates(debian_example):
    """The CycloneDX writer on the same image (its layers as skopeo copied them) passes
    cyclonedx-python-lib's strict JSON schema validation and lists the same packages."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    from executor.sbom import ImageInfo, scan_layers, sbom_document
    layout = debian_example.layout
    index = json.loads((layout / "index.json").read_text())
    desc = next(m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == "img")
    manifest = json.loads((layout / "blobs" / "sha256" / desc["digest"].split(":")[1]).read_text())
    inv = scan_layers([(d["digest"], layout / "blobs" / "sha256" / d["digest"].split(":")[1])
                       for d in manifest["layers"]])
    cdx = sbom_document(inv, ImageInfo("example/debian-python", desc["digest"]), "cyclonedx").decode()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(cdx) is None
    spdx_names = {(n, p.get("versionInfo")) for n, ps in _packages(debian_example).items() for p in ps}
    cdx_names = {(c["name"], c.get("version")) for c in json.loads(cdx)["components"]}
    assert cdx_names <= spdx_names and len(json.loads(cdx)["components"]) == len(inv.packages)


def test_provenance_names_the_pushed_digest_base_and_context(debian_example, debian_base):
    st = json.loads(debian_example.provenance.read_text())
    pushed = skopeo_inspect(debian_example.dest)["Digest"]
    assert pushed == debian_example.digest
    assert [s["digest"] for s in st["subject"]] == [{"sha256": pushed.split(":")[1]}]
    deps = {d["name"]: d for d in st["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps[f"base-image:{debian_base}"]["digest"] == {"sha256": skopeo_inspect(debian_base)["Digest"].split(":")[1]}
    assert len(deps["context"]["digest"]["sha256"]) == 64
    assert st["predicate"]["buildDefinition"]["externalParameters"]["buildArgs"] == {"BASE": debian_base}
    steps = st["predicate"]["buildDefinition"]["internalParameters"]["steps"]
    assert sum(1 for s in steps if s["instruction"].startswith("RUN")) == 4


def test_documents_are_found_from_the_digest(debian_example):
    repo = debian_example.dest.split("/", 1)[1].rsplit(":", 1)[0]
    docs = referrers(debian_example.dest.split("/", 1)[0], repo, debian_example.digest)
    assert docs == {"application/spdx+json": debian_example.sbom.read_bytes(),
                    "application/vnd.in-toto+json": debian_example.provenance.read_bytes()}
    assert skopeo_inspect(debian_example.dest)["Digest"] == debian_example.digest


def test_second_build_records_its_cache_hits(debian_example, debian_base, tmp_path):
    """app.py changed, the example built again with its cache: the provenance records the four
    steps before COPY app.py as cache hits and the rest as misses; the SBOM (read from the
    layers, cached ones included) still lists jq and six; no secret-like value appears."""
    ctx = tmp_path / "ctx"
    shutil.copytree(debian_example.context, ctx)
    (ctx / "app.py").write_text((ctx / "app.py").read_text() + "# changed\n")
    host = debian_example.dest.split("/", 1)[0]
    dest = debian_example.dest.rsplit(":", 1)[0] + ":again"
    p = run_executor(["--context", str(ctx), "--build-arg", f"BASE={debian_base}", "--destination", dest,
                      "--insecure-registry", host, "--log-format", "text",
                      "--build-arg", "PIP_TOKEN=pypi-AgEIcHlwaS5vcmc",
                      "--cache", "--cache-repo", f"oci:{debian_example.cache}", "--sbom", "--provenance",
                      "--sbom-path", str(tmp_path / "sbom.json"), "--provenance-path", str(tmp_path / "prov.json"),
                      "--digest-file", str(tmp_path / "digest")], timeout=900)
    st = json.loads((tmp_path / "prov.json").read_text())
    assert st["subject"][0]["digest"] == {"sha256": skopeo_inspect(dest)["Digest"].split(":")[1]}
    steps = [(s["instruction"].split()[0], s["cache"]) for s in st["predicate"]["buildDefinition"]
             ["internalParameters"]["steps"] if s["instruction"].startswith(("RUN", "COPY"))]
    assert steps == [("RUN", "hit"), ("RUN", "hit"), ("COPY", "hit"), ("RUN", "hit"), ("COPY", "miss"),
                     ("RUN", "miss")], steps
    names = {p["name"]: p.get("versionInfo") for p in json.loads((tmp_path / "sbom.json").read_text())["packages"]}
    assert names["jq"] == next(p["versionInfo"] for ps in _packages(debian_example).values() for p in ps
                               if p["name"] == "jq")
    assert "six" in names and len(names) == len(_packages(debian_example))
    for path in (tmp_path / "prov.json", tmp_path / "sbom.json"):
        assert b"pypi-AgEIcHlwaS5vcmc" not in path.read_bytes()
    print(f"\nDebian example, second build (4 hits, 2 misses) with SBOM+provenance: "
          f"{[ln for ln in p.stderr.splitlines() if ln.startswith('INFO[executor] done')]}")
