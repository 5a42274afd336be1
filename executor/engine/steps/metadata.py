"""Instructions that only change the image config: ENV, LABEL, USER, EXPOSE, VOLUME, CMD,
ENTRYPOINT, SHELL, STOPSIGNAL, HEALTHCHECK, MAINTAINER, ONBUILD, ARG.

Source: Docker Dockerfile reference; OCI image-spec config.md for field names.
"""

from __future__ import annotations

from ...dockerfile.duration import parse_go_duration

import re
import signal as _signal
from typing import Callable

from ...dockerfile.parser import Instruction
from ...errors import DockerfileError
from ..state import StageState

Expand = Callable[[str], str]


def _err(ins: Instruction, msg: str) -> DockerfileError:
    return DockerfileError(msg, ins.filename, ins.start_line, ins.end_line)


def do_env(state: StageState, ins: Instruction, expand: Expand) -> None:
    """ENV k=v ...: each value expanded with the variables visible before this instruction."""
    for key, raw in ins.pairs:
        state.set_env(expand(key), expand(raw))


def do_label(state: StageState, ins: Instruction, expand: Expand) -> None:
    labels = dict(state.config.get("Labels") or {})
    for key, raw in ins.pairs:
        labels[expand(key)] = expand(raw)
    state.config["Labels"] = labels


def do_user(state: StageState, ins: Instruction, expand: Expand) -> None:
    state.config["User"] = expand(ins.args[0])


def _port_specs(ins: Instruction, word: str) -> list[str]:
    m = re.fullmatch(r"(?:[^:]*:)?(?:[^:]*:)?(\d+)(?:-(\d+))?(?:/(\w+))?", word)
    if not m:
        raise _err(ins, f"invalid EXPOSE port {word!r}: use PORT[/PROTO] or START-END[/PROTO]")
    start = int(m.group(1))
    end = int(m.group(2) or start)
    proto = (m.group(3) or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise _err(ins, f"invalid EXPOSE protocol {proto!r}: use tcp, udp or sctp")
    if end < start or end > 65535:
        raise _err(ins, f"invalid EXPOSE port range {word!r}")
    return [f"{p}/{proto}" for p in range(start, end + 1)]


def do_expose(state: StageState, ins: Instruction, expand: Expand) -> None:
    ports = dict(state.config.get("ExposedPorts") or {})
    for word in ins.args:
        for spec in _port_specs(ins, expand(word)):
            ports[spec] = {}
    state.config["ExposedPorts"] = ports


def do_volume(state: StageState, ins: Instruction, expand: Expand) -> None:
    vols = dict(state.config.get("Volumes") or {})
    for word in ins.args:
        v = expand(word)
        if not v:
            raise _err(ins, "VOLUME specified can not be an empty string")
        vols[v] = {}
    state.config["Volumes"] = vols


def command_words(state: StageState, ins: Instruction) -> list[str]:
    """CMD/ENTRYPOINT/RUN argv: exec form as given, shell form wrapped in the stage's SHELL."""
    if ins.json_form:
        return list(ins.args)
    return state.shell + [ins.args[0]] if ins.args else []


def do_cmd(state: StageState, ins: Instruction, expand: Expand) -> None:
    state.config["Cmd"] = command_words(state, ins)
    state.cmd_set = True


def do_entrypoint(state: StageState, ins: Instruction, expand: Expand) -> None:
    words = command_words(state, ins)
    state.config["Entrypoint"] = words or None
    if not state.cmd_set:
        # An inherited CMD does not survive a new ENTRYPOINT (Docker reference, "Understand how CMD and ENTRYPOINT interact").
        state.config["Cmd"] = None


def do_shell(state: StageState, ins: Instruction, expand: Expand) -> None:
    if not ins.json_form or not ins.args:
        raise _err(ins, "SHELL requires the arguments to be in JSON form, e.g. SHELL [\"/bin/bash\", \"-c\"]")
    state.config["Shell"] = list(ins.args)


def _valid_signal(sig: str) -> bool:
    if sig.isdigit():
        return 0 < int(sig) < 65
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
        return True
    return hasattr(_signal.Signals, name) if name in _signal.Signals.__members__ else False


def do_stopsignal(state: StageState, ins: Instruction, expand: Expand) -> None:
    sig = expand(ins.args[0])
    if not _valid_signal(sig):
        raise _err(ins, f"invalid STOPSIGNAL {sig!r}: use a signal name like SIGTERM or a number")
    state.config["StopSignal"] = sig


def parse_duration(text: str) -> int:
    """Go duration string (``30s``, ``1m30s``, ``.5s``) to nanoseconds; raises ValueError."""
    return parse_go_duration(text)


def do_healthcheck(state: StageState, ins: Instruction, expand: Expand) -> None:
    if not ins.args:
        raise _err(ins, "HEALTHCHECK needs NONE or CMD")
    kind = ins.args[0].upper()
    if kind == "NONE":
        state.config["Healthcheck"] = {"Test": ["NONE"]}
        return
    hc: dict = {}
    rest = ins.args[1:]
    if getattr(ins, "json_form", False):
        hc["Test"] = ["CMD"] + list(rest)
    else:
        hc["Test"] = ["CMD-SHELL", " ".join(rest)]
    for flag, key in (("interval", "Interval"), ("timeout", "Timeout"), ("start-period", "StartPeriod"),
                      ("start-interval", "StartInterval")):
        if flag in ins.flags and ins.flags[flag][-1] not in ("",):
            try:
                hc[key] = parse_duration(ins.flags[flag][-1])
            except ValueError:
                raise _err(ins, f"HEALTHCHECK --{flag}={ins.flags[flag][-1]}: not a duration (e.g. 30s, 1m)") from None
    if "retries" in ins.flags:
        try:
            hc["Retries"] = int(ins.flags["retries"][-1])
        except ValueError:
            raise _err(ins, "HEALTHCHECK --retries must be an integer") from None
    state.config["Healthcheck"] = hc


def do_maintainer(state: StageState, ins: Instruction, expand: Expand) -> None:
    state.image.config["author"] = " ".join(ins.args)


def do_onbuild(state: StageState, ins: Instruction, expand: Expand) -> None:
    triggers = list(state.config.get("OnBuild") or [])
    triggers.append(ins.args[0])
    state.config["OnBuild"] = triggers


HANDLERS: dict[str, Callable[[StageState, Instruction, Expand], None]] = {
    "ENV": do_env, "LABEL": do_label, "USER": do_user, "EXPOSE": do_expose, "VOLUME": do_volume,
    "CMD": do_cmd, "ENTRYPOINT": do_entrypoint, "SHELL": do_shell, "STOPSIGNAL": do_stopsignal,
    "HEALTHCHECK": do_healthcheck, "MAINTAINER": do_maintainer, "ONBUILD": do_onbuild,
}
