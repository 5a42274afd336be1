"""Multi-platform test support: arm64 emulation (binfmt_misc + Debian's qemu-user-static) and an
arm64 busybox base image plus a two-platform busybox image index, made with independent tools.

Nothing here uses the executor's own build or push code: the arm64 root filesystem comes from
Debian's ``busybox-static:arm64`` package (``apt-get download`` + ``dpkg-deb -x``), it is packed
with ``umoci`` and pushed with ``skopeo``; the index is written by hand (OCI image-spec
image-index.md) and PUT with ``curl``.

* :func:`ensure_binfmt` -> None when arm64 binaries run here through qemu, else why not (for
  ``pytest.skip``).
* :func:`arm64_busybox_deb` -> the cached ``busybox-static_*_arm64.deb`` (cache directory:
  ``${EXECUTOR_TEST_CACHE:-~/.cache/executor-tests}``, as the Debian bases in scripts/lib use).
* :func:`arm64_busybox_rootfs` -> a busybox root filesystem of arm64 binaries.
* :func:`push_arm64_busybox` -> ``REG/REPO:TAG`` of a linux/arm64 busybox image.
* :func:`push_index` -> ``REG/REPO:TAG`` of an OCI index over images copied into that repository.

The pytest fixtures using these live in tests/multiarch/conftest.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .tools import have, run

CACHE_DIR = Path(os.environ.get("EXECUTOR_TEST_CACHE", Path.home() / ".cache/executor-tests"))
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
AARCH64_HANDLER = BINFMT_DIR / "qemu-aarch64"
AARCH64_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")
APT_PACKAGES = ("qemu-user-static", "binfmt-support")

PASSWD = ("root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "nobody:x:65534:65534:nobody:/home:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n")
GROUP = "root:x:0:\ndaemon:x:1:\napp:x:1000:\nnogroup:x:65534:\n"


def _sh(cmd: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _handler_flags() -> str | None:
    """Flags of the registered qemu-aarch64 handler (e.g. ``"POCF"``), None when not registered
    or disabled."""
    try:
        lines = AARCH64_HANDLER.read_text().splitlines()
    except OSError:
        return None
    if not lines or lines[0].strip() != "enabled":
        return None
    for line in lines:
        if line.startswith("flags:"):
            return line.partition(":")[2].strip()
    return ""


def _apt_install(packages: tuple[str, ...]) -> str | None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    p = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
                       capture_output=True, text=True, env=env, timeout=900)
    if p.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=900)
        p = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
                           capture_output=True, text=True, env=env, timeout=900)
    if p.returncode != 0:
        return f"apt-get install {' '.join(packages)} failed: {p.stderr.strip().splitlines()[-1:]}"
    return None


def _register_from_conf() -> str | None:
    """Register qemu-aarch64 from systemd's binfmt.d line, with the fix-binary flag F."""
    try:
        line = next(x for x in AARCH64_CONF.read_text().splitlines() if x.startswith(":qemu-aarch64:"))
    except (OSError, StopIteration):
        return f"{AARCH64_CONF} is missing or holds no :qemu-aarch64: line"
    fields = line.split(":")  # "", name, type, offset, magic, mask, interpreter, flags
    if len(fields) != 8:
        return f"{AARCH64_CONF}: unexpected registration line {line!r}"
    if "F" not in fields[7]:
        fields[7] += "F"
    if AARCH64_HANDLER.exists():  # registered without F (or disabled): replace it
        try:
            AARCH64_HANDLER.write_text("-1")
        except OSError as e:
            return f"cannot remove the old qemu-aarch64 handler: {e}"
    try:
        (BINFMT_DIR / "register").write_text(":".join(fields))
    except OSError as e:
        return f"cannot register qemu-aarch64 in {BINFMT_DIR}/register: {e}"
    return None


