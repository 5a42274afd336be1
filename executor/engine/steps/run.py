"""RUN: execute a command inside the stage root and capture what it changed.

Source: Docker Dockerfile reference (RUN, shell and exec form, heredocs).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...dockerfile.parser import Instruction
from ..state import StageState
from .metadata import command_words

HEREDOC_SCRIPT = "/.executor-heredoc-script"


@dataclass(frozen=True)
class RunCommand:
    """The argv to exec and, for heredoc scripts, a script file to place in the root."""

    argv: list[str]
    script: str | None = None  # content of a script the argv refers to (shebang heredoc)


def build_run_command(state: StageState, ins: Instruction) -> RunCommand:
    """Turn a RUN instruction into an argv, handling heredocs as BuildKit does.

    ``RUN <<EOF`` alone: the body is the script (run by its shebang interpreter when it has
    one, else by the stage shell). Heredocs inside a longer command are handed to the shell
    with their bodies, so ``RUN cat <<EOF > /file`` works as in a shell script.
    """
    if ins.json_form or not ins.heredocs:
        return RunCommand(argv=command_words(state, ins))
    line = ins.args[0] if ins.args else ""
    first = ins.heredocs[0]
    stripped = line.strip()
    if len(ins.heredocs) == 1 and stripped.startswith("<<") and stripped.lstrip("<-").strip("'\"") == first.name:
        body = first.content
        if body.startswith("#!"):
            return RunCommand(argv=[HEREDOC_SCRIPT], script=body)
        return RunCommand(argv=state.shell + [body])
    text = line
    for h in ins.heredocs:
        text += "\n" + h.content + ("" if h.content.endswith("\n") or not h.content else "\n") + h.name
    return RunCommand(argv=state.shell + [text])
