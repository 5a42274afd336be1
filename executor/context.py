"""The build context: a local directory filtered by ``.dockerignore``.

Source paths in COPY/ADD are matched against it with Go ``filepath.Match`` wildcards
(``*``, ``?``, ``[...]``) per path component, as Docker does; nothing resolves outside it.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from .dockerfile.ignore import DockerIgnore
from .errors import BuildError


def has_wildcard(pattern: str) -> bool:
    """True when ``pattern`` contains a filepath.Match meta character."""
    return any(c in pattern for c in "*?[")


def _match_component(pattern: str, name: str) -> bool:
    # filepath.Match: '*' and '?' never match '/', which cannot occur in a component anyway.
    return fnmatch.fnmatchcase(name, pattern)


@dataclass(frozen=True)
class SourceMatch:
    """One matched source: ``rel`` relative to its tree root, ``path`` on the host."""

    rel: str
    path: Path


class Context:
    """A local build context directory with its ``.dockerignore`` rules."""

    def __init__(self, root: Path, ignore: DockerIgnore | None = None):
        self.root = root
        self.ignore = ignore or DockerIgnore.from_lines([])

    def excluded(self, rel: str, is_dir: bool = False) -> bool:
        """True when ``rel`` (``/``-separated) is excluded by .dockerignore."""
        if rel in ("", "."):
            return False
        return self.ignore.excluded(rel, is_dir)

    def descend(self, rel: str) -> bool:
        """True when the walk must enter directory ``rel`` (not excluded, or an exception may re-include)."""
        return not self.excluded(rel, True) or self.ignore.dir_may_contain_included(rel)


def match_sources(tree: Path, pattern: str, context: Context | None, what: str) -> list[SourceMatch]:
    """Resolve one COPY/ADD source ``pattern`` in ``tree`` (the context or another stage's root).

    ``context`` is given when ``tree`` is the build context (then .dockerignore applies and
    symlinks may not lead outside it). Returns matches sorted by path; raises BuildError
    naming the source when nothing matches.
    """
    clean = posixpath.normpath("/" + pattern).lstrip("/")
    if clean in ("", "."):
        return [SourceMatch("", tree)]
    parts = clean.split("/")
    current: list[tuple[str, Path]] = [("", tree)]
    for i, part in enumerate(parts):
        nxt: list[tuple[str, Path]] = []
        for rel, host in current:
            if has_wildcard(part):
                try:
                    names = sorted(os.listdir(host))
                except OSError:
                    continue
                for name in names:
                    if _match_component(part, name):
                        nxt.append((posixpath.join(rel, name) if rel else name, host / name))
            else:
                p = host / part
                if os.path.lexists(p):
                    nxt.append((posixpath.join(rel, part) if rel else part, p))
        current = nxt
        if not current:
            break
    matches = []
    for rel, host in current:
        if context is not None:
            if context.excluded(rel, os.path.isdir(host)) and not (os.path.isdir(host) and context.descend(rel)):
                continue
            real = os.path.realpath(host)
            croot = os.path.realpath(context.root)
            if real != croot and not real.startswith(croot + os.sep):
                raise BuildError(f"{what}: source {pattern!r} is a symlink that points outside the build context")
        matches.append(SourceMatch(rel, host))
    if not matches:
        where = "the build context" if context is not None else "the source stage or image"
        raise BuildError(f"{what}: source {pattern!r} not found in {where}"
                         + (" (or excluded by .dockerignore)" if context is not None else ""))
    return sorted(matches, key=lambda m: m.rel)
