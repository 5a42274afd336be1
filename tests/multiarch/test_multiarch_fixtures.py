"""The multi-platform fixtures are what they claim, checked with independent tools: the index
lists linux/amd64 and linux/arm64 (skopeo), and arm64 busybox runs here through binfmt_misc +
qemu (runc, and a plain chroot)."""

from __future__ import annotations

import subprocess

from tests.support.multiarch import AARCH64_HANDLER, config_of
from tests.support.tools import run, runc_run, skopeo_inspect, umoci_unpack


def test_index_lists_amd64_and_arm64(busybox_multi):
    index = skopeo_inspect(busybox_multi, raw=True)
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    plats = {(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]}
    assert plats == {("linux", "amd64"), ("linux", "arm64")}
    repo = busybox_multi.rpartition(":")[0]
    for m in index["manifests"]:  # every child resolves in the index's own repository
        assert config_of(f"{repo}@{m['digest']}")["architecture"] == m["platform"]["architecture"]


def test_arm64_image_config(busybox_arm64):
    cfg = config_of(busybox_arm64)
    assert (cfg["os"], cfg["architecture"], cfg.get("variant")) == ("linux", "arm64", "v8")


def test_arm64_busybox_runs_through_binfmt(binfmt_arm64, busybox_arm64, tmp_path):
    assert "F" in [l for l in AARCH64_HANDLER.read_text().splitlines() if l.startswith("flags:")][0]
    bundle = umoci_unpack(busybox_arm64, tmp_path / "arm64")
    # chroot: the kernel hands the aarch64 ELF to the qemu interpreter it opened at registration
    p = run(["chroot", str(bundle / "rootfs"), "/bin/busybox", "uname", "-m"])
    assert p.stdout.strip() == "aarch64"
    p = runc_run(bundle, f"arm64-uname-{tmp_path.name[-8:]}", ["/bin/uname", "-m"])
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "aarch64"
    subprocess.run(["runc", "delete", "-f", f"arm64-uname-{tmp_path.name[-8:]}"], capture_output=True)
