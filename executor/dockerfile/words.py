"""Word and flag splitting of one instruction line (BuildKit ``frontend/dockerfile/parser``
``line_parsers.go`` and ``splitCommand``/``extractBuilderFlags``, ``instructions/bflag.go``).

Everything here works on one logical line (continuations already joined) and raises
:class:`ParseError` (a message without location; the caller adds file and lines).
"""

from __future__ import annotations

import json
import re

from executor.dockerfile.duration import parse_go_duration as _go_duration_ns
from executor.dockerfile.flagvalues import shown

__all__ = ["FLAG_SPECS", "INSTRUCTIONS", "parse_flag_kv", "parse_go_duration"]

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


class ParseError(Exception):
    """Internal: message without location; wrapped into DockerfileError by the caller."""


def extract_flags(text: str) -> tuple[str, list[str]]:
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


def parse_flags(words: list[str], spec: dict[str, str]) -> dict[str, list[str]]:
    """Validate flag words against ``spec`` (BuildKit BFlags.Parse)."""
    out: dict[str, list[str]] = {}
    for word in words:
        if not word.startswith("--"):
            raise ParseError(f"arg should start with -- : {word}")
        body = word[2:]
        name, eq, value = body.partition("=")
        kind = spec.get(name)
        if kind is None:
            known = ", ".join(f"--{k}" for k in spec) or "none"
            raise ParseError(f"unknown flag: {name} (allowed: {known})")
        if name in out and kind != STRINGS:
            raise ParseError(f"duplicate flag specified: {name}")
        if kind == BOOL:
            if eq and value == "":
                raise ParseError(f"missing a value on flag: {name}")
            lower = value.lower()
            if lower == "":
                lower = "true"
            elif lower not in ("true", "false"):
                raise ParseError(f"expecting boolean value for flag {name}, not: {value}")
            out[name] = [lower]
        else:
            if not eq:
                raise ParseError(f"missing a value on flag: {name}")
            out.setdefault(name, []).append(value)
    return out


def split_csv(value: str) -> list[str]:
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
                    raise ValueError(f'extraneous or missing " in quoted-field of {shown(value)!r}')
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
                raise ValueError(f'extraneous or missing " in quoted-field of {shown(value)!r}')
            fields.append("".join(buf))
        else:
            j = value.find(",", i)
            text = value[i:] if j < 0 else value[i:j]
            if '"' in text:
                raise ValueError(f'bare " in non-quoted-field of {shown(value)!r}')
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
    for fieldtext in split_csv(value):
        if fieldtext == "":
            continue
        key, eq, val = fieldtext.partition("=")
        key = key.strip().lower()
        if not key:
            raise ValueError(f"invalid field {shown(fieldtext)!r} in {shown(value)!r}: empty key")
        out[key] = val if eq else "true"
    return out


def parse_go_duration(text: str) -> float:
    """Seconds in Go duration ``text`` (see :mod:`executor.dockerfile.duration`); raises ValueError."""
    return _go_duration_ns(text) / 1e9


# ---------------------------------------------------------------------------
# Argument splitting (BuildKit line_parsers.go behaviour)
# ---------------------------------------------------------------------------

WS = re.compile(r"[\t\v\f\r ]+")


class NotStringArray(ParseError):
    pass


def _reject_constant(name: str) -> float:
    raise ValueError(name)  # NaN/Infinity are not JSON for Go


def parse_json_list(rest: str) -> list[str] | None:
    """JSON string array, None when ``rest`` is not a JSON array (BuildKit parseJSON: Go
    encoding/json, whose nesting limit is 10 000 levels).
    Raises NotStringArray for a valid array with non-string items (nested arrays included,
    however deep: the check does not recurse)."""
    text = rest.lstrip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError:
        return None
    except RecursionError:  # deeper than Python's stack allows: decide without recursing
        depth = json_nesting_depth(text)
        if depth is None or depth > JSON_MAX_DEPTH:
            return None
        raise NotStringArray("when using JSON array syntax, arrays must be comprised of strings only") from None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise NotStringArray("when using JSON array syntax, arrays must be comprised of strings only")
    return value


#: Go encoding/json's maximum nesting depth; deeper input is not JSON.
JSON_MAX_DEPTH = 10_000
_JSON_TOKEN = re.compile(
    r'[ \t\n\r]*(?:("(?:[^"\\\x00-\x1f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*")'
    r"|(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null)|([\[\]{},:]))")


def json_nesting_depth(text: str) -> int | None:
    """Nesting depth of ``text`` when it is exactly one valid JSON value (RFC 8259), else None.
    Iterative (an explicit stack), so any depth is fine; linear in ``len(text)``."""
    stack: list[str] = []
    depth = 0
    # what may come next: "value", "first" (value or ']' after '['), "key", "firstkey" (key or
    # '}' after '{'), "colon", "next" (',' or the closing bracket), "end"
    want = "value"
    pos = 0
    while True:
        m = _JSON_TOKEN.match(text, pos)
        if m is None:
            return depth if want == "end" and text[pos:].strip(" \t\n\r") == "" else None
        pos = m.end()
        string, scalar, punct = m.groups()
        if want in ("value", "first"):
            if punct in ("[", "{"):
                stack.append(punct)
                depth = max(depth, len(stack))
                want = "first" if punct == "[" else "firstkey"
                continue
            if punct == "]" and want == "first":
                stack.pop()
            elif string is None and scalar is None:
                return None
        elif want in ("key", "firstkey"):
            if punct == "}" and want == "firstkey":
                stack.pop()
            elif string is None:
                return None
            else:
                want = "colon"
                continue
        elif want == "colon":
            if punct != ":":
                return None
            want = "value"
            continue
        elif want == "next":
            if punct == ",":
                want = "value" if stack[-1] == "[" else "key"
                continue
            if punct != ("]" if stack[-1] == "[" else "}"):
                return None
            stack.pop()
        else:  # "end": trailing data
            return None
        want = "next" if stack else "end"


def split_ws(rest: str) -> list[str]:
    return WS.split(rest) if rest else []


def parse_words(rest: str, escape: str) -> list[str]:
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


def parse_name_val(rest: str, key: str, escape: str) -> list[tuple[str, str]]:
    """ENV/LABEL ``k=v k2="v 2"`` or legacy ``k v w`` (BuildKit parseNameVal)."""
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = WS.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise ParseError(f"{key} must have two arguments")
        return [(parts[0], parts[1])]
    pairs = []
    for word in words:
        if "=" not in word:
            raise ParseError(f"Syntax error - can't find = in {quote(word)}. Must be of the form: name=value")
        k, _, v = word.partition("=")
        pairs.append((k, v))
    return pairs


def quote(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)



def split_command(line: str) -> tuple[str, list[str], str]:
    """(keyword, flag words, rest) from an instruction line (BuildKit splitCommand)."""
    parts = WS.split(line.strip(), maxsplit=1)
    cmd = parts[0]
    if len(parts) < 2:
        return cmd, [], ""
    rest, flags = extract_flags(parts[1])
    return cmd, flags, rest.strip()

