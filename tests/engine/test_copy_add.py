"""COPY and ADD built in-process, asserting the layer they write (paths, modes, owners, content).

Covers COPY of a file, a directory (its contents), wildcards, several sources, ``--chown``
(names from the image's /etc/passwd and numbers), ``--chmod``, ``--from`` a stage (owners
kept), ``--parents`` (with a ``/./`` pivot), ``--exclude``, heredocs (expanded unless the
delimiter is quoted), .dockerignore, errors naming the line; ADD of a local tar.gz (unpacked,
owners kept), a non-archive file, and ``--checksum`` of a local file (match and mismatch).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile

import pytest

from executor.errors import UserError

from .conftest import BASE, read_layer

FILES = {
    "a.txt": "A\n",
    "b.txt": "B\n",
    "c.md": "C\n",
    "dir/x": "X\n",
    "dir/sub/y": "Y\n",
    "src/keep.py": "k\n",
    "src/debug.log": "log\n",
    "src/skip/inner": "i\n",
    "src/nested/trace.log": "t\n",
    "tree/a/b/f.txt": "F\n",
    "tree/c/g.txt": "G\n",
}


def layer_of(r, index: int = -1) -> dict:
    return read_layer(r.image.layers[index])


def regular(entries: dict) -> dict[str, bytes]:
    return {k: v[1] for k, v in entries.items() if v[1] is not None}


# ---------------------------------------------------------------- COPY: what lands where

COPY_CASES = [
    pytest.param("COPY a.txt /dst/b.txt", {"dst/b.txt": b"A\n"}, {"dst"}, id="file-to-path"),
    pytest.param("COPY a.txt /dst/", {"dst/a.txt": b"A\n"}, {"dst"}, id="file-into-dir"),
    pytest.param("COPY a.txt b.txt /two/", {"two/a.txt": b"A\n", "two/b.txt": b"B\n"}, {"two"}, id="two-files"),
    pytest.param("COPY dir /d/", {"d/x": b"X\n", "d/sub/y": b"Y\n"}, {"d", "d/sub"}, id="dir-contents"),
    pytest.param("COPY dir/ /", {"x": b"X\n", "sub/y": b"Y\n"}, {"sub"}, id="dir-into-root"),
    pytest.param("COPY *.txt /w/", {"w/a.txt": b"A\n", "w/b.txt": b"B\n"}, {"w"}, id="wildcard"),
    pytest.param("COPY [ab].txt /w/", {"w/a.txt": b"A\n", "w/b.txt": b"B\n"}, {"w"}, id="wildcard-class"),
    # one wildcard match into a destination without "/" is that file, as Docker does (issue 11)
    pytest.param("COPY [a].txt /single/target.txt", {"single/target.txt": b"A\n"}, {"single"},
                 id="wildcard-one-match-to-file"),
    pytest.param("WORKDIR /app\nCOPY a.txt .", {"app/a.txt": b"A\n"}, {"app"}, id="relative-to-workdir"),
    pytest.param("ENV D=/env\nCOPY a.txt $D/", {"env/a.txt": b"A\n"}, {"env"}, id="dest-expanded"),
    pytest.param('COPY ["a.txt", "/json form/"]', {"json form/a.txt": b"A\n"}, {"json form"}, id="json-form"),
    pytest.param("COPY --exclude=*.log --exclude=skip src/ /e/", {"e/keep.py": b"k\n", "e/nested/trace.log": b"t\n"},
                 {"e", "e/nested"}, id="exclude"),
    pytest.param("COPY --exclude=**/*.log src /e/", {"e/keep.py": b"k\n", "e/skip/inner": b"i\n"},
                 {"e", "e/nested", "e/skip"}, id="exclude-any-depth"),
    pytest.param("COPY --exclude=*.md --exclude=b.* *.txt *.md /w/", {"w/a.txt": b"A\n"}, {"w"},
                 id="exclude-wildcard-sources"),
    pytest.param("COPY --parents tree/a/b/f.txt tree/c/g.txt /p/", {"p/tree/a/b/f.txt": b"F\n",
                                                                     "p/tree/c/g.txt": b"G\n"},
                 {"p", "p/tree", "p/tree/a", "p/tree/a/b", "p/tree/c"}, id="parents"),
    pytest.param("COPY --parents ./tree/./a/b/f.txt /q/", {"q/a/b/f.txt": b"F\n"}, {"q", "q/a", "q/a/b"},
                 id="parents-pivot"),
    pytest.param("COPY --parents tree/*/g.txt /r/", {"r/tree/c/g.txt": b"G\n"}, {"r", "r/tree", "r/tree/c"},
                 id="parents-wildcard"),
]


@pytest.mark.parametrize("body, files, dirs", COPY_CASES)
def test_copy(build, body, files, dirs):
    r = build(f"FROM scratch\n{body}\n", FILES)
    entries = layer_of(r)
    assert regular(entries) == files
    assert {k for k, v in entries.items() if v[0].isdir()} == dirs
    assert len(r.image.layers) == 1 + body.count("WORKDIR")
    for name, (ti, _) in entries.items():
        assert (ti.uid, ti.gid) == (0, 0), name


def test_copy_context_files_become_root_owned_and_keep_mode(build):
    ctx = build.context(FILES)
    os.chown(ctx / "a.txt", 123, 456)
    os.chmod(ctx / "a.txt", 0o751)
    r = build("FROM scratch\nCOPY a.txt /\n", context=ctx)
    ti = layer_of(r)["a.txt"][0]
    assert (ti.uid, ti.gid, stat.S_IMODE(ti.mode)) == (0, 0, 0o751)


@pytest.mark.parametrize("chown, uid, gid", [
    ("app", 1000, 1000), ("app:staff", 1000, 50), ("1234:5678", 1234, 5678), ("app:50", 1000, 50), ("77", 77, 77),
])
def test_copy_chown(build, chown, uid, gid):
    r = build(BASE + f"FROM base\nCOPY --chown={chown} dir /owned/\n", FILES)
    entries = layer_of(r)
    assert set(entries) == {"owned", "owned/x", "owned/sub", "owned/sub/y"}
    for name, (ti, _) in entries.items():
        assert (ti.uid, ti.gid) == (uid, gid), name


def test_copy_chown_unknown_user_fails_naming_the_line(build):
    with pytest.raises(UserError) as e:
        build(BASE + "FROM base\nCOPY --chown=nosuch a.txt /\n", FILES)
    assert "Dockerfile:4" in str(e.value) and "nosuch" in str(e.value)


def test_copy_chmod(build):
    r = build("FROM scratch\nCOPY --chmod=0640 a.txt dir /m/\n", FILES)
    entries = layer_of(r)
    for name in ("m/a.txt", "m/x", "m/sub/y"):
        assert stat.S_IMODE(entries[name][0].mode) == 0o640, name


def test_copy_chmod_non_octal_fails(build):
    with pytest.raises(UserError) as e:
        build("FROM scratch\nARG M=u+x\nCOPY --chmod=$M a.txt /\n", FILES)
    assert "Dockerfile:3" in str(e.value)


def test_copy_from_stage_keeps_owner_and_mode(root_build):
    r = root_build(BASE + """
