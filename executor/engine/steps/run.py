"""RUN: execute a command inside the stage root and capture what it changed.

Source: Docker Dockerfile reference (RUN, shell and exec form, heredocs, ``--mount``,
``--network``). The command runs in the build's isolation mode (:mod:`..isolation`); its
change set is the difference of the root's index before and after.
"""

from __future__ import annotations

import dataclasses
import json
import time
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...dockerfile import instructions as di
from ...dockerfile.mounts import MountError, MountSpec
from ...errors import RunFailed
from ...fs.paths import resolve_in_root
from ...logs import current_stage
from ...redaction import redact_userinfo
from ..state import PROXY_ARGS
from ..step import Prepared, shorten
from .config import command_words
from .workdir import ensure_dir

if TYPE_CHECKING:
    from ...fs.snapshot import ChangeSet

log = logging.getLogger("executor.engine")

HEREDOC_SCRIPT = "/.executor-heredoc-script"


@dataclass(frozen=True)
class RunCommand:
    """The argv to exec and, for heredoc scripts, a script file to place in the root."""

    argv: list[str]
    script: str | None = None  # content of a script the argv refers to (shebang heredoc)


def build_run_command(shell: list[str], ins: di.Run) -> RunCommand:
    """Turn a RUN instruction into an argv, handling heredocs as BuildKit does.

    ``RUN <<EOF`` alone: the body is the script (run by its shebang interpreter when it has
    one, else by the stage shell). Heredocs inside a longer command are handed to the shell
    with their bodies, so ``RUN cat <<EOF > /file`` works as in a shell script.
    """
    cmd = ins.command
    if cmd.json_form or not ins.heredocs:
        return RunCommand(argv=command_words(shell, cmd))
    line = cmd.words[0] if cmd.words else ""
    first = ins.heredocs[0]
    stripped = line.strip()
    if len(ins.heredocs) == 1 and stripped.startswith("<<") and stripped.lstrip("<-").strip("'\"") == first.name:
        body = first.content
        if body.startswith("#!"):
            return RunCommand(argv=[HEREDOC_SCRIPT], script=body)
        return RunCommand(argv=shell + [body])
    text = line
    for h in ins.heredocs:
        text += "\n" + h.content + ("" if h.content.endswith("\n") or not h.content else "\n") + h.name
    return RunCommand(argv=shell + [text])


