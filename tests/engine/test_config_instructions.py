"""Instructions that only change the image config, built in-process on ``FROM scratch``.

Covers FROM scratch (empty image for the requested platform), ARG (defaults, ``--build-arg``
override, a global ARG redeclared in a stage, the automatic platform ARGs), ENV (and its
expansion in later words), LABEL (plus ``--label``), USER, EXPOSE (ranges, protocols),
VOLUME, CMD/ENTRYPOINT (shell and exec form; ENTRYPOINT resets an inherited CMD), SHELL (for
shell-form CMD), STOPSIGNAL (a bad signal is a DockerfileError naming the line),
HEALTHCHECK (durations in nanoseconds, NONE, a bad duration fails before any stage runs),
MAINTAINER (author) and ONBUILD (triggers stored in the config). None of these write a layer.
"""

from __future__ import annotations

import pytest

from executor.errors import DockerfileError


def env(built) -> dict[str, str]:
    return dict(item.split("=", 1) for item in built.config.get("Env", []))


# ---------------------------------------------------------------- FROM scratch

@pytest.mark.parametrize("platform, arch, variant", [
    ("linux/amd64", "amd64", None),
    ("linux/arm64", "arm64", None),
    ("linux/arm/v7", "arm", "v7"),
])
def test_from_scratch_is_an_empty_image_of_the_platform(build, platform, arch, variant):
    r = build("FROM scratch\n", platform=platform)
    cfg = r.image.config
    assert (cfg["os"], cfg["architecture"], cfg.get("variant")) == ("linux", arch, variant)
    assert r.image.layers == []
    assert cfg["rootfs"] == {"type": "layers", "diff_ids": []}
    assert r.config == {}
    assert "created" in cfg
    assert r.result.stages_built == [0]


def test_config_instructions_write_no_layer_but_history(build):
    r = build("""
        FROM scratch
        ENV A=1
        LABEL l=v
        EXPOSE 80
        CMD ["x"]
    """)
    assert r.image.layers == []
    hist = r.image.config["history"]
    assert [h["created_by"] for h in hist] == ["ENV A=1", "LABEL l=v", "EXPOSE 80", 'CMD ["x"]']
    assert all(h.get("empty_layer") for h in hist)


# ---------------------------------------------------------------- ARG

ARG_CASES = [
    pytest.param("ARG V=default\nENV X=$V\n", {}, "default", id="default"),
    pytest.param("ARG V=default\nENV X=$V\n", {"V": "given"}, "given", id="build-arg-overrides-default"),
    pytest.param("ARG V\nENV X=${V:-unset}\n", {}, "unset", id="no-default-no-value"),
    pytest.param("ARG V\nENV X=$V\n", {"V": "given"}, "given", id="build-arg-without-default"),
    pytest.param("ARG A=a\nARG B=${A}b\nENV X=$B\n", {}, "ab", id="default-expands-earlier-arg"),
    pytest.param("ENV X=${V:-before}\nARG V=after\n", {}, "before", id="not-visible-before-declared"),
    pytest.param("ARG V=arg\nENV V=env\nENV X=$V\n", {}, "env", id="env-wins-over-arg"),
]


@pytest.mark.parametrize("body, build_args, expected", ARG_CASES)
def test_arg(build, body, build_args, expected):
    r = build("FROM scratch\n" + body, build_args=build_args)
    assert env(r)["X"] == expected


def test_arg_values_are_not_kept_in_the_config(build):
    r = build("FROM scratch\nARG SECRETISH=value\n")
    assert "Env" not in r.config


GLOBAL_ARG_CASES = [
    pytest.param("ARG V=global\nFROM scratch\nARG V\nENV X=${V:-none}\n", {}, "global", id="redeclared"),
    pytest.param("ARG V=global\nFROM scratch\nENV X=${V:-none}\n", {}, "none", id="not-redeclared-invisible"),
    pytest.param("ARG V=global\nFROM scratch\nARG V=local\nENV X=$V\n", {}, "local", id="redeclared-with-default"),
    pytest.param("ARG V=global\nFROM scratch\nARG V\nENV X=$V\n", {"V": "cli"}, "cli", id="build-arg-overrides"),
    pytest.param("ARG V=global\nFROM scratch AS one\nARG V\nFROM scratch\nENV X=${V:-none}\n", {}, "none",
                 id="per-stage"),
]


