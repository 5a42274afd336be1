"""Where RUN --mount=type=cache content lives: the executor's own private cache directory, never
a predictable host-wide path that another user could have created and filled."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from executor.engine.steps.mounts import default_cache_dir
from executor.errors import UserError
from executor.options import BuildOptions


def _opts(tmp: Path, run_cache_dir: Path | None = None) -> BuildOptions:
    return BuildOptions(context=tmp, dockerfile=tmp / "Dockerfile", run_cache_dir=run_cache_dir)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.fixture
def env(monkeypatch, tmp_path):
    """HOME in tmp_path, no XDG_CACHE_HOME, a permissive umask (what a careless caller has)."""
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    old = os.umask(0o000)
    yield home
    os.umask(old)


def test_default_is_under_the_users_cache_dir_not_next_to_the_work_dir(tmp_path, env):
    work = tmp_path / "tmp" / "executor-work"
    work.mkdir(parents=True)
    got = default_cache_dir(_opts(tmp_path), work)
    assert got == env / ".cache" / "executor" / "run-cache"
    assert not (work.parent / "run-cache").exists()
    assert got.is_dir() and _mode(got) == 0o700
    assert _mode(env / ".cache") == 0o700 and _mode(env / ".cache" / "executor") == 0o700


def test_xdg_cache_home_is_used_when_absolute(tmp_path, env, monkeypatch):
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    got = default_cache_dir(_opts(tmp_path), tmp_path / "work")
    assert got == xdg / "executor" / "run-cache"
    assert _mode(got) == 0o700
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # invalid per the XDG spec: ignored
    assert default_cache_dir(_opts(tmp_path), tmp_path / "work") == env / ".cache" / "executor" / "run-cache"


def test_explicit_run_cache_dir_is_used_as_given_and_created_private(tmp_path, env):
    want = tmp_path / "explicit" / "rc"
    got = default_cache_dir(_opts(tmp_path, want), tmp_path / "work")
    assert got == want and _mode(want) == 0o700


def test_an_existing_private_dir_is_accepted(tmp_path, env):
    want = tmp_path / "rc"
    want.mkdir(mode=0o755)
    os.chmod(want, 0o755)
    assert default_cache_dir(_opts(tmp_path, want), tmp_path / "work") == want


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775, 0o757])
def test_a_dir_writable_by_group_or_others_is_refused(tmp_path, env, mode):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    with pytest.raises(UserError, match=r"writable by group or others") as e:
        default_cache_dir(_opts(tmp_path, shared), tmp_path / "work")
    assert str(shared) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_a_dir_of_another_user_is_refused(tmp_path, env, monkeypatch):
    xdg = tmp_path / "xdg"
    planted = xdg / "executor" / "run-cache"
    planted.mkdir(parents=True)
    os.chmod(planted, 0o700)
    os.chown(planted, 4242, 4242)
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    with pytest.raises(UserError, match=r"owned by uid 4242") as e:
        default_cache_dir(_opts(tmp_path), tmp_path / "work")
    assert str(planted) in str(e.value)


def test_a_file_in_its_place_is_refused(tmp_path, env):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        default_cache_dir(_opts(tmp_path, f), tmp_path / "work")


def test_an_uncreatable_default_does_not_fail_builds_without_cache_mounts(tmp_path, env, monkeypatch):
    """A read-only home: the path is returned (a cache mount needing it fails later, with its
    own error); nothing is raised for a RUN that has no cache mount."""
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    monkeypatch.setenv("XDG_CACHE_HOME", str(ro))
    if os.geteuid() == 0:  # root ignores permission bits: simulate EROFS instead
        import executor.workdir as wd

        def refuse(path, mode=0o777):
            raise OSError(30, "Read-only file system", str(path))
        monkeypatch.setattr(wd.os, "mkdir", refuse)
    got = default_cache_dir(_opts(tmp_path), tmp_path / "work")
    assert got == ro / "executor" / "run-cache" and not got.exists()
