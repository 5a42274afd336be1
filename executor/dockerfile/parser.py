"""Dockerfile parser: text -> typed instructions grouped into build stages.

Behaviour follows the BuildKit Dockerfile frontend (moby/buildkit
``frontend/dockerfile/parser`` for line handling, directives, heredocs and the
per-instruction argument splitting, and ``frontend/dockerfile/instructions``
for flag and argument validation).  Arguments are kept *raw*: quotes, escapes
and ``$VAR`` references are left for :mod:`executor.dockerfile.shell` to
expand at build time, with the then-current environment.

Every problem is reported as :class:`executor.errors.DockerfileError` carrying
the file name and the 1-based line range of the offending instruction.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable, Iterable

from executor.dockerfile.shell import ExpansionError, process
from executor.dockerfile.duration import parse_go_duration as _go_duration_ns
from executor.dockerfile.flagvalues import FlagValueError, parse_healthcheck_duration, parse_retries
from executor.errors import DockerfileError

__all__ = [
    "Heredoc",
    "Instruction",
    "Stage",
    "Dockerfile",
    "parse_dockerfile",
    "parse_flag_kv",
    "parse_go_duration",
    "INSTRUCTIONS",
    "FLAG_SPECS",
]

# ---------------------------------------------------------------------------
# Data model
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Heredoc:
    """One here-document attached to a RUN/COPY/ADD instruction.

    ``name`` is the delimiter with quotes removed (``EOF``); ``content`` is the
    body, every line ending in ``\\n`` (leading tabs removed when ``chomp``);
    ``expand`` is False when any part of the delimiter was quoted
    (``<<'EOF'``, ``<<"EOF"``); ``chomp`` is True for ``<<-``;
    ``fd`` is the optional file descriptor prefix (``3<<EOF`` -> 3, default 0).
    """

    name: str
    content: str
    expand: bool
    chomp: bool
    fd: int = 0


@dataclass(frozen=True)
class Instruction:
    """One parsed Dockerfile instruction (see module docstring for sources).

    ``name``: upper-case keyword.  ``flags``: ``--name=value`` options as
    ``{name: [values...]}`` (boolean flags normalised to ``["true"]`` /
    ``["false"]``).  ``args``: raw arguments, per instruction:

    * RUN/CMD/ENTRYPOINT/SHELL: JSON list items (``json_form``) or
      ``[whole command text]``;
    * COPY/ADD/VOLUME: source words + destination (JSON or whitespace split);
    * ENV/LABEL: flattened ``[k1, v1, k2, v2, ...]`` (use ``pairs``);
    * ARG: the raw ``name[=default]`` words (use ``arg_defaults``);
    * FROM: ``[image]`` or ``[image, "AS", name]``;
    * EXPOSE: whitespace-split words;
    * USER/WORKDIR/STOPSIGNAL/MAINTAINER: ``[rest of line]`` (one argument,
      spaces preserved, as BuildKit's parseString);
    * HEALTHCHECK: ``["NONE"]`` or ``["CMD", *cmd]`` (``json_form`` for cmd);
    * ONBUILD: ``[trigger text]``; ``onbuild_instruction`` is the parsed trigger.

    ``original`` is the instruction text with continuation lines joined
    (heredoc bodies excluded); ``start_line``/``end_line`` are 1-based and
    include continuation and heredoc lines.
    """

    name: str
    flags: dict[str, list[str]]
    args: list[str]
    json_form: bool
    heredocs: tuple[Heredoc, ...]
    original: str
    start_line: int
    end_line: int
    filename: str
    pairs: tuple[tuple[str, str], ...] = ()
    arg_defaults: tuple[tuple[str, str | None], ...] = ()
    onbuild_instruction: "Instruction | None" = None

    def flag(self, name: str, default: str | None = None) -> str | None:
        """Last value of flag ``name`` or ``default`` when absent."""
        values = self.flags.get(name)
        return values[-1] if values else default

    def bool_flag(self, name: str) -> bool:
        """True when boolean flag ``name`` was given as true."""
        return self.flag(name) == "true"


@dataclass
class Stage:
    """A build stage: the FROM instruction plus everything until the next FROM.

    ``base`` is the raw image word, ``name`` the lower-cased ``AS`` name (None
    when unnamed), ``platform`` the raw ``--platform`` value (None if absent).
    """

    index: int
    base: str
    name: str | None
    platform: str | None
    instructions: list[Instruction]
    from_instruction: Instruction


@dataclass
class Dockerfile:
    """A parsed Dockerfile.

    ``directives``: parser directives found at the top (``syntax``, ``escape``,
    ``check``) with their raw values; ``escape``: the escape character in
    effect; ``meta_args``: ARG instructions before the first FROM;
    ``warnings``: non-fatal notes (e.g. empty continuation lines).
    """

    filename: str
    directives: dict[str, str]
    escape: str
    meta_args: list[Instruction]
    stages: list[Stage]
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------

BOOL, STRING, STRINGS = "bool", "string", "strings"

#: Allowed ``--flags`` per instruction and their kind (BuildKit instructions/parse.go).
FLAG_SPECS: dict[str, dict[str, str]] = {
    "RUN": {"mount": STRINGS, "network": STRING, "security": STRING, "device": STRINGS},
    "FROM": {"platform": STRING},
    "COPY": {"from": STRING, "chown": STRING, "chmod": STRING, "link": BOOL, "parents": BOOL, "exclude": STRINGS},
    "ADD": {
        "chown": STRING,
        "chmod": STRING,
        "link": BOOL,
        "keep-git-dir": BOOL,
        "checksum": STRING,
        "exclude": STRINGS,
        "unpack": BOOL,
    },
    "HEALTHCHECK": {
        "interval": STRING,
        "timeout": STRING,
        "start-period": STRING,
        "start-interval": STRING,
        "retries": STRING,
    },
}

INSTRUCTIONS = (
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
)  # fmt: skip


class _ParseError(Exception):
    """Internal: message without location; wrapped into DockerfileError by the caller."""


def _extract_flags(text: str) -> tuple[str, list[str]]:
    """Split leading ``--flag[=value]`` words off ``text``.

    Quotes inside a flag word are removed and ``\\`` escapes the next
    character (BuildKit extractBuilderFlags); a bare ``--`` ends the flags.
    Returns (rest of text, flag words).
    """
    flags: list[str] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return "", flags
        if not text.startswith("--", i):
            return text[i:], flags
        word: list[str] = []
        quoted_any = False
        quote = ""
        while i < n:
            ch = text[i]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == "\\":
                    if i + 1 == n:
                        quote = ""
                    else:
                        i += 1
                        word.append(text[i])
                else:
                    word.append(ch)
                i += 1
                continue
            if ch.isspace():
                break
            if ch in ("'", '"'):
                quote = ch
                quoted_any = True
            elif ch == "\\":
                if i + 1 < n:
                    i += 1
                    word.append(text[i])
            else:
                word.append(ch)
            i += 1
        w = "".join(word)
        if w == "--":
            return text[i:], flags
        if w or quoted_any:
            flags.append(w)
        if i >= n:
            return "", flags


def _parse_flags(words: list[str], spec: dict[str, str]) -> dict[str, list[str]]:
    """Validate flag words against ``spec`` (BuildKit BFlags.Parse)."""
    out: dict[str, list[str]] = {}
    for word in words:
        if not word.startswith("--"):
            raise _ParseError(f"arg should start with -- : {word}")
        body = word[2:]
        name, eq, value = body.partition("=")
        kind = spec.get(name)
        if kind is None:
            known = ", ".join(f"--{k}" for k in spec) or "none"
            raise _ParseError(f"unknown flag: {name} (allowed: {known})")
        if name in out and kind != STRINGS:
            raise _ParseError(f"duplicate flag specified: {name}")
        if kind == BOOL:
            if eq and value == "":
                raise _ParseError(f"missing a value on flag: {name}")
            lower = value.lower()
            if lower == "":
                lower = "true"
            elif lower not in ("true", "false"):
                raise _ParseError(f"expecting boolean value for flag {name}, not: {value}")
            out[name] = [lower]
        else:
            if not eq:
                raise _ParseError(f"missing a value on flag: {name}")
            out.setdefault(name, []).append(value)
    return out


def _split_csv(value: str) -> list[str]:
    """Split one CSV record with Go encoding/csv rules (strict quotes):
    a field that starts with ``"`` is quoted and ``""`` inside it is a quote;
    a ``"`` inside an unquoted field or stray text after a closing quote is an
    error.  Raises ValueError."""
    fields: list[str] = []
    i, n = 0, len(value)
    while True:
        if i < n and value[i] == '"':
            buf: list[str] = []
            i += 1
            while True:
                if i >= n:
                    raise ValueError(f'extraneous or missing " in quoted-field of {value!r}')
                ch = value[i]
                if ch == '"':
                    if i + 1 < n and value[i + 1] == '"':
                        buf.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                buf.append(ch)
                i += 1
            if i < n and value[i] != ",":
                raise ValueError(f'extraneous or missing " in quoted-field of {value!r}')
            fields.append("".join(buf))
        else:
            j = value.find(",", i)
            text = value[i:] if j < 0 else value[i:j]
            if '"' in text:
                raise ValueError(f'bare " in non-quoted-field of {value!r}')
            fields.append(text)
            i = n if j < 0 else j
        if i >= n:
            return fields
        i += 1  # the comma
        if i >= n:
            fields.append("")
            return fields


def parse_flag_kv(value: str) -> dict[str, str]:
    """Parse a CSV ``key=value`` flag value such as a RUN ``--mount``.

    ``"type=cache,target=/x,id=y"`` -> ``{"type": "cache", "target": "/x",
    "id": "y"}``.  Fields may be CSV-quoted (``"target=/a,b"``); keys are
    lower-cased; a bare key (``rw``, ``readonly``) maps to ``"true"``; empty
    fields are skipped; later duplicates win.  Raises ValueError on malformed
    CSV or an empty key.  Source: BuildKit dockerfile instructions/commands_runmount.go
    (encoding/csv record, then ``key=value`` per field).
    """
    out: dict[str, str] = {}
    for fieldtext in _split_csv(value):
        if fieldtext == "":
            continue
        key, eq, val = fieldtext.partition("=")
        key = key.strip().lower()
        if not key:
            raise ValueError(f"invalid field {fieldtext!r} in {value!r}: empty key")
        out[key] = val if eq else "true"
    return out


def parse_go_duration(text: str) -> float:
    """Seconds in Go duration ``text`` (see :mod:`executor.dockerfile.duration`); raises ValueError."""
    return _go_duration_ns(text) / 1e9


# ---------------------------------------------------------------------------
# Argument splitting (BuildKit line_parsers.go behaviour)
# ---------------------------------------------------------------------------

_WS = re.compile(r"[\t\v\f\r ]+")


class _NotStringArray(_ParseError):
    pass


def _reject_constant(name: str) -> float:
    raise ValueError(name)  # NaN/Infinity are not JSON for Go


def _parse_json_list(rest: str) -> list[str] | None:
    """JSON string array, None when ``rest`` is not a JSON array.
    Raises _NotStringArray for arrays with non-string items."""
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise _NotStringArray("when using JSON array syntax, arrays must be comprised of strings only")
    return value


def _split_ws(rest: str) -> list[str]:
    return _WS.split(rest) if rest else []


def _parse_words(rest: str, escape: str) -> list[str]:
    """Split on whitespace honouring quotes and escapes, keeping both in the
    words (BuildKit parseWords; used by ENV, LABEL and ARG).  Inside single
    quotes the escape character is literal; an escape at end of text is dropped."""
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    in_word = False
    quote = ""
    i, n = 0, len(rest)
    while i < n:
        ch = rest[i]
        if not in_word:
            if ch.isspace():
                i += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if i + 1 == n:
                    quote = ""
                    i += 1
                    continue
                word.append(ch)
                i += 1
                ch = rest[i]
            word.append(ch)
            i += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok, in_word = [], False, False
            i += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
        elif ch == escape:
            if i + 1 == n:
                i += 1
                continue
            word.append(ch)
            i += 1
            ch = rest[i]
        word.append(ch)
        i += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


def _parse_name_val(rest: str, key: str, escape: str) -> list[tuple[str, str]]:
    """ENV/LABEL ``k=v k2="v 2"`` or legacy ``k v w`` (BuildKit parseNameVal)."""
    words = _parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise _ParseError(f"{key} must have two arguments")
        return [(parts[0], parts[1])]
    pairs = []
    for word in words:
        if "=" not in word:
            raise _ParseError(f"Syntax error - can't find = in {_q(word)}. Must be of the form: name=value")
        k, _, v = word.partition("=")
        pairs.append((k, v))
    return pairs


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


# ---------------------------------------------------------------------------
# Heredoc detection (BuildKit parser heredocsFromLine / ParseHeredoc)
# ---------------------------------------------------------------------------

_HEREDOC_WORD = re.compile(r"(\d*)<<(-?)([^<]*)\Z")
_HEREDOC_COMMANDS = frozenset({"RUN", "COPY", "ADD"})


def _heredoc_marker(word: str) -> tuple[str, bool, bool, int] | None:
    """(name, expand, chomp, fd) when ``word`` is a heredoc marker like ``<<-"EOF"``."""
    m = _HEREDOC_WORD.match(word)
    if not m or not m.group(3):
        return None
    rest = m.group(3)
    try:
        words = process(rest, {}, "\\", skip_unset=True).words
    except ExpansionError as exc:
        raise _ParseError(exc.detail) from None
    if len(words) != 1:
        return None
    raw = process(rest, {}, "\\", skip_unset=True, raw_quotes=True).words
    if len(raw) != 1:
        raise _ParseError(f"internal lexing of heredoc produced inconsistent results: {rest}")

    def quotes(s: str) -> int:
        return s.count("'") + s.count('"')

    return words[0], quotes(words[0]) == quotes(raw[0]), m.group(2) == "-", int(m.group(1) or 0)


def _heredoc_markers(line: str) -> list[tuple[str, bool, bool, int]]:
    try:
        words = process(line, {}, "\\", raw_quotes=True, raw_escapes=True).words
    except ExpansionError:
        return []
    out = []
    for w in words:
        marker = _heredoc_marker(w)
        if marker:
            out.append(marker)
    return out


_LEADING_TABS = re.compile(r"^\t+", re.MULTILINE)


# ---------------------------------------------------------------------------
# Line reader
# ---------------------------------------------------------------------------

_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_VALID_DIRECTIVES = ("syntax", "escape", "check")


@dataclass
class _Directives:
    """Per-parse directive state (not shared between parses)."""

    values: dict[str, str] = field(default_factory=dict)
    escape: str = "\\"
    done: bool = False

    def feed(self, line: str) -> None:
        """Inspect one physical line; raises _ParseError for a bad/duplicate directive."""
        if self.done:
            return
        if not line.startswith("#"):
            self.done = True
            return
        m = _DIRECTIVE.match(line[1:].lstrip())
        if not m:
            self.done = True
            return
        key = m.group(1).lower()
        if key not in _VALID_DIRECTIVES:
            self.done = True
            return
        if key in self.values:
            raise _ParseError(f"only one {key} parser directive can be used")
        value = m.group(2)
        if key == "escape":
            if value not in ("\\", "`"):
                raise _ParseError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
        self.values[key] = value


@dataclass
class _RawNode:
    line: str
    start: int
    end: int


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


# ---------------------------------------------------------------------------
# Instruction construction
# ---------------------------------------------------------------------------


@dataclass
class _Ctx:
    filename: str
    escape: str


def _split_command(line: str) -> tuple[str, list[str], str]:
    """(keyword, flag words, rest) from an instruction line (BuildKit splitCommand)."""
    parts = _WS.split(line.strip(), maxsplit=1)
    cmd = parts[0]
    if len(parts) < 2:
        return cmd, [], ""
    rest, flags = _extract_flags(parts[1])
    return cmd, flags, rest.strip()


def _exactly_one(name: str, args: list[str]) -> None:
    if len(args) != 1:
        raise _ParseError(f"{name} requires exactly one argument")


def _at_least_one(name: str, args: list[str]) -> None:
    if not args:
        raise _ParseError(f"{name} requires at least one argument")


_STAGE_NAME = re.compile(r"[a-z][a-z0-9\-_.]*\Z")


@dataclass
class _Parsed:
    """Mutable scratch result of one instruction's argument parsing."""

    args: list[str]
    json_form: bool = False
    pairs: tuple[tuple[str, str], ...] = ()
    arg_defaults: tuple[tuple[str, str | None], ...] = ()
    onbuild: Instruction | None = None


def _args_maybe_json(rest: str) -> _Parsed:
    if rest == "":
        return _Parsed([])
    js = _parse_json_list(rest)
    if js is not None:
        return _Parsed(js, json_form=True)
    return _Parsed([rest])


def _args_maybe_json_list(rest: str) -> _Parsed:
    js = _parse_json_list(rest)
    if js is not None:
        return _Parsed(js, json_form=True)
    return _Parsed(_split_ws(rest))


def _p_run(rest: str, ctx: _Ctx, flags: dict) -> _Parsed:
    return _args_maybe_json(rest)


def _p_cmd(rest: str, ctx: _Ctx, flags: dict) -> _Parsed:
    return _args_maybe_json(rest)


def _p_shell(rest: str, ctx: _Ctx, flags: dict) -> _Parsed:
    p = _args_maybe_json(rest)
    if not p.json_form:
        raise _ParseError("SHELL requires the arguments to be in JSON form")
    _at_least_one("SHELL", p.args)
    return p


def _p_copy_add(name: str) -> Callable[[str, _Ctx, dict], _Parsed]:
    def parse(rest: str, ctx: _Ctx, flags: dict) -> _Parsed:
        p = _args_maybe_json_list(rest)
        if len(p.args) < 2:
            raise _ParseError(
                f"{name} requires at least two arguments, but only one was provided. Destination could not be determined."
            )
        if not p.json_form and _heredoc_marker(p.args[-1]) is not None:
            raise _ParseError(f"{name} cannot accept a heredoc as a destination")
        return p

    return parse


def _p_volume(rest: str, ctx: _Ctx, flags: dict) -> _Parsed:
    p = _args_maybe_json_list(rest)
    _at_least_one("VOLUME", p.args)
    for v in p.args:
        if v == "":
            raise _ParseError("VOLUME specified can not be an empty string")
    return p


def _p_kv(name: str) -> Callable[[str, _Ctx, dict], _Parsed]:
    def parse(rest: str, ctx: _Ctx, flags: dict) -> _Parsed:
        pairs = _parse_name_val(rest, name, ctx.escape)
        if not pairs:
            raise _ParseError(f"{name} requires at least one argument")
        for k, _ in pairs:
            if k == "":
                raise _ParseError(f"{name} names can not be blank")
        flat = [x for kv in pairs for x in kv]
        return _Parsed(flat, pairs=tuple(pairs))

    return parse


def _p_arg(rest: str, ctx: _Ctx, flags: dict) -> _Parsed:
    words = _parse_words(rest, ctx.escape)
    _at_least_one("ARG", words)
    defaults: list[tuple[str, str | None]] = []
    for w in words:
        k, eq, v = w.partition("=")
        if k == "":
            raise _ParseError("ARG names can not be blank")
        defaults.append((k, v if eq else None))
    return _Parsed(words, arg_defaults=tuple(defaults))


def _p_expose(rest: str, ctx: _Ctx, flags: dict) -> _Parsed:
    args = _split_ws(rest)
    _at_least_one("EXPOSE", args)
    return _Parsed(args)


def _p_from(rest: str, ctx: _Ctx, flags: dict) -> _Parsed:
    args = _split_ws(rest)
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if "$" not in name and not _STAGE_NAME.match(name):
            raise _ParseError(
                f"invalid name for build stage: {_q(args[2])}, name can't start with a number or contain symbols"
            )
        return _Parsed([args[0], "AS", args[2]])
    if len(args) == 3:
        raise _ParseError(f"FROM requires either one or three arguments; second argument must be AS, not {_q(args[1])}")
    if len(args) != 1:
        raise _ParseError("FROM requires either one or three arguments")
    return _Parsed(args)


def _p_string(name: str) -> Callable[[str, _Ctx, dict], _Parsed]:
    def parse(rest: str, ctx: _Ctx, flags: dict) -> _Parsed:
        args = [rest] if rest else []
        _exactly_one(name, args)
        return _Parsed(args)

    return parse


def _p_healthcheck(rest: str, ctx: _Ctx, flags: dict) -> _Parsed:
    sep = 0
    while sep < len(rest) and not rest[sep].isspace():
        sep += 1
    if sep == 0:
        raise _ParseError("HEALTHCHECK requires at least one argument")
    nxt = sep
    while nxt < len(rest) and rest[nxt].isspace():
        nxt += 1
    typ = rest[:sep].upper()
    cmd = _args_maybe_json(rest[nxt:])
    if typ == "NONE":
        if cmd.args:
            raise _ParseError("HEALTHCHECK NONE takes no arguments")
        return _Parsed(["NONE"])
    if typ != "CMD":
        raise _ParseError(f"Unknown type {_q(typ)} in HEALTHCHECK (try CMD)")
    if not cmd.args:
        raise _ParseError("Missing command after HEALTHCHECK CMD")
    try:
        for key in ("interval", "timeout", "start-period", "start-interval"):
            for value in flags.get(key, []):
                parse_healthcheck_duration(key, value)
        for value in flags.get("retries", []):
            parse_retries(value)
    except FlagValueError as exc:
        raise _ParseError(str(exc)) from None
    return _Parsed(["CMD", *cmd.args], json_form=cmd.json_form)


_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)

