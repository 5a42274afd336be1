"""Steps that only change the image config: ENV, LABEL, USER, EXPOSE, VOLUME, CMD, ENTRYPOINT,
SHELL, STOPSIGNAL, HEALTHCHECK, MAINTAINER, ONBUILD.

Each returns a :class:`~executor.engine.step.Prepared` with the ``config`` fields it sets and
no ``execute``. Source: Docker Dockerfile reference; OCI image-spec config.md for field names
(``Healthcheck`` durations in nanoseconds, as Docker stores them).
"""

from __future__ import annotations

import json
import re
import signal as _signal
from dataclasses import dataclass

from ...dockerfile import instructions as di
from ..state import env_list_to_dict
from ..step import Prepared


def command_words(shell: list[str], command: di.Command) -> list[str]:
    """CMD/ENTRYPOINT/RUN argv: exec form as given, shell form wrapped in the stage's SHELL."""
    if command.json_form:
        return list(command.words)
    return shell + [command.words[0]] if command.words else []


def _config_only(ctx, fields: dict) -> Prepared:
    text = ctx.ins.text.strip()
    return Prepared(created_by=text, config=fields,
                    components=lambda: {"instruction": text, "config": json.dumps(fields, sort_keys=True)})


@dataclass
class EnvStep:
    instruction: di.Env

    def prepare(self, ctx) -> Prepared:
        env = env_list_to_dict(ctx.state.config.get("Env"))
        for key, raw in self.instruction.pairs:
            env[ctx.expand(key)] = ctx.expand(raw)
        return _config_only(ctx, {"Env": [f"{k}={v}" for k, v in env.items()]})


@dataclass
class LabelStep:
    instruction: di.Label

    def prepare(self, ctx) -> Prepared:
        labels = dict(ctx.state.config.get("Labels") or {})
        for key, raw in self.instruction.pairs:
            labels[ctx.expand(key)] = ctx.expand(raw)
        return _config_only(ctx, {"Labels": labels})


@dataclass
class UserStep:
    instruction: di.User

    def prepare(self, ctx) -> Prepared:
        return _config_only(ctx, {"User": ctx.expand(self.instruction.user)})


_PORT = re.compile(r"(?:[^:]*:)?(?:[^:]*:)?(\d+)(?:-(\d+))?(?:/(\w+))?")


@dataclass
class ExposeStep:
    instruction: di.Expose

    def _ports(self, ctx, word: str) -> list[str]:
        m = _PORT.fullmatch(word)
        if not m:
            raise ctx.err(f"invalid EXPOSE port {word!r}: use PORT[/PROTO] or START-END[/PROTO]")
        start, end = int(m.group(1)), int(m.group(2) or m.group(1))
        proto = (m.group(3) or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise ctx.err(f"invalid EXPOSE protocol {proto!r}: use tcp, udp or sctp")
        if end < start or end > 65535:
            raise ctx.err(f"invalid EXPOSE port range {word!r}")
        return [f"{p}/{proto}" for p in range(start, end + 1)]

    def prepare(self, ctx) -> Prepared:
        ports = dict(ctx.state.config.get("ExposedPorts") or {})
        for word in self.instruction.ports:
            for spec in self._ports(ctx, ctx.expand(word)):
                ports[spec] = {}
        return _config_only(ctx, {"ExposedPorts": ports})


@dataclass
class VolumeStep:
    instruction: di.Volume

    def prepare(self, ctx) -> Prepared:
        vols = dict(ctx.state.config.get("Volumes") or {})
        for word in self.instruction.paths:
            v = ctx.expand(word)
            if not v:
                raise ctx.err("VOLUME specified can not be an empty string")
            vols[v] = {}
        return _config_only(ctx, {"Volumes": vols})


@dataclass
class CmdStep:
    instruction: di.Cmd

    def prepare(self, ctx) -> Prepared:
        ctx.state.cmd_set = True
        return _config_only(ctx, {"Cmd": command_words(ctx.state.shell, self.instruction.command)})


@dataclass
class EntrypointStep:
    instruction: di.Entrypoint

    def prepare(self, ctx) -> Prepared:
        words = command_words(ctx.state.shell, self.instruction.command)
        fields: dict = {"Entrypoint": words or None}
        if not ctx.state.cmd_set:
            # An inherited CMD does not survive a new ENTRYPOINT (Docker reference, "Understand how
            # CMD and ENTRYPOINT interact").
            fields["Cmd"] = None
        return _config_only(ctx, fields)


@dataclass
class ShellStep:
    instruction: di.Shell

    def prepare(self, ctx) -> Prepared:
        return _config_only(ctx, {"Shell": list(self.instruction.argv)})


def valid_signal(sig: str) -> bool:
    """True for a signal number 1-64 or a name (``SIGTERM``, ``TERM``, ``SIGRTMIN+3``)."""
    if sig.isdigit():
        return 0 < int(sig) < 65
    name = sig.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    if re.fullmatch(r"SIGRTM(IN|AX)([+-]\d+)?", name):
        return True
    return name in _signal.Signals.__members__


@dataclass
class StopSignalStep:
    instruction: di.StopSignal

    def prepare(self, ctx) -> Prepared:
        sig = ctx.expand(self.instruction.signal)
        if not valid_signal(sig):
            raise ctx.err(f"invalid STOPSIGNAL {sig!r}: use a signal name like SIGTERM or a number")
        return _config_only(ctx, {"StopSignal": sig})


@dataclass
class HealthcheckStep:
    instruction: di.Healthcheck

    def prepare(self, ctx) -> Prepared:
        ins = self.instruction
        if ins.command is None:
            return _config_only(ctx, {"Healthcheck": {"Test": ["NONE"]}})
        if ins.command.json_form:
            hc: dict = {"Test": ["CMD", *ins.command.words]}
        else:
            hc = {"Test": ["CMD-SHELL", " ".join(ins.command.words)]}
        for name, value in (("Interval", ins.interval), ("Timeout", ins.timeout),
                            ("StartPeriod", ins.start_period), ("StartInterval", ins.start_interval),
                            ("Retries", ins.retries)):
            if value is not None:
                hc[name] = value
        return _config_only(ctx, {"Healthcheck": hc})


@dataclass
class MaintainerStep:
    instruction: di.Maintainer

    def prepare(self, ctx) -> Prepared:
        ctx.state.image.config["author"] = self.instruction.name
        return _config_only(ctx, {})


@dataclass
class OnbuildStep:
    instruction: di.Onbuild

    def prepare(self, ctx) -> Prepared:
        return _config_only(ctx, {"OnBuild": list(ctx.state.config.get("OnBuild") or [])
                                  + [self.instruction.expression]})
