"""Platforms in OCI terms (``os/arch[/variant]``) and BuildKit's automatic platform build args."""

from __future__ import annotations

import platform as _platform

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def host_arch() -> str:
    """This machine's architecture in OCI terms (``amd64``, ``arm64``, ...)."""
    m = _platform.machine().lower()
    return _ARCH.get(m, m)


def default_platform() -> str:
    """``linux/<arch>`` of this machine (``linux/amd64`` here)."""
    return f"linux/{host_arch()}"


def platform_args(platform: str) -> dict[str, str]:
    """BuildKit's automatic platform ARGs: TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT
    for ``platform`` and BUILDPLATFORM, BUILDOS, BUILDARCH, BUILDVARIANT for this machine."""
    parts = platform.split("/")
    os_name, arch = parts[0], parts[1] if len(parts) > 1 else host_arch()
    variant = parts[2] if len(parts) > 2 else ""
    build = default_platform().split("/")
    return {
        "TARGETPLATFORM": platform, "TARGETOS": os_name, "TARGETARCH": arch, "TARGETVARIANT": variant,
        "BUILDPLATFORM": default_platform(), "BUILDOS": build[0], "BUILDARCH": build[1], "BUILDVARIANT": "",
    }
