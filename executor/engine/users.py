"""Resolve ``USER`` and ``--chown`` specs against the stage root's /etc/passwd and /etc/group.

Source: Docker's Dockerfile reference (USER, COPY --chown): names are looked up in the
image's own files, numeric ids need no entry, a missing name is an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BuildError


@dataclass(frozen=True)
class Identity:
    """A resolved user: numeric ``uid``/``gid``, supplementary ``groups`` and ``home``."""

    uid: int
    gid: int
    groups: tuple[int, ...] = field(default=())
    home: str = "/"


def _read_table(root: Path, name: str) -> list[list[str]]:
    path = root / "etc" / name
    try:
        if path.is_symlink():
            return []
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def lookup_user(root: Path, name: str) -> tuple[int, int, str] | None:
    """(uid, gid, home) for a user name or numeric uid from root/etc/passwd, or None."""
    for row in _read_table(root, "passwd"):
        if len(row) >= 4 and (row[0] == name or (name.isdigit() and row[2] == name)):
            try:
                return int(row[2]), int(row[3]), row[5] if len(row) > 5 else "/"
            except ValueError:
                return None
    return None


def lookup_group(root: Path, name: str) -> int | None:
    """gid for a group name or number from root/etc/group, or None."""
    if name.isdigit():
        return int(name)
    for row in _read_table(root, "group"):
        if len(row) >= 3 and row[0] == name:
            try:
                return int(row[2])
            except ValueError:
                return None
    return None


def supplementary_groups(root: Path, user: str, uid: int) -> tuple[int, ...]:
    """gids of the groups in root/etc/group that list ``user`` as a member."""
    out = []
    for row in _read_table(root, "group"):
        if len(row) >= 4 and user in row[3].split(",") and row[2].isdigit():
            out.append(int(row[2]))
    return tuple(sorted(set(out)))


def resolve_user(root: Path, spec: str) -> Identity:
    """Resolve a ``USER`` value (``name``, ``uid``, ``name:group``, ``uid:gid``).

    Raises BuildError when a name is not in the image's /etc/passwd or /etc/group.
    """
    spec = spec or "root"
    user, _, group = spec.partition(":")
    entry = lookup_user(root, user)
    if entry is None and user == "root":
        entry = (0, 0, "/root")  # root needs no /etc/passwd entry (Docker does the same)
    if entry is None:
        if not user.isdigit():
            raise BuildError(f"unable to find user {user}: no matching entries in the image's /etc/passwd")
        uid, gid, home = int(user), 0, "/"
    else:
        uid, gid, home = entry
    if group:
        g = lookup_group(root, group)
        if g is None:
            raise BuildError(f"unable to find group {group}: no matching entries in the image's /etc/group")
        gid = g
        groups: tuple[int, ...] = ()
    else:
        groups = supplementary_groups(root, user, uid) if not user.isdigit() else ()
    return Identity(uid=uid, gid=gid, groups=groups, home=home)


def resolve_chown(root: Path, spec: str) -> tuple[int, int]:
    """Resolve ``--chown=user[:group]``: a user alone means its primary group (or gid = uid when numeric).

    Raises BuildError for names the image does not know.
    """
    user, _, group = spec.partition(":")
    if user.isdigit():
        uid = int(user)
        gid = uid
    else:
        entry = lookup_user(root, user)
        if entry is None:
            raise BuildError(f"--chown={spec}: unable to find user {user} in the image's /etc/passwd")
        uid, gid = entry[0], entry[1]
    if group:
        g = lookup_group(root, group)
        if g is None:
            raise BuildError(f"--chown={spec}: unable to find group {group} in the image's /etc/group")
        gid = g
    return uid, gid