FROM base AS builder
RUN mkdir /out && echo built > /out/bin && chown 1000:50 /out/bin && chmod 0750 /out/bin
FROM scratch
COPY --from=builder /out/bin /usr/local/bin/tool
COPY --from=0 /etc/passwd /etc/
""", FILES)
    assert r.result.stages_built == [0, 1, 2]
    tool = layer_of(r, 0)["usr/local/bin/tool"]
    assert tool[1] == b"built\n"
    assert (tool[0].uid, tool[0].gid, stat.S_IMODE(tool[0].mode)) == (1000, 50, 0o750)
    assert layer_of(r, 1)["etc/passwd"][1].startswith(b"root:x:0:0")


def test_copy_from_stage_by_index_and_chown(build):
    r = build("""
        FROM scratch AS files
        COPY dir /d/
        FROM scratch
        COPY --from=0 --chown=9:9 /d /copied/
    """, FILES)
    entries = layer_of(r)
    assert regular(entries) == {"copied/x": b"X\n", "copied/sub/y": b"Y\n"}
    assert all((ti.uid, ti.gid) == (9, 9) for ti, _ in entries.values())


def test_copy_heredoc(build):
    r = build("""
        FROM scratch
        ENV NAME=world
        COPY <<EOF /etc/greeting
        hello $NAME
        EOF
        COPY <<'EOF' /etc/literal
        hello $NAME
        EOF
        COPY --chmod=0755 <<one <<two /scripts/
        #!/bin/sh
        one
        second
        two
    """)
    assert regular(layer_of(r, 0)) == {"etc/greeting": b"hello world\n"}
    assert regular(layer_of(r, 1)) == {"etc/literal": b"hello $NAME\n"}
    scripts = layer_of(r, 2)
    assert regular(scripts) == {"scripts/one": b"#!/bin/sh\n", "scripts/two": b"second\n"}
    assert stat.S_IMODE(scripts["scripts/one"][0].mode) == 0o755


def test_copy_respects_dockerignore(build):
    r = build("FROM scratch\nCOPY . /all/\n", {"keep": "k", "secret.env": "s", "logs/x.log": "l", "logs/keep.txt": "t",
                                            ".dockerignore": "secret.env\nlogs/*.log\nrootfs\n"})
    assert set(regular(layer_of(r))) == {"all/keep", "all/logs/keep.txt", "all/Dockerfile", "all/.dockerignore"}


@pytest.mark.parametrize("body, words", [
    ("COPY missing.txt /", ["missing.txt"]),
    ("COPY nomatch*.bin /", ["nomatch*.bin"]),
    ("COPY a.txt b.txt /not-a-dir", ["more than one source", "end with a /"]),
    ("COPY ../outside /", ["outside"]),
])
def test_copy_errors_name_the_line(build, body, words):
    with pytest.raises(UserError) as e:
        build(f"FROM scratch\nENV A=1\n{body}\n", FILES)
    assert "Dockerfile:3" in str(e.value)
    for w in words:
        assert w in str(e.value)


# ---------------------------------------------------------------- ADD

def tar_gz(entries: list[tuple[str, bytes | None, int, int]]) -> bytes:
    """A tar.gz of (name, content or None for a dir, uid, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, content, uid, mode in entries:
            ti = tarfile.TarInfo(name)
            ti.uid = ti.gid = uid
            ti.mode = mode
            ti.mtime = 1_600_000_000
            if content is None:
                ti.type = tarfile.DIRTYPE
                tf.addfile(ti)
            else:
                ti.size = len(content)
                tf.addfile(ti, io.BytesIO(content))
    return gzip.compress(buf.getvalue())


ARCHIVE = tar_gz([("pkg", None, 0, 0o755), ("pkg/bin", None, 0, 0o755), ("pkg/bin/tool", b"#!tool\n", 42, 0o755),
                  ("pkg/README", b"read me\n", 0, 0o644)])


def test_add_unpacks_a_local_tar_gz(build):
    r = build("FROM scratch\nADD app.tar.gz /opt/\n", {"app.tar.gz": ARCHIVE})
    entries = layer_of(r)
    assert regular(entries) == {"opt/pkg/bin/tool": b"#!tool\n", "opt/pkg/README": b"read me\n"}
    tool = entries["opt/pkg/bin/tool"][0]
    assert (tool.uid, tool.gid, stat.S_IMODE(tool.mode)) == (42, 42, 0o755)
    assert "opt/app.tar.gz" not in entries


def test_add_plain_file_and_non_tar_gzip_are_copied(build):
    r = build("FROM scratch\nADD a.txt notes.gz /in/\n", {**FILES, "notes.gz": gzip.compress(b"not a tar")})
    entries = regular(layer_of(r))
    assert entries["in/a.txt"] == b"A\n"
    assert gzip.decompress(entries["in/notes.gz"]) == b"not a tar"


def test_add_chown_applies_to_unpacked_files(build):
    r = build("FROM scratch\nADD --chown=7:8 app.tar.gz /x/\n", {"app.tar.gz": ARCHIVE})
    for name, (ti, _) in layer_of(r).items():
        assert (ti.uid, ti.gid) == (7, 8), name


def test_add_checksum_of_a_local_file(build):
    digest = "sha256:" + hashlib.sha256(b"A\n").hexdigest()
    r = build(f"FROM scratch\nADD --checksum={digest} a.txt /checked\n", FILES)
    assert regular(layer_of(r)) == {"checked": b"A\n"}


def test_add_checksum_mismatch_fails_naming_the_line(build):
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    with pytest.raises(UserError) as e:
        build(f"FROM scratch\nLABEL x=y\nADD --checksum={wrong} a.txt /checked\n", FILES)
    assert "Dockerfile:3" in str(e.value) and "checksum mismatch" in str(e.value)


def test_add_checksum_malformed_fails(build):
    with pytest.raises(UserError) as e:
        build("FROM scratch\nADD --checksum=md5:abc a.txt /\n", FILES)
    assert "Dockerfile:2" in str(e.value)


def test_backslash_is_literal_under_the_backtick_escape(build):
    """``# escape=``` makes ``\\`` an ordinary character: ``COPY dir\\file.txt`` copies that file."""
    r = build("# escape=`\nFROM scratch\nCOPY dir\\file.txt /x/\nENV P=C:\\path\n", {"dir\\file.txt": b"win\n"})
    entries = r.layer(-1)
    assert entries["x/dir\\file.txt"][1] == b"win\n", sorted(entries)
    assert r.config["Env"][-1] == "P=C:\\path"
