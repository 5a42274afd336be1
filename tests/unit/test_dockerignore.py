"""Table-driven .dockerignore vectors (moby/patternmatcher semantics)."""

from __future__ import annotations

from pathlib import Path

import pytest

from executor.dockerfile.ignore import DockerIgnore, clean_pattern, find_dockerignore

# (id, patterns, path, expected excluded)
CASES = [
    ("star-top-level", ["*.md"], "README.md", True),
    ("star-not-nested", ["*.md"], "docs/README.md", False),
    ("doublestar-nested", ["**/*.md"], "docs/a/README.md", True),
    ("doublestar-zero-dirs", ["**/*.md"], "README.md", True),
    ("dir-excludes-children", ["docs"], "docs/a/b.txt", True),
    ("dir-itself", ["docs"], "docs", True),
    ("trailing-slash-cleaned", ["docs/"], "docs/x", True),
    ("leading-slash-dropped", ["/docs"], "docs/x", True),
    ("path-clean", ["./docs//sub/../x"], "docs/x", True),
    ("not-a-prefix", [".git"], ".gitignore", False),
    ("exception-reincludes", ["*", "!keep.txt"], "keep.txt", False),
    ("exception-others-excluded", ["*", "!keep.txt"], "other.txt", True),
    ("last-match-wins", ["!keep.txt", "*"], "keep.txt", True),
    ("exception-inside-dir", ["dir", "!dir/keep"], "dir/keep", False),
    ("exception-inside-dir-other", ["dir", "!dir/keep"], "dir/other", True),
    ("exception-then-reexclude", ["dir", "!dir/keep", "dir/keep/tmp"], "dir/keep/tmp/x", True),
    ("comment-line", ["# comment"], "# comment", False),
    ("hash-not-at-col0-is-pattern", [" #x"], "#x", True),
    ("whitespace-trimmed", ["  spaced.txt  "], "spaced.txt", True),
    ("question-mark", ["a?c"], "abc", True),
    ("question-not-slash", ["a?c"], "a/c", False),
    ("char-class", ["[a-c]x"], "bx", True),
    ("char-class-miss", ["[a-c]x"], "dx", False),
    ("negated-class", ["[^a]x"], "bx", True),
    ("negated-class-miss", ["[^a]x"], "ax", False),
    ("bang-class-is-literal", ["[!a]x"], "!x", True),
    ("bang-class-not-negation", ["[!a]x"], "bx", False),
    ("leading-doublestar-suffix", ["**foo"], "barfoo", True),
    ("leading-doublestar-slash-suffix", ["**/foo"], "foo", True),
    ("leading-doublestar-slash-suffix-nested", ["**/foo"], "a/b/foo", True),
    ("regex-chars-literal", ["a+b(1).txt"], "a+b(1).txt", True),
    ("dir-doublestar-children", ["dir/**"], "dir/a/b", True),
    ("dir-doublestar-not-dir", ["dir/**"], "dir", False),
    ("doublestar-all", ["**"], "any/thing", True),
    ("middle-doublestar-zero", ["a/**/b"], "a/b", True),
    ("middle-doublestar-many", ["a/**/b"], "a/x/y/b", True),
    ("middle-doublestar-not-suffix", ["a/**/b"], "a/xb", False),
    ("escaped-star", ["\\*literal"], "*literal", True),
    ("escaped-star-literal-only", ["\\*literal"], "xliteral", False),
    ("nested-log-not-matched", ["*.log", "!important.log"], "logs/x.log", False),
    ("star-dir-star", ["*/temp*"], "a/temporary", True),
    ("star-dir-star-depth", ["*/temp*"], "a/b/temporary", False),
    ("root-never-excluded", ["*"], "", False),
    ("dot-slash-path", ["a.txt"], "./a.txt", True),
    ("empty-rules", [], "anything", False),
    ("blank-lines-skipped", ["", "   ", "x"], "x", True),
]


@pytest.mark.parametrize("patterns,path,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_excluded(patterns, path, expected):
    assert DockerIgnore.from_lines(patterns).excluded(path) is expected


# (id, patterns, excluded dir, expected dir_may_contain_included)
DESCEND_CASES = [
    ("no-exceptions", ["dir"], "dir", False),
    ("exception-below", ["dir", "!dir/keep"], "dir", True),
    ("exception-elsewhere", ["dir", "!other/x"], "dir", False),
    ("exception-doublestar", ["dir", "!**/keep"], "dir", True),
    ("exception-star-dir", ["dir", "!*/keep"], "dir", True),
    ("exception-star-dir-too-deep", ["dir", "!*/keep"], "dir/sub", False),
    ("exception-is-dir", ["dir", "!dir"], "dir", True),
    ("exception-deeper", ["a", "!a/b/c/d"], "a/b", True),
    ("exception-sibling", ["a", "!a/b/c"], "a/x", False),
]


@pytest.mark.parametrize("patterns,path,expected", [c[1:] for c in DESCEND_CASES], ids=[c[0] for c in DESCEND_CASES])
def test_dir_may_contain_included(patterns, path, expected):
    assert DockerIgnore.from_lines(patterns).dir_may_contain_included(path) is expected


@pytest.mark.parametrize(
    "raw,cleaned",
    [("/a/../b/", "b"), ("/", "/"), ("./x", "x"), ("a//b", "a/b"), ("//a", "a"), ("a/./b/.", "a/b")],
)
def test_clean_pattern(raw, cleaned):
    assert clean_pattern(raw) == cleaned


@pytest.mark.parametrize("lines", [["!"], ["[abc"]])
def test_bad_patterns_are_errors(lines):
    with pytest.raises(ValueError):
        DockerIgnore.from_lines(lines)


def test_from_file(tmp_path: Path):
    f = tmp_path / ".dockerignore"
    f.write_text("\ufeff# comment\r\nnode_modules\r\n!node_modules/keep\r\n*.tmp\n", encoding="utf-8")
    ig = DockerIgnore.from_file(f)
    assert ig.excluded("node_modules/x/y.js") is True
    assert ig.excluded("node_modules/keep") is False
    assert ig.excluded("a.tmp") is True
    assert ig.excluded("src/main.py") is False
    assert DockerIgnore.from_file(None).excluded("anything") is False


def test_find_dockerignore(tmp_path: Path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    df = tmp_path / "build" / "app.Dockerfile"
    df.parent.mkdir()
    df.write_text("FROM a\n")
    assert find_dockerignore(ctx, df) is None
    (ctx / ".dockerignore").write_text("x\n")
    assert find_dockerignore(ctx, df) == ctx / ".dockerignore"
    specific = df.parent / "app.Dockerfile.dockerignore"
    specific.write_text("y\n")
    assert find_dockerignore(ctx, df) == specific