def ensure_binfmt() -> str | None:
    """Make arm64 (aarch64) ELF binaries run here through qemu-user-static; None when they do,
    else the reason they cannot (for ``pytest.skip``).

    Steps, each only when needed: mount binfmt_misc on /proc/sys/fs/binfmt_misc; apt-get install
    Debian's qemu-user-static and binfmt-support; register the qemu-aarch64 handler with the
    fix-binary flag ``F`` (the kernel opens the interpreter at registration, so it is found
    inside chroots and containers): ``update-binfmts --enable qemu-aarch64``, else the line of
    /usr/lib/binfmt.d/qemu-aarch64.conf written to ``register``. Needs root.
    """
    if os.uname().machine == "aarch64":
        return None
    if os.geteuid() != 0:
        return "arm64 emulation needs root (binfmt_misc registration)"
    if not (BINFMT_DIR / "register").exists():
        p = _sh(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], timeout=30)
        if p.returncode != 0 or not (BINFMT_DIR / "register").exists():
            return f"cannot mount binfmt_misc on {BINFMT_DIR}: {p.stderr.strip() or 'no register file'}"
    if not AARCH64_CONF.exists() or shutil.which("update-binfmts") is None:
        why = _apt_install(APT_PACKAGES)
        if why:
            return why
    flags = _handler_flags()
    if flags is None or "F" not in flags:
        _sh(["update-binfmts", "--enable", "qemu-aarch64"], timeout=60)
        flags = _handler_flags()
    if flags is None or "F" not in flags:
        why = _register_from_conf()
        if why:
            return why
        flags = _handler_flags()
    if flags is None:
        return f"qemu-aarch64 is not registered in {BINFMT_DIR} after trying update-binfmts and {AARCH64_CONF}"
    if "F" not in flags:
        return f"qemu-aarch64 is registered without the fix-binary flag F (flags {flags!r})"
    return None


# ---------------------------------------------------------------------------- arm64 busybox
def _arm64_candidate() -> bool:
    p = _sh(["apt-cache", "policy", "busybox-static:arm64"], timeout=60)
    return p.returncode == 0 and "Candidate:" in p.stdout and "Candidate: (none)" not in p.stdout


def arm64_busybox_deb(cache_dir: Path = CACHE_DIR) -> Path:
    """Path of Debian's busybox-static arm64 package, downloaded once into ``cache_dir``.

    Adds the arm64 dpkg architecture and runs apt-get update only when apt knows no arm64
    candidate yet. Raises AssertionError (with apt's output) when the download fails.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached = sorted(cache_dir.glob("busybox-static_*_arm64.deb"))
    if cached:
        return cached[-1]
    if have("apt-get", "dpkg-deb"):
        raise AssertionError("apt-get and dpkg-deb are needed to fetch busybox-static:arm64")
    if not _arm64_candidate():
        foreign = _sh(["dpkg", "--print-foreign-architectures"]).stdout.split()
        if "arm64" not in foreign:
            run(["dpkg", "--add-architecture", "arm64"])
        run(["apt-get", "update", "-q"], timeout=900)
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        run(["apt-get", "download", "-q", "busybox-static:arm64"], cwd=tmp, timeout=900)
        debs = list(Path(tmp).glob("busybox-static_*_arm64.deb"))
        assert debs, f"apt-get download left no busybox-static arm64 .deb in {tmp}"
        dest = cache_dir / debs[0].name
        os.replace(debs[0], dest)
    return dest


def arm64_busybox_rootfs(dest: Path, cache_dir: Path = CACHE_DIR) -> Path:
    """Fill ``dest`` with a minimal busybox root filesystem of arm64 binaries; returns ``dest``.

    /bin/busybox comes from the arm64 .deb (``dpkg-deb -x``); one symlink per applet (the list of
    the host's busybox-static, the same Debian version), /etc/passwd and /etc/group as the amd64
    base (scripts/make-busybox-image.sh) has them.
    """
    deb = arm64_busybox_deb(cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        run(["dpkg-deb", "-x", str(deb), tmp])
        binary = Path(tmp) / "bin/busybox"
        assert binary.is_file(), f"{deb} holds no bin/busybox"
        for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "home", "var", "proc", "sys", "dev"):
            (dest / d).mkdir(parents=True, exist_ok=True)
        (dest / "tmp").chmod(0o1777)
        (dest / "root").chmod(0o700)
        shutil.copy2(binary, dest / "bin/busybox")
    elf = (dest / "bin/busybox").read_bytes()[:20]
    assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == 183, "bin/busybox is not an aarch64 ELF"
    applets = run(["/bin/busybox", "--list"]).stdout.split()
    for applet in applets:
        if applet != "busybox":
            link = dest / "bin" / applet
            if not os.path.lexists(link):
                link.symlink_to("busybox")
    (dest / "etc/passwd").write_text(PASSWD)
    (dest / "etc/group").write_text(GROUP)
    return dest


def push_arm64_busybox(registry_host: str, name: str = "busybox-arm64:latest", cache_dir: Path = CACHE_DIR) -> str:
    """Pack the arm64 busybox root filesystem with umoci (config: os linux, architecture arm64,
    variant v8, Cmd /bin/sh) and push it with skopeo to ``REGISTRY/NAME``; returns that reference."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        layout = f"{work}/oci"
        run(["umoci", "init", "--layout", layout])
        run(["umoci", "new", "--image", f"{layout}:base"])
        run(["umoci", "unpack", "--image", f"{layout}:base", str(work / "bundle")])
        arm64_busybox_rootfs(work / "bundle/rootfs", cache_dir)
        run(["umoci", "repack", "--image", f"{layout}:base", str(work / "bundle")])
        run(["umoci", "config", "--image", f"{layout}:base", "--config.cmd", "/bin/sh",
             "--config.env", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
             "--architecture", "arm64", "--os", "linux"])
        _set_variant(Path(layout), "base", "v8")
        run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:base",
             f"docker://{registry_host}/{name}"])
    return f"{registry_host}/{name}"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _set_variant(layout: Path, tag: str, variant: str) -> None:
    """Set ``variant`` in the config of ``layout:tag`` (umoci config has no flag for it): rewrite
    the config blob, the manifest blob and the index.json entry with the new digests."""
    blob = lambda d: layout / "blobs" / d.replace(":", "/", 1)  # noqa: E731
    index = json.loads((layout / "index.json").read_text())
    entry = next(m for m in index["manifests"] if (m.get("annotations") or {}).get(
        "org.opencontainers.image.ref.name") == tag)
    manifest = json.loads(blob(entry["digest"]).read_bytes())
    config = json.loads(blob(manifest["config"]["digest"]).read_bytes())
    config["variant"] = variant
    cfg = json.dumps(config, separators=(",", ":")).encode()
    blob(_sha256(cfg)).write_bytes(cfg)
    manifest["config"].update(digest=_sha256(cfg), size=len(cfg))
    man = json.dumps(manifest, separators=(",", ":")).encode()
    blob(_sha256(man)).write_bytes(man)
    entry.update(digest=_sha256(man), size=len(man))
    entry.setdefault("platform", {}).update(variant=variant)
    (layout / "index.json").write_text(json.dumps(index))


