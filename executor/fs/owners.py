"""File owners in the stage root when the executor may not chown(2): recorded, not applied.

A build run by a non-root user with every capability dropped (a Dockerfile without RUN, the
Pod Security "restricted" mode) cannot give a file another owner on disk. Owners are then
kept the way rootless image tools keep them, so the layer headers say what the Dockerfile
and the base layers say (OCI image-spec layer.md: owners are the tar headers' uid/gid):

- the executor's own uid and gid on disk stand for 0 (root) in the image, as the user's id
  is root inside a rootless container;
- any other owner is recorded in the extended attribute ``user.executor.owner`` (``UID:GID``,
  ASCII) of the file or directory, and an owner of 0:0 removes it; a symlink cannot carry
  ``user.*`` attributes (xattr(7)), so its owner is recorded on its parent directory as
  ``user.executor.lowner.<sha256 of its name, 32 hex>``;
- the layer writer takes the owner from there (:func:`layer_owner`) and never writes an
  attribute named ``user.executor.*`` into a layer; extraction never sets one from a layer.

As root (also root of a user namespace: the rootless re-exec, userns mode) chown(2) is used
and nothing is recorded. The work directory must be on a filesystem with user extended attributes (ext4, xfs, btrfs, tmpfs since
Linux 6.6), else recording a non-root owner raises :class:`OwnerNotRecorded`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

#: The extended attribute holding an owner that could not be applied on disk.
OWNER_XATTR = "user.executor.owner"
#: Every attribute of this executor's (never copied into or out of a layer).
PRIVATE_XATTRS = "user.executor."


def _symlink_key(name: str) -> str:
    import hashlib  # (rootless owner records only)
    return "user.executor.lowner." + hashlib.sha256(os.fsencode(name)).hexdigest()[:32]


class OwnerNotRecorded(OSError):
    """A non-root build could not record a file's owner (no user extended attributes here)."""


def can_chown() -> bool:
    """True when owners are applied with chown(2): the effective uid is 0 (in this user
    namespace); False when they are recorded (see the module docstring)."""
    return os.geteuid() == 0


def set_owner(target: str | Path | int, uid: int, gid: int, *, strict: bool = True) -> None:
    """Give ``target`` (a path, never followed, or an open descriptor) the owner ``uid:gid``:
    chown(2) as root, else record it (:func:`record_owner`). Raises OSError from chown(2), or
    :class:`OwnerNotRecorded` (only when ``strict``) naming the path."""
    if can_chown():
        if isinstance(target, int):
            os.fchown(target, uid, gid)
        else:
            os.chown(target, uid, gid, follow_symlinks=False)
        return
    record_owner(target, uid, gid, strict=strict)


def record_owner(target: str | Path | int, uid: int, gid: int, *, strict: bool = True) -> None:
    """Record ``uid:gid`` as the layer owner of ``target`` (not followed); 0:0 clears the record.
    A symlink is skipped (no ``user.*`` attributes on symlinks). Raises
    :class:`OwnerNotRecorded` when the filesystem refuses user attributes and ``strict``."""
    kw = {} if isinstance(target, int) else {"follow_symlinks": False}
    name = OWNER_XATTR
    if not isinstance(target, int) and os.path.islink(target):
        target, name = os.path.dirname(os.fspath(target)) or ".", _symlink_key(os.path.basename(target))
    try:
        if (uid, gid) == (0, 0):
            try:
                os.removexattr(target, name, **kw)
            except OSError as e:
                if e.errno not in (errno.ENODATA, errno.ENOTSUP):
                    raise
            return
        os.setxattr(target, name, f"{uid}:{gid}".encode(), **kw)
    except OSError as e:
        if not strict:
            return
        where = target if not isinstance(target, int) else f"/proc/self/fd/{target}"
        raise OwnerNotRecorded(e.errno, f"cannot record owner {uid}:{gid} of {where} without root: "
                                        f"{e.strerror} (the work directory needs a filesystem with user "
                                        "extended attributes: use --kaniko-dir on ext4, xfs or btrfs)") from None


def layer_owner(st: os.stat_result, xattrs: dict[str, bytes] | None, path: str | Path = "") -> tuple[int, int]:
    """The (uid, gid) to write in a layer header for ``path`` with lstat ``st`` and extended
    attributes ``xattrs`` (as listed for the layer; every ``user.executor.*`` entry is removed
    from it). As root: the on-disk owner. Otherwise: the recorded owner (a symlink's on its
    parent directory), else the executor's own ids mapped to 0."""
    raw = xattrs.pop(OWNER_XATTR, None) if xattrs else None
    for key in [k for k in (xattrs or ()) if k.startswith(PRIVATE_XATTRS)]:
        del xattrs[key]
    if can_chown():
        return st.st_uid, st.st_gid
    if raw is None and path and os.path.islink(path):
        try:
            raw = os.getxattr(os.path.dirname(os.fspath(path)) or ".", _symlink_key(os.path.basename(path)))
        except OSError:
            pass
    if raw is not None:
        try:
            uid, gid = (int(x) for x in raw.decode().split(":"))
            return uid, gid
        except ValueError:
            pass
    uid = 0 if st.st_uid == os.geteuid() else st.st_uid
    gid = 0 if st.st_gid == os.getegid() else st.st_gid
    return uid, gid


def recorded_owner(path: str | Path, st: os.stat_result) -> tuple[int, int]:
    """The image owner of the existing ``path`` (lstat ``st``): what :func:`layer_owner` would
    write (for ``COPY --from``, which keeps owners)."""
    if can_chown():
        return st.st_uid, st.st_gid
    try:
        raw = {OWNER_XATTR: os.getxattr(path, OWNER_XATTR, follow_symlinks=False)}
    except OSError:
        raw = None
    return layer_owner(st, raw, path)