@pytest.mark.parametrize("text, build_args, expected", GLOBAL_ARG_CASES)
def test_global_arg(build, text, build_args, expected):
    r = build(text, build_args=build_args)
    assert env(r)["X"] == expected


def test_global_arg_in_from_names_a_stage(build):
    r = build("""
        ARG BASE=first
        FROM scratch AS first
        LABEL from=first
        FROM scratch AS second
        LABEL from=second
        FROM ${BASE}
    """, build_args={"BASE": "second"})
    assert r.config["Labels"] == {"from": "second"}
    assert r.result.stages_built == [1, 2]


@pytest.mark.parametrize("platform, expected", [
    ("linux/amd64", {"TARGETPLATFORM": "linux/amd64", "TARGETOS": "linux", "TARGETARCH": "amd64",
                     "TARGETVARIANT": ""}),
    ("linux/arm/v7", {"TARGETPLATFORM": "linux/arm/v7", "TARGETOS": "linux", "TARGETARCH": "arm",
                      "TARGETVARIANT": "v7"}),
])
def test_platform_args(build, platform, expected):
    names = list(expected) + ["BUILDPLATFORM", "BUILDOS", "BUILDARCH"]
    r = build("FROM scratch\nARG " + " ".join(names) + "\n"
              + "".join(f"ENV X_{n}=${{{n}}}\n" for n in names), platform=platform)
    e = env(r)
    for name, value in expected.items():
        assert e[f"X_{name}"] == value, name
    assert e["X_BUILDOS"] == "linux"
    assert e["X_BUILDPLATFORM"] == "linux/" + e["X_BUILDARCH"]


def test_platform_args_need_a_declaration_in_the_stage(build):
    r = build("FROM scratch\nENV X=${TARGETARCH:-undeclared}\n", platform="linux/arm64")
    assert env(r)["X"] == "undeclared"


def test_platform_arg_in_from(build):
    r = build("""
        FROM scratch AS build-amd64
        LABEL arch=amd64
        FROM scratch AS build-arm64
        LABEL arch=arm64
        FROM build-${TARGETARCH}
    """, platform="linux/arm64")
    assert r.config["Labels"] == {"arch": "arm64"}


# ---------------------------------------------------------------- ENV

ENV_CASES = [
    pytest.param("ENV A=1\n", {"A": "1"}, id="one"),
    pytest.param("ENV A=1 B=2\n", {"A": "1", "B": "2"}, id="several"),
    pytest.param("ENV A 1 2 3\n", {"A": "1 2 3"}, id="legacy-space-form"),
    pytest.param('ENV A="x y" B=z\\ w\n', {"A": "x y", "B": "z w"}, id="quotes-and-escapes"),
    pytest.param("ENV A=1\nENV B=$A-${A}-${C:-dflt}-${A:+alt}\n", {"A": "1", "B": "1-1-dflt-alt"}, id="expansion"),
    pytest.param("ENV A=1 B=$A\n", {"A": "1", "B": ""}, id="same-line-sees-old-value"),
    pytest.param("ENV A=1\nENV A=2\n", {"A": "2"}, id="override"),
    pytest.param("ENV A='$literal'\n", {"A": "$literal"}, id="single-quotes-no-expansion"),
]


@pytest.mark.parametrize("body, expected", ENV_CASES)
def test_env(build, body, expected):
    assert env(build("FROM scratch\n" + body)) == expected


def test_env_expands_in_later_instructions(build):
    r = build("""
        FROM scratch
        ENV DIR=/srv/app PORT=8080 NAME=web USER_ID=1000
        WORKDIR $DIR
        EXPOSE $PORT
        LABEL name=$NAME
        USER ${USER_ID}
        VOLUME ${DIR}/data
        STOPSIGNAL SIG${NAME:+TERM}
    """)
    c = r.config
    assert c["WorkingDir"] == "/srv/app"
    assert c["ExposedPorts"] == {"8080/tcp": {}}
    assert c["Labels"] == {"name": "web"}
    assert c["User"] == "1000"
    assert c["Volumes"] == {"/srv/app/data": {}}
    assert c["StopSignal"] == "SIGTERM"


