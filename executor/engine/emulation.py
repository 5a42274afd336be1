"""RUN for a foreign platform: user-mode emulation through binfmt_misc, checked before the build.

A RUN in a stage whose platform is not this machine's executes the image's binaries; the
kernel runs them through a binfmt_misc handler (Debian's qemu-user-static registers
``qemu-aarch64`` and friends). The handler must be registered with the fix-binary flag ``F``:
the interpreter is then opened at registration time, so it works inside the stage root (a
chroot or pivot_root), where ``/usr/bin/qemu-*-static`` does not exist.

``EXECUTOR_BINFMT_DIR`` overrides where handlers are read (default
``/proc/sys/fs/binfmt_misc``), so a test can point the check at an empty directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..dockerfile.instructions import Run
from ..errors import BuildError
from .plan import BuildPlan
from .platforms import host_arch

#: OCI architecture -> the machine name qemu-user-static registers (``qemu-<name>``).
QEMU_NAMES = {"arm64": "aarch64", "arm": "arm", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64",
              "amd64": "x86_64", "386": "i386", "mips64le": "mips64el", "loong64": "loongarch64"}
#: Architectures this machine runs natively besides its own (the kernel's compat modes).
NATIVE_ALSO = {"amd64": {"386"}, "arm64": {"arm"}}


def binfmt_dir() -> Path:
    return Path(os.environ.get("EXECUTOR_BINFMT_DIR", "/proc/sys/fs/binfmt_misc"))


def needs_emulation(platform: str) -> bool:
    arch = platform.split("/")[1] if "/" in platform else platform
    here = host_arch()
    return arch != here and arch not in NATIVE_ALSO.get(here, set())


def emulator_for(platform: str, where: Path | None = None) -> str | None:
    """The binfmt_misc handler name that runs ``platform``'s binaries with the F flag, else None."""
    arch = platform.split("/")[1]
    name = QEMU_NAMES.get(arch, arch)
    d = where or binfmt_dir()
    for entry in sorted(d.glob(f"qemu-{name}*")) if d.is_dir() else []:
        try:
            text = entry.read_text()
        except OSError:
            continue
        lines = text.splitlines()
        flags = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("flags:")), "")
        if lines and lines[0].strip() == "enabled" and "F" in flags:
            return entry.name
    return None


def check_emulation(plans: dict[str, BuildPlan], units: dict[tuple[str, int], str]) -> None:
    """Fail before anything runs when a RUN must execute for a platform this machine cannot run.

    Raises BuildError naming the platform, the stage and what to install or where to build.
    """
    seen: set[str] = set()
    for p, plan in plans.items():
        for i in plan.order:
            node = plan.nodes[i]
            if node.platform in seen or not needs_emulation(node.platform):
                continue
            if not any(isinstance(ins, Run) for ins in node.stage.instructions):
                continue
            seen.add(node.platform)
            handler = emulator_for(node.platform)
            if handler is None:
                arch = node.platform.split("/")[1]
                raise BuildError(
                    f"stage {node.label} has RUN steps for {node.platform}, which this {host_arch()} machine "
                    f"cannot run: no binfmt_misc handler for {arch} with the fix-binary (F) flag in "
                    f"{binfmt_dir()}; install qemu-user-static (Debian: apt-get install qemu-user-static, "
                    f"registers qemu-{QEMU_NAMES.get(arch, arch)} with F; mount -t binfmt_misc binfmt_misc "
                    "/proc/sys/fs/binfmt_misc if it is not mounted), or build this platform on a "
                    f"{arch} node and join the images with `executor index`")
