"""Why a cache miss happened: what an entry records about its key, the per-build trail, and
the sentences of a miss explanation. Pure functions only (no store, no engine state).

Entry record (annotation ``dev.executor.cache.components`` on every step entry's manifest)
-----------------------------------------------------------------------------------------
Canonical JSON ``{"prev": "<64-hex previous chain key>", "components": {name: value}}``: the
named key components of the step (:class:`executor.engine.step.Prepared`) as
:func:`record_value` shortens them. A record never holds a secret or file contents:

* ``env NAME`` of a secret-looking NAME (``API_TOKEN``, ``DB_PASSWORD``; the predicate is the
  caller's) is stored as ``(hidden)``: no value, no digest of it;
* ``command`` and ``script`` (the RUN text) are stored as ``#<16 hex>`` (a sha256 prefix);
* every 64-hex digest inside a value is cut to its first 16 hex, and a value longer than
  :data:`MAX_VALUE` characters becomes ``<first 40 chars>…#<16 hex of the whole value>``;
* the whole record is at most :data:`MAX_RECORD` bytes (values then become ``#<16 hex>``,
  and if still too long the record keeps only ``prev`` and ``"truncated": true``).

The same shortening is applied to the new components before comparing, so two values compare
equal exactly when the originals do (up to a 64-bit hash collision).

Trail (one entry per pipeline: ``trail-<32 hex>``, see :func:`trail_name`)
---------------------------------------------------------------------------
A cache entry without layers whose manifest annotation ``dev.executor.cache.trail`` is the
canonical JSON :func:`trail_document` returns: the stage root keys and, for every step, its
position (:func:`position`: ``<stage label>/<instruction index> <KEYWORD>``) -> its chain key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping

ANN_RECORD = "dev.executor.cache.components"
ANN_TRAIL = "dev.executor.cache.trail"
TRAIL_PREFIX = "trail-"
TRAIL_VERSION = 1
HIDDEN = "(hidden)"
MAX_VALUE = 120
MAX_RECORD = 16 * 1024
MAX_TRAIL = 256 * 1024
SHOWN = 40          # characters of a value shown in a log line
MAX_REASONS = 3     # component changes named in one line

_HEX64 = re.compile(r"[0-9a-f]{64}")
_OPAQUE = ("instruction", "command", "script")


def _digest(text: str) -> str:
    return "#" + hashlib.sha256(text.encode()).hexdigest()[:16]


def _is_secret_env(name: str, secret: Callable[[str], bool]) -> bool:
    return name.startswith("env ") and secret(name[4:])


def record_value(name: str, value: str, secret: Callable[[str], bool]) -> str:
    """How component ``name`` = ``value`` is recorded (see the module docstring)."""
    if _is_secret_env(name, secret):
        return HIDDEN
    if name in ("command", "script"):
        return _digest(value) if value else ""
    short = _HEX64.sub(lambda m: m.group(0)[:16], value)
    if len(short) > MAX_VALUE:
        return short[:SHOWN] + "…" + _digest(value)
    return short


def record(prev: str, components: Mapping[str, str], secret: Callable[[str], bool]) -> dict:
    """The record of a step's key: ``{"prev": prev, "components": {name: recorded value}}``,
    at most :data:`MAX_RECORD` bytes as JSON."""
    comps = {k: record_value(k, v, secret) for k, v in components.items()}
    out: dict = {"prev": prev, "components": comps}
    if len(encode(out)) > MAX_RECORD:
        out["components"] = {k: (v if v == HIDDEN else _digest(v)) for k, v in comps.items()}
        if len(encode(out)) > MAX_RECORD:
            out = {"prev": prev, "truncated": True}
    return out


def encode(doc: dict) -> str:
    """Canonical JSON text of a record or trail (sorted keys, no spaces, UTF-8 kept)."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_record(text: str | None) -> dict | None:
    """A record from its annotation text; None when absent or malformed."""
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("prev"), str):
        return None
    comps = doc.get("components")
    if comps is not None and not (isinstance(comps, dict) and all(isinstance(v, str) for v in comps.values())):
        return None
    return doc


