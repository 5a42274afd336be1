"""Package databases and metadata files, parsed: which files hold packages and what they say.

Formats read (each file parsed alone; the layer walk in :mod:`.scan` decides which copy wins):

* dpkg (Debian, Ubuntu): ``var/lib/dpkg/status`` -- deb822 stanzas; only packages whose
  ``Status`` ends in ``installed`` -- and ``var/lib/dpkg/status.d/NAME`` (distroless images: one
  stanza per file, no ``Status``). dpkg keeps licenses in ``/usr/share/doc/*/copyright``, not
  in the status file, so deb packages carry no license.
* apk (Alpine): ``lib/apk/db/installed`` -- stanzas of ``X:value`` lines (P name, V version,
  A arch, L license, m maintainer), apk-tools' "installed database" format.
* Python: ``*.dist-info/METADATA`` (PEP 566 / core metadata 2.x), ``*.egg-info/PKG-INFO`` and
  single-file ``*.egg-info``; license from ``License-Expression`` (PEP 639), else a one-line
  ``License``, else the ``License ::`` trove classifiers.
* npm: ``node_modules/NAME/package.json`` and ``node_modules/@SCOPE/NAME/package.json`` (the
  installed packages; an application's own package.json is not one); ``license`` string or
  object, or the old ``licenses`` list.

Go build info embedded in binaries is read by :mod:`.gobuild` (any executable ELF file).
"""

from __future__ import annotations

import json
from email.parser import HeaderParser

from packageurl import PackageURL

from .model import Package

MAX_DB_BYTES = 64 << 20     # a dpkg status file of a large image is a few MiB
MAX_META_BYTES = 4 << 20

DPKG_STATUS = "var/lib/dpkg/status"
DPKG_STATUS_D = "var/lib/dpkg/status.d/"
APK_INSTALLED = "lib/apk/db/installed"
OS_RELEASE = ("etc/os-release", "usr/lib/os-release")


def kind_of(path: str) -> str | None:
    """Which cataloger reads ``path`` (a clean layer path without leading ``/``), or None."""
    if path == DPKG_STATUS:
        return "deb"
    if path.startswith(DPKG_STATUS_D):
        rest = path[len(DPKG_STATUS_D):]
        return "deb" if rest and "/" not in rest and not rest.endswith(".md5sums") else None
    if path == APK_INSTALLED:
        return "apk"
    if path in OS_RELEASE:
        return "os-release"
    parts = path.split("/")
    last = parts[-1]
    if len(parts) >= 2:
        parent = parts[-2]
        if (last == "METADATA" and parent.endswith(".dist-info")) or (last == "PKG-INFO" and parent.endswith(".egg-info")):
            return "pypi"
    if last.endswith(".egg-info") and len(last) > len(".egg-info"):
        return "pypi"  # single-file egg-info (distutils installs); a directory never reaches here
    if last == "package.json" and len(parts) >= 3:
        if parts[-3] == "node_modules" and not parts[-2].startswith("@"):
            return "npm"
        if len(parts) >= 4 and parts[-4] == "node_modules" and parts[-3].startswith("@"):
            return "npm"
    return None


def parse(kind: str, path: str, data: bytes, distro: dict[str, str]) -> list[Package]:
    """Packages in one file of ``kind`` (see :func:`kind_of`); malformed content yields none."""
    text = data.decode("utf-8", errors="replace")
    try:
        if kind == "deb":
            return dpkg(text, path, distro)
        if kind == "apk":
            return apk(text, path, distro)
        if kind == "pypi":
            return python_metadata(text, path)
        if kind == "npm":
            return npm(text, path)
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
    return []


def parse_os_release(data: bytes) -> dict[str, str]:
    """``KEY=value`` lines of os-release(5), quotes removed."""
    out = {}
    for line in data.decode("utf-8", errors="replace").splitlines():
        k, eq, v = line.strip().partition("=")
        if eq and k and not k.startswith("#"):
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "\"'":
                v = v[1:-1]
            out[k] = v
    return out


