"""The executor's own directories on the build host: the private cache directory of RUN cache
mounts, and housekeeping of work directories left behind by killed runs.

RUN cache directory (``RUN --mount=type=cache`` content kept between builds)
    ``--run-cache-dir`` as given, else ``$XDG_CACHE_HOME/executor/run-cache`` (XDG Base
    Directory spec: only an absolute ``XDG_CACHE_HOME`` counts), else
    ``$HOME/.cache/executor/run-cache`` (the user database's home when ``HOME`` is unset).
    Never a predictable host-wide path such as ``/tmp/run-cache``: whoever can write the cache
    directory decides what the next build's cache mounts read. Missing directories are created
    mode 0700; an existing cache directory must be a directory owned by this process's
    effective user and not writable by group or others, else :class:`UnsafeDirectory`.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
from pathlib import Path
from typing import Mapping

from .errors import UserError


class UnsafeDirectory(UserError):
    """A directory the executor keeps private state in belongs to another user, is writable by
    group/others, or is not a directory; the message names it and what to do."""


def cache_home(environ: Mapping[str, str] | None = None) -> Path:
    """The user's cache base directory: ``$XDG_CACHE_HOME`` when absolute (XDG Base Directory
    spec: relative values are invalid and ignored), else ``$HOME/.cache``, else
    ``<home of the effective user in the user database>/.cache``."""
    env = os.environ if environ is None else environ
    xdg = env.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    home = env.get("HOME", "")
    if not home or not os.path.isabs(home):
        try:
            home = pwd.getpwuid(os.geteuid()).pw_dir
        except KeyError:
            home = "/"
    return Path(home) / ".cache"


def make_private_dirs(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents, each mode 0700 whatever the umask; returns the
    directories created (outermost first). A directory another thread or process creates
    meanwhile is fine. Raises OSError (EACCES, EROFS, ENOTDIR, ...) naming the path."""
    missing = []
    p = Path(path)
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created = []
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # mkdir(2) applied the umask; a umask cannot add bits, but be exact
        created.append(d)
    return created


def check_private_dir(path: Path, what: str) -> None:
    """Raise :class:`UnsafeDirectory` unless ``path`` (symlinks followed) is a directory owned by
    the effective user and writable by no one else (mode & 0o022 == 0). ``what`` names the
    directory's role in the message."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise UnsafeDirectory(f"{what} {path}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeDirectory(f"{what} {path} is not a directory")
    uid = os.geteuid()
    if st.st_uid != uid:
        raise UnsafeDirectory(f"{what} {path} is owned by uid {st.st_uid}, not by this user (uid {uid}): its content "
                              "could have been planted by someone else; use a directory of your own")
    if st.st_mode & 0o022:
        raise UnsafeDirectory(f"{what} {path} is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o}): "
                              f"anyone who can write it decides what a build reads from it; run chmod go-w {path} "
                              "or use a private directory")


def run_cache_dir(explicit: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The directory of ``RUN --mount=type=cache`` content (see the module docstring): created
    0700 when missing, checked with :func:`check_private_dir` when present.

    Raises :class:`UnsafeDirectory` for a directory of another user or one writable by group or
    others. A directory that cannot be created (read-only home, ...) is returned unchecked: the
    cache mount that needs it fails then, builds without one are not affected."""
    path = Path(explicit) if explicit else cache_home(environ) / "executor" / "run-cache"
    try:
        make_private_dirs(path)
    except OSError as e:
        if e.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            raise UnsafeDirectory(f"RUN cache directory {path}: {e.strerror}") from None
        if not os.path.lexists(path):
            return path
    check_private_dir(path, "RUN cache directory")
    return path
