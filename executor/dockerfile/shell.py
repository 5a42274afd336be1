"""Shell-style word expansion for Dockerfile instructions.

Behaviour follows the BuildKit Dockerfile frontend's shell lexer
(moby/buildkit ``frontend/dockerfile/shell/lex.go``): ``$V``, ``${V}`` and the
``${V<op>word}`` modifiers ``:-  -  :+  +  :?  ?  #  ##  %  %%  /  //``,
single and double quotes, the escape character (``\\`` or, with the
``# escape=`` directive, a backtick), and optional field splitting on unquoted
whitespace.  There is no command substitution, arithmetic or tilde expansion.

Notable BuildKit quirks that are reproduced on purpose:

* Pattern operators support ``*`` and ``?`` only; ``[`` and ``]`` are literal
  characters (BuildKit does not implement bracket expressions).
* An escape character at the very end of the word is dropped.
* In double quotes the escape character only escapes ``"``, ``$`` and itself.
* Field splitting (:func:`expand_words`) splits the *result* of unquoted
  ``$`` expansions as well as unquoted literal whitespace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Mapping

__all__ = [
    "ExpansionError",
    "ExpansionResult",
    "process",
    "expand_word",
    "expand_words",
    "expand_word_with_usage",
    "expand_heredoc",
]

_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class ExpansionError(ValueError):
    """A word cannot be expanded: bad ``${...}`` syntax, unterminated quote, or
    ``${V:?msg}`` / ``${V?msg}`` with ``V`` unset (or empty).  The message
    names the word and the cause, e.g. ``failed to process "${V:?boom}": V: boom``.

    ``detail`` holds the cause alone (``V: boom``).
    """

    def __init__(self, detail: str, word: str | None = None):
        self.detail = detail
        self.word = word
        super().__init__(f"failed to process {_go_quote(word)}: {detail}" if word is not None else detail)


@dataclass(frozen=True)
class ExpansionResult:
    """Outcome of :func:`process`.

    ``result``: the expanded word (no field splitting); ``words``: the
    field-split words; ``matched``: names that were looked up and found in the
    environment; ``unmatched``: names looked up but not set.
    """

    result: str
    words: list[str]
    matched: frozenset[str] = field(default_factory=frozenset)
    unmatched: frozenset[str] = field(default_factory=frozenset)


def _go_quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class _Words:
    """Accumulates field-split words (BuildKit's wordsStruct semantics)."""

    __slots__ = ("word", "words", "in_word")

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw_char(ch)

    def add_raw_char(self, ch: str) -> None:
        self.word += ch
        self.in_word = True

    def add_string(self, s: str) -> None:
        for ch in s:
            self.add_char(ch)

    def add_raw_string(self, s: str) -> None:
        self.word += s
        self.in_word = True

    def finish(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _SyntaxError(Exception):
    """Internal: raised while scanning; converted to ExpansionError."""


class _Scanner:
    """One expansion run over one word.  Holds only per-call state."""

    def __init__(
        self,
        text: str,
        env: Mapping[str, str],
        escape: str,
        raw_quotes: bool,
        raw_escapes: bool,
        skip_unset: bool,
        skip_quotes: bool = False,
    ):
        self.text = text
        self.pos = 0
        self.env = env
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.skip_quotes = skip_quotes
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()

    # -- character access -------------------------------------------------
    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        if self.pos >= len(self.text):
            return ""
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.matched.add(name)
            return self.env[name], True
        self.unmatched.add(name)
        return "", False

    # -- grammar ------------------------------------------------------------
    def stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        """Scan until ``stop`` (consumed) or end of input when ``stop`` is ""."""
        saved = self.raw_escapes
        self.raw_escapes = raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        words = _Words()
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch == stop:
                self.next()
                return "".join(out), words.finish()
            if ch == "$":
                tmp = self.dollar()
                out.append(tmp)
                words.add_string(tmp)
            elif ch == "'" and not self.skip_quotes:
                tmp = self.single_quote()
                out.append(tmp)
                words.add_raw_string(tmp)
            elif ch == '"' and not self.skip_quotes:
                tmp = self.double_quote()
                out.append(tmp)
                words.add_raw_string(tmp)
            else:
                ch = self.next()
                if ch == self.escape:
                    if self.raw_escapes:
                        words.add_raw_char(ch)
                        out.append(ch)
                    ch = self.next()
                    if ch == "":
                        break
                    words.add_raw_char(ch)
                else:
                    words.add_char(ch)
                out.append(ch)
        if stop:
            raise _SyntaxError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), words.finish()

    def single_quote(self) -> str:
        opening = self.next()
        out = [opening] if self.raw_quotes else []
        while True:
            ch = self.next()
            if ch == "":
                raise _SyntaxError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        opening = self.next()
        out = [opening] if self.raw_quotes else []
        while True:
            ch = self.peek()
            if ch == "":
                raise _SyntaxError("unexpected end of statement while looking for matching double-quote")
            if ch == '"':
                self.next()
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.escape:
                if self.raw_escapes:
                    out.append(ch)
                nxt = self.peek()
                if nxt == "":
                    continue  # escape at end of input is dropped
                if nxt in ('"', "$", self.escape):
                    ch = self.next()
            out.append(ch)

    def name(self) -> str:
        chars: list[str] = []
        while self.pos < len(self.text):
            ch = self.peek()
            if not chars and ch.isdecimal():
                while self.peek() and self.peek().isdecimal():
                    chars.append(self.next())
                return "".join(chars)
            if not chars and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            chars.append(self.next())
        return "".join(chars)

    def dollar(self) -> str:
        self.next()  # the '$'
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.skip_unset:
                return "$" + name
            return value

        self.next()  # the '{'
        first = self.peek()
        if first == "":
            raise _SyntaxError("syntax error: missing '}'")
        if first in "{}:":
            raise _SyntaxError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        chs = ch
        null_is_unset = False

        if ch == "":
            # BuildKit reports "unsupported modifier (\ufffd)" here; say what is wrong.
            raise _SyntaxError("syntax error: missing '}'")
        if ch == "}":
            value, found = self.lookup(name)
            if not found and self.skip_unset:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self._replace(name)
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            chs += ch
        elif ch not in ("+", "-", "?", "#", "%"):
            raise _SyntaxError(f"unsupported modifier ({chs}) in substitution")

        raw = ch in ("#", "%")
        try:
            word, _ = self.stop_on("}", raw)
        except _SyntaxError:
            if self.peek() == "":
                raise _SyntaxError("syntax error: missing '}'") from None
            raise
        value, found = self.lookup(name)
        if self.skip_unset and not found:
            return "${" + name + chs + word + "}"
        empty_or_unset = not found or (null_is_unset and value == "")
        if ch == "-":
            return word if empty_or_unset else value
        if ch == "+":
            return "" if empty_or_unset else word
        if ch == "?":
            if not found:
                raise _SyntaxError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise _SyntaxError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if ch in ("#", "%"):
            greedy = False
            if word.startswith(ch):
                greedy = True
                word = word[1:]
            if ch == "%":
                return _trim_suffix(word, value, greedy)
            return _trim_prefix(word, value, greedy)
        raise _SyntaxError(f"unsupported modifier ({chs}) in substitution")

    def _replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.stop_on("/", True)
        except _SyntaxError:
            if self.peek() == "":
                raise _SyntaxError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.stop_on("}", True)
        except _SyntaxError:
            if self.peek() == "":
                raise _SyntaxError("syntax error: missing '}'") from None
            raise
        value, found = self.lookup(name)
        if self.skip_unset and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        rx = _pattern_regex(pattern, greedy=True, anchored=False)
        if replace_all:
            return _replace_all(rx, value, replacement)
        m = rx.search(value)
        if m is None:
            return value
        return value[: m.start()] + replacement + value[m.end() :]


def _replace_all(rx: re.Pattern[str], value: str, replacement: str) -> str:
    """Replace every non-overlapping match, ignoring an empty match that abuts
    the previous match (Go ``regexp.ReplaceAllString`` semantics; the
    replacement is literal)."""
    out: list[str] = []
    last = 0
    prev_end = -1
    for m in rx.finditer(value):
        if m.start() == m.end() and m.start() == prev_end:
            continue
        out.append(value[last : m.start()])
        out.append(replacement)
        last = m.end()
        prev_end = m.end()
    out.append(value[last:])
    return "".join(out)


_REGEX_SPECIAL = frozenset("[]{}.+()|^$")


def _pattern_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """Translate a ``${V#pattern}``-style pattern (``*``, ``?``, ``\\`` escapes)
    into a regular expression.  Raises _SyntaxError for a bad escape."""
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            out.append(star)
        elif ch == "?":
            out.append(".")
        elif ch == "\\":
            nxt = pattern[i] if i < n else ""
            if nxt in ("}", "/"):
                continue  # escape needed inside ${}, not part of the pattern
            i += 1
            if nxt not in ("*", "?", "\\"):
                raise _SyntaxError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def _trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = _pattern_regex(pattern, greedy, anchored=True).search(value)
    return value[m.end() :] if m else value


def _reverse_pattern(pattern: str) -> str:
    """Reverse a pattern keeping ``\\x`` escape pairs in order (``a\\*c`` -> ``c\\*a``)."""
    units: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\" and i != len(pattern) - 1:
            units.append(pattern[i : i + 2])
            i += 2
        else:
            units.append(pattern[i])
            i += 1
    return "".join(reversed(units))


def _trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # Shortest/longest *rightmost* match == leftmost match on reversed strings.
    return _trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def process(
    word: str,
    env: Mapping[str, str],
    escape: str = "\\",
    *,
    raw_quotes: bool = False,
    raw_escapes: bool = False,
    skip_unset: bool = False,
    skip_quotes: bool = False,
) -> ExpansionResult:
    """Expand ``word`` against ``env`` (BuildKit ``Lex.process``).

    ``raw_quotes`` keeps quote characters in the output, ``raw_escapes`` keeps
    escape characters, ``skip_unset`` leaves references to unset variables as
    written, ``skip_quotes`` treats quote characters as ordinary text (BuildKit
    ``SkipProcessQuotes``, used for heredoc bodies).  Raises :class:`ExpansionError`.
    """
    if escape not in ("\\", "`"):
        raise ValueError(f"invalid escape character {escape!r}")
    sc = _Scanner(word, env, escape, raw_quotes, raw_escapes, skip_unset, skip_quotes)
    try:
        result, words = sc.stop_on("", raw_escapes)
    except _SyntaxError as exc:
        raise ExpansionError(str(exc), word) from None
    return ExpansionResult(result, words, frozenset(sc.matched), frozenset(sc.unmatched))


def expand_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand one word (BuildKit ``ProcessWord``): variables substituted, quotes
    removed, escapes applied, no field splitting.  ``"a  $X"`` with X="b c"
    gives ``"a  b c"``.  Raises :class:`ExpansionError`."""
    return process(word, env, escape).result


def expand_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand and field-split (BuildKit ``ProcessWords``): unquoted whitespace,
    including whitespace produced by unquoted ``$`` expansions, separates words;
    quoted text never splits.  Empty words are dropped.  Raises
    :class:`ExpansionError`."""
    return process(word, env, escape).words


def expand_word_with_usage(word: str, env: Mapping[str, str], escape: str = "\\") -> tuple[str, set[str]]:
    """Like :func:`expand_word`, also returning every variable name the word
    referenced (set or not), for unused-build-arg warnings and cache keys."""
    res = process(word, env, escape)
    return res.result, set(res.matched | res.unmatched)


def expand_heredoc(content: str, env: Mapping[str, str]) -> str:
    """Expand a heredoc body whose delimiter was unquoted: ``$`` references
    and ``\\`` escapes are processed but quotes are kept as written (BuildKit
    expands heredocs with ``SkipProcessQuotes``; the escape is always ``\\``).
    ``echo "$HOME"`` -> ``echo "/root"``.  Raises :class:`ExpansionError`."""
    return process(content, env, "\\", skip_quotes=True).result
