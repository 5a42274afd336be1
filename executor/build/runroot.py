"""Parent side of RUN: prepare the root's mount points, start the sandbox child, clean up.

Whatever is created here only so the command can run (mount-point placeholders,
/dev nodes and resolv.conf in chroot mode) is removed again before the snapshot, and
the parent directories' timestamps are restored, so none of it reaches a layer.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .sandbox import DEV_NODES, Bind, RunSpec

log = logging.getLogger("executor.run")

HOSTS_DEFAULT = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"


@dataclass
class _Placeholders:
    created: list[Path] = field(default_factory=list)          # files/dirs we made (deepest last)
    parent_times: dict[Path, tuple[int, int]] = field(default_factory=dict)
    swapped: list[tuple[Path, Path]] = field(default_factory=list)  # (original, saved copy)
    temporary: list[Path] = field(default_factory=list)  # files placed for the command only

    def remember_parent(self, path: Path) -> None:
        parent = path.parent
        if parent not in self.parent_times:
            try:
                st = parent.lstat()
                self.parent_times[parent] = (st.st_atime_ns, st.st_mtime_ns)
            except FileNotFoundError:
                pass

    def make_dir(self, path: Path) -> None:
        if path.is_symlink() or path.exists():
            return
        self.make_dir(path.parent)
        self.remember_parent(path)
        path.mkdir(mode=0o755)
        self.created.append(path)

    def make_file(self, path: Path) -> None:
        if path.is_symlink() or path.exists():
            return
        self.make_dir(path.parent)
        self.remember_parent(path)
        path.touch(mode=0o644)
        self.created.append(path)

    def undo(self) -> None:
        for path in self.temporary:
            try:
                path.unlink()
            except OSError:
                pass
        for saved_orig, saved in reversed(self.swapped):
            try:
                os.replace(saved, saved_orig)
            except OSError as e:
                log.warning("could not restore %s: %s", saved_orig, e)
        for path in reversed(self.created):
            try:
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()  # only if still empty: the command may have used it
                else:
                    st = path.lstat()
                    if stat.S_ISCHR(st.st_mode) or st.st_size == 0 or path.name == "resolv.conf":
                        path.unlink()
            except OSError:
                pass
        for parent, (atime, mtime) in self.parent_times.items():
            try:
                os.utime(parent, ns=(atime, mtime), follow_symlinks=False)
            except OSError:
                pass


def _host_file_copy(workdir: Path, name: str, fallback: str) -> Path:
    dest = workdir / name
    if not dest.exists():
        try:
            shutil.copyfile(f"/etc/{name}", dest)
        except OSError:
            dest.write_text(fallback)
    return dest


def run_in_root(root: Path, argv: list[str], env: dict[str, str], *, cwd: str, uid: int, gid: int,
                groups: tuple[int, ...], mode: str, network: str, workdir: Path,
                binds: list[Bind] | None = None, files: dict[str, str] | None = None,
                stdout=None, stderr=None) -> int:
    """Run ``argv`` inside ``root`` with the given identity; returns the exit status.

    ``mode`` is ``namespace`` or ``chroot`` (see :mod:`executor.build.sandbox`); ``workdir``
    is a scratch directory owned by the executor (for the spec file and resolv.conf copies).
    ``binds`` are extra mounts (RUN --mount), namespace mode only. ``files`` maps an in-root
    top-level name to content placed (mode 0755) for the command and removed afterwards
    (heredoc scripts).
    """
    ph = _Placeholders()
    extra = list(binds or [])
    binds = []
    try:
        if mode == "namespace":
            for d in ("proc", "sys", "dev"):
                ph.make_dir(root / d)
            for name, fallback in (("resolv.conf", ""), ("hosts", HOSTS_DEFAULT)):
                target = root / "etc" / name
                if target.is_symlink() or (target.exists() and not target.is_file()):
                    continue
                ph.make_file(target)
                binds.append(Bind(target=f"/etc/{name}", source=str(_host_file_copy(workdir, name, fallback))))
            for b in extra:
                _make_mount_point(root, b, ph)
            binds.extend(extra)
        else:
            ph.make_dir(root / "dev")
            for name in DEV_NODES:
                node = root / "dev" / name
                if node.exists() or node.is_symlink():
                    continue
                try:
                    st = os.stat(f"/dev/{name}")
                    ph.remember_parent(node)
                    os.mknod(node, 0o666 | stat.S_IFCHR, st.st_rdev)
                    os.chmod(node, 0o666)
                    ph.created.append(node)
                except OSError as e:
                    log.debug("cannot create /dev/%s: %s", name, e)
            target = root / "etc" / "resolv.conf"
            if not target.is_symlink():
                ph.make_dir(target.parent)
                if target.exists():
                    saved = workdir / "resolv.conf.saved"
                    shutil.copy2(target, saved)
                    ph.swapped.append((target, saved))
                else:
                    ph.remember_parent(target)
                    ph.created.append(target)
                shutil.copyfile(_host_file_copy(workdir, "resolv.conf", ""), target)
        for name, content in (files or {}).items():
            target = root / name.strip("/")
            ph.remember_parent(target)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o755)
            with os.fdopen(fd, "w") as f:
                f.write(content)
            os.chmod(target, 0o755)
            ph.temporary.append(target)
        spec = RunSpec(root=str(root), argv=argv, env=[f"{k}={v}" for k, v in env.items()], cwd=cwd,
                       uid=uid, gid=gid, groups=list(groups), mode=mode, network=network, binds=binds)
        with tempfile.NamedTemporaryFile("w", dir=workdir, suffix=".json", delete=False) as f:
            f.write(spec.to_json())
            spec_path = f.name
        try:
            proc = subprocess.run([sys.executable, "-m", "executor.build.sandbox", spec_path],
                                  stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr)
        finally:
            os.unlink(spec_path)
        return proc.returncode
    finally:
        ph.undo()


def _make_mount_point(root: Path, b: Bind, ph: _Placeholders) -> None:
    target = root / b.target.lstrip("/")
    if target.exists() or target.is_symlink():
        return
    if b.kind == "bind" and b.source and not os.path.isdir(b.source):
        ph.make_file(target)
    else:
        ph.make_dir(target)