# ---------------------------------------------------------------------------- the index
def raw_manifest(ref: str) -> tuple[bytes, str]:
    """(bytes, media type) of ``ref``'s manifest as stored, via ``skopeo inspect --raw``."""
    data = run(["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
               text=False).stdout
    # umoci writes OCI manifests without the (optional) mediaType field
    return data, json.loads(data).get("mediaType") or "application/vnd.oci.image.manifest.v1+json"


def config_of(ref: str) -> dict:
    """The image config of ``ref`` (``skopeo inspect --config --raw``)."""
    return json.loads(run(["skopeo", "inspect", "--raw", "--config", "--tls-verify=false", f"docker://{ref}"]).stdout)


def push_index(registry_host: str, target: str, images: list[str]) -> str:
    """Copy each single-platform image of ``images`` into the repository of ``target``
    (``REPO:TAG`` on ``registry_host``) with skopeo, then PUT an OCI image index of them there
    with curl; returns ``REGISTRY/REPO:TAG``. Platforms come from each image's config."""
    repo, _, tag = target.partition(":")
    tag = tag or "latest"
    descriptors = []
    for i, src in enumerate(images):
        cfg = config_of(src)
        plat = {"architecture": cfg["architecture"], "os": cfg["os"]}
        if cfg.get("variant"):
            plat["variant"] = cfg["variant"]
        staged = f"{registry_host}/{repo}:{tag}-{plat['architecture']}"
        run(["skopeo", "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false",
             "--preserve-digests", f"docker://{src}", f"docker://{staged}"])
        data, media_type = raw_manifest(staged)
        descriptors.append({"mediaType": media_type, "digest": _sha256(data), "size": len(data), "platform": plat})
    index = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                        "manifests": descriptors}, indent=2).encode()
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        f.write(index)
        f.flush()
        run(["curl", "-fsS", "-X", "PUT", "-H", "Content-Type: application/vnd.oci.image.index.v1+json",
             "--data-binary", f"@{f.name}", f"http://{registry_host}/v2/{repo}/manifests/{tag}"])
    return f"{registry_host}/{repo}:{tag}"
