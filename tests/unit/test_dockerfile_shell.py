"""Table-driven shell-lexer vectors (BuildKit frontend/dockerfile/shell behaviour).

Each case states the input word, the environment and the exact expected
result of expand_word (ProcessWord) or expand_words (ProcessWords), or the
fragment an ExpansionError must contain.
"""

from __future__ import annotations

import pytest

from executor.dockerfile.shell import (
    ExpansionError,
    expand_heredoc,
    expand_word,
    expand_word_with_usage,
    expand_words,
    process,
)

ENV = {
    "PWD": "/home",
    "SHELL": "bash",
    "KOREAN": "한국어",
    "NULL": "",
    "WS": " a  b ",
    "FILE": "app.tar.gz",
    "P": "/usr/local/bin/tool",
    "STARS": "a*b*c",
}

# (word, expected expand_word result) with ENV and the default "\" escape
WORD_CASES = [
    # plain text, quotes, escapes
    ("hello", "hello"),
    ("he'll'o", "hello"),
    ('he"ll"o', "hello"),
    ("he\\'llo", "he'llo"),
    ('"he\\"llo"', 'he"llo'),
    ("'he\\llo'", "he\\llo"),
    ('"he\\llo"', "he\\llo"),
    ('"a\\\\b"', "a\\b"),
    ("'a\"b'", 'a"b'),
    ("\"a'b\"", "a'b"),
    ("a\\ b", "a b"),
    ("\\\\", "\\"),
    ("a\\", "a"),
    ("''", ""),
    ('""', ""),
    # $ references
    ("$PWD", "/home"),
    ("${PWD}", "/home"),
    ("\\$PWD", "$PWD"),
    ('"\\$PWD"', "$PWD"),
    ("'$PWD'", "$PWD"),
    ('"$PWD"', "/home"),
    ('"${PWD}/x"', "/home/x"),
    ("$PWD/x", "/home/x"),
    ("${PWD}x", "/homex"),
    ("$PWDx", ""),
    ("${PWD}${SHELL}", "/homebash"),
    ("$", "$"),
    ("a$", "a$"),
    ("$ a", "$ a"),
    ("$-", ""),
    ("$1", ""),
    ("$1x", "x"),
    ("$KOREAN", "한국어"),
    ("${UNSET}", ""),
    ("$WS", " a  b "),
    # :- and -
    ("${KOREAN:-x}", "한국어"),
    ("${NULL:-def}", "def"),
    ("${NULL-def}", ""),
    ("${UNSET-def}", "def"),
    ("${UNSET:-def}", "def"),
    ("${UNSET:-$PWD}", "/home"),
    ("${UNSET:-'quoted $x'}", "quoted $x"),
    ("${UNSET:-a b}", "a b"),
    ("${UNSET:-${SHELL:-x}}", "bash"),
    ("${UNSET:-a\\}b}", "a}b"),
    # :+ and +
    ("${PWD:+set}", "set"),
    ("${NULL:+set}", ""),
    ("${NULL+set}", "set"),
    ("${UNSET+set}", ""),
    ("${UNSET:+set}", ""),
    ("x${PWD:+'$y'}", "x$y"),
    # :? and ? when set
    ("${PWD:?msg}", "/home"),
    ("${NULL?msg}", ""),
    # # and ## (prefix), % and %% (suffix)
    ("${FILE#*.}", "tar.gz"),
    ("${FILE##*.}", "gz"),
    ("${FILE%.*}", "app.tar"),
    ("${FILE%%.*}", "app"),
    ("${P##*/}", "tool"),
    ("${P%/*}", "/usr/local/bin"),
    ("${P#/usr}", "/local/bin/tool"),
    ("${FILE#app}", ".tar.gz"),
    ("${FILE#nomatch}", "app.tar.gz"),
    ("${FILE#a?p}", ".tar.gz"),
    ("${FILE%.gz}", "app.tar"),
    ("${FILE%%*}", ""),
    ("${FILE#*}", "app.tar.gz"),
    ("${STARS#*\\*}", "b*c"),
    ("${STARS%\\**}", "a*b"),
    ("${KOREAN#한}", "국어"),
    ("${UNSET#x}", ""),
    # / and // (replace; BuildKit has no bracket expressions: [ ] are literal)
    ("${FILE/tar/zip}", "app.zip.gz"),
    ("${FILE//a/A}", "App.tAr.gz"),
    ("${FILE/*./X}", "Xgz"),
    ("${FILE/nomatch/x}", "app.tar.gz"),
    ("${FILE//./}", "apptargz"),
    ("${FILE/[a]/x}", "app.tar.gz"),
    ("${P//\\//_}", "_usr_local_bin_tool"),
    ("${FILE//?/x}", "xxxxxxxxxx"),
    ("${UNSET/a/b}", ""),
    ("${STARS//\\*/-}", "a-b-c"),
]


