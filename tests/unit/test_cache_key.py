"""Pure cache-key and cache-entry functions (executor.cache.keys, executor.cache.entry)."""

from __future__ import annotations

import json
import os

import pytest

from executor.cache import keys as ck
from executor.cache.entry import (
    default_cache_repo,
    entry_documents,
    expired,
    parse_entry,
    parse_rfc3339,
    rfc3339,
    strip_created,
)
from executor.context import Context
from executor.dockerfile.ignore import DockerIgnore
from executor.errors import UserError
from executor.oci.image import Layer

BASE = "sha256:" + "a" * 64


def test_root_key_depends_on_base_platform_compression_and_epoch():
    k = ck.root_key(BASE, "linux/amd64")
    assert len(k) == 64 and int(k, 16) >= 0
    assert k == ck.root_key(BASE, "linux/amd64")
    others = {ck.root_key("sha256:" + "b" * 64, "linux/amd64"), ck.root_key(BASE, "linux/arm64"),
              ck.root_key(BASE, "linux/amd64", compression="zstd"), ck.root_key(BASE, "linux/amd64", epoch=0),
              ck.root_key("scratch", "linux/amd64")}
    assert k not in others and len(others) == 5


def test_step_key_chains_and_ignores_env_order():
    r = ck.root_key(BASE, "linux/amd64")
    a = ck.step_key(r, "RUN", ["sh", "-c", "make"], env={"A": "1", "B": "2"})
    assert a == ck.step_key(r, "run", ["sh", "-c", "make"], env={"B": "2", "A": "1"})
    assert a != ck.step_key(r, "RUN", ["sh", "-c", "make"], env={"A": "1", "B": "3"})
    assert a != ck.step_key(ck.root_key("scratch", "linux/amd64"), "RUN", ["sh", "-c", "make"],
                            env={"A": "1", "B": "2"})
    assert ck.step_key(a, "RUN", ["x"]) != ck.step_key(r, "RUN", ["x"])  # the chain carries history


def test_arg_step_key_uses_names_not_values():
    r = ck.root_key(BASE, "linux/amd64")
    assert ck.arg_step_key(r, ["V"]) == ck.arg_step_key(r, ["V"])
    assert ck.arg_step_key(r, ["V"]) != ck.arg_step_key(r, ["W"])


def test_sources_decide_copy_keys():
    r = ck.root_key(BASE, "linux/amd64")
    s1 = ck.step_key(r, "COPY", ["a", "/a"], sources=[ck.stage_source("1" * 64)])
    s2 = ck.step_key(r, "COPY", ["a", "/a"], sources=[ck.stage_source("2" * 64)])
    assert s1 != s2


def test_tree_digest_ignores_mtime_but_not_content_mode_owner(tmp_path):
    d = tmp_path / "src"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "f").write_text("hello")
    os.symlink("sub/f", d / "link")
    base = ck.tree_digest(d)
    os.utime(d / "sub" / "f", (1, 1))
    os.utime(d / "sub", (2, 2))
    assert ck.tree_digest(d) == base
    (d / "sub" / "f").write_text("hellp")
    changed = ck.tree_digest(d)
    assert changed != base
    (d / "sub" / "f").write_text("hello")
    assert ck.tree_digest(d) == base
    (d / "sub" / "f").chmod(0o600)
    assert ck.tree_digest(d) != base
    (d / "sub" / "f").chmod(0o644)
    os.chmod(d / "sub" / "f", 0o644)
    now = ck.tree_digest(d)
    os.chown(d / "sub" / "f", 1234, 1234)
    assert ck.tree_digest(d) != now
    os.chown(d / "sub" / "f", 0, 0)
    os.unlink(d / "link")
    os.symlink("sub/other", d / "link")
    assert ck.tree_digest(d) != now


def test_tree_digest_skips_dockerignored_files(tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "keep").write_text("1")
    (ctx / "secret.log").write_text("a")
    c = Context(ctx, DockerIgnore.from_lines(["*.log"]))
    first = ck.tree_digest(ctx, excluded=c.excluded, descend=c.descend)
    (ctx / "secret.log").write_text("b")
    assert ck.tree_digest(ctx, excluded=c.excluded, descend=c.descend) == first
    (ctx / "keep").write_text("2")
    assert ck.tree_digest(ctx, excluded=c.excluded, descend=c.descend) != first


def test_entry_documents_round_trip():
    layer = Layer(descriptor={"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                              "digest": "sha256:" + "c" * 64, "size": 10}, diff_id="sha256:" + "d" * 64)
    cfg, man = entry_documents("e" * 64, layer, "RUN make", "linux/amd64", 1_700_000_000)
    doc = json.loads(man)
    assert doc["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert json.loads(cfg)["rootfs"]["diff_ids"] == [layer.diff_id]
    hit = parse_entry(doc, "reg/app/cache", 3600, 1_700_000_100)
    assert hit is not None and hit.layer.digest == layer.digest and hit.layer.diff_id == layer.diff_id
    assert hit.layer.source == "reg/app/cache" and hit.created_by == "RUN make"
    assert parse_entry(doc, "reg/app/cache", 3600, 1_700_010_000) is None  # expired
    _, empty = entry_documents("e" * 64, None, "RUN true", "linux/amd64", 1_700_000_000)
    e = parse_entry(json.loads(empty), "r/c", 3600, 1_700_000_000)
    assert e is not None and e.layer is None
    assert parse_entry({"layers": []}, "r/c", 3600, 0) is None  # not ours


def test_time_helpers_and_strip_created():
    assert parse_rfc3339(rfc3339(1_700_000_000)) == 1_700_000_000
    assert parse_rfc3339("2023-11-14T22:13:20.123456Z") == 1_700_000_000
    assert parse_rfc3339("nonsense") is None
    assert expired(None, 10, 0) and expired(0, 10, 11) and not expired(0, 10, 10)
    a = {"created": "x", "history": [{"created": "y", "created_by": "RUN a"}], "config": {}}
    b = {"created": "z", "history": [{"created": "w", "created_by": "RUN a"}], "config": {}}
    assert strip_created(a) == strip_created(b) and a["created"] == "x"


def test_default_cache_repo():
    assert default_cache_repo(["127.0.0.1:5000/app/web:1", "x/y:2"]) == "127.0.0.1:5000/app/web/cache"
    with pytest.raises(UserError, match="--cache-repo"):
        default_cache_repo([])


def test_source_digest_splits_content_from_mode_and_owner(tmp_path):
    """COPY sources are recorded as ``<content>/<mode and owner>`` so a miss can say which
    changed; mtimes change neither; .dockerignored files change neither."""
    d = tmp_path / "src"
    d.mkdir()
    (d / "f").write_text("hello")
    (d / "x.log").write_text("a")
    c = Context(d, DockerIgnore.from_lines(["*.log"]))

    def parts() -> list[str]:
        return ck.source_digest(d, excluded=c.excluded, descend=c.descend).split("/")
    content, attrs = base = parts()
    assert len(content) == len(attrs) == 64
    os.utime(d / "f", (1, 1))
    (d / "x.log").write_text("b")
    assert parts() == base
    (d / "f").write_text("hellp")
    assert parts()[0] != content and parts()[1] == attrs
    (d / "f").write_text("hello")
    (d / "f").chmod(0o600)
    assert parts()[0] == content and parts()[1] != attrs
    (d / "f").chmod(0o644)
    os.chown(d / "f", 1234, 1234)
    assert parts()[0] == content and parts()[1] != attrs
    os.chown(d / "f", 0, 0)
    (d / "g").write_text("new")
    assert parts()[0] != content
