"""What the RUN sandbox process is asked to do (:mod:`executor.engine.sandbox`), as the runner
(:mod:`executor.engine.runroot`) builds it, and its hand-over file.

The file is :mod:`marshal` data of plain dicts, lists, strings, ints and bools, written by the
runner into its private work directory and read by the sandbox process, which is the same
interpreter: the child needs neither :mod:`json` (and the ``re`` it imports) nor these
dataclasses, ~40 ms of every RUN's start-up."""

from __future__ import annotations

import marshal
from dataclasses import asdict, dataclass, field


@dataclass
class Bind:
    """A mount made inside the namespace: ``kind`` bind|tmpfs|secret (see
    :func:`executor.engine.sandbox._mount_secret`); ``target`` is inside the root."""

    target: str
    source: str = ""
    kind: str = "bind"
    readonly: bool = False
    options: str = ""


@dataclass
class RunSpec:
    """Everything the child needs: the root, the command and its identity and environment."""

    root: str
    argv: list[str]
    env: list[str]
    cwd: str = "/"
    uid: int = 0
    gid: int = 0
    groups: list[int] = field(default_factory=list)
    mode: str = "namespace"
    network: str = "default"
    binds: list[Bind] = field(default_factory=list)
    proc: bool = True  # False: no fresh /proc can be mounted (userns in a pod with a masked /proc)

    def to_bytes(self) -> bytes:
        """The hand-over file's content (read by :func:`executor.engine.sandbox.load_spec`)."""
        return marshal.dumps(asdict(self))


__all__ = ["Bind", "RunSpec"]
