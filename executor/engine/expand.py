"""Word expansion bound to one instruction: errors name its Dockerfile line."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..dockerfile.instructions import Instruction
from ..dockerfile.shell import ExpansionError, expand_word
from ..errors import DockerfileError

Expand = Callable[[str], str]


def line_error(ins: Instruction, message: str) -> DockerfileError:
    """A DockerfileError for ``ins`` (file name and line range)."""
    loc = ins.location
    return DockerfileError(message, loc.filename, loc.start, loc.end)


def expander(ins: Instruction, env: Mapping[str, str | None], escape: str = "\\") -> Expand:
    """``expand(word)`` with the variables of ``env`` (None values are unset); raises
    DockerfileError naming ``ins``'s line for a bad substitution."""
    visible = {k: v for k, v in env.items() if v is not None}

    def expand(word: str) -> str:
        if not any(c in word for c in ("$", escape, "'", '"')):
            return word
        try:
            return expand_word(word, visible, escape)
        except ExpansionError as e:
            raise line_error(ins, str(e)) from None
        except RecursionError:
            raise line_error(ins, "variable substitutions (${...}) are nested too deeply") from None
    return expand
