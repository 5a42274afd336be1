"""The build plan: the stage graph of a typed Dockerfile, computed once.

Edges follow BuildKit's dockerfile frontend: a stage depends on the stage its ``FROM`` names,
on every stage a ``COPY --from`` / ``ADD --from`` names and on every stage a ``RUN
--mount=from=`` names (words expanded with the global ARGs). Only the target stage and what
it depends on are built. ``exported`` holds the stages whose layers end up in the output
image (the target and its ``FROM`` ancestors); layers of other stages are written only when
a cache stores them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..dockerfile.instructions import Copy, Dockerfile, Instruction, Run, Stage, load_dockerfile
from ..errors import DockerfileError, UserError
from ..options import BuildOptions
from .expand import expander, line_error
from .platforms import platform_args

log = logging.getLogger("executor.engine")


@dataclass(frozen=True)
class StageNode:
    """One stage in the plan: ``base`` the expanded FROM word, ``parent`` the index of the stage
    it is built on (None for an image or scratch), ``platform`` its platform (``os/arch[/v]``),
    ``deps`` every earlier stage it reads (parent included), ``label`` the name used in logs."""

    stage: Stage
    base: str
    parent: int | None
    platform: str
    deps: frozenset[int]
    label: str

    @property
    def index(self) -> int:
        return self.stage.index


@dataclass
class BuildPlan:
    """``nodes`` by stage index; ``order`` the needed stages in file order; ``target`` index;
    ``meta`` the global ARG values (platform args included; None = declared, no value);
    ``names`` lower-cased stage name -> index; ``used_build_args`` build args an ARG consumed."""

    dockerfile: Dockerfile
    nodes: dict[int, StageNode]
    order: list[int]
    target: int
    meta: dict[str, str | None]
    names: dict[str, int]
    used_build_args: set[str] = field(default_factory=set)
    platform: str = "linux/amd64"

    @property
    def exported(self) -> frozenset[int]:
        """The target and its FROM ancestors: their layers are part of the output image."""
        out, cur = set(), self.target
        while cur is not None:
            out.add(cur)
            cur = self.nodes[cur].parent
        return frozenset(out)

    def stage_ref(self, word: str, current: int) -> int | None:
        """Index of the stage ``word`` names (name or number) if it is defined before ``current``."""
        return stage_ref(self.names, word, current)

    def referrers(self, index: int) -> int:
        """How many needed stages read stage ``index`` (FROM, --from, mounts)."""
        return sum(1 for i in self.order if index in self.nodes[i].deps)


# BuildKit's SecretsUsedInArgOrEnv check: a name part (split at "_") that names a credential.
_SECRET_NAME = re.compile(r"(?i)(?:_|^)(?:apikey|auth|credential|credentials|key|password|pword|passwd|secret"
                          r"|token)(?:_|$)")
_PUBLIC_NAME = re.compile(r"(?i)(?:_|^)public(?:_|$)")


def secret_like_names(df: Dockerfile) -> list[str]:
    """ARG and ENV names that look like credentials (``GITHUB_TOKEN``, ``DB_PASSWORD``,
    ``AWS_SECRET_ACCESS_KEY``; not ``PUBLIC_KEY``), in file order, each once: their values
    end up in the image history (and cache keys); ``--secret`` with ``RUN --mount=type=secret``
    keeps them out."""
    from ..dockerfile.instructions import Arg, Env
    names: list[str] = []
    for ins in _all_instructions(df):
        found = ([d.name for d in ins.args] if isinstance(ins, Arg)
                 else [k for k, _ in ins.pairs] if isinstance(ins, Env) else [])
        for name in found:
            if _SECRET_NAME.search(name) and not _PUBLIC_NAME.search(name) and name not in names:
                names.append(name)
    return names


def stage_ref(names: dict[str, int], word: str, current: int) -> int | None:
    w = word.lower()
    if w in names and names[w] < current:
        return names[w]
    if w.isdigit() and int(w) < current:
        return int(w)
    return None


def read_dockerfile(path: Path) -> Dockerfile:
    """Read and parse ``path`` into typed instructions; UserError/DockerfileError for bad input."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"Dockerfile not found: {path} (set --dockerfile, absolute or relative to --context)") from None
    except IsADirectoryError:
        raise UserError(f"--dockerfile {path}: is a directory, not a Dockerfile") from None
    except OSError as e:
        raise UserError(f"--dockerfile {path}: cannot read it: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise DockerfileError(f"Dockerfile is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})",
                              path.name, line) from None
    df = load_dockerfile(text, path.name)
    if "\0" in text:
        for ins in _all_instructions(df):
            if "\0" in ins.text or any("\0" in h.content for h in getattr(ins, "heredocs", ())):
                raise line_error(ins, f"{ins.keyword} contains a NUL byte")
    return df


