"""Bounded property-based fuzzing of the Dockerfile parser, the typed loader and the shell
lexer (issue 11): every input either succeeds or fails with DockerfileError (parser, loader)
or ExpansionError (lexer) - never another exception such as RecursionError or a bare
ValueError. Plus the explicit inputs that used to crash.

Hypothesis runs without an example database (nothing is written to the tree) and with a
fixed example budget, so the module runs in a few seconds.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from executor.dockerfile.instructions import load_dockerfile
from executor.dockerfile.parser import parse_dockerfile
from executor.dockerfile.shell import (ExpansionError, expand_heredoc, expand_word, expand_word_with_usage,
                                       expand_words, process)
from executor.errors import DockerfileError

FUZZ = settings(max_examples=600, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow])

# Dockerfile fragments: keywords, flags and values (good and bad), quotes, brackets, escapes,
# heredocs, directives, line ends.
DOCKERFILE_TOKENS = [
    "FROM ", "FROM a\n", "FROM a AS b\n", "RUN ", "CMD ", "COPY ", "ADD ", "ENV ", "LABEL ", "ARG ", "HEALTHCHECK ",
    "ONBUILD ", "SHELL ", "EXPOSE ", "VOLUME ", "USER ", "WORKDIR ", "STOPSIGNAL ", "MAINTAINER ", "ENTRYPOINT ",
    " AS ", "\n", " ", "\t", "\\\n", "`\n", "\r\n", "# escape=`\n", "# syntax=x\n", "# check=a\n", "#", "\ufeff",
    "--mount=", "--mount=type=cache,target=/x ", "type=", "ssh", "secret", "tmpfs", "bind", "target=", "id=",
    "mode=", "size=", "uid=", "sharing=", "rw", ",", "--network=", "none", "host", "--security=", "insecure",
    "--chmod=", "--chown=", "--from=", "--link", "--interval=", "--retries=", "--timeout=", "--start-period=",
    ".5s", "1m", "-1", "10us", "NONE ", "CMD ", "[", "]", "[[[[", '"', "'", "$", "${", "}", ":-", ":?", "#", "%",
    "/", "<<", "<<-", "3<<", "EOF", "EOF\n", "'EOF'", "=", "a", "b", "*", "\\", "`", "0", "9" * 25, "{", ":", "é",
    "--", "--platform=", "--parents", "--exclude=", "--checksum=", "--unpack=", "--keep-git-dir", "--device=",
    "true", "false", "null", "1e5", '["a"]', '["a", 1]',
]
SHELL_TOKENS = ["$", "${", "}", "{", ":", "-", "+", "?", "#", "%", "/", "*", "'", '"', "\\", "`", " ", "\t", "\n",
                "A", "B", "E", "_", "1", "@", "é", "²", "${A:-", "${A/", "${A#", "${A%%", "$A", "x"]
ENV = {"A": "a b", "B": "", "E": "*", "P": "/usr/bin"}


def _text(tokens: list[str]) -> st.SearchStrategy[str]:
    piece = st.one_of(st.sampled_from(tokens), st.text(max_size=3))
    return st.lists(piece, max_size=40).map("".join)


def _check_dockerfile_error(err: DockerfileError, text: str) -> None:
    assert err.filename == "Dockerfile.fuzz"
    assert str(err).startswith("Dockerfile.fuzz")
    n_lines = text.count("\n") + 1
    assert 0 <= err.start <= err.end <= n_lines, (err.start, err.end, n_lines)


@FUZZ
@given(_text(DOCKERFILE_TOKENS))
def test_parse_and_load_end_in_success_or_dockerfile_error(text):
    for load in (parse_dockerfile, load_dockerfile):
        try:
            load(text, "Dockerfile.fuzz")
        except DockerfileError as err:
            _check_dockerfile_error(err, text)


@FUZZ
@given(_text(SHELL_TOKENS), st.sampled_from(["\\", "`"]), st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_shell_lexer_ends_in_success_or_expansion_error(word, escape, raw_quotes, raw_escapes, skip_unset, skip_quotes):
    try:
        res = process(word, ENV, escape, raw_quotes=raw_quotes, raw_escapes=raw_escapes, skip_unset=skip_unset,
                      skip_quotes=skip_quotes)
    except ExpansionError:
        res = None
    try:
        got = expand_word(word, ENV, escape)
        assert got == process(word, ENV, escape).result
        assert expand_words(word, ENV, escape) == process(word, ENV, escape).words
        assert expand_word_with_usage(word, ENV, escape)[0] == got
    except ExpansionError:
        pass
    try:
        expand_heredoc(word, ENV)
    except ExpansionError:
        pass
    if res is not None:
        assert all(w for w in res.words)  # field splitting never yields empty words


DEEP = 100_000

# (id, Dockerfile text) that used to raise RecursionError / ValueError
CRASHERS = [
    ("cmd-nested-brackets", "FROM a\nCMD " + "[" * DEEP + "\n"),
    ("run-nested-brackets", "FROM a\nRUN " + "[" * DEEP + "\n"),
    ("copy-nested-brackets", "FROM a\nCOPY " + "[" * DEEP + " /x\n"),
    ("volume-nested-brackets", "FROM a\nVOLUME " + "[" * DEEP + "\n"),
    ("shell-nested-brackets", "FROM a\nSHELL " + "[" * DEEP + "\n"),
    ("healthcheck-nested-brackets", "FROM a\nHEALTHCHECK CMD " + "[" * DEEP + "\n"),
    ("onbuild-nested-brackets", "FROM a\nONBUILD ENTRYPOINT " + "[" * DEEP + "\n"),
    ("valid-deep-json", "FROM a\nCMD " + "[" * 5000 + "]" * 5000 + "\n"),
    ("heredoc-marker-nesting", "FROM a\nRUN <<" + "${a:-" * 5000 + "\n"),
    ("heredoc-marker-quoted-nesting", 'FROM a\nRUN <<"' + '${a:-"' * 5000 + "\n"),
    ("heredoc-huge-fd", "FROM a\nRUN " + "9" * 5000 + "<<EOF\nx\nEOF\n"),
    ("huge-duration", "FROM a\nHEALTHCHECK --interval=" + "9" * 10000 + "s CMD x\n"),
    ("huge-retries", "FROM a\nHEALTHCHECK --retries=" + "9" * 10000 + " CMD x\n"),
    ("huge-mount-uid", "FROM a\nRUN --mount=type=cache,target=/x,uid=" + "9" * 10000 + " x\n"),
    ("huge-mount-size", "FROM a\nRUN --mount=type=tmpfs,target=/x,size=" + "9" * 10000 + " x\n"),
    ("huge-chmod", "FROM a\nCOPY --chmod=" + "7" * 10000 + " a b\n"),
]
# not a heredoc (the fd is ASCII digits only, as Go's \d): the body line is an instruction
NOT_HEREDOC = "FROM a\nRUN ٣<<EOF\nx\nEOF\n"


@pytest.mark.parametrize("text", [c[1] for c in CRASHERS], ids=[c[0] for c in CRASHERS])
def test_former_crashers(text):
    for load in (parse_dockerfile, load_dockerfile):
        try:
            load(text, "Dockerfile.fuzz")
        except DockerfileError as err:
            _check_dockerfile_error(err, text)
            assert err.start == 2  # the offending instruction's line
            assert len(str(err)) < 500  # one readable line, not the whole value


def test_unicode_digit_fd_is_not_a_heredoc():
    with pytest.raises(DockerfileError, match="unknown instruction: x") as info:
        load_dockerfile(NOT_HEREDOC)
    assert info.value.start == 3


def test_deep_json_decisions_follow_go():
    # Deeper than the Python stack: valid nested arrays are rejected as non-string arrays
    # (as Go's decoder, up to its 10 000 levels), invalid ones are shell form.
    df = parse_dockerfile("FROM a\nCMD " + "[" * DEEP + "\n")
    (cmd,) = df.stages[0].instructions
    assert (cmd.json_form, len(cmd.args[0])) == (False, DEEP)
    with pytest.raises(DockerfileError, match="comprised of strings only") as info:
        parse_dockerfile("FROM a\nCMD " + "[" * 5000 + "]" * 5000 + "\n")
    assert (info.value.start, info.value.end) == (2, 2)
    df = parse_dockerfile("FROM a\nCMD " + "[" * 20000 + "]" * 20000 + "\n")  # beyond Go's limit: not JSON
    assert df.stages[0].instructions[0].json_form is False


@pytest.mark.parametrize("word", [
    "${a:-" * 200 + "x" + "}" * 200,
    '"${a:-' * 5000,
    "${a:-" * DEEP,
    "${a/" * 5000,
])
def test_deep_substitution_nesting_is_an_expansion_error(word):
    with pytest.raises(ExpansionError, match="nested"):
        expand_word(word, {})
    with pytest.raises(ExpansionError):
        process(word, {}, raw_quotes=True, raw_escapes=True, skip_unset=True)


def test_nesting_within_the_limit_expands():
    word = "${a:-" * 50 + "x" + "}" * 50
    assert expand_word(word, {}) == "x"
