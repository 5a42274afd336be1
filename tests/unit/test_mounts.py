"""RUN --mount parsing (table-driven, expected result per case) and the chroot-mode fallback
(copy in before / remove after) checked on a real directory tree."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from executor.engine.steps.copying import CopySpec
from executor.dockerfile.mounts import MountError, MountSpec, parse_mount_flag, parse_size
from executor.engine.steps.mounts import RunMounts, drop_setup_only_dirs, ssh_sockets
from executor.fs.snapshot import FsIndex, diff
from executor.options import SecretSource



def parse_mount(value: str, workdir: str = "/", expand=None, ssh_index: int = 0) -> MountSpec:
    """A ``--mount`` value as one RUN sees it: parsed at load time, then resolved for the RUN."""
    return parse_mount_flag(value, ssh_index).resolved(workdir, expand or (lambda w: w))


PARSE_CASES = [
    # value, workdir, expected fields
    ("type=cache,target=/root/.cache", "/", dict(type="cache", target="/root/.cache", id="/root/.cache",
                                                 sharing="shared", mode=0o755, readonly=False)),
    ("type=cache,id=pip,dst=cache,sharing=locked,mode=0700,uid=1000,gid=100", "/w",
     dict(target="/w/cache", id="pip", sharing="locked", mode=0o700, uid=1000, gid=100)),
    ("target=/src", "/", dict(type="bind", target="/src", readonly=True, source="")),
    ("type=bind,from=build,src=/out,target=/in,rw", "/", dict(from_="build", source="/out", readonly=False)),
    ("type=bind,target=/in,readwrite=true", "/", dict(readonly=False)),
    ("type=secret,id=tok", "/", dict(type="secret", target="/run/secrets/tok", mode=0o400, required=False)),
    ("type=secret,target=/etc/key", "/", dict(id="key", target="/etc/key")),
    ("type=secret,id=tok,env=TOKEN", "/", dict(target="", env="TOKEN")),
    ("type=secret,id=tok,env=TOKEN,target=/t,required", "/", dict(target="/t", env="TOKEN", required=True)),
    ("type=tmpfs,target=/tmp/x,size=64m", "/", dict(type="tmpfs", size=64 << 20)),
    ("type=ssh", "/", dict(type="ssh", id="default", target="/run/buildkit/ssh_agent.0", mode=0o600)),
    ('type=bind,"target=/a,b",source=x', "/", dict(target="/a,b", source="x")),
]


@pytest.mark.parametrize("value,workdir,expected", PARSE_CASES)
def test_parse_mount(value, workdir, expected):
    spec = parse_mount(value, workdir)
    for key, want in expected.items():
        assert getattr(spec, key) == want, (value, key)


ERROR_CASES = [
    ("type=volume,target=/x", "unsupported mount type"),
    ("type=cache", "needs target"),
    ("type=tmpfs,target=/x,size=huge", "invalid size"),
    ("type=cache,target=/x,sharing=sometimes", "sharing=sometimes"),
    ("type=cache,target=/x,mode=rwx", "octal"),
    ("type=cache,target=/x,uid=root", "expected a number"),
    ("type=tmpfs,target=/x,from=img", "unexpected key 'from'"),
    ("type=secret", "needs id"),
    ("type=bind,target=/", "root directory"),
    ('type=bind,target="/x', 'bare "'),
]


@pytest.mark.parametrize("value,message", ERROR_CASES)
def test_parse_mount_errors(value, message):
    with pytest.raises(MountError) as e:
        parse_mount(value)
    assert message in str(e.value)


def test_expansion_and_sizes_and_ssh_flags():
    spec = parse_mount("type=cache,target=$DIR,id=${ID}", "/", expand=lambda w: w.replace("$DIR", "/c").replace("${ID}", "x"))
    assert (spec.target, spec.id) == ("/c", "x")
    assert [parse_size(s) for s in ("4096", "1k", "2M", "1g", "1GiB", "1.5k")] == [4096, 1024, 2 << 20, 1 << 30, 1 << 30, 1536]
    assert ssh_sockets(["default"], {"SSH_AUTH_SOCK": "/a.sock"}) == {"default": "/a.sock"}
    assert ssh_sockets(["default"], {}) == {}
    assert ssh_sockets(["gh=/k.sock", "default=/d.sock"], {}) == {"gh": "/k.sock", "default": "/d.sock"}


def _root(tmp: Path) -> Path:
    root = tmp / "stage" / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "keep").write_text("original")
    (root / "var").mkdir()
    os.utime(root / "var", (1_000_000, 1_000_000))
    return root


def _mounts(tmp: Path, root: Path, specs: list[MountSpec], mode: str = "chroot", secrets=None) -> RunMounts:
    ctx = tmp / "ctx"
    (ctx / "dir").mkdir(parents=True, exist_ok=True)
    (ctx / "dir" / "f").write_text("ctx file")
    return RunMounts(specs=specs, root=root, mode=mode, scratch=tmp / "work" / "run" / "m1",
                     cache_root=tmp / "cache", secrets=secrets or {}, ssh={}, tree_for=lambda frm: ctx)


def test_chroot_fallback_copies_in_and_restores(tmp_path):
    root = _root(tmp_path)
    (tmp_path / "work").mkdir()
    secret_file = tmp_path / "s.txt"
    secret_file.write_text("hunter2")
    specs = [parse_mount("type=secret,id=s"), parse_mount("type=bind,source=dir,target=/etc"),
             parse_mount("type=cache,target=/var/cache/x,id=c"), parse_mount("type=tmpfs,target=/scratch")]
    before = FsIndex.scan(root)
    with _mounts(tmp_path, root, specs, secrets={"s": SecretSource(id="s", path=secret_file)}) as m:
        assert m.binds == []
        sec = root / "run" / "secrets" / "s"
        assert sec.read_text() == "hunter2" and stat.S_IMODE(sec.stat().st_mode) == 0o400
        assert (root / "etc" / "f").read_text() == "ctx file" and not (root / "etc" / "keep").exists()
        (root / "var" / "cache" / "x" / "new").write_text("cached")   # what a command would write
        (root / "etc" / "junk").write_text("discarded")
        assert stat.S_IMODE((root / "scratch").stat().st_mode) == 0o1777
    after = FsIndex.scan(root)
    changes = drop_setup_only_dirs(diff(before, after), before, after, [s.target for s in specs])
    assert changes.is_empty(), changes
    assert (root / "etc" / "keep").read_text() == "original"
    assert not (root / "run").exists() and not (root / "scratch").exists()
    assert os.stat(root / "var").st_mtime == 1_000_000
    assert [p.read_text() for p in (tmp_path / "cache").glob("*/new")] == ["cached"]  # synced back
    assert not (tmp_path / "work" / "run" / "m1").exists()


def test_namespace_mode_binds_and_secret_scratch_removed(tmp_path):
    root = _root(tmp_path)
    secret_file = tmp_path / "s.txt"
    secret_file.write_text("hunter2")
    specs = [parse_mount("type=secret,id=s,env=S_ENV,target=/s", "/"), parse_mount("type=bind,source=dir,target=/d,rw"),
             parse_mount("type=tmpfs,target=/t,size=1m"), parse_mount("type=secret,id=missing")]
    with _mounts(tmp_path, root, specs, mode="namespace",
                 secrets={"s": SecretSource(id="s", path=secret_file)}) as m:
        kinds = [(b.target, b.kind, b.readonly) for b in m.binds]
        # the secret is memory-backed in namespace mode: a memfd the sandbox copies into a private tmpfs
        assert kinds == [("/s", "secret", True), ("/d", "bind", False), ("/t", "tmpfs", False)]
        holder = Path(m.binds[0].options.rsplit(":", 3)[0])
        assert holder.is_dir() and not os.listdir(holder) and m.binds[0].options.endswith(":0:0:400")
        assert m.binds[2].options == "mode=1777,size=1048576"
        assert m.env == {"S_ENV": "hunter2"}
        rw_copy = Path(m.binds[1].source)
        assert (rw_copy / "f").read_text() == "ctx file" and rw_copy != tmp_path / "ctx" / "dir"
        assert Path(m.binds[0].source).read_text() == "hunter2"
    assert not holder.exists() and not rw_copy.exists()
    assert sorted(os.listdir(root)) == ["etc", "var"]  # namespace mode never writes into the root here


def test_required_secret_and_missing_agent_fail(tmp_path):
    root = _root(tmp_path)
    with pytest.raises(MountError, match="--secret id=k"):
        with _mounts(tmp_path, root, [parse_mount("type=secret,id=k,required=true")]):
            pass
    with pytest.raises(MountError, match="--ssh default"):
        with _mounts(tmp_path, root, [parse_mount("type=ssh")]):
            pass
    assert sorted(os.listdir(root)) == ["etc", "var"]


def test_copy_parents_pivot():
    spec = CopySpec(sources=[], dest="/d/", parents=True, pivots={"src/pkg/a.go": "src"})
    assert spec.parents_rel("src/pkg/a.go") == "pkg/a.go"
    assert spec.parents_rel("x/a.txt") == "x/a.txt"
