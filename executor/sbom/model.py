"""What an SBOM lists: packages found in an image's layers, and the image they were found in."""

from __future__ import annotations

from dataclasses import dataclass, field

from packageurl import PackageURL


@dataclass
class Package:
    """One installed package.

    ``ecosystem``: ``deb`` | ``apk`` | ``pypi`` | ``npm`` | ``golang`` (the purl type); ``purl``: its package
    URL (purl-spec, built with packageurl-python); ``license``: the license as the package
    declares it (free text or an SPDX expression; None when undeclared); ``layer``: digest of the
    layer that brought this name and version; ``path``: the database or metadata file it was read
    from (no leading ``/``); ``arch``: the architecture the package manager records, if any.
    """

    ecosystem: str
    name: str
    version: str
    purl: str = ""
    license: str | None = None
    layer: str = ""
    path: str = ""
    arch: str | None = None
    supplier: str | None = None

    @property
    def identity(self) -> tuple[str, str, str, str]:
        """What makes two sightings the same package: ecosystem, name, version and file."""
        return (self.ecosystem, self.name, self.version, self.path)


@dataclass
class Inventory:
    """Every package of one image, in a stable order (ecosystem, name, version, path).

    ``distro``: ``ID``/``VERSION_ID``/``PRETTY_NAME`` of the image's os-release, when present;
    ``layers``: the layer digests read, in order.
    """

    packages: list[Package] = field(default_factory=list)
    distro: dict[str, str] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)

    def count(self, ecosystem: str) -> int:
        return sum(1 for p in self.packages if p.ecosystem == ecosystem)


@dataclass(frozen=True)
class ImageInfo:
    """The image an SBOM describes: ``name`` (registry/repository, no tag), ``digest`` of its
    manifest, ``tag`` when known, ``platform`` (os/arch[/variant])."""

    name: str
    digest: str
    tag: str | None = None
    platform: str = ""

    @property
    def purl(self) -> str:
        """``pkg:oci/NAME@DIGEST?repository_url=REGISTRY/REPO[&tag=T][&arch=A]`` (purl-spec, type oci)."""
        q = {"repository_url": self.name}
        if self.tag:
            q["tag"] = self.tag
        if self.platform:
            q["arch"] = self.platform.split("/")[1] if "/" in self.platform else self.platform
        return PackageURL(type="oci", name=self.name.rsplit("/", 1)[-1], version=self.digest, qualifiers=q).to_string()
