"""Table-driven parser conformance vectors (BuildKit Dockerfile frontend behaviour).

Each case: a Dockerfile text and the exact list of instructions expected, in
file order (meta ARGs, then each stage's FROM and body).  Every expected
instruction states its name, raw args, flags and 1-based line range; extra
fields (json form, heredocs, pairs, ...) are checked when given.
"""

from __future__ import annotations

import pytest

from executor.dockerfile.parser import Heredoc, Instruction, parse_dockerfile, parse_flag_kv


def I(name, args, lines, flags=None, **extra):  # noqa: E743 - table shorthand
    exp = {"name": name, "args": args, "lines": lines, "flags": flags or {}}
    exp.update(extra)
    return exp


def H(name, content, expand=True, chomp=False):
    return Heredoc(name=name, content=content, expand=expand, chomp=chomp)


def flat(text: str) -> list[Instruction]:
    df = parse_dockerfile(text)
    out = list(df.meta_args)
    for st in df.stages:
        out.append(st.from_instruction)
        out.extend(st.instructions)
    return out


def summary(ins: Instruction, exp: dict) -> dict:
    got = {"name": ins.name, "args": ins.args, "lines": (ins.start_line, ins.end_line), "flags": ins.flags}
    for key in exp:
        if key == "json":
            got["json"] = ins.json_form
        elif key == "heredocs":
            got["heredocs"] = [Heredoc(h.name, h.content, h.expand, h.chomp) for h in ins.heredocs]
        elif key == "pairs":
            got["pairs"] = ins.pairs
        elif key == "arg_defaults":
            got["arg_defaults"] = ins.arg_defaults
        elif key == "original":
            got["original"] = ins.original
        elif key == "trigger":
            t = ins.onbuild_instruction
            got["trigger"] = (t.name, t.args, t.flags) if t else None
    return got


F = "FROM alpine\n"
FROM1 = I("FROM", ["alpine"], (1, 1))

