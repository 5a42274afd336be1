"""Parser hardening (issue 11): linear-time expansion and line reading of large values, the
backslash as an ordinary character under ``# escape=`\x60``, and the split parser modules keeping
``executor.dockerfile.parser``'s public names."""

from __future__ import annotations

import time

import pytest

from executor.dockerfile import parser
from executor.dockerfile.instructions import Copy, Env, Label, Run, Workdir, load_dockerfile
from executor.dockerfile.shell import expand_word, expand_words
from executor.errors import DockerfileError

MIB = 1 << 20
GUARD_S = 5.0  # a guard against quadratic behaviour, not a benchmark (1 MiB takes milliseconds)


def _timed(fn, *args):
    t0 = time.monotonic()
    out = fn(*args)
    return out, time.monotonic() - t0


@pytest.mark.parametrize("word,env,expected", [
    ("v" * MIB, {}, "v" * MIB),
    ('"' + "v " * (MIB // 2) + '"', {}, "v " * (MIB // 2)),
    ("'" + "q" * MIB + "'", {}, "q" * MIB),
    ("$A" * (MIB // 8), {"A": "xy"}, "xy" * (MIB // 8)),
    ("\\$" * (MIB // 8), {}, "$" * (MIB // 8)),
], ids=["plain", "double-quoted", "single-quoted", "variables", "escapes"])
def test_one_mib_word_expands_in_linear_time(word, env, expected):
    got, took = _timed(expand_word, word, env)
    assert got == expected
    assert took < GUARD_S, f"{took:.2f}s"


def test_one_mib_label_loads_and_expands():
    value = "x" * MIB
    df, took = _timed(load_dockerfile, f"FROM a\nLABEL big={value}\n")
    (label,) = df.stages[0].instructions
    assert isinstance(label, Label) and label.pairs == (("big", value),)
    got, took2 = _timed(df.expand_word, label.pairs[0][1], {})
    assert got == value
    assert took + took2 < GUARD_S


def test_field_splitting_of_a_large_word():
    words, took = _timed(expand_words, "a b " * (MIB // 4), {})
    assert words == ["a", "b"] * (MIB // 4)
    assert took < GUARD_S


@pytest.mark.parametrize("text,error", [
    ("FROM a\nRUN " + "v \\\n" * (MIB // 4) + "\n", None),                 # many continuation lines
    ("# escape=`" + " " * 100_000 + "\nFROM a\n", None),                     # trailing spaces of a directive
    ("# escape=a" + " " * 100_000 + "b\nFROM a\n", "invalid escape token"),  # was quadratic
    ("FROM a\n" + "RUN x\n" * 20_000, None),                                 # many instructions
], ids=["continuations", "directive-trailing-spaces", "directive-inner-spaces", "instructions"])
def test_large_files_load_in_linear_time(text, error):
    t0 = time.monotonic()
    if error is None:
        load_dockerfile(text)
    else:
        with pytest.raises(DockerfileError, match=error):
            load_dockerfile(text)
    took = time.monotonic() - t0
    assert took < GUARD_S, f"{took:.2f}s"


BACKTICK = "# escape=`\n"


@pytest.mark.parametrize("line,field,raw,expanded", [
    ("COPY dir\\file.txt /x/", "sources", "dir\\file.txt", "dir\\file.txt"),
    ('COPY ["dir\\\\file.txt", "c:\\\\dst\\\\"]', "sources", "dir\\file.txt", "dir\\file.txt"),
    ("COPY a\\b c:\\dst\\", "dest", "c:\\dst\\", "c:\\dst\\"),
    ("WORKDIR c:\\app\\$SUB", "path", "c:\\app\\$SUB", "c:\\app\\s"),
    ("WORKDIR c:\\app\\`$SUB", "path", "c:\\app\\`$SUB", "c:\\app\\$SUB"),
    ('ENV P="c:\\Program Files\\x"', "pairs", '"c:\\Program Files\\x"', "c:\\Program Files\\x"),
    ("LABEL k=a\\b", "pairs", "a\\b", "a\\b"),
])
def test_backslash_is_literal_under_backtick_escape(line, field, raw, expanded):
    df = load_dockerfile(BACKTICK + "FROM a\n" + line + "\n")
    assert df.escape == "`"
    (ins,) = df.stages[0].instructions
    value = getattr(ins, field)
    if field == "sources":
        value = value[0]
    elif field == "pairs":
        value = value[0][1]
    assert value == raw
    env = {"SUB": "s"}
    assert df.expand_word(value, env) == expanded
    assert expand_word(value, env, escape=df.escape) == expanded


def test_backtick_continuation_and_escape_still_work():
    df = load_dockerfile(BACKTICK + "FROM a\nRUN dir `\n  c:\\\nENV A=x`$B\n")
    run, env = df.stages[0].instructions
    assert isinstance(run, Run) and run.command.words == ("dir   c:\\",)
    assert isinstance(env, Env) and df.expand_word(env.pairs[0][1], {"B": "b"}) == "x$B"


def test_default_escape_still_drops_backslash():
    df = load_dockerfile("FROM a\nCOPY dir\\file.txt /x/\nWORKDIR /a\\ b\n")
    copy, workdir = df.stages[0].instructions
    assert isinstance(copy, Copy) and df.expand_word(copy.sources[0], {}) == "dirfile.txt"
    assert isinstance(workdir, Workdir) and df.expand_word(workdir.path, {}) == "/a b"


def test_parser_module_keeps_its_public_names():
    for name in ("parse_dockerfile", "Instruction", "Stage", "Dockerfile", "Heredoc", "parse_flag_kv",
                 "parse_go_duration", "FLAG_SPECS", "INSTRUCTIONS", "iter_instructions"):
        assert hasattr(parser, name), name
    assert parser.parse_go_duration(".5s") == 0.5
    df = parser.parse_dockerfile("ARG A\nFROM a\nRUN x\n")
    assert [i.name for i in parser.iter_instructions(df)] == ["ARG", "FROM", "RUN"]
