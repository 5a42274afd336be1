"""Dockerfile parser: text -> generic instruction nodes grouped into build stages.

The work is split over :mod:`.lines` (directives, continuations, comments, heredoc bodies),
:mod:`.words` (flag and word splitting), :mod:`.build` (one node per logical line) and
:mod:`.nodes` (the node classes); this module assembles stages and re-exports the public
names. :func:`executor.dockerfile.instructions.load_dockerfile` turns the result into typed
instructions.

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

from typing import Iterable

from executor.errors import DockerfileError

from .build import Ctx, build_instruction
from .lines import logical_lines
from .nodes import Dockerfile, Heredoc, Instruction, Stage
from .words import FLAG_SPECS, INSTRUCTIONS, ParseError, parse_flag_kv, parse_go_duration, quote

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
    "iter_instructions",
]


def parse_dockerfile(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile ``text`` into stages of raw, typed instructions.

    Source: BuildKit dockerfile frontend (parser + instructions packages).
    Raises :class:`executor.errors.DockerfileError` (message, filename,
    start line, end line) for: bad/duplicate parser directives, unknown
    instructions or flags, malformed arguments, unterminated heredocs,
    forbidden ONBUILD triggers, instructions other than ARG before the first
    FROM, invalid or duplicate stage names, and a file without any FROM.
    """
    logical, directives, warnings = logical_lines(text, filename)
    if not logical:
        raise DockerfileError("file with no instructions", filename, 0)
    ctx = Ctx(filename=filename, escape=directives.escape)
    meta_args: list[Instruction] = []
    stages: list[Stage] = []
    names: dict[str, int] = {}
    for line, start, end, heredocs in logical:
        try:
            ins = build_instruction(line, ctx, start, end, heredocs)
        except ParseError as exc:
            raise DockerfileError(str(exc), filename, start, end) from None
        if ins.name == "FROM":
            stage_name = ins.args[2].lower() if len(ins.args) == 3 else None
            if stage_name is not None and "$" not in stage_name:
                if stage_name in names:
                    raise DockerfileError(
                        f"duplicate stage name {quote(stage_name)} (first defined on line {names[stage_name]})",
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

