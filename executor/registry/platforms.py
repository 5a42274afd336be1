"""Platform strings (``os/arch[/variant]``) and picking an image out of an index.

Source: OCI image-spec image-index.md ("platform" object); architecture names as Go's
``GOARCH`` (``amd64``, ``arm64``, ``arm`` + variant ``v6``/``v7``); ``arm64`` without a
variant is ``v8``, as containerd's platform matcher treats it.
"""

from __future__ import annotations

from executor.errors import RegistryError
from executor.registry.mediatypes import INDEX_TYPES, OCI_MANIFEST

_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm"}


def parse_platform(platform: str) -> tuple[str, str, str | None]:
    """``"linux/arm64/v8"`` -> ``("linux", "arm64", None)``; ``"linux/arm/v7"`` ->
    ``("linux", "arm", "v7")``. Arch aliases (x86_64, aarch64, ...) normalised; raises
    RegistryError for anything but two or three non-empty parts."""
    parts = platform.strip().lower().split("/")
    if len(parts) < 2 or len(parts) > 3 or not all(parts):
        raise RegistryError(f"invalid platform {platform!r}: use OS/ARCH[/VARIANT], e.g. linux/amd64")
    arch = _ARCH_ALIASES.get(parts[1], parts[1])
    variant = parts[2] if len(parts) == 3 else None
    if arch == "arm64" and variant == "v8":
        variant = None
    return parts[0], arch, variant


def platform_matches(want: tuple[str, str, str | None], plat: dict | None) -> bool:
    """True when an index entry's ``platform`` object satisfies ``want`` (variant
    compared only when requested; arm64 treats missing variant as v8)."""
    if not isinstance(plat, dict):
        return False
    os_, arch, variant = want
    p_os = str(plat.get("os", "")).lower()
    p_arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(str(plat.get("architecture", "")).lower(),
                                                          str(plat.get("architecture", "")).lower())
    p_var = str(plat.get("variant") or "").lower() or None
    if p_arch == "arm64" and p_var == "v8":
        p_var = None
    if p_os != os_ or p_arch != arch:
        return False
    return variant is None or p_var == variant


def select_platform(index: dict, platform: str) -> dict:
    """The manifest descriptor of ``index`` (OCI image index / Docker manifest list)
    for ``platform``. Without a requested variant, an entry without variant wins.
    Nested indexes are not followed. Raises RegistryError listing the platforms that exist."""
    want = parse_platform(platform)
    entries = [m for m in index.get("manifests") or [] if isinstance(m, dict)]
    matches = [m for m in entries if platform_matches(want, m.get("platform"))
               and m.get("mediaType", OCI_MANIFEST) not in INDEX_TYPES]
    if not matches:
        have = sorted({"/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)
                       for m in entries if isinstance(p := m.get("platform"), dict)})
        raise RegistryError(f"no image for platform {platform} in the index; available: {', '.join(have) or 'none'}; "
                            "pass --custom-platform with one of them")
    if want[2] is None:
        plain = [m for m in matches if not m.get("platform", {}).get("variant")]
        if plain:
            return plain[0]
    return matches[0]
