"""Fixtures of the in-process engine tests: a build context holding a busybox root filesystem,
and a ``build`` helper that runs :class:`executor.engine.build.Build` on a Dockerfile text.

No registry, no network, no CLI subprocess. A Dockerfile starts from the local base with
:data:`BASE` (``FROM scratch AS base`` + ``COPY rootfs/ /``); later stages ``FROM base`` can
RUN busybox commands. The base stage's COPY is the first layer of every image built on it;
the helpers :meth:`Built.own_layers` and :meth:`Built.files` read the layers on disk (they
exist until the test ends, when the work directory is removed).
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from executor.engine.build import Build, BuildResult
from executor.oci.image import Layer
from executor.options import BuildOptions
from executor.registry.auth import Keychain
from executor.registry.client import RegistryClient, RegistryOptions

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "ls", "cat", "echo", "mkdir", "touch", "sleep", "id", "date", "true", "false", "rm",
           "stat", "env", "printf", "test", "grep", "wc", "chmod", "chown", "ln", "pwd", "readlink", "mount",
           "head", "tail", "cut", "tr", "dd", "nproc", "ip", "cp", "mv", "find", "whoami", "kill")

#: The start of every Dockerfile that needs a shell: a stage ``base`` holding busybox.
BASE = "FROM scratch AS base\nCOPY rootfs/ /\n"

PASSWD = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n"
GROUP = "root:x:0:\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n"


def _is_static(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 16)
    except OSError:
        return False
    return data[:4] == b"\x7fELF" and b"/lib64/ld-linux" not in data and b"/lib/ld-linux" not in data


@pytest.fixture(scope="session")
def rootfs_template(tmp_path_factory) -> Path:
    """A root filesystem with a static busybox, its applet links, /etc/passwd and /etc/group."""
    if not _is_static(BUSYBOX):
        pytest.skip(f"{BUSYBOX} missing or not a static binary (apt-get install busybox-static)")
    root = tmp_path_factory.mktemp("rootfs-template") / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for name in APPLETS:
        os.symlink("busybox", root / "bin" / name)
    (root / "etc").mkdir()
    (root / "etc" / "passwd").write_text(PASSWD)
    (root / "etc" / "group").write_text(GROUP)
    for d in ("tmp", "root", "home/app"):
        (root / d).mkdir(parents=True)
    os.chmod(root / "tmp", 0o1777)
    os.chown(root / "home" / "app", 1000, 1000)
    return root


@pytest.fixture(scope="session")
def client():
    """A registry client built as the CLI builds one; never asked anything by these builds."""
    with RegistryClient(RegistryOptions(), Keychain.anonymous()) as c:
        yield c


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("RUN needs root (chroot or namespaces) and root-owned files; these tests run as root in CI")


def read_layer(layer: Layer) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    """``{path: (TarInfo, content or None)}`` of a layer blob (paths without ``./`` or ``/``)."""
    assert layer.path is not None, "layer has no local blob"
    out: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}
    with gzip.open(layer.path, "rb") as g:
        data = g.read()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for ti in tf:
            name = ti.name
            while name.startswith(("./", "/")):
                name = name[1:] if name.startswith("/") else name[2:]
            name = "" if name == "." else name.rstrip("/")
            content = tf.extractfile(ti).read() if ti.isreg() else None
            out[name] = (ti, content)
    return out


@dataclass
class Built:
    """The outcome of one build: ``result`` (image, record, stages_built), the ``build`` object,
    the context dir and the RUN output log."""

    result: BuildResult
    build: Build
    context: Path
    run_log: Path
    base_layers: int = 0

    @property
    def image(self):
        return self.result.image

    @property
    def config(self) -> dict:
        """The image's ``config`` object (Env, Cmd, Labels, ...)."""
        return self.result.image.config.get("config") or {}

    @property
    def record(self):
        return self.result.record

    def own_layers(self) -> list[Layer]:
        """The layers after the base stage's ``COPY rootfs/ /`` (all of them for non-busybox builds)."""
        return self.result.image.layers[self.base_layers:]

    def layer(self, index: int = -1) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
        return read_layer(self.result.image.layers[index])

    def files(self) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
        """Every path of the image's own layers (later layers win; whiteouts not applied)."""
        out: dict = {}
        for layer in self.own_layers():
            out.update(read_layer(layer))
        return out

    def read(self, path: str) -> bytes:
        f = self.files()
        assert path in f, f"{path} not in the image's own layers: {sorted(f)}"
        content = f[path][1]
        assert content is not None, f"{path} is not a regular file"
        return content

    def run_output(self) -> str:
        return self.run_log.read_text(errors="replace")


@dataclass
class Builder:
    """Writes a context and a Dockerfile, then builds them in-process (see :meth:`__call__`)."""

    tmp: Path
    template: Path
    client: RegistryClient
    builds: list[Build] = field(default_factory=list)
    _n: int = 0

    def context(self, files: dict[str, str | bytes] | None = None, rootfs: bool = True) -> Path:
        """A fresh context dir with ``rootfs/`` (the busybox tree) and ``files`` (relpath -> content)."""
        self._n += 1
        ctx = self.tmp / f"ctx{self._n}"
        ctx.mkdir()
        if rootfs:
            shutil.copytree(self.template, ctx / "rootfs", symlinks=True)
        for rel, content in (files or {}).items():
            p = ctx / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
        return ctx

    def options(self, dockerfile: str, files: dict | None = None, **kw) -> BuildOptions:
        ctx = kw.pop("context", None) or self.context(files)
        df = ctx / "Dockerfile"
        df.write_text(textwrap.dedent(dockerfile).lstrip("\n"))
        self._n += 1
        kw.setdefault("jobs", 2)
        kw.setdefault("run_cache_dir", self.tmp / "run-cache")
        return BuildOptions(context=ctx, dockerfile=df, work_dir=self.tmp / f"work{self._n}", **kw)

    def start(self, dockerfile: str, files: dict | None = None, **kw) -> Build:
        """A :class:`Build` not yet run (for tests that look at it after a failure)."""
        opts = self.options(dockerfile, files, **kw)
        log = open(self.tmp / f"run{self._n}.log", "w+")
        b = Build(opts, self.client, stdout=log, stderr=log)
        b._test_log = Path(log.name)  # type: ignore[attr-defined]
        self.builds.append(b)
        return b

    def __call__(self, dockerfile: str, files: dict | None = None, **kw) -> Built:
        """Build ``dockerfile`` (dedented) in a new context with ``files``; BuildOptions fields as keywords."""
        b = self.start(dockerfile, files, **kw)
        result = b.build()
        layered = [h for h in result.image.config.get("history", []) if not h.get("empty_layer")]
        base = 1 if layered and layered[0].get("created_by") == "COPY rootfs/ /" else 0
        return Built(result=result, build=b, context=b.opts.context, run_log=b._test_log, base_layers=base)

    def close(self) -> None:
        for b in self.builds:
            b.cleanup()


@pytest.fixture
def build(tmp_path, rootfs_template, client):
    """``build(dockerfile_text, files={rel: content}, **BuildOptions fields) -> Built``."""
    b = Builder(tmp=tmp_path, template=rootfs_template, client=client)
    yield b
    b.close()


@pytest.fixture
def root_build(build):
    """``build`` for Dockerfiles with RUN: skipped unless root."""
    needs_root()
    return build
