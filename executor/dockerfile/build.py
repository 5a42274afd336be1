"""One logical line -> one generic :class:`~executor.dockerfile.nodes.Instruction`: keyword,
flags checked against :data:`~executor.dockerfile.words.FLAG_SPECS`, arguments split per
instruction (BuildKit ``frontend/dockerfile/parser/line_parsers.go`` dispatch table and the
argument checks of ``frontend/dockerfile/instructions/parse.go``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from executor.dockerfile.flagvalues import FlagValueError, parse_healthcheck_duration, parse_retries

from .lines import heredoc_marker
from .nodes import Heredoc, Instruction
from .words import (FLAG_SPECS, WS, ParseError, parse_flags, parse_json_list, parse_name_val, parse_words, quote,
                    split_command, split_ws)

@dataclass
class Ctx:
    filename: str
    escape: str



def _exactly_one(name: str, args: list[str]) -> None:
    if len(args) != 1:
        raise ParseError(f"{name} requires exactly one argument")


def _at_least_one(name: str, args: list[str]) -> None:
    if not args:
        raise ParseError(f"{name} requires at least one argument")


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
    js = parse_json_list(rest)
    if js is not None:
        return _Parsed(js, json_form=True)
    return _Parsed([rest])


def _args_maybe_json_list(rest: str) -> _Parsed:
    js = parse_json_list(rest)
    if js is not None:
        return _Parsed(js, json_form=True)
    return _Parsed(split_ws(rest))


def _p_run(rest: str, ctx: Ctx, flags: dict) -> _Parsed:
    return _args_maybe_json(rest)


def _p_cmd(rest: str, ctx: Ctx, flags: dict) -> _Parsed:
    return _args_maybe_json(rest)


def _p_shell(rest: str, ctx: Ctx, flags: dict) -> _Parsed:
    p = _args_maybe_json(rest)
    if not p.json_form:
        raise ParseError("SHELL requires the arguments to be in JSON form")
    _at_least_one("SHELL", p.args)
    return p


def _p_copy_add(name: str) -> Callable[[str, Ctx, dict], _Parsed]:
    def parse(rest: str, ctx: Ctx, flags: dict) -> _Parsed:
        p = _args_maybe_json_list(rest)
        if len(p.args) < 2:
            raise ParseError(f"{name} requires at least two arguments, but only one was provided. "
                             "Destination could not be determined.")
        if not p.json_form and heredoc_marker(p.args[-1]) is not None:
            raise ParseError(f"{name} cannot accept a heredoc as a destination")
        return p

    return parse


def _p_volume(rest: str, ctx: Ctx, flags: dict) -> _Parsed:
    p = _args_maybe_json_list(rest)
    _at_least_one("VOLUME", p.args)
    for v in p.args:
        if v == "":
            raise ParseError("VOLUME specified can not be an empty string")
    return p


def _p_kv(name: str) -> Callable[[str, Ctx, dict], _Parsed]:
    def parse(rest: str, ctx: Ctx, flags: dict) -> _Parsed:
        pairs = parse_name_val(rest, name, ctx.escape)
        if not pairs:
            raise ParseError(f"{name} requires at least one argument")
        for k, _ in pairs:
            if k == "":
                raise ParseError(f"{name} names can not be blank")
        flat = [x for kv in pairs for x in kv]
        return _Parsed(flat, pairs=tuple(pairs))

    return parse


def _p_arg(rest: str, ctx: Ctx, flags: dict) -> _Parsed:
    words = parse_words(rest, ctx.escape)
    _at_least_one("ARG", words)
    defaults: list[tuple[str, str | None]] = []
    for w in words:
        k, eq, v = w.partition("=")
        if k == "":
            raise ParseError("ARG names can not be blank")
        defaults.append((k, v if eq else None))
    return _Parsed(words, arg_defaults=tuple(defaults))


def _p_expose(rest: str, ctx: Ctx, flags: dict) -> _Parsed:
    args = split_ws(rest)
    _at_least_one("EXPOSE", args)
    return _Parsed(args)


def _p_from(rest: str, ctx: Ctx, flags: dict) -> _Parsed:
    args = split_ws(rest)
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if "$" not in name and not _STAGE_NAME.match(name):
            raise ParseError(
                f"invalid name for build stage: {quote(args[2])}, name can't start with a number or contain symbols"
            )
        return _Parsed([args[0], "AS", args[2]])
    if len(args) == 3:
        raise ParseError("FROM requires either one or three arguments; "
                         f"second argument must be AS, not {quote(args[1])}")
    if len(args) != 1:
        raise ParseError("FROM requires either one or three arguments")
    return _Parsed(args)


def _p_string(name: str) -> Callable[[str, Ctx, dict], _Parsed]:
    def parse(rest: str, ctx: Ctx, flags: dict) -> _Parsed:
        args = [rest] if rest else []
        _exactly_one(name, args)
        return _Parsed(args)

    return parse


def _p_healthcheck(rest: str, ctx: Ctx, flags: dict) -> _Parsed:
    sep = 0
    while sep < len(rest) and not rest[sep].isspace():
        sep += 1
    if sep == 0:
        raise ParseError("HEALTHCHECK requires at least one argument")
    nxt = sep
    while nxt < len(rest) and rest[nxt].isspace():
        nxt += 1
    typ = rest[:sep].upper()
    cmd = _args_maybe_json(rest[nxt:])
    if typ == "NONE":
        if cmd.args:
            raise ParseError("HEALTHCHECK NONE takes no arguments")
        return _Parsed(["NONE"])
    if typ != "CMD":
        raise ParseError(f"Unknown type {quote(typ)} in HEALTHCHECK (try CMD)")
    if not cmd.args:
        raise ParseError("Missing command after HEALTHCHECK CMD")
    try:
        for key in ("interval", "timeout", "start-period", "start-interval"):
            for value in flags.get(key, []):
                parse_healthcheck_duration(key, value)
        for value in flags.get("retries", []):
            parse_retries(value)
    except FlagValueError as exc:
        raise ParseError(str(exc)) from None
    return _Parsed(["CMD", *cmd.args], json_form=cmd.json_form)


_ONBUILD_PREFIX = re.compile(r"^\s*ONBUILD\s*", re.IGNORECASE)

_PARSERS: dict[str, Callable[[str, Ctx, dict], _Parsed]] = {
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


def build_instruction(line: str, ctx: Ctx, start: int, end: int, heredocs: tuple[Heredoc, ...] = ()) -> Instruction:
    """Turn one logical line into an Instruction; raises ParseError."""
    cmd, flag_words, rest = split_command(line)
    name = cmd.upper()
    if name == "ONBUILD":
        flags = parse_flags(flag_words, {})
        if not rest:
            raise ParseError("ONBUILD requires at least one argument")
        trigger_kw = WS.split(rest, maxsplit=1)[0].upper()
        if trigger_kw == "ONBUILD":
            raise ParseError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
        if trigger_kw in ("MAINTAINER", "FROM"):
            raise ParseError(f"{trigger_kw} isn't allowed as an ONBUILD trigger")
        trigger = build_instruction(rest, ctx, start, end)
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
        raise ParseError(f"unknown instruction: {cmd}")
    flags = parse_flags(flag_words, FLAG_SPECS.get(name, {}))
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

