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

from .shellpatterns import PatternError, pattern_regex, replace_all, trim_prefix, trim_suffix

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
        shown = word if word is None or len(word) <= 200 else word[:100] + "..."
        super().__init__(f"failed to process {_go_quote(shown)}: {detail}" if shown is not None else detail)


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


def _field_split(pieces: list[str], raw: list[int]) -> list[str]:
    """Field-split the expanded ``pieces`` (BuildKit's wordsStruct semantics): whitespace in
    unquoted pieces separates words, pieces whose index is in ``raw`` (quoted or escaped text)
    never split, empty words are dropped. Adjacent unquoted pieces are split together, so the
    work is one ``str.split`` per run of unquoted text."""
    if not raw:
        return "".join(pieces).split()
    words: list[str] = []
    parts: list[str] = []

    def flush() -> None:
        if parts:
            words.append("".join(parts))
            parts.clear()

    prev = 0
    for idx in raw + [len(pieces)]:
        if prev < idx:
            s = "".join(pieces[prev:idx])
            fields = s.split()
            if not fields:
                if s:
                    flush()
            else:
                if s[0].isspace():
                    flush()
                parts.append(fields[0])
                for f in fields[1:]:
                    flush()
                    parts.append(f)
                if s[-1].isspace():
                    flush()
        if idx < len(pieces) and pieces[idx]:
            parts.append(pieces[idx])
        prev = idx + 1
    flush()
    return words


#: Internal: raised while scanning (bad syntax, bad pattern); converted to ExpansionError.
_SyntaxError = PatternError


class _TooDeep(_SyntaxError):
    """Internal: ``${...}`` nested deeper than MAX_NESTING."""


#: Deepest ``${...}`` nesting accepted (``${a:-${b:-...}}``); deeper words are rejected with an
#: ExpansionError instead of exhausting the Python stack.
MAX_NESTING = 100

_ASCII_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SIMPLE_REF = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)")
_DECIMALS = re.compile(r"\d+")  # \d in a str pattern is Unicode Nd, exactly str.isdecimal()
_plain_cache: dict[str, re.Pattern[str]] = {}


def _plain(specials: str) -> re.Pattern[str]:
    """A regex matching a non-empty run of characters other than ``specials``."""
    rx = _plain_cache.get(specials)
    if rx is None:
        rx = _plain_cache[specials] = re.compile("[^" + "".join(re.escape(c) for c in sorted(set(specials))) + "]+")
    return rx


