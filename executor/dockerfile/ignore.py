""".dockerignore matching.

Semantics follow Docker's moby/patternmatcher and its ``ignorefile`` reader:

* one pattern per line; lines whose first character is ``#`` are comments;
  surrounding whitespace is trimmed and blank lines skipped;
* ``!pattern`` re-includes what earlier patterns excluded; the *last*
  matching pattern wins;
* patterns are cleaned like Go's ``path.Clean`` (``./a//b/`` -> ``a/b``) and a
  leading ``/`` is dropped, so patterns are always relative to the context root;
* ``*`` matches any run of characters except ``/``, ``?`` one character
  except ``/``, ``[...]`` a regex character class (``[^...]`` negated), ``\\`` escapes
  the next character, and ``**`` matches any number of path segments
  (``**/x``, ``a/**``, ``a/**/b``);
* a pattern that matches a directory also excludes everything below it
  (a path is excluded if it or any of its parent directories matches).
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

__all__ = ["DockerIgnore", "IgnorePattern", "find_dockerignore", "clean_pattern"]


def clean_pattern(pattern: str) -> str:
    """Normalise one pattern body like moby's ignorefile.ReadAll: path.Clean and
    drop a leading ``/`` (``"/a/../b/"`` -> ``"b"``, ``"/"`` stays ``"/"``)."""
    p = posixpath.normpath(pattern)
    # posixpath keeps a leading "//"; Go's Clean collapses it.
    if p.startswith("//"):
        p = "/" + p.lstrip("/")
    if len(p) > 1 and p.startswith("/"):
        p = p[1:]
    return p


_ESCAPED = frozenset(".+()|{}$")
_WILD = frozenset("*?[]\\")


def _translate(pattern: str) -> str:
    """Regular expression (without anchors) for a cleaned pattern, built the
    way patternmatcher's Pattern.compile does: ``**`` -> any depth, ``*`` and
    ``?`` never cross ``/``, ``[`` ``]`` are passed through as a regex class
    (so ``[^a]`` negates and ``[!a]`` is a class holding ``!``), ``\\`` escapes."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(?:.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch in _ESCAPED:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append(re.escape("\\"))
        elif ch in "[]^-":
            out.append(ch)
        else:
            out.append(re.escape(ch))
    return "".join(out)


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(_translate(pattern), re.DOTALL)
    except re.error as exc:
        raise ValueError(f"syntax error in pattern {pattern!r}: {exc}") from None


def _suffix_of(pattern: str) -> str | None:
    """patternmatcher's suffixMatch: a pattern that starts with ``**`` and has no
    other wildcard matches any path *ending* in the rest (``**foo`` matches
    ``barfoo``; ``**/foo`` also matches ``foo``)."""
    if pattern.startswith("**") and not (set(pattern[2:]) & _WILD):
        return pattern[2:]
    return None


@dataclass(frozen=True)
class IgnorePattern:
    """One compiled pattern: ``text`` (cleaned, without ``!``), ``exclusion``
    (True for ``!`` re-include patterns), ``regex`` (full-match)."""

    text: str
    exclusion: bool
    regex: re.Pattern[str]
    suffix: str | None = None

    def matches(self, path: str) -> bool:
        if self.suffix is not None:
            sfx = self.suffix
            return path.endswith(sfx) or (sfx.startswith("/") and path == sfx[1:])
        return self.regex.fullmatch(path) is not None

    def matches_self_or_parent(self, path: str) -> bool:
        """True when ``path`` or one of its parent directories matches."""
        if self.matches(path):
            return True
        parts = path.split("/")
        return any(self.matches("/".join(parts[:k])) for k in range(1, len(parts)))


def _segment_matches(segment: str, name: str) -> bool:
    try:
        return _compile(segment).fullmatch(name) is not None
    except ValueError:
        return True  # unknown: be conservative and descend


