"""Generic Dockerfile parse nodes (BuildKit ``frontend/dockerfile/parser`` Node, flattened):
one :class:`Instruction` per logical line with raw flags and arguments, grouped into
:class:`Stage` objects of a :class:`Dockerfile`. :mod:`executor.dockerfile.instructions` holds
the typed form built from these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Heredoc", "Instruction", "Stage", "Dockerfile"]

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