class _Scanner:
    """One expansion run over one word.  Holds only per-call state.

    Runs of ordinary characters are copied with one regex match each, so a word is scanned
    in time linear in its length."""

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
        self.depth = 0
        self.want_words = True
        self.matched: set[str] = set()
        self.unmatched: set[str] = set()
        quotes = "" if skip_quotes else "'\""
        self._plain_top = _plain("$" + quotes + escape)
        self._plain_stop = {s: _plain("$" + quotes + escape + s) for s in ("}", "/")}
        self._plain_dq = _plain('"$' + escape)

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
        if self.depth > MAX_NESTING:  # depth 0: the word itself; k: inside k substitutions
            raise _TooDeep(f"variable substitutions (${{...}}) are nested too deeply (more than {MAX_NESTING} levels)")
        saved = self.raw_escapes, self.want_words
        self.raw_escapes = raw_escapes
        self.want_words = self.depth == 0 and self.want_words  # nested words are never split
        self.depth += 1
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes, self.want_words = saved
            self.depth -= 1

    def _stop_on(self, stop: str) -> tuple[str, list[str]]:
        out: list[str] = []
        raw: list[int] = []  # indexes in out of quoted/escaped pieces (never field-split)
        text = self.text
        n = len(text)
        env = self.env
        plain = self._plain_stop[stop] if stop else self._plain_top
        while self.pos < n:
            m = plain.match(text, self.pos)
            if m is not None:
                out.append(m.group())
                self.pos = m.end()
                continue
            ch = text[self.pos]
            if stop and ch == stop:
                self.pos += 1
                return "".join(out), (_field_split(out, raw) if self.want_words else [])
            if ch == "$":
                m = _SIMPLE_REF.match(text, self.pos)
                if m is not None and (m.end() == n or text[m.end()].isascii()):
                    self.pos = m.end()  # fast path for $NAME (what dollar() would do)
                    name = m.group(1)
                    if name in env:
                        self.matched.add(name)
                        out.append(env[name])
                    else:
                        self.unmatched.add(name)
                        out.append("$" + name if self.skip_unset else "")
                else:
                    out.append(self.dollar())
            elif ch == "'" and not self.skip_quotes:
                raw.append(len(out))
                out.append(self.single_quote())
            elif ch == '"' and not self.skip_quotes:
                raw.append(len(out))
                out.append(self.double_quote())
            else:  # the escape character: the next character is taken literally
                self.pos += 1
                if self.raw_escapes:
                    raw.append(len(out))
                    out.append(ch)
                if self.pos >= n:
                    break  # an escape at the end of the word is dropped
                raw.append(len(out))
                out.append(text[self.pos])
                self.pos += 1
        if stop:
            raise _SyntaxError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(out), (_field_split(out, raw) if self.want_words else [])

    def single_quote(self) -> str:
        start = self.pos + 1
        end = self.text.find("'", start)
        if end < 0:
            self.pos = len(self.text)
            raise _SyntaxError("unexpected end of statement while looking for matching single-quote")
        self.pos = end + 1
        return self.text[start - 1 : end + 1] if self.raw_quotes else self.text[start:end]

    def double_quote(self) -> str:
        self.pos += 1
        out = ['"'] if self.raw_quotes else []
        text = self.text
        n = len(text)
        plain = self._plain_dq
        while True:
            m = plain.match(text, self.pos)
            if m is not None:
                out.append(m.group())
                self.pos = m.end()
            if self.pos >= n:
                raise _SyntaxError("unexpected end of statement while looking for matching double-quote")
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                if self.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            # the escape character: escapes only '"', '$' and itself, else stays as written
            self.pos += 1
            if self.raw_escapes:
                out.append(ch)
            if self.pos >= n:
                continue  # escape at end of input is dropped (then: unterminated quote)
            if text[self.pos] in ('"', "$", self.escape):
                ch = text[self.pos]
                self.pos += 1
            out.append(ch)

    def name(self) -> str:
        """A variable name: a run of decimal digits, one special parameter, or letters,
        decimal digits and ``_`` (Unicode letters and digits included, as in BuildKit)."""
        text = self.text
        n = len(text)
        start = self.pos
        m = _ASCII_NAME.match(text, start)
        if m is not None and (m.end() == n or text[m.end()].isascii()):
            self.pos = m.end()  # fast path: the name ends at an ASCII non-name character
            return m.group()
        if start >= n:
            return ""
        ch = text[start]
        if ch.isdecimal():
            m = _DECIMALS.match(text, start)
            self.pos = m.end()
            return m.group()
        if ch in _SPECIAL_PARAMS:
            self.pos += 1
            return ch
        end = start
        while end < n:
            ch = text[end]
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            end += 1
        self.pos = end
        return text[start:end]

    def dollar(self) -> str:
        self.pos += 1  # the '$'
        if self.pos >= len(self.text) or self.text[self.pos] != "{":
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
        except _TooDeep:
            raise
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
                return trim_suffix(word, value, greedy)
            return trim_prefix(word, value, greedy)
        raise _SyntaxError(f"unsupported modifier ({chs}) in substitution")

    def _replace(self, name: str) -> str:
        every = self.peek() == "/"
        if every:
            self.next()
        try:
            pattern, _ = self.stop_on("/", True)
        except _TooDeep:
            raise
        except _SyntaxError:
            if self.peek() == "":
                raise _SyntaxError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.stop_on("}", True)
        except _TooDeep:
            raise
        except _SyntaxError:
            if self.peek() == "":
                raise _SyntaxError("syntax error: missing '}'") from None
            raise
        value, found = self.lookup(name)
        if self.skip_unset and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        rx = pattern_regex(pattern, greedy=True, anchored=False)
        if every:
            return replace_all(rx, value, replacement)
        m = rx.search(value)
        if m is None:
            return value
        return value[: m.start()] + replacement + value[m.end() :]


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

    Time and memory are linear in ``len(word)`` plus the length of the substituted values;
    ``${...}`` may nest at most :data:`MAX_NESTING` levels deep.
    """
    return _process(word, env, escape, raw_quotes, raw_escapes, skip_unset, skip_quotes, True)


def _process(word: str, env: Mapping[str, str], escape: str, raw_quotes: bool, raw_escapes: bool,
             skip_unset: bool, skip_quotes: bool, want_words: bool) -> ExpansionResult:
    if escape not in ("\\", "`"):
        raise ValueError(f"invalid escape character {escape!r}")
    sc = _Scanner(word, env, escape, raw_quotes, raw_escapes, skip_unset, skip_quotes)
    sc.want_words = want_words
    try:
        result, words = sc.stop_on("", raw_escapes)
    except _SyntaxError as exc:
        raise ExpansionError(str(exc), word) from None
    except RecursionError:  # MAX_NESTING keeps well below the limit; a deep caller stack may not
        raise ExpansionError("variable substitutions (${...}) are nested too deeply", word) from None
    return ExpansionResult(result, words, frozenset(sc.matched), frozenset(sc.unmatched))


def expand_word(word: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """Expand one word (BuildKit ``ProcessWord``): variables substituted, quotes
    removed, escapes applied, no field splitting.  ``"a  $X"`` with X="b c"
    gives ``"a  b c"``.  Raises :class:`ExpansionError`."""
    return _process(word, env, escape, False, False, False, False, False).result


def expand_words(word: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Expand and field-split (BuildKit ``ProcessWords``): unquoted whitespace,
    including whitespace produced by unquoted ``$`` expansions, separates words;
    quoted text never splits.  Empty words are dropped.  Raises
    :class:`ExpansionError`."""
    return process(word, env, escape).words


def expand_word_with_usage(word: str, env: Mapping[str, str], escape: str = "\\") -> tuple[str, set[str]]:
    """Like :func:`expand_word`, also returning every variable name the word
    referenced (set or not), for unused-build-arg warnings and cache keys."""
    res = _process(word, env, escape, False, False, False, False, False)
    return res.result, set(res.matched | res.unmatched)


def expand_heredoc(content: str, env: Mapping[str, str]) -> str:
    """Expand a heredoc body whose delimiter was unquoted: ``$`` references
    and ``\\`` escapes are processed but quotes are kept as written (BuildKit
    expands heredocs with ``SkipProcessQuotes``; the escape is always ``\\``).
    ``echo "$HOME"`` -> ``echo "/root"``.  Raises :class:`ExpansionError`."""
    return _process(content, env, "\\", False, False, False, True, False).result
