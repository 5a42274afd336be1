"""The git commit of a local context directory that is (inside) a git checkout, for provenance.

A Tekton git-clone Task, ``actions/checkout`` or a developer's clone hands the executor a plain
directory: the commit it holds goes into ``resolvedDependencies`` as the ``source``, as it does
for a ``git://`` context the executor cloned itself.

Read from the files under ``.git`` (no ``git`` process: the checkout is often owned by another
user, which git refuses as a "dubious ownership" repository, and a build image may have no git):
``HEAD`` (a ``ref:`` or a detached commit), the loose ref or ``packed-refs``, and the ``url`` of
remote ``origin`` (else the only remote) in ``config``. A ``.git`` file (``gitdir: ...``, as
worktrees and submodules have) and a worktree's ``commondir`` are followed. The search goes up
from the context to the first ``.git``, not across a file-system boundary (git's own default).

What is recorded is HEAD's commit: uncommitted changes are not looked for (the context's tree
digest, beside it in the provenance, is what the build actually read).
"""

from __future__ import annotations

import configparser
import os
import re
from dataclasses import dataclass
from pathlib import Path

_COMMIT = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
_MAX_FILE = 1 << 20          # HEAD, a ref, config: a few bytes; packed-refs of a big repo: some MiB
_MAX_PACKED = 64 << 20


@dataclass(frozen=True)
class Checkout:
    """``commit`` (hex), ``url`` (the remote's URL as configured, None when there is none),
    ``root`` (the work tree's top directory)."""

    commit: str
    url: str | None
    root: Path


def _read(path: Path, limit: int = _MAX_FILE) -> str | None:
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError:
        return None
    if len(data) > limit:
        return None
    return data.decode("utf-8", errors="replace")


def _git_dir(top: Path) -> Path | None:
    """The git directory of the work tree at ``top`` (``top/.git`` or where its ``gitdir:`` points)."""
    dotgit = top / ".git"
    if dotgit.is_dir():
        return dotgit
    text = _read(dotgit)
    if text and text.startswith("gitdir:"):
        target = Path(text[len("gitdir:"):].strip())
        target = target if target.is_absolute() else top / target
        return target if target.is_dir() else None
    return None


def find_git_dir(start: Path) -> tuple[Path, Path] | None:
    """``(work tree top, git directory)`` of the checkout holding ``start``, or None."""
    here = Path(os.path.abspath(start))
    try:
        dev = here.stat().st_dev
    except OSError:
        return None
    while True:
        if os.path.lexists(here / ".git"):
            git_dir = _git_dir(here)
            return (here, git_dir) if git_dir is not None else None
        parent = here.parent
        try:
            if parent == here or parent.stat().st_dev != dev:
                return None
        except OSError:
            return None
        here = parent


def _resolve(git_dir: Path, common: Path, ref: str) -> str | None:
    for d in dict.fromkeys((git_dir, common)):
        text = _read(d / ref)
        if text is not None:
            value = text.strip()
            if value.startswith("ref:"):
                return None  # a symbolic ref to a symbolic ref: not followed
            return value if _COMMIT.match(value) else None
    packed = _read(common / "packed-refs", _MAX_PACKED) or ""
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name.strip() == ref and _COMMIT.match(sha):
            return sha
    return None


def _remote_url(common: Path) -> str | None:
    text = _read(common / "config")
    if not text:
        return None
    parser = configparser.RawConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"),
                                          inline_comment_prefixes=None)
    try:
        parser.read_string(text)
    except configparser.Error:
        return None
    remotes = {}
    for section in parser.sections():
        m = re.fullmatch(r'\s*remote\s+"(.*)"\s*', section)
        if m and parser.has_option(section, "url"):
            remotes[m.group(1)] = parser.get(section, "url").strip().strip('"')
    if "origin" in remotes:
        return remotes["origin"] or None
    return next(iter(remotes.values())) if len(remotes) == 1 else None


def local_checkout(context: Path) -> Checkout | None:
    """The checkout that holds ``context`` at its HEAD commit, or None (not a checkout, an
    unborn branch, unreadable files)."""
    found = find_git_dir(context)
    if found is None:
        return None
    top, git_dir = found
    common_text = _read(git_dir / "commondir")
    common = git_dir
    if common_text and common_text.strip():
        c = Path(common_text.strip())
        common = c if c.is_absolute() else git_dir / c
    head = (_read(git_dir / "HEAD") or "").strip()
    if head.startswith("ref:"):
        commit = _resolve(git_dir, common, head[len("ref:"):].strip())
    else:
        commit = head if _COMMIT.match(head) else None
    if commit is None:
        return None
    return Checkout(commit=commit, url=_remote_url(common), root=top)


def source_uri(url: str) -> str:
    """A remote URL as an SLSA ``git+`` URI: ``https://h/r.git`` -> ``git+https://h/r.git``,
    scp-like ``git@h:r.git`` -> ``git+ssh://git@h/r.git``, a local path -> ``git+file://PATH``
    (user:password is removed by the caller)."""
    if "://" in url:
        scheme = url.split("://", 1)[0].lower()
        return url if scheme.startswith("git") else "git+" + url
    m = re.fullmatch(r"([^/@:]+@)?([^/:]+):(.+)", url)
    if m and not url.startswith("/"):
        return f"git+ssh://{m.group(1) or ''}{m.group(2)}/{m.group(3).lstrip('/')}"
    return "git+file://" + os.path.abspath(url)
