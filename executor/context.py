"""The build context: a local directory filtered by ``.dockerignore``.

Source paths in COPY/ADD are matched against it with Go ``filepath.Match`` wildcards
(``*``, ``?``, ``[...]``, ``[^...]``, ``\\`` escapes; :func:`go_match`) per path component,
as Docker/BuildKit do (a malformed pattern fails the COPY); nothing resolves outside it,
and a symlink never reaches a ``.dockerignore``d file. ``COPY --from`` sources are matched in
the stage's or image's root with chroot semantics: their symlinks never lead to host files.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from pathlib import Path

from .dockerfile.ignore import DockerIgnore
from .errors import BuildError


class BadPattern(ValueError):
    """A malformed wildcard pattern (Go's ``filepath.ErrBadPattern``, "syntax error in pattern")."""


def has_wildcard(pattern: str) -> bool:
    """True when ``pattern`` contains an unescaped filepath.Match meta character (``*``, ``?``,
    ``[``); a character after ``\\`` is escaped. BuildKit's ``containsWildcards`` (fsutil
    copy): a path without one is taken literally, backslashes included."""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c in "*?[":
            return True
        i += 1
    return False


# Tokens of a compiled pattern: ("lit", char) | ("any",) | ("class", negated, ((lo, hi), ...)).
_Token = tuple
_Chunk = tuple[bool, tuple[_Token, ...]]  # (preceded by a star, single-character tokens)


def _class_char(p: str, i: int) -> tuple[str, int]:
    """Go's ``getEsc``: one possibly ``\\``-escaped character of a class at ``p[i]``; returns
    it and the index after it. ``-`` or ``]`` unescaped, a dangling ``\\`` or nothing after the
    character (the class is never closed) is malformed."""
    if i >= len(p) or p[i] in "-]":
        raise BadPattern(p)
    if p[i] == "\\":
        i += 1
        if i >= len(p):
            raise BadPattern(p)
    c = p[i]
    if i + 1 >= len(p):
        raise BadPattern(p)
    return c, i + 1


def compile_pattern(pattern: str) -> tuple[_Chunk, ...]:
    """Parse a Go ``filepath.Match`` pattern (Unix: ``\\`` escapes) into chunks, as Go's
    ``scanChunk``/``matchChunk`` split and read it. The grammar (Go's documentation)::

        pattern: { term }
        term:    '*' | '?' | '[' [ '^' ] { character-range } ']' | c | '\\' c
        character-range: c | '\\' c | lo '-' hi     (c != '\\', '-', ']')

    Only ``^`` negates a class (``[!a]`` is the class of ``!`` and ``a``); a class must not be
    empty. Raises :class:`BadPattern` for a malformed pattern anywhere in it (Go >= 1.16 reports
    ErrBadPattern whatever the name)."""
    chunks: list[_Chunk] = []
    i, n = 0, len(pattern)
    star = False
    toks: list[_Token] = []
    while i < n:
        c = pattern[i]
        if c == "*":  # Go's scanChunk: a chunk ends at a star outside a class
            if toks:
                chunks.append((star, tuple(toks)))
                toks = []
            star = True
            i += 1
            while i < n and pattern[i] == "*":
                i += 1
            continue
        if c == "?":
            toks.append(("any",))
            i += 1
        elif c == "\\":
            if i + 1 >= n:
                raise BadPattern(pattern)
            toks.append(("lit", pattern[i + 1]))
            i += 2
        elif c == "[":
            i += 1
            negated = i < n and pattern[i] == "^"
            if negated:
                i += 1
            ranges = []
            while True:
                if i < n and pattern[i] == "]" and ranges:
                    i += 1
                    break
                lo, i = _class_char(pattern, i)
                hi = lo
                if pattern[i] == "-":
                    hi, i = _class_char(pattern, i + 1)
                ranges.append((lo, hi))
            toks.append(("class", negated, tuple(ranges)))
        else:
            toks.append(("lit", c))
            i += 1
    if toks or star:
        chunks.append((star, tuple(toks)))
    return tuple(chunks)


def _match_chunk(chunk: tuple[_Token, ...], s: str) -> str | None:
    """Go's ``matchChunk`` on a compiled chunk: the rest of ``s`` after the chunk matched its
    beginning, None when it does not. ``?`` never matches ``/``; a class may."""
    i = 0
    for tok in chunk:
        if i >= len(s):
            return None
        ch = s[i]
        kind = tok[0]
        if kind == "lit":
            if ch != tok[1]:
                return None
        elif kind == "any":
            if ch == "/":
                return None
        else:
            hit = any(lo <= ch <= hi for lo, hi in tok[2])
            if hit == tok[1]:
                return None
        i += 1
    return s[i:]


def go_match(pattern: str | tuple[_Chunk, ...], name: str) -> bool:
    """Go's ``path/filepath.Match(pattern, name)`` on Unix: True when all of ``name`` matches.

    ``*`` matches any run of non-``/`` characters, ``?`` one non-``/`` character, ``[...]`` one
    character of the class (``[^...]`` not of it), ``\\c`` the character c. ``pattern`` may be
    given compiled (:func:`compile_pattern`). Raises :class:`BadPattern` when it is malformed."""
    chunks = compile_pattern(pattern) if isinstance(pattern, str) else pattern
    for idx, (star, chunk) in enumerate(chunks):
        last = idx == len(chunks) - 1
        if star and not chunk:  # a trailing star matches the rest unless it holds a separator
            return "/" not in name
        rest = _match_chunk(chunk, name)
        if rest is not None and (not rest or not last):
            name = rest
            continue
        if not star:
            return False
        for i in range(len(name)):  # skip i+1 characters, never a separator
            if name[i] == "/":
                return False
            rest = _match_chunk(chunk, name[i + 1:])
            if rest is not None:
                if last and rest:
                    continue
                name = rest
                break
        else:
            return False
    return not name


def _match_component(pattern: str, name: str) -> bool:
    """One path component against one wildcard component (Go ``filepath.Match``)."""
    return go_match(pattern, name)


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


def _candidates(host: Path, part: str, compiled) -> list[str]:
    """Names in directory ``host`` that path component ``part`` may match: the literal name
    (``compiled`` None), or every entry the compiled pattern matches (sorted; none when
    ``host`` cannot be listed)."""
    if compiled is None:
        return [part]
    try:
        names = sorted(os.listdir(host))
    except OSError:
        return []
    return [n for n in names if go_match(compiled, n)]


def source_components(clean: str, pattern: str, what: str) -> list[tuple[str, tuple | None]]:
    """Split the cleaned source path ``clean`` into components, each with its compiled
    ``filepath.Match`` pattern or None when it is taken literally, as BuildKit's fsutil copy
    does (``splitWildcards``): the components before the first one holding an unescaped
    wildcard are literal (backslashes included), that one and all after it are patterns.

    Raises BuildError naming the source ``pattern`` when a pattern component is malformed (Go's
    ``filepath.Match`` returns ErrBadPattern and the COPY fails), whatever the tree holds."""
    out: list[tuple[str, tuple | None]] = []
    wild = False
    for part in clean.split("/"):
        wild = wild or has_wildcard(part)
        if not wild:
            out.append((part, None))
            continue
        try:
            out.append((part, compile_pattern(part)))
        except BadPattern:
            raise BuildError(
                f"{what}: source {pattern!r}: malformed wildcard {part!r} (syntax error in pattern: "
                "a '[' class must be closed by ']' and not be empty; '-' and ']' in it need a backslash "
                "unless they form a range; a trailing backslash escapes nothing)") from None
    return out


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
    for part, compiled in source_components(clean, pattern, what):
        nxt: list[tuple[str, Path]] = []
        for rel, host in current:
            for name in _candidates(host, part, compiled):
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
    for part, compiled in source_components(clean, pattern, what):
        nxt: list[tuple[str, Path]] = []
        for rel, host in current:
            for name in _candidates(host, part, compiled):
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
