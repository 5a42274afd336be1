"""Typed instructions (executor.dockerfile.instructions / convert) and the RUN --mount syntax
(executor.dockerfile.mounts): every keyword converts to its type with the right fields, and
every bad flag value fails when the Dockerfile is loaded, naming its line."""

from __future__ import annotations

import pytest

from executor.dockerfile import instructions as T
from executor.dockerfile.instructions import from_nodes, load_dockerfile
from executor.dockerfile.mounts import MountError, MountSpec, parse_mount_flag, parse_size
from executor.dockerfile.parser import Heredoc, parse_dockerfile
from executor.errors import DockerfileError

F = "FROM alpine\n"
C = T.Command

# (id, instruction text after "FROM alpine", expected type, expected fields)
CASES = [
    ("run-shell", "RUN echo hi", T.Run, dict(command=C(("echo hi",), False), mounts=(), network=T.Network.DEFAULT,
                                             security=None, devices=())),
    ("run-exec", 'RUN ["echo", "a b"]', T.Run, dict(command=C(("echo", "a b"), True))),
    ("run-flags", "RUN --network=none --security=insecure --device=/dev/fuse --device=x true", T.Run,
     dict(network=T.Network.NONE, security="insecure", devices=("/dev/fuse", "x"), command=C(("true",), False))),
    ("run-network-host", "RUN --network=host true", T.Run, dict(network=T.Network.HOST)),
    ("run-heredoc", "RUN <<EOF\necho a\nEOF", T.Run,
     dict(heredocs=(Heredoc("EOF", "echo a\n", True, False),), command=C(("<<EOF",), False))),
    ("cmd-shell", "CMD echo $HOME", T.Cmd, dict(command=C(("echo $HOME",), False))),
    ("cmd-exec", 'CMD ["a", "b"]', T.Cmd, dict(command=C(("a", "b"), True))),
    ("entrypoint", 'ENTRYPOINT ["/bin/tini", "--"]', T.Entrypoint, dict(command=C(("/bin/tini", "--"), True))),
    ("shell", 'SHELL ["/bin/bash", "-c"]', T.Shell, dict(argv=("/bin/bash", "-c"))),
    ("env", 'ENV A=1 B="two words"', T.Env, dict(pairs=(("A", "1"), ("B", '"two words"')))),
    ("env-legacy", "ENV A one two", T.Env, dict(pairs=(("A", "one two"),))),
    ("label", "LABEL a.b=c d=$E", T.Label, dict(pairs=(("a.b", "c"), ("d", "$E")))),
    ("arg", "ARG A B=2 C=", T.Arg, dict(args=(T.ArgDecl("A", None), T.ArgDecl("B", "2"), T.ArgDecl("C", "")))),
    ("expose", "EXPOSE 80 8000-8010/udp $P", T.Expose, dict(ports=("80", "8000-8010/udp", "$P"))),
    ("volume", "VOLUME /a /b", T.Volume, dict(paths=("/a", "/b"))),
    ("volume-json", 'VOLUME ["/a b"]', T.Volume, dict(paths=("/a b",))),
    ("user", "USER app:app", T.User, dict(user="app:app")),
    ("workdir", "WORKDIR /srv/my app", T.Workdir, dict(path="/srv/my app")),
    ("stopsignal", "STOPSIGNAL SIGTERM", T.StopSignal, dict(signal="SIGTERM")),
    ("maintainer", "MAINTAINER Jane <j@x>", T.Maintainer, dict(name="Jane <j@x>")),
    ("copy", "COPY a b /d/", T.Copy, dict(sources=("a", "b"), dest="/d/", chown=None, chmod=None, link=False,
                                          excludes=(), from_=None, parents=False, heredocs=())),
    ("copy-flags", "COPY --from=build --chown=1:2 --chmod=0644 --link --parents --exclude=*.md --exclude=x "
     "a /d", T.Copy, dict(from_="build", chown="1:2", chmod="0644", link=True, parents=True, excludes=("*.md", "x"))),
    ("copy-chmod-var", "COPY --chmod=$MODE a /d", T.Copy, dict(chmod="$MODE")),
    ("copy-link-false", "COPY --link=false a /d", T.Copy, dict(link=False)),
    ("copy-json", 'COPY ["a b", "/d"]', T.Copy, dict(sources=("a b",), dest="/d")),
    ("copy-heredoc", "COPY <<EOF /f\nx\nEOF", T.Copy,
     dict(sources=("<<EOF",), dest="/f", heredocs=(Heredoc("EOF", "x\n", True, False),))),
    ("add", "ADD http://x/a.tgz /d", T.Add, dict(sources=("http://x/a.tgz",), dest="/d", checksum=None,
                                                 keep_git_dir=False, unpack=None)),
    ("add-flags", "ADD --checksum=sha256:ab --keep-git-dir --unpack=true --chmod=755 --link git@x:y /d", T.Add,
     dict(checksum="sha256:ab", keep_git_dir=True, unpack=True, chmod="755", link=True)),
    ("add-unpack-false", "ADD --unpack=false a.tgz /d", T.Add, dict(unpack=False)),
    ("healthcheck-none", "HEALTHCHECK NONE", T.Healthcheck, dict(command=None, interval=None, retries=None)),
    ("healthcheck-cmd", "HEALTHCHECK --interval=1m30s --timeout=.5s --start-period=0 --start-interval=5ms "
     "--retries=0 CMD curl -f x", T.Healthcheck,
     dict(command=C(("curl -f x",), False), interval=90_000_000_000, timeout=500_000_000, start_period=0,
          start_interval=5_000_000, retries=0)),
    ("healthcheck-dot-5s", "HEALTHCHECK --interval=.5s CMD true", T.Healthcheck, dict(interval=500_000_000)),
    ("healthcheck-exec", 'HEALTHCHECK CMD ["true"]', T.Healthcheck, dict(command=C(("true",), True))),
    ("onbuild", "ONBUILD RUN --network=none make", T.Onbuild, dict(expression="RUN --network=none make")),
]