# ---------------------------------------------------------------------------------- trail
def trail_name(destination: str, target: str, platform: str) -> str:
    """Ref name of the trail of one pipeline: ``trail-`` + 32 hex of sha256 over the
    destination repository (or the cache repository), the ``--target`` ('' = last stage) and
    the platform. A valid registry tag and layout ref name."""
    h = hashlib.sha256(encode({"destination": destination, "target": target, "platform": platform}).encode())
    return TRAIL_PREFIX + h.hexdigest()[:32]


def position(stage: str, index: int, keyword: str) -> str:
    """Where a step is: ``<stage label>/<instruction index in the stage> <KEYWORD>``."""
    return f"{stage}/{index} {keyword.upper()}"


def parse_position(pos: str) -> tuple[str, int, str] | None:
    """``(stage label, index, KEYWORD)`` of a :func:`position` string; None when ``pos`` is
    not one (trails are registry data)."""
    head, _, keyword = pos.rpartition(" ")
    label, _, index = head.rpartition("/")
    if not label or not index.isdigit() or not keyword:
        return None
    return label, int(index), keyword


def trail_document(destination: str, target: str, platform: str, roots: Mapping[str, str],
                   steps: Iterable[tuple[str, str]]) -> dict:
    """``{"v": 1, "destination", "target", "platform", "roots": {stage label: root key},
    "steps": {position: key}}``."""
    return {"v": TRAIL_VERSION, "destination": destination, "target": target, "platform": platform,
            "roots": dict(roots), "steps": dict(steps)}


def parse_trail(text: str | None) -> dict | None:
    """A trail from its annotation text; None when absent, malformed or of another version."""
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("v") != TRAIL_VERSION:
        return None
    if not isinstance(doc.get("roots"), dict) or not isinstance(doc.get("steps"), dict):
        return None
    return doc


# ---------------------------------------------------------------------------------- sentences
def show(value: str | None) -> str:
    """A recorded value as a log line shows it: ``unset``, ``""``, cut to :data:`SHOWN` chars."""
    if value is None:
        return "unset"
    if value == "":
        return '""'
    if value.startswith("#") or "…#" in value:
        value = value.split("…#")[0] if "…#" in value else ""
        return (value[:SHOWN] + "…") if value else "(a long value)"
    return value if len(value) <= SHOWN else value[:SHOWN] + "…"


def _sources(value: str) -> dict[str, str] | None:
    """``rel:digest rel:digest`` (a context source) as {rel: digest}; None for other forms."""
    if not value or value.startswith(("#", "heredoc:", "url@", "context:")) or "…#" in value:
        return None
    out = {}
    for token in value.split(" "):
        rel, sep, digest = token.rpartition(":")
        if not sep or not rel:
            return None
        out[rel] = digest
    return out


def _file_change(rel: str, old: str | None, new: str | None) -> str:
    """``requirements.txt content changed`` / ``mode or owner changed`` / ``added`` / ``removed``
    for one matched path, from its recorded ``<content>/<attributes>`` digests."""
    if old is None:
        return f"{rel} added"
    if new is None:
        return f"{rel} removed"
    a, b = old.split("/"), new.split("/")
    if len(a) != 2 or len(b) != 2:  # an entry recorded before digests were split
        return f"{rel} changed"
    what = [w for w, x, y in (("content", a[0], b[0]), ("mode or owner", a[1], b[1])) if x != y]
    return f"{rel} {' and '.join(what) or 'content'} changed"


