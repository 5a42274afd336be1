"""ARG: declare build variables for the rest of the stage.

Value order (Docker reference, "ARG"): ``--build-arg`` given, else the declared default
(expanded), else the global ARG of the same name (a redeclared meta ARG), else unset. Only the
*names* enter the cache key; values reach it through the steps that see them.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...dockerfile import instructions as di
from ..step import Prepared


@dataclass
class ArgStep:
    instruction: di.Arg

    def prepare(self, ctx) -> Prepared:
        state, opts = ctx.state, ctx.opts
        for decl in self.instruction.args:
            if decl.name in opts.build_args:
                value: str | None = opts.build_args[decl.name]
                ctx.build.note_build_arg(decl.name)
            elif decl.default is not None:
                value = ctx.expand(decl.default)
            elif decl.name in state.meta:
                value = state.meta[decl.name]
            else:
                value = None
            state.args[decl.name] = value
        names = sorted(d.name for d in self.instruction.args)
        text = "ARG " + " ".join(d.name if d.default is None else f"{d.name}={d.default}"
                                 for d in self.instruction.args)
        return Prepared(created_by=text, components=lambda: {"instruction": "ARG", "names": " ".join(names)})
