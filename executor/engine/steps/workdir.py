"""WORKDIR: set the working directory, creating it (owned by the stage USER) when missing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...dockerfile import instructions as di
from ...fs.paths import clean_abs, make_dirs, resolve_in_root
from ..step import Prepared

if TYPE_CHECKING:
    from ...fs.snapshot import ChangeSet


def ensure_dir(ctx, path: str) -> list[str]:
    """Create in-root ``path`` (and parents) owned by the stage USER; returns the new relpaths."""
    from ..users import resolve_user
    root = ctx.state.root
    if resolve_in_root(root, path).is_dir():
        return []
    user = ctx.state.user
    ident = resolve_user(root, user) if user else None
    uid, gid = (ident.uid, ident.gid) if ident else (0, 0)
    return make_dirs(root, path, uid, gid, f"WORKDIR {path}")


@dataclass
class WorkdirStep:
    instruction: di.Workdir

    def prepare(self, ctx) -> Prepared:
        path = clean_abs(ctx.expand(self.instruction.path), ctx.state.workdir).rstrip("/") or "/"
        user = ctx.state.user

        def execute() -> ChangeSet:
            from ...fs.snapshot import ChangeSet
            written = ensure_dir(ctx, path)
            if written and ctx.state.fs_index is not None:
                ctx.state.fs_index.update(ctx.state.root, written)
            return ChangeSet(changed=tuple(written), deleted=())

        return Prepared(created_by=self.instruction.text.strip(), config={"WorkingDir": path},
                        components=lambda: {"instruction": "WORKDIR", "path": path, "user": user},
                        execute=execute, lazy_paths=lambda: None if user else [path])
