"""RUN, and the instructions whose effect shows through RUN, built in-process on a busybox base.

Covers RUN (shell and exec form; files it writes, changes and deletes appear in the layer;
a non-zero exit raises RunFailed naming the line; ARG/ENV/HOME/PATH in its environment;
heredocs; ``--network=none``; ``--mount`` of type bind (context and ``from=<stage>``), cache
and tmpfs, none of which leave anything in the layer), USER (RUN runs as that user, its files
are owned by it), WORKDIR (created owned by USER, a layer entry; RUN starts there), SHELL
(shell-form RUN uses it) and ONBUILD (a stage FROM the stage that declared it runs the trigger).
"""

from __future__ import annotations

import stat

import pytest

from executor.errors import DockerfileError, RunFailed

from .conftest import BASE


def df(body: str) -> str:
    """The busybox base, then a stage ``FROM base`` with ``body``."""
    return BASE + "FROM base\n" + body.strip("\n") + "\n"


# ---------------------------------------------------------------- files in the layer

def test_run_writes_a_layer_with_its_files(root_build):
    r = root_build(df("""
        RUN mkdir -p /out/sub && echo hello > /out/sub/f && chmod 0640 /out/sub/f && ln -s sub/f /out/link
    """))
    assert len(r.own_layers()) == 1
    files = r.files()
    assert set(files) == {"out", "out/sub", "out/sub/f", "out/link"}
    ti, content = files["out/sub/f"]
    assert content == b"hello\n"
    assert stat.S_IMODE(ti.mode) == 0o640 and (ti.uid, ti.gid) == (0, 0)
    assert files["out/link"][0].issym() and files["out/link"][0].linkname == "sub/f"
    assert files["out/sub"][0].isdir()


def test_run_layer_has_changes_and_whiteouts_only(root_build):
    r = root_build(df("""
        RUN echo one > /keep && echo two > /gone && echo three > /change
        RUN rm /gone && echo changed > /change
    """))
    first, second = [set(_names(layer)) for layer in r.own_layers()]
    assert first == {"keep", "gone", "change"}
    assert second == {".wh.gone", "change"}


def _names(layer):
    from .conftest import read_layer
    return read_layer(layer)


def test_run_that_changes_nothing_writes_no_layer(root_build):
    r = root_build(df("RUN true\nRUN echo nothing > /dev/null"))
    assert r.own_layers() == []
    assert [h.get("empty_layer") for h in r.image.config["history"][-2:]] == [True, True]


def test_run_exec_form(root_build):
    r = root_build(df('RUN ["/bin/sh", "-c", "echo $0 > /argv0", "zero"]\nRUN ["/bin/touch", "/exec"]'))
    assert r.read("argv0") == b"zero\n"
    assert "exec" in r.files()


def test_run_environment(root_build):
    r = root_build(df("""
        ARG A=from-arg
        ARG OVER=arg
        ENV E=from-env OVER=env
        RUN echo "$A $E $OVER $HOME $PATH" > /env
        USER app
        RUN echo "$HOME" > /tmp/apphome
    """), build_args={"A": "cli"})
    a, e, over, home, path = r.read("env").decode().split()
    assert (a, e, over, home) == ("cli", "from-env", "env", "/root")
    assert path == "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert r.read("tmp/apphome") == b"/home/app\n"


def test_run_failure_raises_run_failed_with_the_line(root_build):
    b = root_build.start(df("""
        RUN echo ok > /ok
        RUN echo about to fail; exit 7
        RUN echo never > /never
    """))
    with pytest.raises(RunFailed) as e:
        b.build()
    assert str(e.value).startswith("Dockerfile:5:")
    assert "exit 7" in str(e.value) and "non-zero code: 7" in str(e.value)
    assert e.value.exit_code == 7
    ran = [(s.keyword, s.location) for s in b.services.record.steps]
    assert ran == [("COPY", "Dockerfile:2"), ("RUN", "Dockerfile:4"), ("RUN", "Dockerfile:5")]


def test_run_missing_command_fails(root_build):
    with pytest.raises(RunFailed) as e:
        root_build(df("RUN no-such-command"))
    assert e.value.exit_code == 127
    assert str(e.value).startswith("Dockerfile:4:")


# ---------------------------------------------------------------- heredocs

