"""Machinery of the differential corpus: prepare a case's context, build it with `executor` and
with `buildah bud --isolation chroot` (vfs storage), unpack both with umoci and compare.

A case is a directory ``corpus/NN-name/`` holding the ``Dockerfile`` and its build context,
plus optional files that are *not* part of the context:

``case.json``      how to build and what differences are allowed (schema in :class:`Case`)
``expected.json``  direct assertions on the executor's image, used where buildah departs from
                   Docker's documentation (schema in :func:`check_expected`)

Every Dockerfile starts ``ARG BASE`` / ``FROM $BASE``: the test passes
``--build-arg BASE=<registry>/busybox:latest`` (the session's busybox fixture) to both builders.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.tools import executor_cmd, run

CORPUS = Path(__file__).resolve().parent / "corpus"
META_FILES = ("case.json", "expected.json")

# Differences allowed in every case, each with its reason. A predicate sees (path, executor entry,
# buildah entry) where an entry is None when the path is missing on that side.
RUN_MOUNT_FILES = ("etc/hosts", "etc/resolv.conf", "etc/hostname")


def _empty_file(e: dict | None) -> bool:
    return e is not None and e["type"] == "reg" and e["size"] == 0


def _empty_dir(e: dict | None) -> bool:
    return e is not None and e["type"] == "dir" and e.get("empty", False)


GLOBAL_ALLOWED_PATHS: list[tuple[str, str]] = [
    ("etc/hosts, etc/resolv.conf, etc/hostname present only in buildah's image as empty files",
     "buildah (chroot isolation) creates empty files to bind-mount over during RUN and leaves them in the "
     "layer; Docker/BuildKit mounts them without leaving files; the executor leaves none either"),
    ("/run present only in buildah's image as an empty directory",
     "buildah creates /run as a mount point for RUN (and /run/secrets for secret mounts) and commits it; "
     "BuildKit does not; not part of the Dockerfile's result"),
    ("a VOLUME path (or a parent of one) present only in buildah's image as an empty root-owned directory",
     "buildah creates VOLUME directories in the rootfs when a later RUN runs; Docker's reference says VOLUME "
     "marks a mount point in the image config, and BuildKit records it only in the config (the directory "
     "appears at run time); the config's Volumes are compared"),
]


def globally_allowed(path: str, ex: dict | None, bu: dict | None, bu_volumes: list[str] = ()) -> str | None:
    """The reason a difference at ``path`` is allowed in every case, or None.

    ``bu_volumes``: the Volumes of buildah's image config (absolute paths).
    """
    if ex is None and path in RUN_MOUNT_FILES and _empty_file(bu):
        return GLOBAL_ALLOWED_PATHS[0][0]
    if ex is None and path in ("run", "run/secrets") and bu is not None and bu["type"] == "dir":
        return GLOBAL_ALLOWED_PATHS[1][0]
    if ex is None and bu is not None and bu["type"] == "dir" and bu["uid"] == 0:
        for v in bu_volumes:
            v = v.strip("/")
            if v == path or v.startswith(path + "/"):
                return GLOBAL_ALLOWED_PATHS[2][0]
    return None


# Config fields compared (container config members), and the normalisation applied first.
CONFIG_FIELDS = ("Env", "Cmd", "Entrypoint", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes",
                 "StopSignal", "Shell", "Healthcheck", "OnBuild")
TOP_FIELDS = ("architecture", "os", "author")
GLOBAL_ALLOWED_CONFIG: list[tuple[str, str]] = [
    ("Labels[io.buildah.version]", "buildah stamps its own version label on every image; not from the Dockerfile"),
    ("empty vs absent (Entrypoint [], OnBuild [], Volumes {}, WorkingDir \"\", User \"\")",
     "buildah's docker format writes empty values where the executor omits the key; Docker treats "
     "null and empty alike (no entrypoint, no volumes)"),
    ("history, created, container, container_config, docker_version, rootfs.diff_ids, layer count",
     "builder-specific: buildah commits one layer per build (no --layers) and formats history differently; "
     "the root filesystems and config values are compared instead"),
]


def normalise_config(cfg: dict) -> dict:
    """The compared view of an image config JSON: CONFIG_FIELDS of ``config`` plus TOP_FIELDS."""
    c = cfg.get("config") or {}
    out: dict = {}
    for k in CONFIG_FIELDS:
        v = c.get(k)
        if k == "Labels" and v:
            v = {lk: lv for lk, lv in v.items() if lk != "io.buildah.version"}
        if k in ("ExposedPorts", "Volumes") and v:
            v = sorted(v)
        if v in (None, "", [], {}):
            v = None
        out[k] = v
    for k in TOP_FIELDS:
        out[k] = cfg.get(k) or None
    return out


@dataclass
class Case:
    """One corpus case, from ``corpus/NN-name`` and its optional ``case.json``.

    case.json keys (all optional):
      ``summary``: one line (also in README.md);
      ``format``: buildah's ``--format`` (``docker`` default: keeps Shell/Healthcheck like BuildKit);
      ``build_args``: {name: value} for both builders; ``secrets``: {id: file content};
      ``setup``: context entries git cannot hold (see :func:`apply_setup`);
      ``allowed``: [{"path": "/p", "reason": "..."}] paths whose difference is allowed;
      ``config_allowed``: {"Field": "reason"} config fields not compared (then asserted in expected.json);
      ``expect_failure``: the executor must fail (the Dockerfile is invalid per Docker's docs), and
      buildah too unless ``buildah_accepts`` gives the reason it does not;
      ``no_buildah``: reason buildah cannot build the case at all (then only expected.json is checked);
      ``xfail``: reason (an executor bug outside this suite's files; strict xfail).
    Every ``allowed`` path must be asserted in expected.json (``paths`` or ``absent``), and every
    ``config_allowed`` field in its ``config``: where buildah is not the oracle, the documented
    result is stated.
    """

    name: str
    dir: Path
    summary: str = ""
    format: str = "docker"
    build_args: dict = field(default_factory=dict)
    secrets: dict = field(default_factory=dict)
    setup: list = field(default_factory=list)
    allowed: list = field(default_factory=list)
    config_allowed: dict = field(default_factory=dict)
    expect_failure: bool = False
    buildah_accepts: str | None = None
    no_buildah: str | None = None
    xfail: str | None = None
    expected: dict | None = None

    @classmethod
    def load(cls, d: Path) -> "Case":
        meta = json.loads((d / "case.json").read_text()) if (d / "case.json").exists() else {}
        unknown = set(meta) - {"summary", "format", "build_args", "secrets", "setup", "allowed",
                               "config_allowed", "expect_failure", "buildah_accepts",
                               "no_buildah", "xfail"}
        if unknown:
            raise ValueError(f"{d.name}/case.json: unknown keys {sorted(unknown)}")
        for a in meta.get("allowed", []):
            if not a.get("reason") or not a.get("path"):
                raise ValueError(f"{d.name}/case.json: every allowed difference needs a path and a reason")
        exp = json.loads((d / "expected.json").read_text()) if (d / "expected.json").exists() else None
        return cls(name=d.name, dir=d, expected=exp, **meta)


def all_cases() -> list[Case]:
    """Every case directory in the corpus, in name order."""
    return [Case.load(d) for d in sorted(CORPUS.iterdir()) if d.is_dir()]


# ----------------------------------------------------------------------------- context
def _mode(text: str) -> int:
    return int(text, 8)


def apply_setup(ctx: Path, ops: list[dict]) -> None:
    """Make the context entries git cannot hold. Ops (applied in order):

    ``{"mkdir": "p", "mode": "0700"}``; ``{"hardlink": "new", "to": "existing"}``;
    ``{"symlink": "p", "target": "t"}``; ``{"write": "p", "content": "...", "mode": "0600"}``;
    ``{"chmod": "p", "mode": "0751"}``;
    ``{"tar": "a.tar[.gz|.bz2|.xz]", "entries": [{"name", "type": file|dir|symlink|hardlink,
    "content", "mode", "uid", "gid", "uname", "gname", "linkname"}]}``.
    """
    for op in ops:
        if "mkdir" in op:
            p = ctx / op["mkdir"]
            p.mkdir(parents=True, exist_ok=True)
            os.chmod(p, _mode(op.get("mode", "0755")))
        elif "hardlink" in op:
            (ctx / op["hardlink"]).parent.mkdir(parents=True, exist_ok=True)  # git keeps no empty dirs
            os.link(ctx / op["to"], ctx / op["hardlink"])
        elif "symlink" in op:
            p = ctx / op["symlink"]
            p.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(op["target"], p)
        elif "write" in op:
            p = ctx / op["write"]
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(op.get("content", ""))
            os.chmod(p, _mode(op.get("mode", "0644")))
        elif "chmod" in op:
            os.chmod(ctx / op["chmod"], _mode(op["mode"]))
        elif "tar" in op:
            name = op["tar"]
            comp = {"gz": "gz", "bz2": "bz2", "xz": "xz"}.get(name.rsplit(".", 1)[-1], "")
            with tarfile.open(ctx / name, "w:" + comp if comp else "w", format=tarfile.PAX_FORMAT) as t:
                for e in op["entries"]:
                    info = tarfile.TarInfo(e["name"])
                    info.mtime = 1_600_000_000
                    info.uid, info.gid = e.get("uid", 0), e.get("gid", 0)
                    info.uname, info.gname = e.get("uname", ""), e.get("gname", "")
                    kind = e.get("type", "file")
                    data = None
                    if kind == "file":
                        data = e.get("content", "").encode()
                        info.size = len(data)
                        info.mode = _mode(e.get("mode", "0644"))
                    elif kind == "dir":
                        info.type, info.mode = tarfile.DIRTYPE, _mode(e.get("mode", "0755"))
                    elif kind == "symlink":
                        info.type, info.linkname, info.mode = tarfile.SYMTYPE, e["linkname"], 0o777
                    elif kind == "hardlink":
                        info.type, info.linkname = tarfile.LNKTYPE, e["linkname"]
                        info.mode = _mode(e.get("mode", "0644"))
                    t.addfile(info, io.BytesIO(data) if data is not None else None)
        else:
            raise ValueError(f"unknown setup op {op}")


def prepare_context(case: Case, dest: Path) -> Path:
    """Copy the case directory (without META_FILES) to ``dest``, normalise modes (0644/0755 for
    files, 0755 for dirs: independent of the checkout's umask), then apply the setup ops."""
    shutil.copytree(case.dir, dest, symlinks=True, ignore=lambda d, names: [n for n in names if n in META_FILES and Path(d) == case.dir])
    for dirpath, dirnames, filenames in os.walk(dest):
        for n in dirnames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
        for n in filenames:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p):
                os.chmod(p, 0o755 if os.stat(p).st_mode & 0o100 else 0o644)
    os.chmod(dest, 0o755)
    apply_setup(dest, case.setup)
    return dest


# ----------------------------------------------------------------------------- builders
@dataclass
class Buildah:
    """buildah with its own vfs storage under ``base`` and offline registry/policy files."""

    base: Path
    registry: str

    def __post_init__(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        self.policy = self.base / "policy.json"
        self.policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
        self.conf = self.base / "registries.conf"
        self.conf.write_text(f'unqualified-search-registries = []\n\n[[registry]]\nlocation = "{self.registry}"\n'
                             f'insecure = true\n')

    def cmd(self, *args: str) -> list[str]:
        return ["buildah", "--storage-driver", "vfs", "--root", str(self.base / "root"),
                "--runroot", str(self.base / "runroot"), "--registries-conf", str(self.conf), *args]

    def env(self) -> dict:
        e = dict(os.environ)
        e["BUILDAH_ISOLATION"] = "chroot"
        e["TMPDIR"] = str(self.base / "tmp")
        (self.base / "tmp").mkdir(exist_ok=True)
        return e

    def bud(self, ctx: Path, tag: str, fmt: str, build_args: dict, secrets: dict[str, Path]) -> subprocess.Popen:
        """Start ``buildah bud`` (returns the process; stdout+stderr to ctx/../buildah.log)."""
        args = ["bud", "--signature-policy", str(self.policy), "--isolation", "chroot", "--format", fmt,
                "--tls-verify=false", "--pull-never", "-f", str(ctx / "Dockerfile"), "-t", tag]
        for k, v in build_args.items():
            args += ["--build-arg", f"{k}={v}"]
        for sid, path in secrets.items():
            args += ["--secret", f"id={sid},src={path}"]
        log = open(ctx.parent / "buildah.log", "w")
        return subprocess.Popen(self.cmd(*args, str(ctx)), stdout=log, stderr=subprocess.STDOUT, env=self.env(),
                                stdin=subprocess.DEVNULL)

    def push(self, tag: str) -> None:
        """Push ``tag`` to the registry keeping its manifest format."""
        run(self.cmd("push", "--signature-policy", str(self.policy), "--tls-verify=false", "-q", tag,
                     f"docker://{tag}"), env=self.env())


def start_executor(ctx: Path, dest: str, registry: str, build_args: dict, secrets: dict[str, Path]) -> subprocess.Popen:
    """Start ``executor`` building ``ctx`` and pushing to ``dest`` (log in ctx/../executor.log)."""
    args = ["--context", str(ctx), "--destination", dest, "--insecure-registry", registry, "--log-format", "text"]
    for k, v in build_args.items():
        args += ["--build-arg", f"{k}={v}"]
    for sid, path in secrets.items():
        args += ["--secret", f"id={sid},src={path}"]
    log = open(ctx.parent / "executor.log", "w")
    return subprocess.Popen(executor_cmd() + args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


# ----------------------------------------------------------------------------- inspection
def fetch(ref: str, work: Path) -> tuple[Path, dict]:
    """(unpacked rootfs, raw config JSON as pushed) of ``ref`` in the registry.

    The config is read raw from the registry (skopeo --raw --config) so Docker-only fields
    (Shell, Healthcheck, OnBuild) survive; the rootfs goes skopeo -> OCI layout -> umoci unpack.
    """
    layout, bundle = work / "layout", work / "bundle"
    work.mkdir(parents=True, exist_ok=True)
    cfg = json.loads(run(["skopeo", "inspect", "--tls-verify=false", "--raw", "--config", f"docker://{ref}"]).stdout)
    run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:img"])
    run(["umoci", "unpack", "--image", f"{layout}:img", str(bundle)])
    return bundle / "rootfs", cfg


_TYPES = {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "symlink", stat.S_IFCHR: "chr",
          stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "sock"}


def scan_tree(root: Path) -> dict[str, dict]:
    """{relpath: entry} of every path under ``root`` (not followed into symlinks).

    entry: type, mode (permission + setuid/setgid/sticky bits, octal string), uid, gid, and
    sha256 + size (regular files), target (symlinks), rdev (devices), empty (dirs), and
    ``links``: the sorted relpaths sharing the inode (hardlink group, only when more than one).
    """
    out: dict[str, dict] = {}
    inodes: dict[int, list[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            kind = _TYPES[stat.S_IFMT(st.st_mode)]
            e = {"type": kind, "mode": oct(stat.S_IMODE(st.st_mode)), "uid": st.st_uid, "gid": st.st_gid}
            if kind == "reg":
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                e["sha256"], e["size"] = h.hexdigest()[:16], st.st_size
                if st.st_nlink > 1:
                    inodes.setdefault(st.st_ino, []).append(rel)
            elif kind == "symlink":
                e["target"] = os.readlink(p)
            elif kind in ("chr", "blk"):
                e["rdev"] = (os.major(st.st_rdev), os.minor(st.st_rdev))
            elif kind == "dir":
                e["empty"] = not os.listdir(p)
            out[rel] = e
    for group in inodes.values():
        if len(group) > 1:
            for rel in group:
                out[rel]["links"] = sorted(group)
    return out


def diff_trees(ex: dict[str, dict], bu: dict[str, dict]) -> list[tuple[str, dict | None, dict | None]]:
    """Paths whose entries differ: (path, executor entry or None, buildah entry or None)."""
    out = []
    for path in sorted(set(ex) | set(bu)):
        a, b = ex.get(path), bu.get(path)
        if a is None or b is None:
            out.append((path, a, b))
            continue
        ca = {k: v for k, v in a.items() if k != "empty"}
        cb = {k: v for k, v in b.items() if k != "empty"}
        if ca != cb:
            out.append((path, a, b))
    return out


def check_expected(expected: dict, rootfs: Path, cfg: dict) -> list[str]:
    """Problems with the executor's image against ``expected.json``.

    Schema: ``{"config": {Field: value}, "paths": {"/p": {"type", "mode", "uid", "gid", "target",
    "content", "links"}}, "absent": ["/p"], "why": "the Docker documentation this follows"}``;
    ``mode`` is an octal string (``"0o640"``), ``links`` the full list of paths sharing the inode.
    """
    problems = []
    c = cfg.get("config") or {}
    for k, v in (expected.get("config") or {}).items():
        if c.get(k) != v:
            problems.append(f"config {k}: executor has {c.get(k)!r}, Docker's documentation gives {v!r}")
    for p, want in (expected.get("paths") or {}).items():
        host = rootfs / p.lstrip("/")
        if not os.path.lexists(host):
            problems.append(f"{p}: missing")
            continue
        st = os.lstat(host)
        got = {"type": _TYPES[stat.S_IFMT(st.st_mode)], "mode": oct(stat.S_IMODE(st.st_mode)),
               "uid": st.st_uid, "gid": st.st_gid}
        if got["type"] == "symlink":
            got["target"] = os.readlink(host)
        if got["type"] == "reg":
            got["content"] = host.read_text(errors="replace")
        if "links" in want:
            got["links"] = sorted(q for q in want["links"] if os.path.lexists(rootfs / q.lstrip("/"))
                                  and os.lstat(rootfs / q.lstrip("/")).st_ino == st.st_ino)
            want = dict(want, links=sorted(want["links"]))
        for k, v in want.items():
            if got.get(k) != v:
                problems.append(f"{p}: {k} is {got.get(k)!r}, expected {v!r}")
    for p in expected.get("absent") or []:
        if os.path.lexists(rootfs / p.lstrip("/")):
            problems.append(f"{p}: present, expected absent")
    return problems
