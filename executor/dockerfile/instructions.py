"""Typed Dockerfile instructions: one frozen dataclass per keyword.

The parser (:mod:`executor.dockerfile.parser`) turns text into generic nodes (keyword, raw
flags, raw arguments, line range), as BuildKit's ``parser`` package does; :func:`from_nodes`
turns those into the typed instructions below, as BuildKit's ``instructions`` package does.
Every flag is parsed and validated here, at parse time (durations, octal modes, booleans,
mounts, network and security modes), so a bad value is reported with its Dockerfile line
before anything runs, and nothing downstream reads instruction text again.

Words stay *raw* where Docker expands them at build time with the then-current ARG/ENV
values (image names, sources, destinations, ENV/LABEL values, ``--chown``, ``--from``,
mount values): the engine expands them with :mod:`executor.dockerfile.shell`. A flag value
that contains no ``$`` is validated here; one that does is validated after expansion.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar, Mapping

from . import shell
from .mounts import MountSpec
from .nodes import Heredoc

__all__ = [
    "Location", "Instruction", "Command", "ArgDecl", "Network", "From", "Arg", "Env", "Label", "Run",
    "FileCopy", "Copy", "Add", "Workdir", "User", "Expose", "Volume", "Cmd", "Entrypoint", "Shell",
    "StopSignal", "Healthcheck", "Maintainer", "Onbuild", "Stage", "Dockerfile", "MountSpec", "Heredoc",
    "load_dockerfile", "from_nodes",
]


@dataclass(frozen=True)
class Location:
    """Where an instruction is: file name and 1-based first/last line (continuations and
    heredoc bodies included)."""

    filename: str
    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.filename}:{self.start}"


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """Base of every typed instruction. ``text``: the instruction as written (continuation
    lines joined, heredoc bodies excluded), used for logs and image history only."""

    keyword: ClassVar[str] = ""
    location: Location
    text: str


@dataclass(frozen=True)
class Command:
    """A command line of RUN/CMD/ENTRYPOINT/HEALTHCHECK: exec form (``json_form``: the JSON
    array items) or shell form (one word: the whole command text, run by the stage SHELL)."""

    words: tuple[str, ...]
    json_form: bool


@dataclass(frozen=True)
class ArgDecl:
    """One ``ARG name[=default]`` declaration (``default`` None when absent; raw, expanded at build time)."""

    name: str
    default: str | None


class Network(enum.StrEnum):
    """``RUN --network`` (Docker reference): the RUN's network namespace."""

    DEFAULT = "default"
    NONE = "none"
    HOST = "host"


@dataclass(frozen=True, kw_only=True)
class From(Instruction):
    """``FROM [--platform=P] image [AS name]``: ``image`` and ``platform`` raw (expanded with
    the global ARGs); ``stage_name`` lower-cased, None when unnamed."""

    keyword: ClassVar[str] = "FROM"
    image: str
    stage_name: str | None = None
    platform: str | None = None


@dataclass(frozen=True, kw_only=True)
class Arg(Instruction):
    keyword: ClassVar[str] = "ARG"
    args: tuple[ArgDecl, ...]


@dataclass(frozen=True, kw_only=True)
class Env(Instruction):
    """``ENV k=v ...`` (or the legacy ``ENV k v``): raw (key, value) pairs in order."""

    keyword: ClassVar[str] = "ENV"
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class Label(Instruction):
    keyword: ClassVar[str] = "LABEL"
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True, kw_only=True)
class Run(Instruction):
    """``RUN [--mount=...]... [--network=...] [--security=...] command``.

    ``mounts``: parsed at parse time (types, keys, literal modes/sizes validated), values raw
    and relative targets unresolved (:meth:`MountSpec.resolved` expands them for one RUN).
    ``security``: "sandbox" or "insecure" (None when absent). ``devices``: raw ``--device``
    values.
    """

    keyword: ClassVar[str] = "RUN"
    command: Command
    heredocs: tuple[Heredoc, ...] = ()
    mounts: tuple[MountSpec, ...] = ()
    network: Network = Network.DEFAULT
    security: str | None = None
    devices: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class FileCopy(Instruction):
    """What COPY and ADD share. ``sources``/``dest`` raw words (a source ``<<EOF`` names a
    heredoc in ``heredocs``); ``chown`` raw (``user[:group]``, names resolved in the stage
    root); ``chmod`` the raw flag value (octal, validated here when literal); ``excludes``
    raw ``--exclude`` patterns."""

    sources: tuple[str, ...]
    dest: str
    heredocs: tuple[Heredoc, ...] = ()
    chown: str | None = None
    chmod: str | None = None
    link: bool = False
    excludes: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Copy(FileCopy):
    """``COPY``: ``from_`` raw ``--from`` (a stage name or index, or an image), None for the
    build context; ``parents`` is ``--parents``."""

    keyword: ClassVar[str] = "COPY"
    from_: str | None = None
    parents: bool = False