def test_env_is_inherited_from_the_parent_stage(build):
    r = build("FROM scratch AS a\nENV A=1\nFROM a\nENV B=$A\n")
    assert env(r) == {"A": "1", "B": "1"}


# ---------------------------------------------------------------- LABEL

def test_label(build):
    r = build("""
        FROM scratch AS parent
        LABEL inherited=yes over=parent
        FROM parent
        ARG VER=1.2
        LABEL "quoted key"="a value" version=$VER over=child
        LABEL multi=1 \\
              line=2
    """, labels={"cli": "x", "over": "cli"})
    assert r.config["Labels"] == {"inherited": "yes", "over": "cli", "quoted key": "a value", "version": "1.2",
                                  "multi": "1", "line": "2", "cli": "x"}


# ---------------------------------------------------------------- USER

@pytest.mark.parametrize("line, expected", [
    ("USER app", "app"), ("USER 1000:50", "1000:50"), ("USER app:staff", "app:staff"),
    ("ARG U=7\nUSER $U", "7"),
])
def test_user(build, line, expected):
    assert build(f"FROM scratch\n{line}\n").config["User"] == expected


# ---------------------------------------------------------------- EXPOSE

@pytest.mark.parametrize("words, expected", [
    ("80", ["80/tcp"]),
    ("80/udp", ["80/udp"]),
    ("53/UDP 53/tcp", ["53/udp", "53/tcp"]),
    ("132/sctp", ["132/sctp"]),
    ("8000-8002", ["8000/tcp", "8001/tcp", "8002/tcp"]),
    ("7000-7001/udp 443", ["7000/udp", "7001/udp", "443/tcp"]),
])
def test_expose(build, words, expected):
    assert build(f"FROM scratch\nEXPOSE {words}\n").config["ExposedPorts"] == {p: {} for p in expected}


def test_expose_accumulates_across_stages(build):
    r = build("FROM scratch AS a\nEXPOSE 80\nFROM a\nEXPOSE 443/udp\n")
    assert r.config["ExposedPorts"] == {"80/tcp": {}, "443/udp": {}}


@pytest.mark.parametrize("words", ["http", "80/quic", "90-80", "1-70000"])
def test_expose_bad_port_names_the_line(build, words):
    with pytest.raises(DockerfileError) as e:
        build(f"FROM scratch\nENV A=1\nEXPOSE {words}\n")
    assert e.value.start == 3 and "Dockerfile:3" in str(e.value)


# ---------------------------------------------------------------- VOLUME

@pytest.mark.parametrize("body, expected", [
    ("VOLUME /data", ["/data"]),
    ("VOLUME /a /b", ["/a", "/b"]),
    ('VOLUME ["/x", "/y z"]', ["/x", "/y z"]),
    ("VOLUME /a\nVOLUME /b", ["/a", "/b"]),
])
def test_volume(build, body, expected):
    assert build(f"FROM scratch\n{body}\n").config["Volumes"] == {v: {} for v in expected}


# ---------------------------------------------------------------- CMD / ENTRYPOINT / SHELL

CMD_CASES = [
    pytest.param('CMD ["run", "--flag"]', {"Cmd": ["run", "--flag"]}, id="cmd-exec"),
    pytest.param("CMD echo $HOME", {"Cmd": ["/bin/sh", "-c", "echo $HOME"]}, id="cmd-shell"),
    pytest.param('ENTRYPOINT ["/bin/app"]', {"Entrypoint": ["/bin/app"]}, id="entrypoint-exec"),
    pytest.param("ENTRYPOINT exec app", {"Entrypoint": ["/bin/sh", "-c", "exec app"]}, id="entrypoint-shell"),
    pytest.param('ENTRYPOINT ["/bin/app"]\nCMD ["--help"]', {"Entrypoint": ["/bin/app"], "Cmd": ["--help"]},
                 id="entrypoint-then-cmd"),
    pytest.param('CMD ["--help"]\nENTRYPOINT ["/bin/app"]', {"Entrypoint": ["/bin/app"], "Cmd": ["--help"]},
                 id="cmd-of-same-stage-survives-entrypoint"),
    pytest.param('CMD ["a"]\nCMD ["b"]', {"Cmd": ["b"]}, id="last-cmd-wins"),
    pytest.param('SHELL ["/bin/bash", "-euc"]\nCMD echo hi\nENTRYPOINT exec app',
                 {"Shell": ["/bin/bash", "-euc"], "Cmd": ["/bin/bash", "-euc", "echo hi"],
                  "Entrypoint": ["/bin/bash", "-euc", "exec app"]}, id="shell-changes-shell-form"),
    pytest.param('CMD echo a\nSHELL ["/bin/ash", "-c"]', {"Cmd": ["/bin/sh", "-c", "echo a"],
                                                         "Shell": ["/bin/ash", "-c"]}, id="shell-not-retroactive"),
]