@pytest.mark.parametrize("word,expected", WORD_CASES, ids=[c[0] for c in WORD_CASES])
def test_expand_word(word, expected):
    assert expand_word(word, ENV) == expected


# backtick escape directive: (word, expected)
BACKTICK_CASES = [
    ("a`$PWD", "a$PWD"),
    ("C:\\path\\to", "C:\\path\\to"),
    ('"a`"b"', 'a"b'),
    ('"a\\"', "a\\"),
    ("a`", "a"),
    ("'`'", "`"),
    ("a` b", "a b"),
    ("``", "`"),
    ('"``"', "`"),
    ("$PWD\\x", "/home\\x"),
]


@pytest.mark.parametrize("word,expected", BACKTICK_CASES, ids=[c[0] for c in BACKTICK_CASES])
def test_expand_word_backtick_escape(word, expected):
    assert expand_word(word, ENV, escape="`") == expected


# (word, expected expand_words result)
WORDS_CASES = [
    ("a b c", ["a", "b", "c"]),
    ("  leading  trailing  ", ["leading", "trailing"]),
    ("a  'b c'", ["a", "b c"]),
    ('"a  b" c', ["a  b", "c"]),
    ("$WS", ["a", "b"]),
    ('"$WS"', [" a  b "]),
    ("x$WS", ["x", "a", "b"]),
    ("a\\ b", ["a b"]),
    ("''", []),
    ("a '' b", ["a", "b"]),
    ("${UNSET:-a b}", ["a", "b"]),
    ('"${UNSET:-a b}"', ["a b"]),
    ("$NULL", []),
    ("$PWD/x $SHELL", ["/home/x", "bash"]),
    ("a\tb\nc", ["a", "b", "c"]),
]


@pytest.mark.parametrize("word,expected", WORDS_CASES, ids=[c[0] for c in WORDS_CASES])
def test_expand_words(word, expected):
    assert expand_words(word, ENV) == expected


# (word, fragment of the ExpansionError message)
ERROR_CASES = [
    ("${UNSET:?boom}", "UNSET: boom"),
    ("${UNSET?custom message}", "UNSET: custom message"),
    ("${UNSET?}", "UNSET: is not allowed to be unset"),
    ("${NULL:?}", "NULL: is not allowed to be empty"),
    ("${UNSET:?}", "UNSET: is not allowed to be unset"),
    ("'unterminated", "matching single-quote"),
    ('"unterminated', "matching double-quote"),
    ('"ends in escape\\', "matching double-quote"),
    ("${PWD", "missing '}'"),
    ("${", "missing '}'"),
    ("${PWD:-x", "missing '}'"),
    ("${}", "bad substitution"),
    ("${:-x}", "bad substitution"),
    ("${{PWD}}", "bad substitution"),
    ("${PWD:x}", "unsupported modifier (:x)"),
    ("${PWD^}", "unsupported modifier (^)"),
    ("${PWD/a}", "missing '/' in ${}"),
    ("${FILE#\\x}", "invalid escape"),
]


@pytest.mark.parametrize("word,fragment", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_expansion_errors(word, fragment):
    with pytest.raises(ExpansionError) as info:
        expand_word(word, ENV)
    assert fragment in str(info.value)
    assert info.value.word == word


USAGE_CASES = [
    ("$A ${B:-x} $A", {"A": "1"}, "1 x 1", {"A", "B"}),
    ("'$A' \\$B", {"A": "1"}, "$A $B", set()),
    ("${A:+${C}}", {"A": "1", "C": "c"}, "c", {"A", "C"}),
    ("plain", {}, "plain", set()),
]


@pytest.mark.parametrize("word,env,expected,names", USAGE_CASES, ids=[c[0] for c in USAGE_CASES])
def test_expand_word_with_usage(word, env, expected, names):
    assert expand_word_with_usage(word, env) == (expected, names)


def test_process_modes():
    # raw quotes/escapes keep the characters; skip_unset leaves unknown references alone
    assert process("'a' \"b\" c\\ d", {}, raw_quotes=True, raw_escapes=True).result == "'a' \"b\" c\\ d"
    assert process("$X ${Y} ${Z:-d}", {}, skip_unset=True).result == "$X ${Y} ${Z:-d}"
    res = process("$A $B", {"A": "1"})
    assert (res.matched, res.unmatched) == (frozenset({"A"}), frozenset({"B"}))


HEREDOC_CASES = [
    ('echo "$PWD" \'$SHELL\'\n', 'echo "/home" \'bash\'\n'),
    ("price: \\$5 it's ${UNSET:-free}\n", "price: $5 it's free\n"),
    ("a\nb\n", "a\nb\n"),
]


@pytest.mark.parametrize("content,expected", HEREDOC_CASES, ids=[c[0] for c in HEREDOC_CASES])
def test_expand_heredoc_keeps_quotes(content, expected):
    assert expand_heredoc(content, ENV) == expected
