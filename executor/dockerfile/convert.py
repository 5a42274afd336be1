"""Generic parser nodes -> typed instructions (:mod:`executor.dockerfile.instructions`).

Follows BuildKit's ``frontend/dockerfile/instructions`` package (``ParseInstruction``,
``ParseCommand``): one typed value per keyword, every flag parsed and checked here, so a bad
value is a :class:`executor.errors.DockerfileError` naming the file and line before any stage
runs. Words the engine expands at build time stay raw (see the instructions module doc).
"""

from __future__ import annotations

from typing import Callable

from executor.errors import DockerfileError

from . import instructions as T
from .flagvalues import (FlagValueError, check_network, check_security, parse_chmod, parse_healthcheck_duration,
                         parse_retries, shown)
from .mounts import MountError, MountSpec, parse_mount_flag
from .parser import Dockerfile as NodeFile
from .parser import Instruction as Node
from .parser import parse_dockerfile

__all__ = ["from_nodes", "from_node", "load_dockerfile"]


def load_dockerfile(text: str, filename: str = "Dockerfile") -> T.Dockerfile:
    """Parse Dockerfile ``text`` and convert it to typed instructions.

    ``filename`` is used in error messages and :class:`~executor.dockerfile.instructions.Location`.
    Raises :class:`executor.errors.DockerfileError` (file, first and last line of the offending
    instruction) for anything :func:`~executor.dockerfile.parser.parse_dockerfile` rejects and
    for every bad flag value (durations, retries, octal ``--chmod``, ``--network``,
    ``--security``, ``--mount``), in any stage, before anything is built.
    """
    return from_nodes(parse_dockerfile(text, filename))


def from_nodes(df: NodeFile) -> T.Dockerfile:
    """Convert a :class:`executor.dockerfile.parser.Dockerfile` of generic nodes into a typed
    :class:`~executor.dockerfile.instructions.Dockerfile` (same stages, order and directives).
    Raises :class:`executor.errors.DockerfileError` for the first bad flag value, in file order."""
    meta = tuple(_arg(n, _loc(n)) for n in df.meta_args)
    stages = []
    for st in df.stages:
        from_ = from_node(st.from_instruction)
        assert isinstance(from_, T.From)
        stages.append(T.Stage(index=st.index, from_=from_, instructions=tuple(from_node(n) for n in st.instructions)))
    return T.Dockerfile(filename=df.filename, escape=df.escape, directives=dict(df.directives), meta_args=meta,
                        stages=tuple(stages), warnings=tuple(df.warnings))


def from_node(node: Node) -> T.Instruction:
    """One generic node -> its typed instruction (ONBUILD triggers included).
    Raises :class:`executor.errors.DockerfileError` located at the node."""
    conv = _CONVERTERS.get(node.name)
    if conv is None:
        raise _err(node, f"unknown instruction: {node.name}")
    try:
        return conv(node, _loc(node))
    except FlagValueError as e:
        raise _err(node, str(e)) from None


def _loc(node: Node) -> T.Location:
    return T.Location(node.filename, node.start_line, node.end_line)


def _err(node: Node, message: str) -> DockerfileError:
    return DockerfileError(message, node.filename, node.start_line, node.end_line)


def _command(node: Node, words: list[str]) -> T.Command:
    return T.Command(tuple(words), node.json_form)


def _from(n: Node, loc: T.Location) -> T.From:
    name = n.args[2].lower() if len(n.args) == 3 else None
    return T.From(location=loc, text=n.original, image=n.args[0], stage_name=name, platform=n.flag("platform"))


def _arg(n: Node, loc: T.Location) -> T.Arg:
    return T.Arg(location=loc, text=n.original, args=tuple(T.ArgDecl(k, v) for k, v in n.arg_defaults))


def _env(n: Node, loc: T.Location) -> T.Env:
    return T.Env(location=loc, text=n.original, pairs=tuple(n.pairs))


def _label(n: Node, loc: T.Location) -> T.Label:
    return T.Label(location=loc, text=n.original, pairs=tuple(n.pairs))


