"""Layer-cache keys: a hash chain from the base image through every instruction.

Pure functions only (no registry, no build state), so every rule is unit-tested.

``key_0 = root_key(base digest or parent stage key, platform, settings)`` and
``key_n = step_key(key_{n-1}, instruction facts)``. A key is ``64`` lower-case hex chars
(sha256), valid as a registry tag. What goes into a step:

* the instruction keyword and its *expanded* words (``expanded``);
* for RUN: every variable the command can see (declared ARGs with values, then ENV), the
  USER, WORKDIR, SHELL, ``--network`` and the ``--mount`` definitions (``env``/``extra``);
* for COPY/ADD: digests of the sources (:func:`source_digest`: content and symlink targets,
  then mode and owner, of every file that is copied, never mtimes), or the source stage's final
  chain key for ``--from=<stage>``, or the image digest for ``--from=<image>``;
* an ARG instruction contributes only its *name*: the value reaches the chain through the
  RUNs that can see it (their ``env``) and through other instructions whose expanded words
  use it. A changed build arg therefore misses exactly from the first instruction that sees
  it on, and instructions before its ARG declaration still hit.

Proxy build args (HTTP_PROXY, ...) are never part of a key, as in Docker.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

KEY_VERSION = "executor-cache-v1"


def _h(obj: object) -> str:
    data = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(data).hexdigest()


def root_key(base: str, platform: str, *, compression: str = "gzip", epoch: int | None = None) -> str:
    """Start of a stage's chain.

    ``base``: ``sha256:...`` manifest digest of the base image, ``"scratch"``, or
    ``"stage:<key>"`` (final chain key of the parent stage). ``platform``: ``os/arch[/variant]``.
    ``compression`` and ``epoch`` (``--reproducible`` timestamp, None when off) are in the key
    because they change the bytes of every layer built after them.
    """
    return _h({"v": KEY_VERSION, "base": base, "platform": platform, "compression": compression, "epoch": epoch})


def step_key(prev: str, name: str, words: Iterable[str], *, flags: Mapping[str, Iterable[str]] | None = None,
             env: Mapping[str, str] | None = None, sources: Iterable[str] = (),
             extra: Mapping[str, object] | None = None) -> str:
    """Next key of the chain after instruction ``name`` (upper case).

    ``words``: the expanded arguments; ``flags``: expanded ``--flag`` values; ``env``: the
    variables the instruction can see (RUN only; others pass None); ``sources``: digests of
    COPY/ADD sources in order (see :func:`tree_digest`); ``extra``: anything else that
    decides the result (USER, WORKDIR, SHELL for RUN). Order of ``env`` keys does not matter.
    """
    return _h({
        "prev": prev, "name": name.upper(), "words": list(words),
        "flags": {k: list(v) for k, v in sorted((flags or {}).items())},
        "env": dict(sorted((env or {}).items())) if env is not None else None,
        "sources": list(sources), "extra": dict(extra or {}),
    })


def arg_step_key(prev: str, names: Iterable[str]) -> str:
    """Key after an ARG instruction: only the declared names, never the values."""
    return step_key(prev, "ARG", sorted(names))


def stage_source(key: str) -> str:
    """The ``sources`` entry for ``COPY --from=<stage>`` / ``RUN --mount=from=<stage>``."""
    return "stage:" + key


def image_source(digest: str) -> str:
    """The ``sources`` entry for ``COPY --from=<image>`` (its manifest digest)."""
    return "image:" + digest


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def entry_record(rel: str, st: os.stat_result, host: str) -> list:
    """What of one file decides a copy: path, type, permission bits, owner, content/target.

    mtime, atime, ctime and inode numbers are deliberately left out.
    """
    fmt = stat.S_IFMT(st.st_mode)
    if stat.S_ISREG(st.st_mode):
        body = _file_digest(host)
    elif stat.S_ISLNK(st.st_mode):
        body = os.readlink(host)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        body = f"{os.major(st.st_rdev)},{os.minor(st.st_rdev)}"
    else:
        body = ""
    return [rel, fmt, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, body]


def _tree_entries(path: Path, rel_in_context: str, excluded: Callable[[str, bool], bool] | None,
                  descend: Callable[[str], bool] | None, follow_top: bool) -> Iterator[list]:
    """:func:`entry_record` of every file a COPY of ``path`` would read, in sorted order (the
    top first, as ``.``); see :func:`tree_digest`."""
    top = os.path.realpath(path) if follow_top else os.fspath(path)
    st = os.lstat(top)
    yield entry_record(".", st, top)
    if not stat.S_ISDIR(st.st_mode):
        return
    stack = [(top, "", rel_in_context)]
    while stack:
        d, rel, rctx = stack.pop()
        with os.scandir(d) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for e in entries:
            r = posixpath.join(rel, e.name) if rel else e.name
            rc = posixpath.join(rctx, e.name) if rctx else e.name
            est = e.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(est.st_mode)
            if excluded is not None and excluded(rc, is_dir) and not (is_dir and descend is not None and descend(rc)):
                continue  # as COPY does: an excluded directory that may hold re-included files is still made
            yield entry_record(r, est, e.path)
            if is_dir:
                subdirs.append((e.path, r, rc))
        stack.extend(reversed(subdirs))


def tree_digest(path: Path, *, rel_in_context: str = "",
                excluded: Callable[[str, bool], bool] | None = None,
                descend: Callable[[str], bool] | None = None, follow_top: bool = True) -> str:
    """sha256 hex over every file a COPY of ``path`` would read.

    ``path``: a file, symlink or directory (followed at the top when ``follow_top``, as COPY
    does). ``excluded(rel_in_context, is_dir)`` is the .dockerignore test and ``descend(rel)``
    says whether an excluded directory must still be walked (a ``!`` exception may re-include
    something below it); both None for stage or image sources. Entries are visited in sorted
    order; each contributes :func:`entry_record`. Raises OSError when ``path`` vanished.
    """
    h = hashlib.sha256()
    for record in _tree_entries(path, rel_in_context, excluded, descend, follow_top):
        h.update(json.dumps(record).encode())
    return h.hexdigest()


def source_digest(path: Path, *, rel_in_context: str = "",
                  excluded: Callable[[str, bool], bool] | None = None,
                  descend: Callable[[str], bool] | None = None) -> str:
    """``<content>/<attributes>`` of a COPY/ADD source: two sha256 hex over the files
    :func:`tree_digest` covers, split so that a cache miss can say what changed. Content: each
    path, its type and its content or link target (files added or removed change it);
    attributes: each path with its permission bits and owner."""
    content, attrs = hashlib.sha256(), hashlib.sha256()
    for rel, fmt, mode, uid, gid, body in _tree_entries(path, rel_in_context, excluded, descend, True):
        content.update(json.dumps([rel, fmt, body]).encode())
        attrs.update(json.dumps([rel, mode, uid, gid]).encode())
    return f"{content.hexdigest()}/{attrs.hexdigest()}"


def short(key: str) -> str:
    """The first 12 hex characters of a key, as logged."""
    return key[:12]


def chain_key(prev: str, components: Mapping[str, str]) -> str:
    """Next key of the chain after a step whose named key components are ``components``
    (``{"instruction": "RUN make", "env.VERSION": "1.2", "source app/": "<digest>", ...}``;
    see :class:`executor.engine.step.Prepared`). Order of the mapping does not matter."""
    return _h({"v": KEY_VERSION, "prev": prev, "components": dict(sorted(components.items()))})