CASES = [
    ("from-run-shell", F + "RUN echo hello\n", [FROM1, I("RUN", ["echo hello"], (2, 2), json=False)]),
    ("run-exec-form", F + 'RUN ["echo", "a b"]\n', [FROM1, I("RUN", ["echo", "a b"], (2, 2), json=True)]),
    ("cmd-json-spaces", F + 'CMD  [ "nginx" ,"-g","daemon off;" ]\n',
     [FROM1, I("CMD", ["nginx", "-g", "daemon off;"], (2, 2), json=True)]),
    ("invalid-json-is-shell", F + "CMD [\"a\", 'b']\n", [FROM1, I("CMD", ["[\"a\", 'b']"], (2, 2), json=False)]),
    ("json-unterminated-is-shell", F + 'ENTRYPOINT ["sh", "-c"\n',
     [FROM1, I("ENTRYPOINT", ['["sh", "-c"'], (2, 2), json=False)]),
    ("empty-json-run", F + "RUN []\n", [FROM1, I("RUN", [], (2, 2), json=True)]),
    ("keywords-case-insensitive", "from alpine as Builder\nrun true\nCoPy a b\n",
     [I("FROM", ["alpine", "AS", "Builder"], (1, 1)), I("RUN", ["true"], (2, 2)), I("COPY", ["a", "b"], (3, 3))]),
    ("continuation", F + "RUN apt-get update && \\\n    apt-get install -y curl\n",
     [FROM1, I("RUN", ["apt-get update &&     apt-get install -y curl"], (2, 3))]),
    ("continuation-no-space-joins", F + "RUN echo hel\\\nlo\n", [FROM1, I("RUN", ["echo hello"], (2, 3))]),
    ("continuation-skips-comments-and-blank", F + "RUN a \\\n# note\n   # indented note\n\nb\n",
     [FROM1, I("RUN", ["a b"], (2, 6))]),
    ("continuation-trailing-ws-after-escape", F + "RUN a \\  \t\nb\n", [FROM1, I("RUN", ["a b"], (2, 3))]),
    ("continuation-at-eof", F + "RUN echo done \\", [FROM1, I("RUN", ["echo done"], (2, 2))]),
    ("escaped-escape-at-eol-still-continues", F + "RUN echo a\\\\\nb\n", [FROM1, I("RUN", ["echo a\\b"], (2, 3))]),
    ("backslash-mid-line-kept", F + "RUN echo a\\nb\n", [FROM1, I("RUN", ["echo a\\nb"], (2, 2))]),
    ("backtick-escape-directive", "# escape=`\nFROM mcr/windows\nRUN dir `\n  c:\\\nCOPY a\\b c:\\dst\\\n",
     [I("FROM", ["mcr/windows"], (2, 2)), I("RUN", ["dir   c:\\"], (3, 4)), I("COPY", ["a\\b", "c:\\dst\\"], (5, 5))]),
    ("comment-lines-and-lines", "# leading comment\n\nFROM a\n  # indented\nRUN x # not a comment\n",
     [I("FROM", ["a"], (3, 3)), I("RUN", ["x # not a comment"], (5, 5))]),
    ("crlf-and-bom", "\ufeffFROM a\r\nRUN b \\\r\n c\r\n", [I("FROM", ["a"], (1, 1)), I("RUN", ["b  c"], (2, 3))]),
    ("leading-whitespace-instruction", F + "   RUN   x   \n", [FROM1, I("RUN", ["x"], (2, 2))]),
    ("original-kept", F + "RUN a \\\n  b\n", [FROM1, I("RUN", ["a   b"], (2, 3), original="RUN a   b")]),
    ("copy-flags", F + "COPY --from=build --chown=1000:1000 --chmod=0755 --link --parents "
     "--exclude=*.md --exclude=tmp src1 src2 /dst/\n",
     [FROM1, I("COPY", ["src1", "src2", "/dst/"], (2, 2),
               {"from": ["build"], "chown": ["1000:1000"], "chmod": ["0755"], "link": ["true"],
                "parents": ["true"], "exclude": ["*.md", "tmp"]})]),
    ("copy-link-false", F + "COPY --link=false a b\n", [FROM1, I("COPY", ["a", "b"], (2, 2), {"link": ["false"]})]),
    ("copy-bool-case-normalised", F + "COPY --link=TRUE a b\n", [FROM1, I("COPY", ["a", "b"], (2, 2), {"link": ["true"]})]),
    ("copy-from-empty-value", F + "COPY --from= a b\n", [FROM1, I("COPY", ["a", "b"], (2, 2), {"from": [""]})]),
    ("copy-json", F + 'COPY ["a b", "c", "/d e/"]\n', [FROM1, I("COPY", ["a b", "c", "/d e/"], (2, 2), json=True)]),
    ("copy-shell-splits-on-whitespace-only", F + 'COPY "a b" /x\n', [FROM1, I("COPY", ['"a', 'b"', "/x"], (2, 2))]),
    ("add-flags", F + "ADD --checksum=sha256:abc --keep-git-dir=true --unpack --chmod=644 https://x/y.tgz /z\n",
     [FROM1, I("ADD", ["https://x/y.tgz", "/z"], (2, 2),
               {"checksum": ["sha256:abc"], "keep-git-dir": ["true"], "unpack": ["true"], "chmod": ["644"]})]),
    ("run-flags", F + "RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok "
     "--network=none --security=insecure make\n",
     [FROM1, I("RUN", ["make"], (2, 2), {"mount": ["type=cache,target=/root/.cache", "type=secret,id=tok"],
                                          "network": ["none"], "security": ["insecure"]})]),
    ("flag-quotes-removed", F + 'RUN --mount="type=bind,source=a b" --network=\'host\' ls\n',
     [FROM1, I("RUN", ["ls"], (2, 2), {"mount": ["type=bind,source=a b"], "network": ["host"]})]),
    ("double-dash-ends-flags", F + "RUN -- --version\n", [FROM1, I("RUN", ["--version"], (2, 2))]),
    ("single-dash-not-a-flag", F + "RUN -x\n", [FROM1, I("RUN", ["-x"], (2, 2))]),
    ("env-legacy", F + "ENV PATH /usr/local/bin:$PATH\n",
     [FROM1, I("ENV", ["PATH", "/usr/local/bin:$PATH"], (2, 2), pairs=(("PATH", "/usr/local/bin:$PATH"),))]),
    ("env-legacy-keeps-inner-spaces", F + "ENV K  v  w\n", [FROM1, I("ENV", ["K", "v  w"], (2, 2), pairs=(("K", "v  w"),))]),
    ("env-multi-quoted", F + "ENV a=\"x y\" b=c\\ d e='f g' f=\n",
     [FROM1, I("ENV", ["a", '"x y"', "b", "c\\ d", "e", "'f g'", "f", ""], (2, 2),
               pairs=(("a", '"x y"'), ("b", "c\\ d"), ("e", "'f g'"), ("f", "")))]),
    ("env-value-with-equals", F + "ENV X=a=b\n", [FROM1, I("ENV", ["X", "a=b"], (2, 2), pairs=(("X", "a=b"),))]),
    ("env-escaped-quote", F + 'ENV a=x\\"y b="q\\"r"\n',
     [FROM1, I("ENV", ["a", 'x\\"y', "b", '"q\\"r"'], (2, 2), pairs=(("a", 'x\\"y'), ("b", '"q\\"r"')))]),
    ("label-multi", F + 'LABEL "com.example.vendor"="ACME Inc" version=1.0\n',
     [FROM1, I("LABEL", ['"com.example.vendor"', '"ACME Inc"', "version", "1.0"], (2, 2),
               pairs=(('"com.example.vendor"', '"ACME Inc"'), ("version", "1.0")))]),
    ("label-continuation", F + "LABEL a=1 \\\n      b=2\n",
     [FROM1, I("LABEL", ["a", "1", "b", "2"], (2, 3), pairs=(("a", "1"), ("b", "2")))]),
    ("arg-forms", F + "ARG a b=2 c= d=\"x y\"\n",
     [FROM1, I("ARG", ["a", "b=2", "c=", 'd="x y"'], (2, 2),
               arg_defaults=(("a", None), ("b", "2"), ("c", ""), ("d", '"x y"')))]),
    ("meta-args", "ARG TAG=3.19\nARG BASE\nFROM alpine:${TAG}\n",
     [I("ARG", ["TAG=3.19"], (1, 1), arg_defaults=(("TAG", "3.19"),)), I("ARG", ["BASE"], (2, 2), arg_defaults=(("BASE", None),)),
      I("FROM", ["alpine:${TAG}"], (3, 3))]),
    ("from-platform", "FROM --platform=$BUILDPLATFORM golang:1.22 AS build\n",
     [I("FROM", ["golang:1.22", "AS", "build"], (1, 1), {"platform": ["$BUILDPLATFORM"]})]),
    ("expose", F + "EXPOSE 80/tcp  443 53/udp\n", [FROM1, I("EXPOSE", ["80/tcp", "443", "53/udp"], (2, 2))]),
    ("volume-json", F + 'VOLUME ["/data", "/var/log x"]\n', [FROM1, I("VOLUME", ["/data", "/var/log x"], (2, 2), json=True)]),
    ("volume-shell", F + "VOLUME /a /b\n", [FROM1, I("VOLUME", ["/a", "/b"], (2, 2), json=False)]),
    ("user-one-arg", F + "USER app:app\n", [FROM1, I("USER", ["app:app"], (2, 2))]),
    ("workdir-spaces-kept", F + "WORKDIR /my dir\n", [FROM1, I("WORKDIR", ["/my dir"], (2, 2))]),
    ("stopsignal", F + "STOPSIGNAL SIGKILL\n", [FROM1, I("STOPSIGNAL", ["SIGKILL"], (2, 2))]),
    ("maintainer", F + "MAINTAINER Jane Doe <jane@example.com>\n",
     [FROM1, I("MAINTAINER", ["Jane Doe <jane@example.com>"], (2, 2))]),
    ("healthcheck-none", F + "HEALTHCHECK NONE\n", [FROM1, I("HEALTHCHECK", ["NONE"], (2, 2))]),
    ("healthcheck-cmd-shell", F + "HEALTHCHECK --interval=5m --timeout=3s --start-period=1s "
     "--start-interval=2s --retries=3 CMD curl -f http://localhost/ || exit 1\n",
     [FROM1, I("HEALTHCHECK", ["CMD", "curl -f http://localhost/ || exit 1"], (2, 2),
               {"interval": ["5m"], "timeout": ["3s"], "start-period": ["1s"], "start-interval": ["2s"],
                "retries": ["3"]}, json=False)]),
    ("healthcheck-cmd-json", F + 'healthcheck cmd ["/bin/check", "-q"]\n',
     [FROM1, I("HEALTHCHECK", ["CMD", "/bin/check", "-q"], (2, 2), json=True)]),
    ("shell-json", F + 'SHELL ["/bin/bash", "-o", "pipefail", "-c"]\n',
     [FROM1, I("SHELL", ["/bin/bash", "-o", "pipefail", "-c"], (2, 2), json=True)]),
    ("onbuild", F + "ONBUILD RUN make install\n",
     [FROM1, I("ONBUILD", ["RUN make install"], (2, 2), trigger=("RUN", ["make install"], {}))]),
    ("onbuild-trigger-flags", F + "onbuild   COPY --from=build /a /b\n",
     [FROM1, I("ONBUILD", ["COPY --from=build /a /b"], (2, 2), trigger=("COPY", ["/a", "/b"], {"from": ["build"]}))]),
    ("heredoc-run", F + "RUN <<EOF\napt-get update\napt-get install -y vim\nEOF\nRUN after\n",
     [FROM1, I("RUN", ["<<EOF"], (2, 5), heredocs=[H("EOF", "apt-get update\napt-get install -y vim\n")]),
      I("RUN", ["after"], (6, 6))]),
    ("heredoc-quoted-no-expand", F + "RUN <<'EOF'\necho $HOME\nEOF\n",
     [FROM1, I("RUN", ["<<'EOF'"], (2, 4), heredocs=[H("EOF", "echo $HOME\n", expand=False)])]),
    ("heredoc-double-quoted-no-expand", F + 'COPY <<"EOT" /f\nx\nEOT\n',
     [FROM1, I("COPY", ['<<"EOT"', "/f"], (2, 4), heredocs=[H("EOT", "x\n", expand=False)])]),
    ("heredoc-chomp", F + "RUN <<-EOF\n\techo a\n\t\techo b\n  keep\n\tEOF\n",
     [FROM1, I("RUN", ["<<-EOF"], (2, 6), heredocs=[H("EOF", "echo a\necho b\n  keep\n", chomp=True)])]),
    ("heredoc-multiple", F + "COPY <<A <<B /dst/\na1\nA\nb1\nb2\nB\n",
     [FROM1, I("COPY", ["<<A", "<<B", "/dst/"], (2, 7), heredocs=[H("A", "a1\n"), H("B", "b1\nb2\n")])]),
    ("heredoc-with-command", F + "RUN cat <<EOF > /etc/motd\nhello\nEOF\n",
     [FROM1, I("RUN", ["cat <<EOF > /etc/motd"], (2, 4), heredocs=[H("EOF", "hello\n")])]),
    ("heredoc-body-comments-blank-kept", F + "RUN <<EOF\n# not stripped\n\n  x \\\nEOF\n",
     [FROM1, I("RUN", ["<<EOF"], (2, 6), heredocs=[H("EOF", "# not stripped\n\n  x \\\n")])]),
    ("heredoc-empty-body", F + "RUN <<EOF\nEOF\n", [FROM1, I("RUN", ["<<EOF"], (2, 3), heredocs=[H("EOF", "")])]),
    ("heredoc-in-quotes-ignored", F + "RUN echo '<<EOF'\n", [FROM1, I("RUN", ["echo '<<EOF'"], (2, 2), heredocs=[])]),
    ("heredoc-json-form-ignored", F + 'RUN ["sh", "-c", "cat <<EOF"]\n',
     [FROM1, I("RUN", ["sh", "-c", "cat <<EOF"], (2, 2), json=True, heredocs=[])]),
    ("heredoc-not-for-env", F + "ENV A=<<EOF\n", [FROM1, I("ENV", ["A", "<<EOF"], (2, 2), heredocs=[])]),
    ("heredoc-after-continuation", F + "RUN --network=none \\\n  <<EOF\nls\nEOF\n",
     [FROM1, I("RUN", ["<<EOF"], (2, 5), {"network": ["none"]}, heredocs=[H("EOF", "ls\n")])]),
    ("stages", "FROM a AS one\nRUN x\nFROM one\nFROM --platform=linux/arm64 b AS Two\nCOPY --from=one /a /b\n",
     [I("FROM", ["a", "AS", "one"], (1, 1)), I("RUN", ["x"], (2, 2)), I("FROM", ["one"], (3, 3)),
      I("FROM", ["b", "AS", "Two"], (4, 4), {"platform": ["linux/arm64"]}),
      I("COPY", ["/a", "/b"], (5, 5), {"from": ["one"]})]),
]


