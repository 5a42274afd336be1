"""Units of issue 16's pieces: subordinate id files (subuid(5)), identity id maps
(user_namespaces(7)) and the owners a build without root writes into layer headers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from executor.engine.userns import IdRange as MapRange, identity_map, read_id_map
from executor.fs import owners
from executor.rootless import IdRange, RootlessPlan, subordinate_range


def test_subordinate_range_by_name_or_uid_first_valid_line(tmp_path):
    f = tmp_path / "subuid"
    f.write_text("other:100000:65536\nbroken line\nalice:x:65536\nalice:200000:0\n1001:300000:65536\n"
                 "alice:400000:1000\n")
    assert subordinate_range(f, "alice", 1001) == IdRange(300000, 65536)  # numeric entry comes first
    assert subordinate_range(f, "alice", 5) == IdRange(400000, 1000)      # zero-count range skipped
    assert subordinate_range(f, "bob", 7) is None
    assert subordinate_range(tmp_path / "missing", "alice", 1001) is None


def test_rootless_plan_maps_root_to_the_user_and_1_up_to_the_range():
    p = RootlessPlan(user="alice", uid=1001, gid=1002, subuid=IdRange(100000, 65536), subgid=IdRange(200000, 65536),
                     newuidmap="/usr/bin/newuidmap", newgidmap="/usr/bin/newgidmap")
    assert p.uid_args() == ["0", "1001", "1", "1", "100000", "65536"]
    assert p.gid_args() == ["0", "1002", "1", "1", "200000", "65536"]


def test_identity_map_keeps_every_own_range(tmp_path):
    f = tmp_path / "uid_map"
    f.write_text("         0       1001          1\n         1     100000      65536\n")
    own = read_id_map(f)
    assert own == (MapRange(0, 1001, 1), MapRange(1, 100000, 65536))
    assert identity_map(own) == "0 0 1\n1 1 65536\n"
    assert identity_map((MapRange(0, 0, 4294967295),)) == "0 0 4294967295\n"


@pytest.fixture
def unprivileged(monkeypatch):
    """This process seen as uid/gid 4242 (owners are recorded, not applied)."""
    monkeypatch.setattr(owners.os, "geteuid", lambda: 4242)
    monkeypatch.setattr(owners.os, "getegid", lambda: 4242)


def _st(uid: int, gid: int) -> os.stat_result:
    return os.stat_result((0o100644, 0, 0, 1, uid, gid, 0, 0, 0, 0))


def test_layer_owner_without_root(unprivileged):
    xa = {owners.OWNER_XATTR: b"1000:65534", "user.executor.lowner.abc": b"1:1", "user.keep": b"v"}
    assert owners.layer_owner(_st(4242, 4242), xa) == (1000, 65534)
    assert xa == {"user.keep": b"v"}  # no user.executor.* attribute reaches the layer
    assert owners.layer_owner(_st(4242, 4242), None) == (0, 0)   # the executor's own ids stand for root
    assert owners.layer_owner(_st(4242, 5), {}) == (0, 5)
    assert owners.layer_owner(_st(4242, 4242), {owners.OWNER_XATTR: b"junk"}) == (0, 0)


def test_layer_owner_as_root_ignores_a_planted_record():
    if os.geteuid() != 0:
        pytest.skip("as root only")
    xa = {owners.OWNER_XATTR: b"1000:1000"}
    assert owners.layer_owner(_st(0, 0), xa) == (0, 0)
    assert xa == {}


def test_record_owner_round_trip_on_files_and_symlinks(unprivileged, tmp_path: Path):
    f = tmp_path / "f"
    f.write_text("x")
    link = tmp_path / "l"
    os.symlink("f", link)
    try:
        owners.record_owner(f, 1000, 1000)
    except owners.OwnerNotRecorded:
        pytest.skip("no user extended attributes on this filesystem")
    owners.record_owner(link, 7, 8)
    assert owners.recorded_owner(f, _st(4242, 4242)) == (1000, 1000)
    assert owners.recorded_owner(link, _st(4242, 4242)) == (7, 8)  # kept on the parent directory
    owners.record_owner(f, 0, 0)
    assert owners.recorded_owner(f, _st(4242, 4242)) == (0, 0)
    assert owners.OWNER_XATTR not in os.listxattr(f)