_PARSERS: dict[str, Callable[[str, _Ctx, dict], _Parsed]] = {
    "ADD": _p_copy_add("ADD"),
    "ARG": _p_arg,
    "CMD": _p_cmd,
    "COPY": _p_copy_add("COPY"),
    "ENTRYPOINT": _p_cmd,
    "ENV": _p_kv("ENV"),
    "EXPOSE": _p_expose,
    "FROM": _p_from,
    "HEALTHCHECK": _p_healthcheck,
    "LABEL": _p_kv("LABEL"),
    "MAINTAINER": _p_string("MAINTAINER"),
    "RUN": _p_run,
    "SHELL": _p_shell,
    "STOPSIGNAL": _p_string("STOPSIGNAL"),
    "USER": _p_string("USER"),
    "VOLUME": _p_volume,
    "WORKDIR": _p_string("WORKDIR"),
}


def _build(line: str, ctx: _Ctx, start: int, end: int, heredocs: tuple[Heredoc, ...] = ()) -> Instruction:
    """Turn one logical line into an Instruction; raises _ParseError."""
    cmd, flag_words, rest = _split_command(line)
    name = cmd.upper()
    if name == "ONBUILD":
        flags = _parse_flags(flag_words, {})
        if not rest:
            raise _ParseError("ONBUILD requires at least one argument")
        trigger_kw = _WS.split(rest, maxsplit=1)[0].upper()
        if trigger_kw == "ONBUILD":
            raise _ParseError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger_kw in ("MAINTAINER", "FROM"):
            raise _ParseError(f"{trigger_kw} isn't allowed as an ONBUILD trigger")
        trigger = _build(rest, ctx, start, end)
        expression = _ONBUILD_PREFIX.sub("", line, count=1)
        return Instruction(
            name="ONBUILD",
            flags=flags,
            args=[expression],
            json_form=False,
            heredocs=(),
            original=line,
            start_line=start,
            end_line=end,
            filename=ctx.filename,
            onbuild_instruction=trigger,
        )
    parser = _PARSERS.get(name)
    if parser is None:
        raise _ParseError(f"unknown instruction: {cmd}")
    flags = _parse_flags(flag_words, FLAG_SPECS.get(name, {}))
    parsed = parser(rest, ctx, flags)
    return Instruction(
        name=name,
        flags=flags,
        args=parsed.args,
        json_form=parsed.json_form,
        heredocs=heredocs,
        original=line,
        start_line=start,
        end_line=end,
        filename=ctx.filename,
        pairs=parsed.pairs,
        arg_defaults=parsed.arg_defaults,
    )