def _all_instructions(df: Dockerfile):
    yield from df.meta_args
    for st in df.stages:
        yield st.from_
        yield from st.instructions


def _meta_args(df: Dockerfile, opts: BuildOptions, used: set[str]) -> dict[str, str | None]:
    env: dict[str, str | None] = dict(platform_args(opts.platform))
    for ins in df.meta_args:
        for decl in ins.args:
            if decl.name in opts.build_args:
                env[decl.name] = opts.build_args[decl.name]
                used.add(decl.name)
            elif decl.default is not None:
                env[decl.name] = expander(ins, env, df.escape)(decl.default)
            else:
                env[decl.name] = None
    return env


def _referenced(ins: Instruction) -> list[str]:
    """Raw words of stages or images ``ins`` reads besides its own stage."""
    if isinstance(ins, Copy) and ins.from_:
        return [ins.from_]
    if isinstance(ins, Run):
        return [m.from_ for m in ins.mounts if m.from_]
    return []


def plan_build(df: Dockerfile, opts: BuildOptions) -> BuildPlan:
    """The stage graph of ``df`` for ``opts`` (target, build args, platform).

    Raises DockerfileError for an empty image name or a reference to a later stage, and
    UserError for an unknown ``--target``.
    """
    used: set[str] = set()
    meta = _meta_args(df, opts, used)
    names = {st.name: st.index for st in df.stages if st.name}
    nodes: dict[int, StageNode] = {}
    for st in df.stages:
        expand = expander(st.from_, meta, df.escape)
        base = expand(st.from_.image)
        if not base.strip():
            missing = re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", st.from_.image) or ["NAME"]
            raise line_error(st.from_, f"FROM {st.from_.image}: the image name is empty ({', '.join(missing)} not "
                                       f"set); declare ARG {missing[0]} before the first FROM and pass "
                                       f"--build-arg {missing[0]}=IMAGE, or give it a default")
        parent = stage_ref(names, base, st.index)
        deps = {parent} if parent is not None else set()
        for ins in st.instructions:
            for word in _referenced(ins):
                value = expander(ins, meta, df.escape)(word)
                ref = stage_ref(names, value, st.index)
                if ref is not None:
                    deps.add(ref)
                elif value.lower() in names:
                    raise line_error(ins, f"--from={value}: stage {value!r} is defined after this one; "
                                          f"move it above line {ins.location.start}")
        platform = opts.platform
        if st.from_.platform:
            platform = expand(st.from_.platform).strip()
            if len(platform.split("/")) not in (2, 3) or not all(platform.split("/")):
                raise line_error(st.from_, f"FROM --platform={platform}: use OS/ARCH[/VARIANT], e.g. linux/arm64")
        nodes[st.index] = StageNode(stage=st, base=base, parent=parent, platform=platform, deps=frozenset(deps),
                                    label=st.name or str(st.index))
    if opts.target:
        t = opts.target.lower()
        if t not in names:
            known = ", ".join(sorted(names)) or "none"
            raise UserError(f"--target {opts.target!r}: no stage with that name (stages: {known})")
        target = names[t]
    else:
        target = df.stages[-1].index
    needed: set[int] = set()
    stack = [target]
    while stack:
        i = stack.pop()
        if i not in needed:
            needed.add(i)
            stack.extend(nodes[i].deps)
    return BuildPlan(dockerfile=df, nodes=nodes, order=sorted(needed), target=target, meta=meta, names=names,
                     used_build_args=used, platform=opts.platform)


__all__ = ["BuildPlan", "StageNode", "plan_build", "read_dockerfile", "stage_ref"]