@pytest.mark.parametrize("line,typ,fields", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_keyword_converts(line, typ, fields):
    df = load_dockerfile(F + line + "\n", filename="Dockerfile.t")
    (ins,) = df.stages[0].instructions
    assert type(ins) is typ and ins.keyword == typ.keyword
    for key, want in fields.items():
        assert getattr(ins, key) == want, key
    n_lines = line.count("\n") + 1
    assert ins.location == T.Location("Dockerfile.t", 2, 1 + n_lines)
    assert ins.text == line.split("\n")[0]


def test_from_meta_args_stages_and_onbuild_trigger():
    text = ("# escape=`\nARG BASE=alpine\nARG V\nFROM --platform=$P ${BASE} AS Build\nONBUILD COPY --chmod=600 a b\n"
            "FROM build\nRUN true\n")
    df = load_dockerfile(text, "Dockerfile")
    assert (df.escape, df.directives, df.filename, df.warnings) == ("`", {"escape": "`"}, "Dockerfile", ())
    assert [a.args for a in df.meta_args] == [(T.ArgDecl("BASE", "alpine"),), (T.ArgDecl("V", None),)]
    s0, s1 = df.stages
    assert (s0.index, s0.name, s0.from_.image, s0.from_.platform) == (0, "build", "${BASE}", "$P")
    assert (s1.index, s1.name, s1.from_.image, s1.from_.platform) == (1, None, "build", None)
    assert s0.from_.location == T.Location("Dockerfile", 4, 4)
    (onb,) = s0.instructions
    assert isinstance(onb.trigger, T.Copy) and onb.trigger.chmod == "600" and onb.expression == "COPY --chmod=600 a b"
    assert [type(i) for i in s1.instructions] == [T.Run]


def test_from_nodes_equals_load():
    text = F + "RUN --mount=type=secret,id=t true\nCOPY a b\n"
    assert from_nodes(parse_dockerfile(text)) == load_dockerfile(text)


def test_run_mounts_parsed_at_load_time():
    text = F + ("RUN --mount=type=cache,target=cache --mount=type=ssh --mount=type=ssh,id=gh "
                "--mount=type=bind,from=$STAGE,target=/src true\n")
    (run,) = load_dockerfile(text).stages[0].instructions
    cache, ssh0, ssh1, bind = run.mounts
    assert (cache.type, cache.target, cache.id, cache.mode) == ("cache", "cache", "cache", 0o755)
    assert (ssh0.target, ssh1.target, ssh1.id) == ("/run/buildkit/ssh_agent.0", "/run/buildkit/ssh_agent.1", "gh")
    assert bind.from_ == "$STAGE" and bind.readonly
    resolved = cache.resolved("/work", lambda w: w)
    assert (resolved.target, resolved.id) == ("/work/cache", "/work/cache")
    assert bind.resolved("/", lambda w: w.replace("$STAGE", "build")).from_ == "build"


# (id, text after FROM, start, end, message fragment)
ERRORS = [
    ("bad-duration", "HEALTHCHECK --interval=5 CMD true", 2, 2, "--interval=5"),
    ("bad-duration-unit", "HEALTHCHECK --timeout=3d CMD true", 2, 2, "invalid duration"),
    ("negative-duration", "HEALTHCHECK --timeout=-1s CMD true", 2, 2, "cannot be negative"),
    ("tiny-duration", "HEALTHCHECK --start-interval=10us CMD true", 2, 2, "cannot be less than 1ms"),
    ("negative-retries", "HEALTHCHECK --retries=-1 CMD true", 2, 2, "--retries cannot be negative"),
    ("bad-retries", "HEALTHCHECK --retries=three CMD true", 2, 2, "--retries=three"),
    ("bad-chmod", "COPY --chmod=rwx a b", 2, 2, "COPY --chmod=rwx: not an octal mode"),
    ("bad-chmod-digit", "ADD --chmod=0789 a b", 2, 2, "ADD --chmod=0789"),
    ("chmod-too-big", "COPY --chmod=17777 a b", 2, 2, "--chmod=17777"),
    ("bad-network", "RUN --network=bridge true", 2, 2, "RUN --network=bridge: unsupported network mode"),
    ("network-var", "RUN --network=$NET true", 2, 2, "--network=$NET"),
    ("bad-security", "RUN --security=relaxed true", 2, 2, "RUN --security=relaxed: unsupported security mode"),
    ("mount-type", "RUN --mount=type=volume,target=/x true", 2, 2, "unsupported mount type 'volume'"),
    ("mount-key", "RUN --mount=type=tmpfs,target=/x,from=img true", 2, 2, "unexpected key 'from'"),
    ("mount-mode", "RUN --mount=type=cache,target=/x,mode=rwx true", 2, 2, "mode=rwx: expected an octal mode"),
    ("mount-size", "RUN --mount=type=tmpfs,target=/x,size=huge true", 2, 2, "invalid size"),
    ("mount-uid", "RUN --mount=type=cache,target=/x,uid=root true", 2, 2, "uid=root"),
    ("mount-sharing", "RUN --mount=type=cache,target=/x,sharing=sometimes true", 2, 2, "sharing=sometimes"),
    ("mount-bool", "RUN --mount=type=bind,target=/x,rw=maybe true", 2, 2, "rw=maybe"),
    ("mount-no-target", "RUN --mount=type=cache true", 2, 2, "needs target"),
    ("mount-root", "RUN --mount=type=bind,target=/ true", 2, 2, "root directory"),
    ("mount-csv", 'RUN --mount=type=bind,target=/x\\"y true', 2, 2, "malformed mount"),
    ("continued", "RUN --mount=type=cache,target=/x,mode=9 \\\n  true", 2, 3, "mode=9"),
    ("onbuild-trigger", "ONBUILD RUN --network=bridge true", 2, 2, "--network=bridge"),
    ("later-stage", "RUN ok\nFROM b\nRUN ok\nCOPY --chmod=x a b", 5, 5, "--chmod=x"),
]


@pytest.mark.parametrize("line,start,end,fragment", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_bad_flag_values_fail_at_load(line, start, end, fragment):
    with pytest.raises(DockerfileError) as info:
        load_dockerfile(F + line + "\n", filename="Dockerfile.bad")
    err = info.value
    assert (err.filename, err.start, err.end) == ("Dockerfile.bad", start, end), str(err)
    assert fragment in err.detail, str(err)
    assert "\n" not in str(err)


# Ported from tests/unit/test_mounts.py: parse_mount_flag + resolved() gives what the engine's
# parse_mount(value, workdir) gave. (value, workdir, expected fields)
MOUNT_CASES = [
    ("type=cache,target=/root/.cache", "/", dict(type="cache", target="/root/.cache", id="/root/.cache",
                                                 sharing="shared", mode=0o755, readonly=False)),
    ("type=cache,id=pip,dst=cache,sharing=locked,mode=0700,uid=1000,gid=100", "/w",
     dict(target="/w/cache", id="pip", sharing="locked", mode=0o700, uid=1000, gid=100)),
    ("type=cache,target=cache/", "/w", dict(target="/w/cache", id="/w/cache")),
    ("target=/src", "/", dict(type="bind", target="/src", readonly=True, source="", mode=None)),
    ("type=bind,from=build,src=/out,target=/in,rw", "/", dict(from_="build", source="/out", readonly=False)),
    ("type=bind,target=/in,readwrite=true", "/", dict(readonly=False)),
    ("type=bind,target=/in,ro=false", "/", dict(readonly=False)),
    ("Type=CACHE,target=/c,readonly", "/", dict(type="cache", readonly=True)),
    ("type=secret,id=tok", "/", dict(type="secret", target="/run/secrets/tok", mode=0o400, required=False)),
    ("type=secret,target=/etc/key", "/", dict(id="key", target="/etc/key")),
    ("type=secret,target=keys/", "/w", dict(id="keys", target="/w/keys")),
    ("type=secret,id=tok,env=TOKEN", "/", dict(target="", env="TOKEN")),
    ("type=secret,id=tok,env=TOKEN,target=/t,required", "/", dict(target="/t", env="TOKEN", required=True)),
    ("type=tmpfs,target=/tmp/x,size=64m", "/", dict(type="tmpfs", size=64 << 20)),
    ("type=ssh", "/", dict(type="ssh", id="default", target="/run/buildkit/ssh_agent.0", mode=0o600)),
    ("type=ssh,id=gh,target=s,mode=0644,required=true", "/w",
     dict(id="gh", target="/w/s", mode=0o644, required=True)),
    ('type=bind,"target=/a,b",source=x', "/", dict(target="/a,b", source="x")),
]


@pytest.mark.parametrize("value,workdir,expected", MOUNT_CASES, ids=[c[0] for c in MOUNT_CASES])
def test_mount_parse_and_resolve(value, workdir, expected):
    spec = parse_mount_flag(value, 0).resolved(workdir, lambda w: w)
    for key, want in expected.items():
        assert getattr(spec, key) == want, (value, key)


MOUNT_ERRORS = [
    ("type=volume,target=/x", "unsupported mount type"),
    ("type=cache", "needs target"),
    ("type=tmpfs,target=/x,size=huge", "invalid size"),
    ("type=cache,target=/x,sharing=sometimes", "sharing=sometimes"),
    ("type=cache,target=/x,mode=rwx", "octal"),
    ("type=cache,target=/x,mode=0o755", "octal"),
    ("type=cache,target=/x,uid=root", "expected a number"),
    ("type=cache,target=/x,gid=-1", "expected a number"),
    ("type=tmpfs,target=/x,from=img", "unexpected key 'from'"),
    ("type=secret", "needs id"),
    ("type=bind,target=/", "root directory"),
    ("type=bind,target=//", "root directory"),
    ('type=bind,target="/x', 'bare "'),
]


@pytest.mark.parametrize("value,message", MOUNT_ERRORS, ids=[c[0] for c in MOUNT_ERRORS])
def test_mount_errors_at_parse_time(value, message):
    with pytest.raises(MountError) as e:
        parse_mount_flag(value, 0)
    assert message in str(e.value)


def _env(mapping):
    def expand(word: str) -> str:
        for k, v in mapping.items():
            word = word.replace("${" + k + "}", v).replace("$" + k, v)
        return word
    return expand


def test_mount_dollar_values_kept_raw_then_resolved():
    spec = parse_mount_flag("type=cache,target=$DIR,id=${ID},mode=$M,uid=$U,sharing=$S", 0)
    assert (spec.target, spec.id, spec.mode, spec.uid, spec.sharing) == ("$DIR", "${ID}", 0o755, 0, "shared")
    got = spec.resolved("/", _env({"DIR": "/c", "ID": "x", "M": "0700", "U": "7", "S": "locked"}))
    assert (got.target, got.id, got.mode, got.uid, got.sharing) == ("/c", "x", 0o700, 7, "locked")
    # the cache id defaults to the resolved target, relative targets come from the workdir
    assert parse_mount_flag("type=cache,target=$D", 0).resolved("/w", _env({"D": "c"})).id == "/w/c"
    # a $ type is checked once expanded
    spec = parse_mount_flag("type=$T,target=/x", 0)
    assert spec.resolved("/", _env({"T": "tmpfs"})).type == "tmpfs"
    with pytest.raises(MountError, match="unsupported mount type"):
        spec.resolved("/", _env({"T": "volume"}))


@pytest.mark.parametrize("value,env,workdir,message", [
    ("type=cache,target=/x,mode=$M", {"M": "rwx"}, "/", "octal"),
    ("type=tmpfs,target=/x,size=$S", {"S": "lots"}, "/", "invalid size"),
    ("type=cache,target=$T", {"T": ""}, "/", "needs target"),
    ("type=bind,target=$T", {"T": "/"}, "/", "root directory"),
    ("type=bind,target=.", {}, "/", "root directory"),
    ("type=bind,target=/x,rw=$B", {"B": "perhaps"}, "/", "rw=perhaps"),
])
def test_mount_errors_after_expansion(value, env, workdir, message):
    spec = parse_mount_flag(value, 0)
    with pytest.raises(MountError, match=message):
        spec.resolved(workdir, _env(env))


def test_mount_spec_is_frozen_and_hand_built_specs_resolve():
    spec = parse_mount_flag("type=secret,id=s", 0)
    with pytest.raises(AttributeError):
        spec.id = "other"  # type: ignore[misc]
    hand = MountSpec(type="cache", target="c", id="c", mode=0o700, uid=5)
    got = hand.resolved("/w", lambda w: w)
    assert (got.target, got.id, got.mode, got.uid, got.readonly) == ("/w/c", "c", 0o700, 5, False)
    assert parse_mount_flag("type=ssh", 2).target == "/run/buildkit/ssh_agent.2"


def test_parse_size():
    assert [parse_size(s) for s in ("4096", "1k", "2M", "1g", "1GiB", "1.5k", "3kb")] == \
        [4096, 1024, 2 << 20, 1 << 30, 1 << 30, 1536, 3072]
    for bad in ("", "k", "1x", "-1", "1" * 40):
        with pytest.raises(MountError):
            parse_size(bad)
