"""Corrupt registry data seen through whole ``executor`` builds (the CLI, as a user runs it).

A fault proxy in front of Debian's docker-registry flips one byte of the base layer or of
the base image's manifest. Within ``--image-download-retry`` the build downloads again
and succeeds with the right image; beyond it the build fails with one ``error:`` line
naming the registry and the blob, and no tag is pushed.
"""

from __future__ import annotations

import pytest

from tests.integration.test_registry_builds import Direct, assert_clean_failure, assert_ok, fault_build
from tests.support.fault_proxy import Fault, FaultProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(registry):
    h, port = registry.host.split(":")
    with FaultProxy((h, int(port))) as px:
        yield px


@pytest.fixture(scope="module")
def direct(registry):
    d = Direct(f"http://{registry.host}")
    yield d
    d.close()


@pytest.fixture(scope="module")
def base(registry, busybox, direct) -> tuple[str, str]:
    """(tag of busybox, digest of its only layer)."""
    repo, _, tag = busybox.split("/", 1)[1].partition(":")
    man = direct.manifest(repo, tag)
    assert len(man["layers"]) == 1
    return tag, man["layers"][0]["digest"]


def corrupted(proxy: FaultProxy) -> int:
    return sum(1 for _, _, a in proxy.log if a == "corrupt")


def test_corrupt_base_layer_is_downloaded_again_within_the_budget(proxy, busybox, base, direct, tmp_path):
    _, layer = base
    proxy.add(Fault("corrupt", "GET", f"/blobs/{layer}", after_bytes=4096, times=5))
    p, tag = fault_build(tmp_path, proxy, busybox, "integrity-cli/ok", "--image-download-retry", "3")
    assert_ok(p)
    assert corrupted(proxy) == 5, proxy.log
    man = direct.check_image("integrity-cli/ok", tag)
    assert man["layers"][0]["digest"] == layer


def test_corrupt_base_layer_beyond_the_budget_fails_cleanly_and_tags_nothing(proxy, busybox, base, direct, tmp_path):
    _, layer = base
    proxy.add(Fault("corrupt", "GET", f"/blobs/{layer}", after_bytes=4096, times=1000))
    p, _ = fault_build(tmp_path, proxy, busybox, "integrity-cli/bad", "--image-download-retry", "3")
    line = assert_clean_failure(p, proxy.host, layer, "after 7 attempts", "corrupt", "--image-download-retry")
    assert "incomplete" not in line
    assert corrupted(proxy) == 7, proxy.log
    assert direct.tags("integrity-cli/bad") == []


def test_corrupt_base_manifest_is_fetched_again(proxy, busybox, base, direct, tmp_path):
    tag, _ = base
    proxy.add(Fault("corrupt", "GET", f"/manifests/{tag}$", after_bytes=40, times=2))
    p, pushed = fault_build(tmp_path, proxy, busybox, "integrity-cli/man")
    assert_ok(p)
    assert corrupted(proxy) == 2, proxy.log
    direct.check_image("integrity-cli/man", pushed)