@dataclass
class RunStep:
    instruction: di.Run

    def _mounts(self, ctx) -> list[MountSpec]:
        try:
            return [m.resolved(ctx.state.workdir, ctx.expand) for m in self.instruction.mounts]
        except MountError as e:
            raise ctx.err(f"RUN --mount: {e}") from None

    def prepare(self, ctx) -> Prepared:
        ins, state = self.instruction, ctx.state
        if ins.security == "insecure":
            raise ctx.err("RUN --security=insecure is not supported: the executor never runs a step with "
                          "extra privileges; remove the flag")
        if ins.devices:
            raise ctx.err("RUN --device is not supported: the executor does not expose host devices to a "
                          "build step; remove the flag")
        cmd = build_run_command(state.shell, ins)
        mounts = self._mounts(ctx)
        trees = {m.from_: ctx.tree(m.from_) for m in mounts if m.from_}
        workdir, user = state.workdir, state.user
        proxy = {k: v for k, v in ctx.opts.build_args.items() if k in PROXY_ARGS}
        visible = {k: v for k, v in state.args.items() if v is not None}
        visible.update(state.env())
        args_used = [f"{k}={v}" for k, v in state.args.items() if v is not None and k not in PROXY_ARGS]
        created_by = redact_userinfo("RUN " + (f"|{len(args_used)} {' '.join(args_used)} " if args_used else "")
                                     + " ".join(cmd.argv if cmd.script is None else [ins.command.words[0]]))

        def components() -> dict[str, str]:
            out = {"instruction": "RUN", "command": json.dumps(cmd.argv), "script": cmd.script or "",
                   "user": user, "workdir": workdir, "network": str(ins.network)}
            out.update({f"env {k}": v for k, v in visible.items() if k not in PROXY_ARGS})
            for i, m in enumerate(mounts):
                out[f"mount {i}"] = json.dumps(dataclasses.asdict(m), sort_keys=True)
                if m.type == "bind":
                    out[f"mount {i} source"] = (trees[m.from_].cache_id if m.from_
                                                else ctx.build.context_digest(m.source.strip("/")))
            return out

        def execute() -> ChangeSet:
            return self._execute(ctx, cmd, mounts, trees, proxy)

        return Prepared(created_by=created_by, components=components, execute=execute, cache_class="run")

    def _execute(self, ctx, cmd: RunCommand, mounts: list[MountSpec], trees: dict, proxy: dict) -> ChangeSet:
        # (start-up time: only a RUN that executes needs these; a cache hit only prepares)
        from ...fs.snapshot import FsIndex, diff
        from ..isolation import IsolationMode
        from ..output import prefixed_streams
        from ..runroot import run_in_root
        from ..users import resolve_user
        from .mounts import RunMounts, default_cache_dir, drop_setup_only_dirs, ssh_sockets
        ins, state, build = self.instruction, ctx.state, ctx.build
        iso = build.isolation_for()
        if ins.network == di.Network.NONE and iso.mode == IsolationMode.CHROOT and not iso.can_unshare_network:
            raise ctx.err("RUN --network=none needs a network namespace, which this environment does not "
                          "allow (no CAP_SYS_ADMIN); remove --network=none or run the executor with CAP_SYS_ADMIN")
        # an overlay root: the RUN's changes are what its upper directory holds afterwards
        # (sealed now, so earlier steps' writes are a lower layer); else an lstat walk before/after
        with state.lock:  # (--single-snapshot diffs the whole stage at its end: no sealing)
            upper = state.overlay is not None and not ctx.stage_builder.single and state.overlay.seal()
        before = None if upper else ctx.fs_index()
        ident = resolve_user(state.root, state.user)
        env = state.run_env(proxy, ident.home or "/")
        workdir = state.workdir
        if workdir != "/" and not resolve_in_root(state.root, workdir).is_dir():
            if ensure_dir(ctx, workdir) and not upper:
                ctx.fs_index()  # the new dirs are picked up by this RUN's snapshot
        files = {cmd.argv[0]: cmd.script} if cmd.script is not None else None
        scratch = ctx.scratch()

        def tree_for(frm: str):
            return trees[frm].root() if frm else ctx.opts.context

        run_mounts = RunMounts(specs=mounts, root=state.root, mode="namespace" if iso.mode.mounts else "chroot",
                               scratch=scratch / "mounts",
                               cache_root=(default_cache_dir(ctx.opts, build.work)
                                           if any(m.type == "cache" for m in mounts) else build.work / "no-cache"),
                               secrets=ctx.opts.secrets,
                               ssh=ssh_sockets(ctx.opts.ssh), tree_for=tree_for)
        t0 = time.monotonic()
        try:
            with run_mounts, prefixed_streams(current_stage(), build.stdout, build.stderr) as (out, err):
                env.update(run_mounts.env)
                rc = run_in_root(state.root, cmd.argv, env, cwd=workdir, uid=ident.uid, gid=ident.gid,
                                 groups=ident.groups, mode=str(iso.mode), network=str(ins.network), workdir=scratch,
                                 files=files, binds=run_mounts.binds, stdout=out, stderr=err, proc=iso.fresh_proc)
        except MountError as e:
            raise ctx.err(f"RUN --mount: {e}") from None
        t_run = time.monotonic() - t0
        if rc != 0:
            raise RunFailed(f"{ins.location}: {shorten(ins.text)!s} returned a non-zero code: {rc}", rc)
        t1 = time.monotonic()
        if upper:
            changes = state.overlay.changes(build.snapshot_exclude())
            state.fs_index = None  # COPY and WORKDIR only update an index that exists
            log.debug("RUN took %.2fs, snapshot from the upper directory %.2fs", t_run, time.monotonic() - t1)
            return changes
        assert before is not None
        after = FsIndex.scan(state.root, exclude=build.snapshot_exclude())
        changes = drop_setup_only_dirs(diff(before, after), before, after,
                                       [m.target for m in mounts if m.target] + ["/etc/hosts", "/etc/resolv.conf"])
        state.fs_index = after
        log.debug("RUN took %.2fs, snapshot %.2fs", t_run, time.monotonic() - t1)
        return changes
