"""Housekeeping of work directories: those of killed runs (SIGKILL, OOM) are removed at the next
start, with the secret copies they hold; a live run's directory and anything the executor did
not mark is never touched. Real processes, really killed."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import shutil
import textwrap
from pathlib import Path

import pytest

from executor.workdir import MARKER, new_work_dir, release_work_dir, remove_stale_work_dirs

CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from executor.workdir import new_work_dir
    work = new_work_dir(Path(sys.argv[1]), housekeeping=False)
    secrets = work / "stages" / "0" / "scratch"
    secrets.mkdir(parents=True)
    (secrets / "secret-0").write_text("s3cr3t")
    ro = work / "stages" / "0" / "rootfs" / "proc"
    ro.mkdir(parents=True)
    (ro / "f").write_text("x")
    os.chmod(ro, 0o555)
    os.symlink("/etc", work / "stages" / "0" / "rootfs" / "etc")
    print(work, flush=True)
    time.sleep(600)
""")


def start_run(parent: Path) -> tuple[subprocess.Popen, Path]:
    """An executor-like process that made its work directory (with a secret copy) and lives on."""
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(parent)], stdout=subprocess.PIPE, text=True,
                         cwd=Path(__file__).resolve().parents[2])
    line = p.stdout.readline().strip()
    assert line, "the child did not create its work directory"
    return p, Path(line)