@pytest.mark.parametrize("body, expected", CMD_CASES)
def test_cmd_entrypoint_shell(build, body, expected):
    assert build(f"FROM scratch\n{body}\n").config == expected


def test_entrypoint_resets_an_inherited_cmd(build):
    r = build("""
        FROM scratch AS parent
        CMD ["parent-cmd"]
        FROM parent
        ENTRYPOINT ["/bin/app"]
    """)
    assert r.config.get("Entrypoint") == ["/bin/app"]
    assert "Cmd" not in r.config


def test_inherited_cmd_without_entrypoint_is_kept(build):
    r = build('FROM scratch AS parent\nCMD ["parent-cmd"]\nFROM parent\nLABEL x=y\n')
    assert r.config["Cmd"] == ["parent-cmd"]


def test_shell_is_inherited(build):
    r = build('FROM scratch AS p\nSHELL ["/bin/ash", "-c"]\nFROM p\nCMD run\n')
    assert r.config["Cmd"] == ["/bin/ash", "-c", "run"]


# ---------------------------------------------------------------- STOPSIGNAL

@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL", "9", "SIGRTMIN+3", "TERM"])
def test_stopsignal(build, sig):
    assert build(f"FROM scratch\nSTOPSIGNAL {sig}\n").config["StopSignal"] == sig


@pytest.mark.parametrize("sig", ["SIGNOPE", "0", "65", "ARG"])
def test_stopsignal_bad_signal_names_the_line(build, sig):
    with pytest.raises(DockerfileError) as e:
        build(f"FROM scratch\nLABEL a=b\n\nSTOPSIGNAL {sig}\n")
    assert e.value.start == 4
    assert str(e.value).startswith("Dockerfile:4")


def test_stopsignal_bad_signal_from_arg_names_the_line(build):
    with pytest.raises(DockerfileError) as e:
        build("FROM scratch\nARG S=SIGBOGUS\nSTOPSIGNAL $S\n")
    assert e.value.start == 3 and "SIGBOGUS" in str(e.value)


# ---------------------------------------------------------------- HEALTHCHECK

S = 1_000_000_000

