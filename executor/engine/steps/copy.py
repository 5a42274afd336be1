"""COPY and ADD steps: resolve sources once, key on exactly those, copy them into the root.

Sources: Docker Dockerfile reference (COPY, ADD). ``prepare`` expands every word and matches
the build-context sources (``.dockerignore`` applied); the cache key is made from those very
matches (content, mode, owner of every file), and ``execute`` copies the same matches.
Sources from another stage or an image (``--from``) are keyed by that stage's chain key or
the image digest and matched in its root when the step runs. ADD also fetches URLs
(``--checksum`` verified) and unpacks local tar archives.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ...cache.keys import source_digest
from ...context import SourceMatch, has_wildcard, match_sources
from ...dockerfile import instructions as di
from ...dockerfile.shell import expand_heredoc
from ...errors import BuildError
from ...redaction import redact_userinfo
from ...fs.paths import clean_abs, resolve_in_root
from ..step import Prepared
from .workdir import ensure_dir

if TYPE_CHECKING:
    from ...fs.snapshot import ChangeSet


@dataclass
class _Source:
    """One source word after expansion: a heredoc, a URL, or a pattern (with its context matches)."""

    raw: str
    pattern: str
    heredoc: di.Heredoc | None = None
    url: bool = False
    matches: list[SourceMatch] = field(default_factory=list)


def _heredoc_name(raw: str) -> str:
    return raw.lstrip("<-").strip("'\"")


@dataclass
class CopyStep:
    """COPY or ADD (``instruction`` is a :class:`~executor.dockerfile.instructions.FileCopy`)."""

    instruction: di.FileCopy

    @property
    def is_add(self) -> bool:
        return isinstance(self.instruction, di.Add)

    def _chmod(self, ctx) -> int | None:
        raw = self.instruction.chmod
        if not raw:
            return None
        value = ctx.expand(raw)
        try:
            return int(value, 8)
        except ValueError:
            raise ctx.err(f"--chmod={value}: only octal modes (e.g. 0755) are supported") from None

    def _sources(self, ctx, from_tree) -> list[_Source]:
        ins = self.instruction
        heredocs = {h.name: h for h in ins.heredocs}
        out: list[_Source] = []
        for raw in ins.sources:
            if raw.startswith("<<"):
                h = heredocs.get(_heredoc_name(raw))
                if h is None:
                    raise ctx.err(f"heredoc {raw} has no body")
                out.append(_Source(raw=raw, pattern=raw, heredoc=h))
                continue
            pattern = ctx.expand(raw)
            if self.is_add:
                from .archives import is_git_url
                if is_git_url(pattern):
                    raise ctx.err(f"ADD {pattern}: adding a git repository is not supported; clone it in an "
                                  f"earlier stage (RUN git clone ...) and COPY --from that stage")
            src = _Source(raw=raw, pattern=pattern, url=self.is_add and "://" in pattern)
            if not src.url and from_tree is None:
                src.matches = match_sources(ctx.opts.context, pattern, ctx.build.context, ctx.where())
            out.append(src)
        return out

    def prepare(self, ctx) -> Prepared:
        ins, state = self.instruction, ctx.state
        frm = ctx.expand(ins.from_) if isinstance(ins, di.Copy) and ins.from_ else ""
        tree = ctx.tree(frm) if frm else None
        chown_text = ctx.expand(ins.chown) if ins.chown else ""
        chmod = self._chmod(ctx)
        dest = clean_abs(ctx.expand(ins.dest), state.workdir)
        if ins.dest.endswith("/") and not dest.endswith("/"):
            dest += "/"
        excludes = [ctx.expand(e) for e in ins.excludes]
        checksum = ctx.expand(ins.checksum) if isinstance(ins, di.Add) and ins.checksum else ""
        sources = self._sources(ctx, tree)
        heredoc_env = state.expansion_env()
        parents = isinstance(ins, di.Copy) and ins.parents

        def body(src: _Source) -> str:
            h = src.heredoc
            assert h is not None
            return expand_heredoc(h.content, heredoc_env) if h.expand else h.content

        def components() -> dict[str, str] | None:
            out = {"instruction": ins.keyword, "dest": dest, "workdir": state.workdir, "chown": chown_text,
                   "chmod": "" if chmod is None else oct(chmod), "link": str(ins.link), "parents": str(parents),
                   "exclude": "\n".join(excludes), "from": tree.cache_id if tree else ""}
            for i, src in enumerate(sources):
                name = f"source {i} {redact_userinfo(src.pattern)}"  # names are recorded (cache miss explanations)
                if src.heredoc is not None:
                    out[name] = "heredoc:" + hashlib.sha256(body(src).encode()).hexdigest()
                elif src.url:
                    if not checksum:
                        return None
                    out[name] = f"url@{checksum}"
                    _note_declared(ctx, src.pattern, checksum)  # a cache hit fetches nothing
                elif tree is None:
                    ctx_ = ctx.build.context
                    out[name] = " ".join(m.rel + ":" + source_digest(m.path, rel_in_context=m.rel,
                                                                     excluded=ctx_.excluded, descend=ctx_.descend)
                                         for m in src.matches)
                else:
                    out[name] = src.pattern  # the source stage's key / image digest covers its content
            return out

        def execute() -> ChangeSet:
            from ...fs.snapshot import ChangeSet
            from ..users import resolve_chown
            chown = resolve_chown(state.root, chown_text) if chown_text else None
            written = self._execute(ctx, sources, tree, dest, chown, chmod, excludes, checksum, parents, body)
            written = sorted(set(written))
            if state.fs_index is not None:
                state.fs_index.update(state.root, written)
            return ChangeSet(changed=tuple(written), deleted=())

        def lazy_paths() -> list[str] | None:
            """The destination paths ``execute`` resolves (lazy filesystem), or None when it also
            reads the stage's files: --chown by name (/etc/passwd), ADD of a local archive
            (merged into what is there), --parents with --from (matched at run time)."""
            if chown_text and not _NUMERIC_CHOWN.fullmatch(chown_text):
                return None
            if parents and tree is not None:
                return None
            if self.is_add and any(_is_archive(m.path) for s in sources for m in s.matches):
                return None
            probes = [dest.rstrip("/") or "/"]
            for src in sources:
                if src.heredoc is not None and dest.endswith("/"):
                    probes.append(posixpath.join(dest, src.heredoc.name))
            if parents:
                for src in sources:
                    cut = (posixpath.normpath("/" + src.pattern.split("/./")[0]).lstrip("/")
                           if "/./" in src.pattern else "")
                    for m in src.matches:
                        rel = m.rel
                        if cut and (rel == cut or rel.startswith(cut + "/")):
                            rel = rel[len(cut):].lstrip("/")
                        if rel:
                            probes.append(posixpath.join(dest, rel))
            return probes

        return Prepared(created_by=redact_userinfo(ins.text.strip()), components=components, execute=execute,
                        cache_class="copy", lazy_paths=lazy_paths)

    def _execute(self, ctx, sources: list[_Source], tree, dest: str, chown, chmod, excludes, checksum: str,
                 parents: bool, body) -> list[str]:
        from .archives import verify_file_checksum
        from .copying import CopySpec, copy_into_root, write_heredoc_file
        state, what = ctx.state, ctx.where()
        written: list[str] = []
        for src in sources:
            if src.heredoc is not None:
                written += write_heredoc_file(state.root, dest, src.heredoc.name, body(src), chown, chmod)
        files = [s for s in sources if s.heredoc is None]
        if not files:
            return written
        root_of_tree = tree.root() if tree is not None else None
        matches: list[SourceMatch] = []
        wildcard = False
        pivots: dict[str, str] = {}
        for src in files:
            if src.url:
                written += self._add_url(ctx, src.pattern, dest, chown, chmod, checksum)
                continue
            wildcard = wildcard or has_wildcard(src.pattern)
            found = src.matches if root_of_tree is None else match_sources(root_of_tree, src.pattern, None, what)
            if "/./" in src.pattern:  # --parents pivot: keep only the path after "/./"
                cut = posixpath.normpath("/" + src.pattern.split("/./")[0]).lstrip("/")
                pivots.update({m.rel: cut for m in found})
            matches += found
        if not matches:
            return written
        if checksum:  # Docker: URLs only; a local file is verified the same way (a strict superset)
            if len(matches) != 1:
                raise ctx.err("ADD --checksum needs exactly one source file")
            try:
                verify_file_checksum(matches[0].path, checksum)
            except BuildError as e:
                raise ctx.err(f"ADD {matches[0].rel}: {e}") from None
        if self.is_add:
            archives = [m for m in matches if _is_archive(m.path)]
            for m in archives:
                written += self._add_archive(ctx, m.path, dest, chown)
            matches = [m for m in matches if m not in archives]
        if matches:
            spec = CopySpec(sources=matches, dest=dest, chown=chown, chmod=chmod, keep_owner=tree is not None,
                            context=ctx.build.context if tree is None else None, excludes=excludes,
                            wildcard=wildcard, pivots=pivots, parents=parents)
            written += copy_into_root(state.root, spec, what)
        return written

    def _add_archive(self, ctx, path: Path, dest: str, chown) -> list[str]:
        from ...fs.snapshot import FsIndex, diff
        from ...layers.extract import apply_layer
        from .archives import open_archive
        root = ctx.state.root
        target_dir = dest.rstrip("/") or "/"
        host = resolve_in_root(root, target_dir)
        created = ensure_dir(ctx, target_dir) if not host.is_dir() else []
        host = resolve_in_root(root, target_dir)
        before = FsIndex.scan(host)
        stream = open_archive(path)
        if stream is None:
            raise BuildError(f"ADD {path.name}: not a readable tar archive")
        with stream:
            apply_layer(stream, host, same_owner=True)
        after = FsIndex.scan(host)
        rel_base = os.path.relpath(host, root)
        changed = diff(before, after).changed
        out = list(created) + [posixpath.normpath(posixpath.join(rel_base, c)) if c else rel_base for c in changed]
        if chown:
            for rel in out:
                os.lchown(root / rel, *chown)
        return out

    def _add_url(self, ctx, url: str, dest: str, chown, chmod, checksum: str) -> list[str]:
        from .archives import download_to
        tmp = ctx.build.store.tmp_path(f"download-{os.getpid()}-{id(self)}-{ctx.build.unique('d').name}")
        try:
            written, digest = download_to(ctx.state.root, url, dest, chown, chmod, checksum or None, tmp)
            ctx.build.record.add_download(url, digest)
            return written
        except BuildError as e:
            raise BuildError(f"{ctx.ins.location}: ADD {redact_userinfo(url)}: {e}") from None


_NUMERIC_CHOWN = re.compile(r"[0-9]+(:[0-9]+)?")


def _note_declared(ctx, url: str, checksum: str) -> None:
    """Record ``url`` with its declared ``--checksum`` (as ``alg:hex``) for the provenance; a
    malformed checksum is reported by the download, not here."""
    from .archives import parse_checksum
    try:
        alg, want = parse_checksum(checksum)
    except BuildError:
        return
    ctx.build.record.add_download(url, f"{alg}:{want}")


def _is_archive(path: Path) -> bool:
    """True for a local tar archive ADD must unpack: tar, or tar compressed with gzip, bzip2, xz or zstd."""
    from .archives import open_archive
    stream = open_archive(path)
    if stream is None:
        return False
    stream.close()
    return True