def kill(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait()


@pytest.fixture
def tmpdir_(tmp_path) -> Path:
    d = tmp_path / "tmp"
    d.mkdir()
    return d


def test_killed_runs_directory_is_removed_live_ones_are_kept(tmpdir_):
    dead, dead_dir = start_run(tmpdir_)
    live, live_dir = start_run(tmpdir_)
    try:
        kill(dead)
        assert (dead_dir / "stages" / "0" / "scratch" / "secret-0").exists()  # what a SIGKILL leaves
        removed = remove_stale_work_dirs(tmpdir_)
        assert removed == [dead_dir]
        assert not dead_dir.exists()
        assert (live_dir / "stages" / "0" / "scratch" / "secret-0").read_text() == "s3cr3t"
        assert (live_dir / MARKER).exists()
        assert Path("/etc/passwd").exists()  # the symlink in the root was removed, not followed
    finally:
        kill(live)
    assert remove_stale_work_dirs(tmpdir_) == [live_dir]
    assert os.listdir(tmpdir_) == []


def test_new_work_dir_removes_stale_ones_first_and_is_private(tmpdir_):
    dead, dead_dir = start_run(tmpdir_)
    kill(dead)
    old = os.umask(0)
    try:
        mine = new_work_dir(tmpdir_)
    finally:
        os.umask(old)
    try:
        assert not dead_dir.exists()
        assert mine.name.startswith("executor-") and mine.parent == tmpdir_
        assert os.stat(mine).st_mode & 0o777 == 0o700
        marker = json.loads((mine / MARKER).read_text())
        assert marker["pid"] == os.getpid()
        assert remove_stale_work_dirs(tmpdir_) == []  # this process is alive: kept
        assert mine.exists()
    finally:
        release_work_dir(mine)
    assert not (mine / MARKER).exists()  # released: no longer managed, never removed
    assert remove_stale_work_dirs(tmpdir_) == [] and mine.exists()


def test_the_marker_is_locked_as_soon_as_it_exists(tmpdir_):
    mine = new_work_dir(tmpdir_, housekeeping=False)
    try:
        fd = os.open(mine / MARKER, os.O_RDONLY)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
    finally:
        release_work_dir(mine)


def test_unmarked_foreign_and_odd_entries_are_left_alone(tmpdir_):
    (tmpdir_ / "executor-unmarked").mkdir()  # an earlier version's, or another program's
    (tmpdir_ / "executor-unmarked" / "data").write_text("keep")
    (tmpdir_ / "executor-file").write_text("a file, not a directory")
    target = tmpdir_ / "elsewhere"
    target.mkdir()
    (target / MARKER).write_text("{}")
    os.symlink(target, tmpdir_ / "executor-link")  # a symlink to a marked-looking directory
    linked = tmpdir_ / "executor-markerlink"
    linked.mkdir()
    (tmpdir_ / "decoy").write_text("{}")
    os.symlink(tmpdir_ / "decoy", linked / MARKER)  # the marker must be a regular file
    kept = new_work_dir(tmpdir_, keep=True, housekeeping=False)  # kept on purpose: no marker
    (kept / "x").write_text("x")
    other = tmpdir_ / "other-prefix"
    other.mkdir()
    (other / MARKER).write_text("{}")
    before = sorted(os.listdir(tmpdir_))
    assert remove_stale_work_dirs(tmpdir_) == []
    assert sorted(os.listdir(tmpdir_)) == before
    assert (target / MARKER).exists() and (tmpdir_ / "decoy").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_another_users_directory_is_left_alone(tmpdir_):
    dead, dead_dir = start_run(tmpdir_)
    kill(dead)
    os.chown(dead_dir, 4242, 4242)
    assert remove_stale_work_dirs(tmpdir_) == []
    os.chown(dead_dir, 0, 0)
    os.chown(dead_dir / MARKER, 4242, 4242)
    assert remove_stale_work_dirs(tmpdir_) == []
    assert dead_dir.exists()


def test_a_removal_cut_short_is_finished_by_the_next_start(tmpdir_):
    """The marker goes last: a housekeeper killed halfway leaves a directory that still
    qualifies (here: a dead run's directory with part of its content gone already)."""
    dead, dead_dir = start_run(tmpdir_)
    kill(dead)
    for p in sorted((dead_dir / "stages" / "0" / "scratch").iterdir()):
        p.unlink()
    assert remove_stale_work_dirs(tmpdir_) == [dead_dir]
    assert not dead_dir.exists()


def test_two_housekeepers_at_once_remove_each_directory_once(tmpdir_):
    dirs = []
    for _ in range(3):
        p, d = start_run(tmpdir_)
        kill(p)
        dirs.append(d)
    code = ("import sys, json; from pathlib import Path; from executor.workdir import remove_stale_work_dirs; "
            "print(json.dumps([str(p) for p in remove_stale_work_dirs(Path(sys.argv[1]))]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmpdir_)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2]) for _ in range(4)]
    outs = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert not any(d.exists() for d in dirs)
    everything = [x for out in outs for x in out]
    assert len(everything) == len(set(everything)) <= 3


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv (util-linux) to drop the permission-override capabilities")
def test_removal_without_permission_overrides_handles_read_only_trees(tmpdir_):
    """Read-only directories from image layers (``dr-xr-xr-x``) do not stop the removal when
    the permission bits apply (an ordinary user; here root without CAP_DAC_OVERRIDE,
    CAP_DAC_READ_SEARCH and CAP_FOWNER, which is the same for files root owns)."""
    dead, dead_dir = start_run(tmpdir_)
    kill(dead)
    assert os.stat(dead_dir / "stages" / "0" / "rootfs" / "proc").st_mode & 0o777 == 0o555
    code = ("import sys, json; from pathlib import Path; from executor.workdir import remove_stale_work_dirs; "
            "print(json.dumps([str(p) for p in remove_stale_work_dirs(Path(sys.argv[1]))]))")
    probe = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search,-fowner"]
    check = subprocess.run(probe + ["sh", "-c", "mkdir d && chmod 555 d && touch d/x"], cwd=tmpdir_,
                           capture_output=True, text=True)
    assert check.returncode != 0, "the capabilities were not dropped: the test would prove nothing"
    os.chmod(tmpdir_ / "d", 0o755)
    os.rmdir(tmpdir_ / "d")
    r = subprocess.run(probe + [sys.executable, "-c", code, str(tmpdir_)], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [str(dead_dir)], r.stderr
    assert not dead_dir.exists()


def test_default_parent_is_the_temp_dir(monkeypatch, tmpdir_):
    monkeypatch.setenv("TMPDIR", str(tmpdir_))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    dead, dead_dir = start_run(tmpdir_)
    kill(dead)
    assert remove_stale_work_dirs() == [dead_dir]