HEALTHCHECK_CASES = [
    pytest.param("HEALTHCHECK --interval=.5s --timeout=2s --retries=3 CMD true",
                 {"Test": ["CMD-SHELL", "true"], "Interval": S // 2, "Timeout": 2 * S, "Retries": 3}, id="flags"),
    pytest.param('HEALTHCHECK CMD ["/bin/check", "-q"]', {"Test": ["CMD", "/bin/check", "-q"]}, id="exec-form"),
    pytest.param("HEALTHCHECK --start-period=1m30s --start-interval=250ms CMD curl -f http://localhost/",
                 {"Test": ["CMD-SHELL", "curl -f http://localhost/"], "StartPeriod": 90 * S,
                  "StartInterval": S // 4}, id="start-period-and-interval"),
    pytest.param("HEALTHCHECK --interval=1h2m CMD true", {"Test": ["CMD-SHELL", "true"], "Interval": 3720 * S},
                 id="hours-minutes"),
    pytest.param("HEALTHCHECK NONE", {"Test": ["NONE"]}, id="none"),
    pytest.param("HEALTHCHECK CMD a\nHEALTHCHECK NONE", {"Test": ["NONE"]}, id="none-replaces"),
]


@pytest.mark.parametrize("body, expected", HEALTHCHECK_CASES)
def test_healthcheck(build, body, expected):
    assert build(f"FROM scratch\n{body}\n").config["Healthcheck"] == expected


def test_healthcheck_none_disables_an_inherited_check(build):
    r = build("FROM scratch AS p\nHEALTHCHECK --retries=2 CMD true\nFROM p\nHEALTHCHECK NONE\n")
    assert r.config["Healthcheck"] == {"Test": ["NONE"]}


@pytest.mark.parametrize("flag", ["--interval=5", "--timeout=abc", "--start-period=-1s", "--interval=1x",
                                  "--retries=many"])
def test_healthcheck_bad_flag_fails_at_load_before_any_stage_runs(build, flag):
    b = build.start(f"""
        FROM scratch AS first
        LABEL stage=first
        COPY rootfs/bin/busybox /busybox
        FROM first
        HEALTHCHECK {flag} CMD true
    """)
    with pytest.raises(DockerfileError) as e:
        b.build()
    assert e.value.start == 5, str(e.value)
    assert str(e.value).startswith("Dockerfile:5")
    assert b.services is None  # read_dockerfile failed: no record, no stage, nothing scheduled
    assert not (b.work / "stages").exists()
    assert not (b.work / "blobs" / "sha256").exists()


# ---------------------------------------------------------------- MAINTAINER

def test_maintainer_sets_author(build):
    r = build("FROM scratch\nMAINTAINER Jane Doe <jane@example.com>\n")
    assert r.image.config["author"] == "Jane Doe <jane@example.com>"
    assert r.config == {}


# ---------------------------------------------------------------- ONBUILD

def test_onbuild_stores_triggers_in_config(build):
    r = build("""
        FROM scratch
        ONBUILD RUN echo triggered
        ONBUILD COPY --chown=1:1 a /b
    """)
    assert r.config["OnBuild"] == ["RUN echo triggered", "COPY --chown=1:1 a /b"]


def test_onbuild_triggers_of_the_parent_are_not_inherited(build):
    r = build("FROM scratch AS p\nONBUILD LABEL from=trigger\nFROM p\nLABEL own=1\n")
    assert "OnBuild" not in r.config
    assert r.config["Labels"] == {"from": "trigger", "own": "1"}


@pytest.mark.parametrize("trigger", ["ONBUILD FROM scratch", "ONBUILD MAINTAINER x", "ONBUILD ONBUILD RUN x"])
def test_onbuild_forbidden_triggers(build, trigger):
    with pytest.raises(DockerfileError) as e:
        build(f"FROM scratch\n{trigger}\n")
    assert e.value.start == 2


def test_from_platform_sets_the_stage_platform_not_the_target_args(build):
    """``FROM --platform=X`` builds that stage for X; TARGETARCH stays the build's --platform
    (the cross-compile idiom ``FROM --platform=$BUILDPLATFORM ... ARG TARGETARCH``)."""
    r = build("FROM --platform=linux/arm64 scratch AS x\nARG TARGETARCH\nENV A=$TARGETARCH\nFROM x\n",
              platform="linux/amd64")
    assert r.image.config["architecture"] == "arm64"
    assert env(r)["A"] == "amd64"


def test_reproducible_build_uses_the_epoch_and_gives_the_same_layers(build):
    df = "FROM scratch\nCOPY a /a\nWORKDIR /w\nCOPY <<EOF /h\nhi\nEOF\nENV A=1\n"
    one = build(df, {"a": "x"}, reproducible=True, source_date_epoch=1000)
    two = build(df, {"a": "x"}, reproducible=True, source_date_epoch=1000)
    assert [x.digest for x in one.image.layers] == [x.digest for x in two.image.layers]
    assert len(one.image.layers) == 3
    assert one.image.config == two.image.config
    assert one.image.config["created"] == "1970-01-01T00:16:40Z"
    assert {h["created"] for h in one.image.config["history"]} == {"1970-01-01T00:16:40Z"}
    assert {ti.mtime for ti, _ in one.files().values()} == {1000}
