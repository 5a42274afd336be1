"""``RUN --mount`` syntax: parse a flag value into a :class:`MountSpec`, resolve it for one RUN.

Source: Docker Dockerfile reference, "RUN --mount" (types ``bind``, ``cache``, ``tmpfs``,
``secret``, ``ssh`` and their options) and BuildKit
``frontend/dockerfile/instructions/commands_runmount.go``. Defaults: ``type=bind``; bind
read-only unless ``rw``; cache ``id`` = target, ``sharing=shared``, ``mode=0755``; secret
``id`` = basename of the target, target ``/run/secrets/<id>``, ``mode=0400``; ssh ``id``
``default``, target ``/run/buildkit/ssh_agent.<N>`` (N counts the ssh mounts of the RUN),
``mode=0600``; relative targets are taken from the WORKDIR of the RUN.

Two steps, so that a bad mount is reported when the Dockerfile is loaded:

* :func:`parse_mount_flag` (parse time): CSV split, key aliases (``dst``, ``src``, ``ro``...),
  type and key checks, and every *literal* value checked (octal ``mode``, numeric ``uid`` and
  ``gid``, ``size``, ``sharing``, booleans). Values containing ``$`` are kept raw; the target
  is kept as written (it may be relative).
* :meth:`MountSpec.resolved` (build time): ``$`` values expanded with the then-current
  ARG/ENV values and checked, the target made absolute from the WORKDIR, defaults that
  depend on the target recomputed.

Every problem raises :class:`MountError` (a ValueError) naming the key and what to write
instead; the caller adds the Dockerfile line.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Callable

from executor.fs.paths import clean_abs

from .flagvalues import shown
from .words import parse_flag_kv

__all__ = ["MOUNT_TYPES", "MountError", "MountSpec", "parse_mount_flag", "parse_size"]

MOUNT_TYPES = ("bind", "cache", "tmpfs", "secret", "ssh")
_ALLOWED_KEYS = {
    "bind": frozenset({"target", "source", "from", "readonly", "rw"}),
    "cache": frozenset({"target", "source", "from", "readonly", "rw", "id", "sharing", "mode", "uid", "gid"}),
    "tmpfs": frozenset({"target", "size"}),
    "secret": frozenset({"target", "id", "env", "required", "mode", "uid", "gid"}),
    "ssh": frozenset({"target", "id", "required", "mode", "uid", "gid"}),
}
_ALIASES = {"dst": "target", "destination": "target", "src": "source", "ro": "readonly", "readwrite": "rw"}
_SHARING = ("shared", "private", "locked")
_OCTAL = re.compile(r"[0-7]{1,11}\Z")
_DECIMAL = re.compile(r"[0-9]{1,10}\Z")
_SIZE = re.compile(r"\s*([0-9]{1,15}(?:\.[0-9]{1,15})?)\s*([kmgtp]?)(i?b)?\s*\Z")


class MountError(ValueError):
    """A ``--mount`` value that is malformed; the message names the key and what to write."""


@dataclass(frozen=True)
class MountSpec:
    """One ``RUN --mount``.

    From :func:`parse_mount_flag`: literal values parsed, ``$`` values raw, ``target`` as
    written. From :meth:`resolved`: everything expanded and ``target`` absolute and clean
    (no trailing ``/``; ``''`` for a secret exposed only as ``env``).

    ``type``: one of :data:`MOUNT_TYPES`; ``source``/``from_``: bind or cache source path and
    stage/image (``''`` = build context); ``readonly``: the type default already applied
    (bind: True, others: False); ``id``: cache/secret/ssh id; ``sharing``: cache sharing
    (shared, private, locked); ``mode``: permission bits (None = type default, which is
    filled in for cache, secret and ssh); ``uid``/``gid``: owner; ``required``: secret/ssh
    must be given; ``env``: secret environment variable; ``size``: tmpfs bytes (None =
    unlimited). ``raw``: the normalised raw ``key=value`` pairs (aliases applied) and
    ``ssh_index``: the number of ssh mounts before this one in its RUN, both kept for
    :meth:`resolved`.
    """

    type: str
    target: str
    source: str = ""
    from_: str = ""
    readonly: bool = False
    id: str = ""
    sharing: str = "shared"
    mode: int | None = None
    uid: int = 0
    gid: int = 0
    required: bool = False
    env: str = ""
    size: int | None = None
    raw: tuple[tuple[str, str], ...] = ()
    ssh_index: int = 0

    def resolved(self, workdir: str, expand: Callable[[str], str]) -> "MountSpec":
        """A new spec for one RUN: values containing ``$`` expanded with ``expand`` (called only
        for those) and checked, the target made absolute from ``workdir`` (an absolute in-image
        path), target-dependent defaults recomputed (cache ``id``, secret ``id``).

        Raises :class:`MountError`; whatever ``expand`` raises propagates unchanged.
        """
        raw = self.raw or _fields_of(self)  # no raw fields: built by hand, not by parse_mount_flag
        return _assemble(dict(raw), self.ssh_index, workdir, expand)


def parse_mount_flag(value: str, ssh_index: int = 0) -> MountSpec:
    """Parse one ``--mount`` flag value (``type=cache,target=/root/.cache,id=pip``).

    ``value``: a CSV record of ``key=value`` fields (Go encoding/csv quoting; a bare key such
    as ``rw`` means ``true``; keys case-insensitive). ``ssh_index``: how many ``type=ssh``
    mounts precede this one in the same RUN (numbers the default ssh target).
    Returns a spec with literal values parsed and ``$`` values kept raw (see module doc).
    Raises :class:`MountError` naming the bad key, type or value.
    """
    try:
        raw = parse_flag_kv(value)
    except ValueError as e:
        raise MountError(f"malformed mount: {e}; write key=value pairs separated by commas "
                         "(quote a whole field that holds a comma or a quote)") from None
    fields: dict[str, str] = {}
    for k, v in raw.items():
        fields[_ALIASES.get(k, k)] = v
    return _assemble(fields, ssh_index, None, None)


def parse_size(text: str) -> int:
    """``"64m"``, ``"1GiB"``, ``"4096"`` -> bytes (docker/go-units RAMInBytes: binary units,
    case-insensitive, optional ``b``/``ib``). Raises :class:`MountError` for anything else."""
    m = _SIZE.match(text.lower())
    if not m:
        raise MountError(f"invalid size {shown(text)!r}: use bytes or a number with k, m, g (e.g. 64m)")
    mult = 1024 ** " kmgtp".index(m.group(2) or " ")
    return int(float(m.group(1)) * mult)


def _bool(key: str, value: str) -> bool:
    low = value.lower()
    if low in ("", "true", "1"):
        return True
    if low in ("false", "0"):
        return False
    raise MountError(f"{key}={shown(value)}: expected true or false")


def _int(key: str, value: str, octal: bool = False) -> int:
    if not (_OCTAL if octal else _DECIMAL).match(value):
        raise MountError(f"{key}={shown(value)}: expected {'an octal mode such as 0755' if octal else 'a number'}")
    return int(value, 8 if octal else 10)


def _fields_of(spec: MountSpec) -> tuple[tuple[str, str], ...]:
    """Raw fields equivalent to a hand-built spec (only the values it holds)."""
    out = [("type", spec.type)]
    for key, val in (("target", spec.target), ("source", spec.source), ("from", spec.from_),
                     ("id", spec.id), ("env", spec.env)):
        if val:
            out.append((key, val))
    if spec.type in ("bind", "cache"):
        out.append(("readonly", "true" if spec.readonly else "false"))
    if spec.type == "cache":
        out.append(("sharing", spec.sharing))
    if spec.type in ("secret", "ssh"):
        out.append(("required", "true" if spec.required else "false"))
    if spec.mode is not None and spec.type != "tmpfs" and spec.type != "bind":
        out.append(("mode", format(spec.mode, "o")))
    if spec.type not in ("bind", "tmpfs"):
        out += [("uid", str(spec.uid)), ("gid", str(spec.gid))]
    if spec.size is not None:
        out.append(("size", str(spec.size)))
    return tuple(out)


def _assemble(fields: dict[str, str], ssh_index: int, workdir: str | None,
              expand: Callable[[str], str] | None) -> MountSpec:
    """The spec for normalised ``fields``. ``workdir`` None: parse time (``$`` values kept raw
    and not checked, target as written); else build time (``$`` values expanded, target made
    absolute)."""
    resolving = workdir is not None
    keep = tuple(fields.items())

    def get(key: str, default: str = "") -> tuple[str, bool]:
        """(value, literal): ``literal`` False when the value still holds an unexpanded ``$``."""
        val = fields.get(key, default)
        if "$" not in val:
            return val, True
        if resolving and expand is not None:
            return expand(val), True
        return val, False

    mtype, literal = get("type", "bind")
    if not literal:  # validated once expanded
        return MountSpec(type=mtype, target=fields.get("target", ""), raw=keep, ssh_index=ssh_index)
    mtype = mtype.lower()
    if mtype not in MOUNT_TYPES:
        raise MountError(f"unsupported mount type {shown(mtype)!r}: use type= one of {', '.join(MOUNT_TYPES)}")
    allowed = _ALLOWED_KEYS[mtype]
    unknown = sorted(k for k in fields if k != "type" and k not in allowed)
    if unknown:
        raise MountError(f"unexpected key {shown(unknown[0])!r} for type={mtype} "
                         f"(allowed: {', '.join(sorted(allowed))})")

    target, target_literal = get("target")
    if target and target_literal and resolving:
        target = clean_abs(target, workdir).rstrip("/") or "/"
    source, _ = get("source")
    from_, _ = get("from")
    env, _ = get("env")
    mid, _ = get("id")

    readonly = mtype == "bind"
    if "readonly" in fields:
        val, lit = get("readonly")
        if lit:
            readonly = _bool("readonly", val)
    if "rw" in fields:
        val, lit = get("rw")
        if lit:
            readonly = not _bool("rw", val)
    required = False
    if "required" in fields:
        val, lit = get("required")
        required = _bool("required", val) if lit else False
    mode: int | None = None
    uid = gid = 0
    size: int | None = None
    for key in ("mode", "uid", "gid", "size"):
        if key not in fields:
            continue
        val, lit = get(key)
        if not lit:
            continue
        if key == "mode":
            mode = _int("mode", val, octal=True)
        elif key == "uid":
            uid = _int("uid", val)
        elif key == "gid":
            gid = _int("gid", val)
        else:
            size = parse_size(val)
    sharing, lit = get("sharing", "shared")
    sharing = sharing.lower() if lit else "shared"
    if sharing not in _SHARING:
        raise MountError(f"sharing={shown(sharing)}: use shared, private or locked")

    if mtype == "secret":
        if not mid:
            if not target:
                raise MountError("type=secret needs id=NAME (or a target to take the id from)")
            mid = posixpath.basename(target.rstrip("/"))
        if not target and not env:
            target = f"/run/secrets/{mid}"
        mode = 0o400 if mode is None else mode
    elif mtype == "ssh":
        mid = mid or "default"
        target = target or f"/run/buildkit/ssh_agent.{ssh_index}"
        mode = 0o600 if mode is None else mode
    else:
        if not target:
            raise MountError(f"type={mtype} needs target=PATH")
        if mtype == "cache":
            mid = mid or target
            mode = 0o755 if mode is None else mode
    if target_literal and target and target.strip("/") == "":
        raise MountError("a mount cannot replace the root directory /: use another target")
    return MountSpec(type=mtype, target=target, source=source, from_=from_, readonly=readonly, id=mid,
                     sharing=sharing, mode=mode, uid=uid, gid=gid, required=required, env=env, size=size,
                     raw=keep, ssh_index=ssh_index)
