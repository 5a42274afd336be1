"""``${V#pattern}``, ``${V%pattern}`` and ``${V/pattern/replacement}`` matching for
:mod:`executor.dockerfile.shell` (BuildKit ``frontend/dockerfile/shell/lex.go``: patterns
support ``*`` and ``?`` and ``\\`` escapes only; ``[`` and ``]`` are literal characters).
"""

from __future__ import annotations

import re

__all__ = ["PatternError", "pattern_regex", "replace_all", "trim_prefix", "trim_suffix"]


class PatternError(Exception):
    """A pattern with a bad escape (the message says which). The shell lexer raises it for
    every scanning error and turns it into :class:`executor.dockerfile.shell.ExpansionError`."""


def replace_all(rx: re.Pattern[str], value: str, replacement: str) -> str:
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


def pattern_regex(pattern: str, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """Translate a ``${V#pattern}``-style pattern (``*``, ``?``, ``\\`` escapes)
    into a regular expression.  Raises PatternError for a bad escape."""
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
                raise PatternError(f"invalid pattern ({pattern}) in substitution: invalid escape '\\{nxt}'")
            out.append(re.escape(nxt))
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out))


def trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    m = pattern_regex(pattern, greedy, anchored=True).search(value)
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


def trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    # Shortest/longest *rightmost* match == leftmost match on reversed strings.
    return trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]