HEREDOC_CASES = [
    pytest.param("RUN <<EOF\necho a > /a\necho b > /b\nEOF", {"a": b"a\n", "b": b"b\n"}, id="script"),
    pytest.param("RUN <<EOF\n#!/bin/sh -e\necho $0 > /shebang\nEOF", {"shebang": b"/.executor-heredoc-script\n"},
                 id="shebang"),
    pytest.param("RUN cat <<EOF > /f\nline one\nline two\nEOF", {"f": b"line one\nline two\n"}, id="in-command"),
    pytest.param("ENV NAME=world\nRUN <<EOF\necho \"hello $NAME\" > /greet\nEOF", {"greet": b"hello world\n"},
                 id="variables-by-the-shell"),
    pytest.param("RUN cat <<A > /a && cat <<B > /b\n1\nA\n2\nB", {"a": b"1\n", "b": b"2\n"}, id="two-heredocs"),
]


@pytest.mark.parametrize("body, expected", HEREDOC_CASES)
def test_run_heredoc(root_build, body, expected):
    r = root_build(df(body))
    files = r.files()
    assert {k: v[1] for k, v in files.items()} == expected  # the script file is not in the layer


def test_run_heredoc_failure_names_its_first_line(root_build):
    with pytest.raises(RunFailed) as e:
        root_build(df("RUN <<EOF\ntrue\nexit 3\nEOF"))
    assert str(e.value).startswith("Dockerfile:4:") and e.value.exit_code == 3


# ---------------------------------------------------------------- USER, WORKDIR, SHELL

def test_run_as_user(root_build):
    r = root_build(df("""
        USER app
        RUN id -u > /tmp/uid && id -g > /tmp/gid && id -G > /tmp/groups
        USER 1234:4321
        RUN id -u > /tmp/uid2 && id -g > /tmp/gid2
    """))
    assert r.read("tmp/uid") == b"1000\n" and r.read("tmp/gid") == b"1000\n"
    assert set(r.read("tmp/groups").split()) == {b"1000", b"50"}
    assert r.read("tmp/uid2") == b"1234\n" and r.read("tmp/gid2") == b"4321\n"
    ti = r.files()["tmp/uid"][0]
    assert (ti.uid, ti.gid) == (1000, 1000)


def test_unknown_user_fails(root_build):
    with pytest.raises(Exception) as e:
        root_build(df("USER nosuchuser\nRUN true"))
    assert "nosuchuser" in str(e.value) and "Dockerfile:5" in str(e.value)


def test_workdir_creates_directories_owned_by_user(root_build):
    r = root_build(df("""
        USER app
        WORKDIR /data/app
        RUN pwd > /tmp/pwd
    """))
    layers = r.own_layers()
    assert len(layers) == 2
    from .conftest import read_layer
    workdir_layer = read_layer(layers[0])
    assert set(workdir_layer) == {"data", "data/app"}
    for name in ("data", "data/app"):
        ti = workdir_layer[name][0]
        assert ti.isdir() and (ti.uid, ti.gid) == (1000, 1000) and stat.S_IMODE(ti.mode) == 0o755
    assert r.config["WorkingDir"] == "/data/app"
    assert r.read("tmp/pwd") == b"/data/app\n"


@pytest.mark.parametrize("body, workdir, created", [
    ("WORKDIR /a\nWORKDIR b\nWORKDIR ../c", "/a/c", {"a", "a/b", "a/c"}),
    ("ENV D=/srv\nWORKDIR $D/x", "/srv/x", {"srv", "srv/x"}),
    ("WORKDIR /tmp", "/tmp", set()),  # exists: no layer
    ("WORKDIR /bin/", "/bin", set()),
])
def test_workdir(root_build, body, workdir, created):
    r = root_build(df(body))
    assert r.config["WorkingDir"] == workdir
    assert set(r.files()) == created
    for ti, _ in r.files().values():
        assert (ti.uid, ti.gid) == (0, 0)


def test_workdir_through_a_file_fails_naming_the_line(root_build):
    with pytest.raises(Exception) as e:
        root_build(df("RUN touch /f\nWORKDIR /f/sub"))
    assert "Dockerfile:5" in str(e.value)


def test_shell_changes_shell_form_run(root_build):
    r = root_build(df("""
        RUN echo "${MARK:-plain}" > /before
        SHELL ["/bin/env", "MARK=from-shell", "/bin/sh", "-c"]
        RUN echo "$MARK" > /after
        RUN ["/bin/sh", "-c", "echo ${MARK:-exec-form} > /exec"]
    """))
    assert r.read("before") == b"plain\n"
    assert r.read("after") == b"from-shell\n"
    assert r.read("exec") == b"exec-form\n"