def _source_change(name: str, old: str | None, new: str | None) -> str:
    pattern = name.split(" ", 2)[2] if name.count(" ") >= 2 else name
    if old is None:
        return f"{name} added"
    if new is None:
        return f"{name} removed"
    a, b = _sources(old), _sources(new)
    if a is not None and b is not None:
        files = sorted(r for r in a.keys() | b.keys() if a.get(r) != b.get(r))
        if files:
            more = f" and {len(files) - MAX_REASONS} more" if len(files) > MAX_REASONS else ""
            changes = ", ".join(_file_change(r, a.get(r), b.get(r)) for r in files[:MAX_REASONS]) + more
            return changes if files in ([pattern.rstrip("/")], [pattern]) else f"{pattern}: {changes}"
    return f"{name} changed"


_NAMED = {"user": "USER", "workdir": "WORKDIR", "network": "--network", "dest": "destination",
          "chown": "--chown", "chmod": "--chmod", "link": "--link", "parents": "--parents",
          "path": "WORKDIR path"}


def render_change(name: str, old: str | None, new: str | None, *, env_names: frozenset[str] = frozenset(),
                  secret: Callable[[str], bool] = lambda _: False) -> str:
    """One sentence for component ``name`` going from recorded ``old`` to recorded ``new``
    (None = absent in that build).

    ``env NAME``: ``ENV NAME`` when ``NAME`` is in ``env_names``, else ``build arg NAME``,
    with ``(old -> new)`` unless NAME looks like a secret (``secret(NAME)``) or a value is
    hidden. Sources name the pattern (and the changed files of a wildcard), never digests.
    """
    if name in _OPAQUE:
        return "instruction changed"
    if name.startswith("env "):
        var = name[4:]
        label = f"ENV {var}" if var in env_names else f"build arg {var}"
        if secret(var) or HIDDEN in (old, new):
            return f"{label} changed"
        return f"{label} changed ({show(old)} -> {show(new)})"
    if name.startswith("source "):
        return _source_change(name, old, new)
    if name.startswith("mount "):
        what = "source files" if name.endswith(" source") else "definition"
        return f"mount {name.split(' ')[1]} {what} changed"
    if name == "from":
        return "the --from stage or image changed"
    if name == "exclude":
        return "--exclude patterns changed"
    if old is None:
        return f"{name} added"
    if new is None:
        return f"{name} removed"
    if name in _NAMED:
        return f"{_NAMED[name]} changed ({show(old)} -> {show(new)})"
    return f"{name} changed"


def changed_names(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Component names whose recorded values differ (added and removed included), new order
    first, then the removed ones; ``(hidden)`` values in both builds are not comparable and
    left out."""
    out = [k for k in new if old.get(k) != new[k] and not (old.get(k) == HIDDEN and new[k] == HIDDEN)]
    return out + [k for k in old if k not in new]


def hidden_names(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Variables hidden in both records (a change of theirs cannot be seen, only deduced)."""
    return [k[4:] for k in new if new[k] == HIDDEN and old.get(k) == HIDDEN]


def explain_components(old: Mapping[str, str], new: Mapping[str, str], *,
                       env_names: frozenset[str] = frozenset(),
                       secret: Callable[[str], bool] = lambda _: False) -> str:
    """The component part of a miss explanation: up to :data:`MAX_REASONS` sentences joined
    with ``"; "`` (``"; and N more"``), the instruction first; '' when nothing visible differs."""
    names = changed_names(old, new)
    names.sort(key=lambda k: 0 if k in _OPAQUE else 1)
    sentences = list(dict.fromkeys(render_change(k, old.get(k), new.get(k), env_names=env_names, secret=secret)
                                   for k in names))
    if len(sentences) > MAX_REASONS:
        sentences = sentences[:MAX_REASONS] + [f"and {len(sentences) - MAX_REASONS} more"]
    return "; ".join(sentences)


def explain_hidden(names: list[str], env_names: frozenset[str] = frozenset()) -> str:
    """``build arg API_TOKEN changed`` (or ``A or B changed``) for a change only hidden values
    can explain; never a value."""
    labels = [f"ENV {n}" if n in env_names else f"build arg {n}" for n in names]
    return " or ".join(labels) + " changed"
