"""Fixtures of the multi-platform tests (session scope; they build on ``registry`` and ``busybox``
of tests/conftest.py).

* ``binfmt_arm64``: arm64 binaries run here through qemu-user-static (skips with the reason
  otherwise; see :func:`tests.support.multiarch.ensure_binfmt`).
* ``busybox_arm64``: ``REG/busybox-arm64:latest``, a linux/arm64 busybox image (Debian's
  busybox-static:arm64, umoci, skopeo).
* ``busybox_multi``: ``REG/busybox-multi:latest``, an OCI image index of the amd64 ``busybox``
  base and ``busybox_arm64``, written by hand and PUT with curl.

The arm64 images need no emulation to be made or pushed; only tests that run arm64 code ask for
``binfmt_arm64``.
"""

from __future__ import annotations

import pytest

from tests.support.multiarch import ensure_binfmt, push_arm64_busybox, push_index
from tests.support.tools import have


@pytest.fixture(scope="session")
def binfmt_arm64() -> None:
    why = ensure_binfmt()
    if why:
        pytest.skip(f"arm64 emulation unavailable: {why}")


@pytest.fixture(scope="session")
def busybox_arm64(registry) -> str:
    missing = have("apt-get", "dpkg-deb", "curl")
    if missing:
        pytest.skip(f"tools missing for the arm64 base: {', '.join(missing)}")
    return push_arm64_busybox(registry.host, "busybox-arm64:latest")


@pytest.fixture(scope="session")
def busybox_multi(registry, busybox, busybox_arm64) -> str:
    return push_index(registry.host, "busybox-multi:latest", [busybox, busybox_arm64])