# ---------------------------------------------------------------- ONBUILD

def test_onbuild_trigger_runs_in_the_child_stage(root_build):
    r = root_build(BASE + """
FROM base AS withtrigger
ONBUILD RUN echo fired > /fired
ONBUILD ENV TRIGGERED=yes
RUN echo parent > /parent
FROM withtrigger
RUN cat /fired /parent > /both
""")
    assert r.read("fired") == b"fired\n"
    assert r.read("both") == b"fired\nparent\n"
    assert "TRIGGERED=yes" in r.config["Env"]
    assert "OnBuild" not in r.config
    fired = [s for s in r.record.steps if s.keyword == "RUN" and "fired" in s.text and "cat" not in s.text]
    assert len(fired) == 1 and fired[0].stage == "2"


def test_onbuild_trigger_does_not_run_in_the_declaring_stage(root_build):
    r = root_build(df("ONBUILD RUN touch /fired\nRUN touch /own"))
    assert set(r.files()) == {"own"}
    assert r.config["OnBuild"] == ["RUN touch /fired"]


# ---------------------------------------------------------------- --network

def test_run_network_none_has_only_loopback(root_build):
    r = root_build(df("""
        RUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /none
    """))
    assert r.read("none").split() == [b"lo"]


def test_run_network_bad_value_fails_at_load(root_build):
    with pytest.raises(DockerfileError) as e:
        root_build(df("RUN --network=bogus true"))
    assert e.value.start == 4


# ---------------------------------------------------------------- --mount

def test_mount_bind_from_stage(root_build):
    r = root_build(BASE + """
FROM base AS src
RUN mkdir /stuff && echo from-src > /stuff/f
FROM base
RUN --mount=type=bind,from=src,source=/stuff,target=/mnt/s cat /mnt/s/f > /got && ls /mnt/s > /listing
""")
    assert set(r.files()) == {"got", "listing"}  # nothing of /mnt
    assert r.read("got") == b"from-src\n"
    assert r.read("listing") == b"f\n"
    assert r.result.stages_built == [0, 1, 2]


def test_mount_bind_from_context_rw_writes_are_discarded(root_build):
    r = root_build(df("""
        RUN --mount=type=bind,source=data,target=/ctx,rw cat /ctx/in.txt > /got && echo x > /ctx/written
    """), files={"data/in.txt": "context data\n"})
    assert set(r.files()) == {"got"}
    assert r.read("got") == b"context data\n"
    assert not (r.context / "data" / "written").exists()


def test_mount_bind_is_read_only_by_default(root_build):
    with pytest.raises(RunFailed):
        root_build(df("RUN --mount=type=bind,source=data,target=/ctx touch /ctx/new"), files={"data/f": "x"})


def test_mount_cache_persists_between_runs_and_stays_out_of_layers(root_build):
    r = root_build(df("""
        RUN --mount=type=cache,target=/var/cache/app echo cached > /var/cache/app/x && touch /first
        RUN --mount=type=cache,target=/var/cache/app cat /var/cache/app/x > /from-cache
        RUN --mount=type=cache,id=other,target=/c ls -A /c | wc -l > /other-count
    """))
    assert set(r.files()) == {"first", "from-cache", "other-count"}  # no var/, no c/
    assert r.read("from-cache") == b"cached\n"
    assert r.read("other-count").strip() == b"0"


def test_mount_tmpfs_stays_out_of_layers(root_build):
    r = root_build(df("""
        RUN --mount=type=tmpfs,target=/scratch echo x > /scratch/big && grep -c ' /scratch tmpfs ' /proc/mounts > /mounted
    """))
    assert set(r.files()) == {"mounted"}
    assert r.read("mounted") == b"1\n"


def test_mount_target_inside_an_existing_dir_leaves_no_trace(root_build):
    r = root_build(df("""
        RUN mkdir /work && echo keep > /work/keep
        RUN --mount=type=tmpfs,target=/work/tmp echo y > /work/tmp/f && echo out > /work/out
    """))
    from .conftest import read_layer
    assert set(read_layer(r.own_layers()[-1])) == {"work", "work/out"}


def test_mount_from_unknown_stage_fails(root_build):
    with pytest.raises(Exception) as e:
        root_build(df("RUN --mount=type=bind,from=later,target=/x true\nFROM base AS later"))
    assert "Dockerfile:4" in str(e.value) and "later" in str(e.value)