@pytest.mark.parametrize("text,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parser_vectors(text, expected):
    got = flat(text)
    assert [summary(g, e) for g, e in zip(got, expected)] == expected
    assert len(got) == len(expected)


# Stage/directive level expectations: (id, text, directives, escape, [(index, base, name, platform, n_body)], n_meta)
STAGE_CASES = [
    ("no-directives", "FROM a\n", {}, "\\", [(0, "a", None, None, 0)], 0),
    ("syntax-and-escape", "# syntax=docker/dockerfile:1.7\n# escape=`\nFROM a\n",
     {"syntax": "docker/dockerfile:1.7", "escape": "`"}, "`", [(0, "a", None, None, 0)], 0),
    ("directive-case-and-spaces", "#  ESCAPE =  `  \n#Syntax=x/y\n# check=skip=all;error=true\nFROM a\n",
     {"escape": "`", "syntax": "x/y", "check": "skip=all;error=true"}, "`", [(0, "a", None, None, 0)], 0),
    ("directive-after-comment-ignored", "# hello\n# escape=`\nFROM a\n", {}, "\\", [(0, "a", None, None, 0)], 0),
    ("directive-after-blank-ignored", "\n# escape=`\nFROM a\n", {}, "\\", [(0, "a", None, None, 0)], 0),
    ("unknown-directive-ends-directives", "# foo=bar\n# escape=`\nFROM a\n", {}, "\\", [(0, "a", None, None, 0)], 0),
    ("directive-after-instruction-is-comment", "FROM a\n# escape=`\nRUN x\n", {}, "\\", [(0, "a", None, None, 1)], 0),
    ("stage-names-lowercased", "ARG V\nFROM a AS Build\nRUN x\nRUN y\nFROM --platform=p build AS final\n", {}, "\\",
     [(0, "a", "build", None, 2), (1, "build", "final", "p", 0)], 1),
]


@pytest.mark.parametrize("text,directives,escape,stages,n_meta", [c[1:] for c in STAGE_CASES],
                         ids=[c[0] for c in STAGE_CASES])
def test_stage_and_directive_vectors(text, directives, escape, stages, n_meta):
    df = parse_dockerfile(text, filename="Dockerfile.test")
    assert df.directives == directives
    assert df.escape == escape
    assert [(s.index, s.base, s.name, s.platform, len(s.instructions)) for s in df.stages] == stages
    assert len(df.meta_args) == n_meta
    assert all(i.filename == "Dockerfile.test" for s in df.stages for i in s.instructions)


def test_empty_continuation_line_warns():
    df = parse_dockerfile("FROM a\nRUN a \\\n\nb\n")
    assert len(df.warnings) == 1 and "empty continuation" in df.warnings[0]


FLAG_KV_CASES = [
    ("type=cache,target=/root/.cache,id=go", {"type": "cache", "target": "/root/.cache", "id": "go"}),
    ("type=bind,rw", {"type": "bind", "rw": "true"}),
    ('type=secret,"target=/a,b",required', {"type": "secret", "target": "/a,b", "required": "true"}),
    ("Type=tmpfs,size=64m", {"type": "tmpfs", "size": "64m"}),
    ("type=cache,,target=/x", {"type": "cache", "target": "/x"}),
    ("target=/x,target=/y", {"target": "/y"}),
    ("source=a=b", {"source": "a=b"}),
    ('"a=""q""",b', {"a": '"q"', "b": "true"}),
    ("type=cache,", {"type": "cache"}),
]


@pytest.mark.parametrize("value,expected", FLAG_KV_CASES, ids=[c[0] for c in FLAG_KV_CASES])
def test_parse_flag_kv(value, expected):
    assert parse_flag_kv(value) == expected


@pytest.mark.parametrize("value", ['type="cache', "=x", '"type=cache', '"a"b,c'])
def test_parse_flag_kv_errors(value):
    with pytest.raises(ValueError):
        parse_flag_kv(value)