class DockerIgnore:
    """Compiled .dockerignore rules (moby/patternmatcher semantics).

    Empty rules exclude nothing.  Paths passed to :meth:`excluded` are
    context-relative, ``/``-separated, without a leading ``./``.
    """

    def __init__(self, patterns: Iterable[IgnorePattern] = ()):
        self.patterns: tuple[IgnorePattern, ...] = tuple(patterns)
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    # -- construction -------------------------------------------------------
    @classmethod
    def from_lines(cls, lines: Iterable[str]) -> "DockerIgnore":
        """Build from .dockerignore lines.  Raises ValueError for a bare ``!``."""
        patterns: list[IgnorePattern] = []
        for idx, raw in enumerate(lines):
            line = raw.rstrip("\r\n")
            if idx == 0 and line.startswith("\ufeff"):
                line = line[1:]
            if line.startswith("#"):
                continue
            line = line.strip()
            if not line:
                continue
            exclusion = line.startswith("!")
            if exclusion:
                line = line[1:].strip()
                if not line:
                    raise ValueError('illegal exclusion pattern: "!"')
            text = clean_pattern(line)
            patterns.append(IgnorePattern(text, exclusion, _compile(text), _suffix_of(text)))
        return cls(patterns)

    @classmethod
    def from_file(cls, path: Path | None) -> "DockerIgnore":
        """Read a .dockerignore file; ``None`` gives empty rules.
        Raises OSError if the file cannot be read, ValueError for a bad pattern."""
        if path is None:
            return cls()
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
        return cls.from_lines(text.split("\n"))

    # -- queries -------------------------------------------------------------
    @staticmethod
    def _norm(relpath: str) -> str:
        p = posixpath.normpath(relpath) if relpath else "."
        while p.startswith("./"):
            p = p[2:]
        return p.lstrip("/") or "."

    def excluded(self, relpath: str, is_dir: bool = False) -> bool:
        """True when ``relpath`` must be left out of the build context.

        The last pattern that matches the path (or one of its parent
        directories) decides; ``!`` patterns re-include.  ``is_dir`` is accepted
        for callers' convenience; moby semantics do not depend on it (a
        trailing ``/`` in a pattern is cleaned away).  The context root
        (``"."`` / ``""``) is never excluded.
        """
        path = self._norm(relpath)
        if path == ".":
            return False
        matched = False
        for pat in self.patterns:
            # An include pattern only matters while not excluded, and vice versa.
            if pat.exclusion != matched:
                continue
            if pat.matches_self_or_parent(path):
                matched = not pat.exclusion
        return matched

    def dir_may_contain_included(self, relpath: str) -> bool:
        """For an excluded directory: True when some ``!`` pattern could
        re-include a path at or below it, so a walker must still descend.

        Conservative: may answer True when nothing ends up included (each file
        is then checked with :meth:`excluded`), never False when something could be.
        """
        path = self._norm(relpath)
        if not self.has_exclusions:
            return False
        if path == ".":
            return True
        dir_parts = path.split("/")
        for pat in self.patterns:
            if pat.exclusion and _could_match_below(pat.text, dir_parts):
                return True
        return False


def _could_match_below(pattern: str, dir_parts: list[str]) -> bool:
    """Could ``pattern`` match ``dir`` itself or any path beneath it?"""
    pat_parts = pattern.split("/")
    for k, seg in enumerate(pat_parts):
        if "**" in seg:
            return True  # "**" can absorb any remaining directory levels
        if k >= len(dir_parts):
            return True  # dir matched so far; pattern continues below it
        if not _segment_matches(seg, dir_parts[k]):
            return False
    # The pattern is fully consumed by (a prefix of) the directory path: it
    # names the dir or one of its parents, so re-includes it wholesale.
    return True


def find_dockerignore(context: Path, dockerfile: Path) -> Path | None:
    """The ignore file for a build: ``<Dockerfile>.dockerignore`` next to the
    Dockerfile (e.g. ``build/app.Dockerfile.dockerignore``) first, then
    ``<context>/.dockerignore``; None when neither exists.
    Source: BuildKit dockerfile frontend (Dockerfile-specific ignore files)."""
    specific = Path(dockerfile).with_name(Path(dockerfile).name + ".dockerignore")
    if specific.is_file():
        return specific
    default = Path(context) / ".dockerignore"
    if default.is_file():
        return default
    return None
