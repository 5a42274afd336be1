"""The step protocol: what every instruction's step gives the engine, and what the engine records.

A step is built once per typed instruction (:mod:`executor.engine.steps`). Running it has two
phases, so the cache key is computed from exactly the inputs the execution uses:

1. ``prepare(ctx) -> Prepared``: expand the instruction's words with the stage's variables and
   resolve what it reads (context matches, source stage, mount definitions). No filesystem
   writes. The result carries the image-config fields the step sets, the history text, the
   named components of its cache key and, for steps that write files, ``execute``.
2. ``Prepared.execute() -> ChangeSet``: only on a cache miss, on a filled stage root.

The cache (:mod:`executor.engine.cached`) wraps prepared steps from outside: it reads
``components`` and decides whether ``execute`` runs. The engine records one
:class:`StepRecord` per step (key, hit/miss, timings, layer), which logs, provenance and
cache-miss explanations read.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..dockerfile.instructions import Instruction
from ..redaction import redact_userinfo

if TYPE_CHECKING:
    from ..fs.snapshot import ChangeSet


class CacheUse(enum.StrEnum):
    """What the layer cache did for one step."""

    HIT = "hit"
    MISS = "miss"
    SKIPPED = "skipped"      # cache on, but this step is not cached (policy or unkeyable)
    OFF = "off"              # no --cache, or a step that writes no files


SHOWN_MAX = 200


def shorten(text: str, limit: int = SHOWN_MAX) -> str:
    """The first line of an instruction (or any text) cut to ``limit`` characters, for errors and
    logs, with URL credentials redacted (:func:`executor.redaction.redact_userinfo`)."""
    lines = redact_userinfo(text.strip()).splitlines()
    first = lines[0] if lines else ""
    if len(first) > limit:
        return first[:limit] + f"... ({len(first)} characters)"
    return first


@dataclass
class Prepared:
    """One step, ready to run.

    ``created_by``: the image history text. ``config``: image-config (``config`` object) fields
    set by the step, applied on a hit and on a miss (``None`` values delete the field).
    ``components``: named cache-key components (``{"instruction": ..., "env.X": ..., "source
    app/": "sha256:..."}``), a callable so digests are computed only when a cache asks; it
    returns None when the inputs cannot be known before running (ADD of a URL without
    ``--checksum``). ``execute``: the filesystem work; None for steps that only change config.
    ``cache_class``: which ``--cache-*-layers`` policy applies ("run" or "copy"; "" = always).
    ``lazy_paths``: for a step that writes only at known destinations (COPY, ADD, WORKDIR), a
    callable giving the in-image paths ``execute`` resolves (its destinations), or None when it
    also reads the stage's files (``--chown`` by name, ADD of an archive...); the lazy
    filesystem (:mod:`executor.engine.lazyfs`) then runs it without unpacking the layers.
    """

    created_by: str
    config: Mapping[str, Any] = field(default_factory=dict)
    components: Callable[[], dict[str, str] | None] = lambda: {}
    execute: Callable[[], ChangeSet] | None = None
    cache_class: str = ""
    lazy_paths: Callable[[], list[str] | None] | None = None


class Step(Protocol):
    """One typed instruction's behaviour (see the module docstring)."""

    instruction: Instruction

    def prepare(self, ctx: Any) -> Prepared:  # ctx: executor.engine.stage.StepContext
        ...


@dataclass
class StepRecord:
    """What happened to one step: stage, instruction, key, cache use, seconds, layer digest."""

    stage: str
    location: str
    keyword: str
    text: str
    key: str = ""
    cache: CacheUse = CacheUse.OFF
    cache_source: str = ""               # a hit's --cache-from source ('': --cache-repo or none)
    components: dict[str, str] | None = None
    started: float = 0.0
    seconds: float = 0.0
    layer_digest: str | None = None


@dataclass
class BuildRecord:
    """Every step of a build in the order they ran (thread-safe append); ``started``/``finished``
    are POSIX seconds."""

    started: float = field(default_factory=time.time)
    finished: float = 0.0
    steps: list[StepRecord] = field(default_factory=list)
    #: ADD URL -> ``alg:hex`` of the bytes fetched (or, on a cache hit, the ``--checksum`` that
    #: keyed the step): the provenance's resolvedDependencies.
    downloads: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, record: StepRecord) -> None:
        with self._lock:
            self.steps.append(record)

    def add_download(self, url: str, digest: str) -> None:
        """Note that ``url`` was (or, cached, would be) fetched with content ``digest`` (``alg:hex``)."""
        with self._lock:
            self.downloads[url] = digest

    def count(self, use: CacheUse) -> int:
        return sum(1 for s in self.steps if s.cache == use)
