"""Physical lines -> logical lines: parser directives, comments, continuation lines and
heredoc bodies (BuildKit ``frontend/dockerfile/parser/parser.go``: ``Parse``,
``heredocsFromLine``, ``ParseHeredoc``, directive handling).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from executor.dockerfile.shell import ExpansionError, process
from executor.errors import DockerfileError

from .nodes import Heredoc
from .words import NotStringArray, ParseError, parse_json_list, split_command

_HEREDOC_WORD = re.compile(r"([0-9]*)<<(-?)([^<]*)\Z")
_MAX_FD = 2**64 - 1  # Go ParseUint saturates; BuildKit ignores the range error
_HEREDOC_COMMANDS = frozenset({"RUN", "COPY", "ADD"})


def heredoc_marker(word: str) -> tuple[str, bool, bool, int] | None:
    """(name, expand, chomp, fd) when ``word`` is a heredoc marker like ``<<-"EOF"``."""
    m = _HEREDOC_WORD.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    try:
        words = process(rest, {}, "\\", skip_unset=True).words
    except ExpansionError as exc:
        raise ParseError(exc.detail) from None
    if len(words) != 1:
        return None
    raw = process(rest, {}, "\\", skip_unset=True, raw_quotes=True).words
    if len(raw) != 1:
        raise ParseError(f"internal lexing of heredoc produced inconsistent results: {rest}")

    def quotes(s: str) -> int:
        return s.count("'") + s.count('"')

    digits = m.group(1).lstrip("0")
    fd = _MAX_FD if len(digits) > 20 else min(int(digits or 0), _MAX_FD)
    return words[0], quotes(words[0]) == quotes(raw[0]), m.group(2) == "-", fd


def _heredoc_markers(line: str) -> list[tuple[str, bool, bool, int]]:
    try:
        words = process(line, {}, "\\", raw_quotes=True, raw_escapes=True).words
    except ExpansionError:
        return []
    out = []
    for w in words:
        marker = heredoc_marker(w)
        if marker:
            out.append(marker)
    return out


_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)


# ---------------------------------------------------------------------------
# Line reader
# ---------------------------------------------------------------------------

_DIRECTIVE_KEY = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=")
_DIRECTIVE_SPACE = "\t\n\f\r "


def _directive(body: str) -> tuple[str, str] | None:
    """(key, value) of ``key = value`` (BuildKit's ``(\\w+)\\s*=\\s*(.+?)\\s*$``), without a
    backtracking regex, which takes quadratic time on long runs of spaces. As with that
    regex, a value of whitespace only is its last character."""
    m = _DIRECTIVE_KEY.match(body)
    if m is None:
        return None
    rest = body[m.end():]
    value = rest.strip(_DIRECTIVE_SPACE)
    if not value:
        if not rest:
            return None
        value = rest[-1]
    return m.group(1), value
_VALID_DIRECTIVES = ("syntax", "escape", "check")


@dataclass
class _Directives:
    """Per-parse directive state (not shared between parses)."""

    values: dict[str, str] = field(default_factory=dict)
    escape: str = "\\"
    done: bool = False

    def feed(self, line: str) -> None:
        """Inspect one physical line; raises ParseError for a bad/duplicate directive."""
        if self.done:
            return
        if not line.startswith("#"):
            self.done = True
            return
        kv = _directive(line[1:].lstrip())
        if kv is None:
            self.done = True
            return
        key = kv[0].lower()
        if key not in _VALID_DIRECTIVES:
            self.done = True
            return
        if key in self.values:
            raise ParseError(f"only one {key} parser directive can be used")
        value = kv[1]
        if key == "escape":
            if value not in ("\\", "`"):
                raise ParseError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
        self.values[key] = value



def _split_lines(text: str) -> list[str]:
    """Split like Go's bufio.ScanLines: on \\n, dropping one trailing \\r."""
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _wants_heredocs(line: str) -> bool:
    """True when the logical line is a non-JSON RUN/COPY/ADD containing ``<<``."""
    if "<<" not in line:
        return False
    cmd, _, rest = split_command(line)
    if cmd.upper() not in _HEREDOC_COMMANDS:
        return False
    try:
        return parse_json_list(rest) is None
    except NotStringArray:
        return False


def _read_heredoc(
    lines: list[str], pos: int, name: str, chomp: bool
) -> tuple[str, int] | None:
    """Collect body lines from ``pos`` up to the terminator.
    Returns (content, index after terminator) or None when unterminated."""
    body: list[str] = []
    while pos < len(lines):
        text = lines[pos]
        pos += 1
        candidate = text.lstrip("\t") if chomp else text
        if candidate == name:
            return "".join(body), pos
        body.append(text + "\n")
    return None


def logical_lines(
    text: str, filename: str
) -> tuple[list[tuple[str, int, int, tuple[Heredoc, ...]]], _Directives, list[str]]:
    """Join continuation lines, drop comments, read heredoc bodies.

    Returns ([(line, start, end, heredocs)], directives, warnings).
    """
    lines = _split_lines(text)
    directives = _Directives()
    out: list[tuple[str, int, int, tuple[Heredoc, ...]]] = []
    warnings: list[str] = []
    i = 0
    n = len(lines)

    def fail(msg: str, start: int, end: int | None = None) -> DockerfileError:
        return DockerfileError(msg, filename, start, end if end is not None else start)

    while i < n:
        token = lines[i].lstrip()
        try:
            directives.feed(token)
        except ParseError as exc:
            raise fail(str(exc), i + 1) from None
        if token.startswith("#"):
            token = ""
        i += 1
        start = i
        cont = _CONTINUATION[directives.escape]
        first, eol = _trim_continuation(token, cont)
        if eol and first == "":
            continue
        parts = [first]
        empty_cont = False
        while not eol and i < n:
            raw = lines[i]
            try:
                directives.feed(raw)
            except ParseError as exc:
                raise fail(str(exc), i + 1) from None
            i += 1
            if _is_comment(raw):
                continue
            if raw.strip() == "":
                empty_cont = True
                continue
            part, eol = _trim_continuation(raw, cont)
            parts.append(part)
        line = "".join(parts)
        if empty_cont:
            warnings.append(f"{filename}:{start}: empty continuation line found in: {line}")

        heredocs: list[Heredoc] = []
        if _wants_heredocs(line):
            try:
                markers = _heredoc_markers(line)
            except ParseError as exc:
                raise fail(str(exc), start, i) from None
            for name, expand, chomp, fd in markers:
                got = _read_heredoc(lines, i, name, chomp)
                if got is None:
                    raise fail(f"unterminated heredoc {name}", start, n)
                content, i = got
                if chomp:
                    content = _LEADING_TABS.sub("", content)
                heredocs.append(Heredoc(name=name, content=content, expand=expand, chomp=chomp, fd=fd))
        out.append((line, start, i, tuple(heredocs)))
    return out, directives, warnings


_CONTINUATION = {esc: re.compile(re.escape(esc) + r"[ \t]*\Z") for esc in ("\\", "`")}


def _trim_continuation(line: str, cont: re.Pattern[str]) -> tuple[str, bool]:
    """Strip a trailing escape character (plus spaces/tabs); (line, is_end_of_line).
    Like BuildKit, an escaped escape at end of line still continues."""
    m = cont.search(line)
    if m:
        return line[: m.start()], False
    return line, True