def _stanzas(text: str):
    """deb822 paragraphs as dicts (continuation lines joined with newlines)."""
    fields: dict[str, str] = {}
    last = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, None
        elif line[0] in " \t":
            if last:
                fields[last] += "\n" + line.strip()
        else:
            k, sep, v = line.partition(":")
            if sep:
                last = k.strip()
                fields[last] = v.strip()
    if fields:
        yield fields


def _distro_qualifiers(distro: dict[str, str], default: str) -> tuple[str, dict[str, str]]:
    ns = (distro.get("ID") or default).lower()
    q = {}
    if distro.get("VERSION_ID"):
        q["distro"] = f"{ns}-{distro['VERSION_ID']}"
    return ns, q


def dpkg(text: str, path: str, distro: dict[str, str]) -> list[Package]:
    ns, q = _distro_qualifiers(distro, "debian")
    out = []
    for f in _stanzas(text):
        name, version = f.get("Package"), f.get("Version")
        if not name or not version:
            continue
        status = f.get("Status")
        if status is not None and not status.split()[-1:] == ["installed"]:
            continue  # removed, config-files, half-installed
        arch = f.get("Architecture") or None
        quals = {**({"arch": arch} if arch else {}), **q}
        if f.get("Source"):
            quals["upstream"] = f["Source"].split()[0]
        purl = PackageURL(type="deb", namespace=ns, name=name, version=version, qualifiers=quals).to_string()
        out.append(Package("deb", name, version, purl, None, path=path, arch=arch, supplier=f.get("Maintainer")))
    return out


def apk(text: str, path: str, distro: dict[str, str]) -> list[Package]:
    ns, q = _distro_qualifiers(distro, "alpine")
    out = []
    for block in text.split("\n\n"):
        f: dict[str, str] = {}
        for line in block.splitlines():
            if len(line) > 2 and line[1] == ":" and line[0] not in f:
                f[line[0]] = line[2:]
        name, version = f.get("P"), f.get("V")
        if not name or not version:
            continue
        arch = f.get("A") or None
        quals = {**({"arch": arch} if arch else {}), **q}
        purl = PackageURL(type="apk", namespace=ns, name=name, version=version, qualifiers=quals).to_string()
        out.append(Package("apk", name, version, purl, f.get("L") or None, path=path, arch=arch,
                           supplier=f.get("m")))
    return out


def python_metadata(text: str, path: str) -> list[Package]:
    msg = HeaderParser().parsestr(text)
    name, version = msg.get("Name"), msg.get("Version")
    if not name or not version:
        return []
    lic = (msg.get("License-Expression") or "").strip() or None
    if lic is None:
        raw = (msg.get("License") or "").strip()
        if raw and "\n" not in raw and len(raw) <= 100 and raw.upper() != "UNKNOWN":
            lic = raw
    if lic is None:
        names = [c.split("::")[-1].strip() for c in msg.get_all("Classifier") or [] if c.startswith("License ::")]
        names = [n for n in names if n and n != "OSI Approved"]
        lic = " / ".join(names) or None  # free text; the writers check SPDX validity
    purl = PackageURL(type="pypi", name=name, version=version).to_string()
    return [Package("pypi", name.strip(), version.strip(), purl, lic, path=path)]


def npm(text: str, path: str) -> list[Package]:
    doc = json.loads(text)
    if not isinstance(doc, dict):
        return []
    name, version = doc.get("name"), doc.get("version")
    if not isinstance(name, str) or not isinstance(version, str) or not name or not version:
        return []
    lic = doc.get("license")
    if isinstance(lic, dict):
        lic = lic.get("type")
    if not lic and isinstance(doc.get("licenses"), list):
        types = [x.get("type") if isinstance(x, dict) else x for x in doc["licenses"]]
        types = [t for t in types if isinstance(t, str) and t]
        lic = " OR ".join(types) if types else None
    ns, _, base = name.rpartition("/")
    purl = PackageURL(type="npm", namespace=ns or None, name=base, version=version).to_string()
    return [Package("npm", name, version, purl, lic if isinstance(lic, str) and lic else None, path=path)]