def _run(n: Node, loc: T.Location) -> T.Run:
    mounts: list[MountSpec] = []
    for value in n.flags.get("mount", []):
        ssh_index = sum(1 for m in mounts if m.type == "ssh")
        try:
            mounts.append(parse_mount_flag(value, ssh_index))
        except MountError as e:
            raise _err(n, f"RUN --mount={shown(value)}: {e}") from None
    network = T.Network(check_network(n.flag("network"))) if n.flag("network") is not None else T.Network.DEFAULT
    security = n.flag("security")
    if security is not None:
        check_security(security)
    return T.Run(location=loc, text=n.original, command=_command(n, n.args), heredocs=tuple(n.heredocs),
                 mounts=tuple(mounts), network=network, security=security,
                 devices=tuple(n.flags.get("device", [])))


def _chmod(n: Node) -> str | None:
    value = n.flag("chmod")
    if value is not None and "$" not in value:
        parse_chmod(n.name, value)
    return value


def _copy(n: Node, loc: T.Location) -> T.Copy:
    return T.Copy(location=loc, text=n.original, sources=tuple(n.args[:-1]), dest=n.args[-1],
                  heredocs=tuple(n.heredocs), chown=n.flag("chown"), chmod=_chmod(n), link=n.bool_flag("link"),
                  excludes=tuple(n.flags.get("exclude", [])), from_=n.flag("from"), parents=n.bool_flag("parents"))


def _add(n: Node, loc: T.Location) -> T.Add:
    unpack = n.flag("unpack")
    return T.Add(location=loc, text=n.original, sources=tuple(n.args[:-1]), dest=n.args[-1],
                 heredocs=tuple(n.heredocs), chown=n.flag("chown"), chmod=_chmod(n), link=n.bool_flag("link"),
                 excludes=tuple(n.flags.get("exclude", [])), checksum=n.flag("checksum"),
                 keep_git_dir=n.bool_flag("keep-git-dir"), unpack=None if unpack is None else unpack == "true")


def _workdir(n: Node, loc: T.Location) -> T.Workdir:
    return T.Workdir(location=loc, text=n.original, path=n.args[0])


def _user(n: Node, loc: T.Location) -> T.User:
    return T.User(location=loc, text=n.original, user=n.args[0])


def _expose(n: Node, loc: T.Location) -> T.Expose:
    return T.Expose(location=loc, text=n.original, ports=tuple(n.args))


def _volume(n: Node, loc: T.Location) -> T.Volume:
    return T.Volume(location=loc, text=n.original, paths=tuple(n.args))


def _cmd(n: Node, loc: T.Location) -> T.Cmd:
    return T.Cmd(location=loc, text=n.original, command=_command(n, n.args))


def _entrypoint(n: Node, loc: T.Location) -> T.Entrypoint:
    return T.Entrypoint(location=loc, text=n.original, command=_command(n, n.args))


def _shell(n: Node, loc: T.Location) -> T.Shell:
    return T.Shell(location=loc, text=n.original, argv=tuple(n.args))


def _stopsignal(n: Node, loc: T.Location) -> T.StopSignal:
    return T.StopSignal(location=loc, text=n.original, signal=n.args[0])


def _maintainer(n: Node, loc: T.Location) -> T.Maintainer:
    return T.Maintainer(location=loc, text=n.original, name=n.args[0])


def _healthcheck(n: Node, loc: T.Location) -> T.Healthcheck:
    durations = {}
    for flag in ("interval", "timeout", "start-period", "start-interval"):
        value = n.flag(flag)
        durations[flag.replace("-", "_")] = None if value is None else parse_healthcheck_duration(flag, value)
    retries = n.flag("retries")
    command = None if n.args[0] == "NONE" else _command(n, n.args[1:])
    return T.Healthcheck(location=loc, text=n.original, command=command,
                         retries=None if retries is None else parse_retries(retries), **durations)


def _onbuild(n: Node, loc: T.Location) -> T.Onbuild:
    assert n.onbuild_instruction is not None
    return T.Onbuild(location=loc, text=n.original, expression=n.args[0], trigger=from_node(n.onbuild_instruction))


_CONVERTERS: dict[str, Callable[[Node, T.Location], T.Instruction]] = {
    "ADD": _add, "ARG": _arg, "CMD": _cmd, "COPY": _copy, "ENTRYPOINT": _entrypoint, "ENV": _env,
    "EXPOSE": _expose, "FROM": _from, "HEALTHCHECK": _healthcheck, "LABEL": _label, "MAINTAINER": _maintainer,
    "ONBUILD": _onbuild, "RUN": _run, "SHELL": _shell, "STOPSIGNAL": _stopsignal, "USER": _user,
    "VOLUME": _volume, "WORKDIR": _workdir,
}
