"""COPY/ADD source wildcards follow Go's ``path/filepath.Match`` (Unix), as Docker/BuildKit do.

The table is Go's own ``matchTests`` (src/path/filepath/match_test.go) plus the cases where
Python's fnmatch differs: ``[^.]`` means "not a dot", ``[!a]`` is no negation, a malformed
pattern is an error (ErrBadPattern) rather than a literal.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import executor.context as ctxmod
from executor.context import Context, match_sources
from executor.errors import BuildError

ERR = "ErrBadPattern"

GO_TABLE = [
    ("abc", "abc", True), ("*", "abc", True), ("*c", "abc", True), ("a*", "a", True),
    ("a*", "abc", True), ("a*", "ab/c", False), ("a*/b", "abc/b", True), ("a*/b", "a/c/b", False),
    ("a*b*c*d*e*/f", "axbxcxdxe/f", True), ("a*b*c*d*e*/f", "axbxcxdxexxx/f", True),
    ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", False), ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", False),
    ("a*b?c*x", "abxbbxdbxebxczzx", True), ("a*b?c*x", "abxbbxdbxebxczzy", False),
    ("ab[c]", "abc", True), ("ab[b-d]", "abc", True), ("ab[e-g]", "abc", False),
    ("ab[^c]", "abc", False), ("ab[^b-d]", "abc", False), ("ab[^e-g]", "abc", True),
    ("a\\*b", "a*b", True), ("a\\*b", "ab", False),
    ("a?b", "a☺b", True), ("a[^a]b", "a☺b", True), ("a???b", "a☺b", False),
    ("a[^a][^a][^a]b", "a☺b", False), ("[a-ζ]*", "α", True), ("*[a-ζ]", "A", False),
    ("a?b", "a/b", False), ("a*b", "a/b", False),
    ("[\\]a]", "]", True), ("[\\-]", "-", True), ("[x\\-]", "x", True), ("[x\\-]", "-", True),
    ("[x\\-]", "z", False), ("[\\-x]", "x", True), ("[\\-x]", "-", True), ("[\\-x]", "a", False),
    ("[]a]", "]", ERR), ("[-]", "-", ERR), ("[x-]", "x", ERR), ("[x-]", "-", ERR), ("[x-]", "z", ERR),
    ("[-x]", "x", ERR), ("[-x]", "-", ERR), ("[-x]", "a", ERR), ("\\", "a", ERR), ("[a-b-c]", "a", ERR),
    ("[", "a", ERR), ("[^", "a", ERR), ("[^bc", "a", ERR), ("a[", "a", ERR), ("a[", "ab", ERR),
    ("a[", "x", ERR), ("a/b[", "x", ERR), ("*x", "xxx", True),
    # where fnmatch (the old matcher) differs from Go
    ("[^.]*", ".hidden", False), ("[^.]*", "x.txt", True), ("[^.]*", "^x", True),
    ("[!a]", "!", True), ("[!a]", "a", True), ("[!a]", "b", False),
    ("[!.]*", ".hidden", True), ("[!.]*", "x", False),
    ("\\[a]", "[a]", True), ("\\[a]", "a", False), ("a\\?", "a?", True), ("a\\?", "ab", False),
    ("[\\\\]", "\\", True), ("[*]", "*", True), ("[*]", "a", False), ("[?]", "a", False),
    ("[a-c]x", "bx", True), ("[c-a]", "b", False), ("[^c-a]", "b", True),
    ("[]", "a", ERR), ("[^]", "a", ERR), ("[]]", "]", ERR), ("x\\", "x", ERR), ("*[", "abc", ERR),
    ("[a]*[", "a", ERR), ("", "", True), ("", "a", False), ("**", "abc", True), ("a**c", "abc", True),
    ("*.txt", "a.txt", True), ("*.txt", "a.txt.bak", False), ("?", "", False), ("*", "", True),
    ("[^a]", "/", True), ("*a*", "xay", True), ("*a", "aaa", True), ("a*a", "a", False),
]


def _go(pattern: str, name: str):
    bad = getattr(ctxmod, "BadPattern", ())
    try:
        return ctxmod._match_component(pattern, name)
    except bad:  # type: ignore[misc]
        return ERR


@pytest.mark.parametrize("pattern,name,want", GO_TABLE)
def test_component_matcher_is_go_filepath_match(pattern, name, want):
    assert _go(pattern, name) == want


@pytest.fixture
def tree(tmp_path) -> Path:
    t = tmp_path / "ctx"
    t.mkdir()
    for name in (".hidden", "^x", "app.py", "!", "a", "b", "a*b", "a\\*", "[x]", "x"):
        (t / name).write_text(name)
    (t / "src").mkdir()
    return t


def _names(matches) -> list[str]:
    return [m.rel for m in matches]


@pytest.mark.parametrize("in_context", [True, False], ids=["context", "stage-root"])
def test_copy_sources_follow_go_wildcards(tree, in_context):
    """The same matcher serves the build context and stage/image roots."""
    context = Context(tree) if in_context else None
    assert _names(match_sources(tree, "[^.]*", context, "COPY")) == sorted(
        ["^x", "app.py", "!", "a", "b", "a*b", "a\\*", "[x]", "x", "src"])
    assert _names(match_sources(tree, "[!a]", context, "COPY")) == ["!", "a"]
    assert _names(match_sources(tree, "[[]x\\]", context, "COPY")) == ["[x]"]
    assert _names(match_sources(tree, "[[]x]", context, "COPY")) == ["[x]"]
    assert _names(match_sources(tree, "a?\\*", context, "COPY")) == ["a\\*"]  # '?' takes the backslash, then '*'
    with pytest.raises(BuildError, match="not found"):
        match_sources(tree, "?\\*", context, "COPY")  # no two-character name ends in '*'
    assert _names(match_sources(tree, "?\\*b", context, "COPY")) == ["a*b"]


@pytest.mark.parametrize("in_context", [True, False], ids=["context", "stage-root"])
def test_components_before_the_first_wildcard_are_literal(tree, in_context):
    """BuildKit (fsutil copy, splitWildcards/containsWildcards): components before the first
    one with an unescaped wildcard are taken literally, backslashes included; from that one on
    every component is a filepath.Match pattern (escapes processed)."""
    context = Context(tree) if in_context else None
    (tree / "d\\x").mkdir()
    (tree / "d\\x" / "f").write_text("f")
    (tree / "d1").mkdir()
    (tree / "d1" / "a*b").write_text("1")
    (tree / "d1" / "a\\*b").write_text("2")
    assert _names(match_sources(tree, "a\\*", context, "COPY")) == ["a\\*"]
    assert _names(match_sources(tree, "d\\x/f", context, "COPY")) == ["d\\x/f"]
    assert _names(match_sources(tree, "d\\x/?", context, "COPY")) == ["d\\x/f"]
    assert _names(match_sources(tree, "d?/a\\*b", context, "COPY")) == ["d1/a*b"]
    with pytest.raises(BuildError, match="not found"):
        match_sources(tree, "a\\*b", context, "COPY")  # the literal name a\*b does not exist


@pytest.mark.parametrize("in_context", [True, False], ids=["context", "stage-root"])
@pytest.mark.parametrize("pattern", ["[", "src/[", "src/a[", "[]a]", "nothere/[x-]", "*/[", "*/x\\", "[^"])
def test_malformed_wildcard_is_a_clear_error(tree, in_context, pattern):
    """Go returns ErrBadPattern and Docker fails the COPY: so does the executor, naming the
    source, also when the directory holds nothing that could be matched."""
    context = Context(tree) if in_context else None
    with pytest.raises(BuildError, match=r"malformed wildcard") as e:
        match_sources(tree, pattern, context, "COPY")
    assert repr(pattern) in str(e.value)