def _wants_heredocs(line: str) -> bool:
    """True when the logical line is a non-JSON RUN/COPY/ADD containing ``<<``."""
    if "<<" not in line:
        return False
    cmd, _, rest = _split_command(line)
    if cmd.upper() not in _HEREDOC_COMMANDS:
        return False
    try:
        return _parse_json_list(rest) is None
    except _NotStringArray:
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


def _logical_lines(
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
        except _ParseError as exc:
            raise fail(str(exc), i + 1) from None
        if token.startswith("#"):
            token = ""
        i += 1
        start = i
        cont = _CONTINUATION[directives.escape]
        line, eol = _trim_continuation(token, cont)
        if eol and line == "":
            continue
        empty_cont = False
        while not eol and i < n:
            raw = lines[i]
            try:
                directives.feed(raw)
            except _ParseError as exc:
                raise fail(str(exc), i + 1) from None
            i += 1
            if _is_comment(raw):
                continue
            if raw.strip() == "":
                empty_cont = True
                continue
            part, eol = _trim_continuation(raw, cont)
            line += part
        if empty_cont:
            warnings.append(f"{filename}:{start}: empty continuation line found in: {line}")

        heredocs: list[Heredoc] = []
        if _wants_heredocs(line):
            try:
                markers = _heredoc_markers(line)
            except _ParseError as exc:
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


def parse_dockerfile(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile ``text`` into stages of raw, typed instructions.

    Source: BuildKit dockerfile frontend (parser + instructions packages).
    Raises :class:`executor.errors.DockerfileError` (message, filename,
    start line, end line) for: bad/duplicate parser directives, unknown
    instructions or flags, malformed arguments, unterminated heredocs,
    forbidden ONBUILD triggers, instructions other than ARG before the first
    FROM, invalid or duplicate stage names, and a file without any FROM.
    """
    logical, directives, warnings = _logical_lines(text, filename)
    if not logical:
        raise DockerfileError("file with no instructions", filename, 0)
    ctx = _Ctx(filename=filename, escape=directives.escape)
    meta_args: list[Instruction] = []
    stages: list[Stage] = []
    names: dict[str, int] = {}
    for line, start, end, heredocs in logical:
        try:
            ins = _build(line, ctx, start, end, heredocs)
        except _ParseError as exc:
            raise DockerfileError(str(exc), filename, start, end) from None
        if ins.name == "FROM":
            stage_name = ins.args[2].lower() if len(ins.args) == 3 else None
            if stage_name is not None and "$" not in stage_name:
                if stage_name in names:
                    raise DockerfileError(
                        f"duplicate stage name {_q(stage_name)} (first defined on line {names[stage_name]})",
                        filename,
                        start,
                        end,
                    )
                names[stage_name] = start
            stages.append(
                Stage(
                    index=len(stages),
                    base=ins.args[0],
                    name=stage_name,
                    platform=ins.flag("platform"),
                    instructions=[],
                    from_instruction=ins,
                )
            )
        elif not stages:
            if ins.name != "ARG":
                raise DockerfileError(
                    f"no build stage in current context: {ins.name} must come after FROM (only ARG may precede it)",
                    filename,
                    start,
                    end,
                )
            meta_args.append(ins)
        else:
            stages[-1].instructions.append(ins)
    if not stages:
        last = logical[-1]
        raise DockerfileError("no build stage: the Dockerfile has no FROM instruction", filename, last[1], last[2])
    return Dockerfile(
        filename=filename,
        directives=dict(directives.values),
        escape=directives.escape,
        meta_args=meta_args,
        stages=stages,
        warnings=warnings,
    )


def iter_instructions(df: Dockerfile) -> Iterable[Instruction]:
    """All instructions in file order: meta ARGs, then each stage's FROM and body."""
    yield from df.meta_args
    for stage in df.stages:
        yield stage.from_instruction
        yield from stage.instructions
