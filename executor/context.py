"""The build context: a local directory filtered by ``.dockerignore``.

Source paths in COPY/ADD are matched against it with Go ``filepath.Match`` wildcards
(``*``, ``?``, ``[...]``) per path component, as Docker does; nothing resolves outside it,
and a symlink never reaches a ``.dockerignore``d file. ``COPY --from`` sources are matched in
the stage's or image's root with chroot semantics: their symlinks never lead to host files.
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
    """One matched source: ``rel`` relative to its tree root (as matched), ``path`` on the host.

    For a stage or image tree ``path`` is already resolved with chroot semantics (no symlink
    left in it). For the build context ``ctx_rel`` is where the source really is (its symlinks
    followed), which is what .dockerignore rules apply to.
    """

    rel: str
    path: Path
    ctx_rel: str | None = None

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


def _candidates(host: Path, part: str) -> list[str]:
    """Names in directory ``host`` that path component ``part`` may match: the literal name, or
    every entry matching its wildcard (sorted; none when ``host`` cannot be listed)."""
    if not has_wildcard(part):
        return [part]
    try:
        names = sorted(os.listdir(host))
    except OSError:
        return []
    return [n for n in names if _match_component(part, n)]


def match_sources(tree: Path, pattern: str, context: Context | None, what: str) -> list[SourceMatch]:
    """Resolve one COPY/ADD source ``pattern`` in ``tree`` (the context or another stage's root).

    ``context`` is given when ``tree`` is the build context (then .dockerignore applies, to the
    path as written and to where its symlinks lead, and symlinks may not lead outside it).
    Otherwise ``tree`` is a stage or image root and every symlink is resolved inside it as if
    it were ``/`` (``/x -> /etc/passwd`` means ``<tree>/etc/passwd``, never the host's), as
    BuildKit does. Returns matches sorted by path; raises BuildError naming the source when
    nothing matches.
    """
    if context is None:
        return _match_in_root(tree, pattern, what)
    clean = posixpath.normpath("/" + pattern).lstrip("/")
    if clean in ("", "."):
        return [SourceMatch("", tree, "")]
    current: list[tuple[str, Path]] = [("", tree)]
    for part in clean.split("/"):
        nxt: list[tuple[str, Path]] = []
        for rel, host in current:
            for name in _candidates(host, part):
                p = host / name
                if os.path.lexists(p):
                    nxt.append((posixpath.join(rel, name) if rel else name, p))
        current = nxt
        if not current:
            break
    matches = []
    croot = os.path.realpath(context.root)
    for rel, host in current:
        is_dir = os.path.isdir(host)
        if context.excluded(rel, is_dir) and not (is_dir and context.descend(rel)):
            continue
        real = os.path.realpath(host)
        if real != croot and not real.startswith(croot + os.sep):
            raise BuildError(f"{what}: source {pattern!r} is a symlink that points outside the build context")
        real_rel = "" if real == croot else os.path.relpath(real, croot).replace(os.sep, "/")
        if not os.path.exists(real):
            continue  # a dangling symlink: nothing to copy (BuildKit: not found)
        if real_rel != rel and context.excluded(real_rel, is_dir) and not (is_dir and context.descend(real_rel)):
            # Reached through a symlink, but the target is .dockerignored: BuildKit never sends it,
            # so the link dangles there; here it is absent the same way.
            continue
        matches.append(SourceMatch(rel, host, real_rel))
    if not matches:
        raise BuildError(f"{what}: source {pattern!r} not found in the build context (or excluded by .dockerignore)")
    return sorted(matches, key=lambda m: m.rel)


def _match_in_root(tree: Path, pattern: str, what: str) -> list[SourceMatch]:
    """``match_sources`` for a stage or image root: chroot semantics for every component."""
    from .fs.paths import resolve_in_root

    def host_of(inpath: str) -> Path | None:
        try:
            host = resolve_in_root(tree, inpath)
        except OSError as e:  # ELOOP
            raise BuildError(f"{what}: source {pattern!r}: {e.strerror or e}") from None
        return host if os.path.lexists(host) else None

    clean = posixpath.normpath("/" + pattern).lstrip("/")
    if clean in ("", "."):
        return [SourceMatch("", tree)]
    current: list[tuple[str, Path]] = [("", tree)]
    for part in clean.split("/"):
        nxt: list[tuple[str, Path]] = []
        for rel, host in current:
            for name in _candidates(host, part):
                child_rel = posixpath.join(rel, name) if rel else name
                child = host_of("/" + posixpath.join(os.path.relpath(host, tree) if host != tree else "", name))
                if child is not None:
                    nxt.append((child_rel, child))
        current = nxt
        if not current:
            break
    if not current:
        raise BuildError(f"{what}: source {pattern!r} not found in the source stage or image"
                         " (symlinks are followed inside that image, never on the build host)")
    return sorted((SourceMatch(rel, host) for rel, host in current), key=lambda m: m.rel)