@dataclass(frozen=True, kw_only=True)
class Add(FileCopy):
    """``ADD``: ``checksum`` raw ``--checksum`` (``sha256:<hex>``), ``unpack`` None when
    not given (default: unpack local archives only)."""

    keyword: ClassVar[str] = "ADD"
    checksum: str | None = None
    keep_git_dir: bool = False
    unpack: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Workdir(Instruction):
    keyword: ClassVar[str] = "WORKDIR"
    path: str


@dataclass(frozen=True, kw_only=True)
class User(Instruction):
    keyword: ClassVar[str] = "USER"
    user: str


@dataclass(frozen=True, kw_only=True)
class Expose(Instruction):
    """``EXPOSE``: raw port words (``80``, ``8000-8010/udp``, ``$PORT``)."""

    keyword: ClassVar[str] = "EXPOSE"
    ports: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Volume(Instruction):
    keyword: ClassVar[str] = "VOLUME"
    paths: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Cmd(Instruction):
    keyword: ClassVar[str] = "CMD"
    command: Command


@dataclass(frozen=True, kw_only=True)
class Entrypoint(Instruction):
    keyword: ClassVar[str] = "ENTRYPOINT"
    command: Command


@dataclass(frozen=True, kw_only=True)
class Shell(Instruction):
    keyword: ClassVar[str] = "SHELL"
    argv: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class StopSignal(Instruction):
    keyword: ClassVar[str] = "STOPSIGNAL"
    signal: str


@dataclass(frozen=True, kw_only=True)
class Healthcheck(Instruction):
    """``HEALTHCHECK NONE`` (``command`` None) or ``HEALTHCHECK [flags] CMD ...``.

    Durations are nanoseconds (as the image config stores them), None when not given;
    parsed with :func:`executor.dockerfile.duration.parse_go_duration`.
    """

    keyword: ClassVar[str] = "HEALTHCHECK"
    command: Command | None
    interval: int | None = None
    timeout: int | None = None
    start_period: int | None = None
    start_interval: int | None = None
    retries: int | None = None


@dataclass(frozen=True, kw_only=True)
class Maintainer(Instruction):
    keyword: ClassVar[str] = "MAINTAINER"
    name: str


@dataclass(frozen=True, kw_only=True)
class Onbuild(Instruction):
    """``ONBUILD <trigger>``: ``expression`` is the trigger text stored in the image config;
    ``trigger`` the parsed trigger (validated now, run when a later build uses the image)."""

    keyword: ClassVar[str] = "ONBUILD"
    expression: str
    trigger: Instruction


@dataclass(frozen=True)
class Stage:
    """A build stage: its FROM and the instructions up to the next FROM."""

    index: int
    from_: From
    instructions: tuple[Instruction, ...]

    @property
    def name(self) -> str | None:
        return self.from_.stage_name


@dataclass(frozen=True)
class Dockerfile:
    """A whole typed Dockerfile: global ARGs (before the first FROM), stages in file order,
    parser directives (``syntax``, ``escape``, ``check``), the escape character, warnings."""

    filename: str
    escape: str
    directives: dict[str, str]
    meta_args: tuple[Arg, ...]
    stages: tuple[Stage, ...]
    warnings: tuple[str, ...] = ()

    def expand_word(self, word: str, env: Mapping[str, str]) -> str:
        """``word`` expanded with ``env`` and this file's escape character (a backslash, or a
        backtick under the ``escape`` directive, with which a backslash is an ordinary
        character): :func:`executor.dockerfile.shell.expand_word` with ``escape=self.escape``.
        Raises :class:`executor.dockerfile.shell.ExpansionError`."""
        return shell.expand_word(word, env, self.escape)

    def expand_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        """Like :meth:`expand_word`, then field-split (:func:`executor.dockerfile.shell.expand_words`)."""
        return shell.expand_words(word, env, self.escape)


def load_dockerfile(text: str, filename: str = "Dockerfile") -> Dockerfile:
    """Parse Dockerfile ``text`` into a typed :class:`Dockerfile` (parse + :func:`from_nodes`).

    Raises :class:`executor.errors.DockerfileError` (file name, first and last line) for any
    syntax error and any bad flag value in any stage, before anything runs.
    See :func:`executor.dockerfile.convert.load_dockerfile`.
    """
    from .convert import load_dockerfile as load

    return load(text, filename)


def from_nodes(df) -> Dockerfile:
    """Typed :class:`Dockerfile` from the parser's generic result
    (:class:`executor.dockerfile.parser.Dockerfile`); raises
    :class:`executor.errors.DockerfileError` for the first bad flag value.
    See :func:`executor.dockerfile.convert.from_nodes`."""
    from .convert import from_nodes as convert

    return convert(df)
