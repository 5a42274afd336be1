"""Fixtures shared by the unit and integration suites."""

from __future__ import annotations

import pytest

from tests.support.registry import Registry, seed_busybox, start_registry
from tests.support.tools import have

INTEGRATION_TOOLS = ("docker-registry", "skopeo", "umoci", "runc")


@pytest.fixture(scope="session")
def tools_present() -> None:
    """Skip (with the reason) when a real tool the integration tests need is missing."""
    missing = have(*INTEGRATION_TOOLS)
    if missing:
        pytest.skip(f"integration tools missing: {', '.join(missing)} (run scripts/install-deps.sh)")


@pytest.fixture(scope="session")
def registry(tools_present, tmp_path_factory) -> Registry:
    """A real docker-registry on a free 127.0.0.1 port, plain HTTP, for the whole session."""
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def busybox(registry: Registry) -> str:
    """Reference of a busybox base image made with umoci and seeded with skopeo."""
    return seed_busybox(registry)


@pytest.fixture(scope="session")
def debian_base(registry: Registry) -> str:
    """A Debian bookworm minbase image (debootstrap, cached in ~/.cache/executor-tests), packed with
    umoci and pushed with skopeo. TEST ONLY: it carries this machine's proxy CA so RUN steps can
    reach PyPI through the intercepting proxy."""
    from tests.support.tools import SCRIPTS, have, run
    missing = have("debootstrap")
    if missing:
        pytest.skip("debootstrap missing: Debian example skipped (run scripts/install-deps.sh)")
    out = run([str(SCRIPTS / "make-debian-image.sh"), registry.host, "debian:bookworm", "--with-host-ca"],
              timeout=900)
    return out.stdout.strip().splitlines()[-1]
