"""Several layer-cache stores read in order: the ``--cache-repo`` store (read and written), then
each ``--cache-from`` source (read only).

A lookup asks the stores in order and returns the first hit, its :attr:`CacheHit.origin` set
to the name of the ``--cache-from`` source that had it ('' for the ``--cache-repo`` store).
Everything written (step entries, final-config entries, build trails) goes to the
``--cache-repo`` store only, never to a source; without one (``--cache-from`` alone, no
``--cache``) nothing is written. Key records (:mod:`.explain`) and final configs are read
from the first store that has them; a build trail from the ``--cache-repo`` store first, else
from the first source that has one (the returned trail then carries ``"source": <name>``, so
the caller knows it must still store its own).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..oci.image import Layer
from .entry import CacheHit
from .store import LayerStore


@dataclass
class StoreChain:
    """``primary`` (the ``--cache-repo`` store, or None) then ``sources``: (name, store) pairs of
    the ``--cache-from`` stores in the order given. Implements :class:`LayerStore`."""

    primary: LayerStore | None
    sources: list[tuple[str, LayerStore]] = field(default_factory=list)

    @property
    def push(self) -> bool:
        """True when entries are written (a ``--cache-repo`` store that is not ``--no-push-cache``)."""
        return self.primary is not None and bool(getattr(self.primary, "push", True))

    @property
    def repo(self) -> str:
        """What log lines call the chain: the ``--cache-repo`` store's name, else the first source's."""
        if self.primary is not None:
            return str(getattr(self.primary, "repo", ""))
        return self.sources[0][0] if self.sources else ""

    def _stores(self) -> list[tuple[str, LayerStore]]:
        return ([("", self.primary)] if self.primary is not None else []) + list(self.sources)

    def lookup(self, key: str) -> CacheHit | None:
        """The first store's hit for ``key`` (``origin`` = its source name), or None."""
        for name, store in self._stores():
            hit = store.lookup(key)
            if hit is not None:
                return dataclasses.replace(hit, origin=name)
        return None

    def lookup_config(self, key: str) -> dict | None:
        for _, store in self._stores():
            cfg = store.lookup_config(key)
            if cfg is not None:
                return cfg
        return None

    def lookup_record(self, key: str) -> dict | None:
        for _, store in self._stores():
            rec = store.lookup_record(key)
            if rec is not None:
                return rec
        return None

    def read_trail(self, name: str) -> dict | None:
        """The ``--cache-repo`` store's trail ``name``, else the first source's (with ``"source"``)."""
        for source, store in self._stores():
            trail = store.read_trail(name)
            if trail is not None:
                return {**trail, "source": source} if source else trail
        return None

    def lookup_index(self, diff_id: str) -> bytes | None:
        for _, store in self._stores():
            data = store.lookup_index(diff_id)
            if data is not None:
                return data
        return None

    def store_index(self, diff_id: str, data) -> None:
        if self.primary is not None:
            self.primary.store_index(diff_id, data)

    def write_trail(self, name: str, trail: str) -> None:
        if self.primary is not None:
            self.primary.write_trail(name, trail)

    def store(self, key: str, layer: Layer | None, created_by: str, config: dict | None = None,
              record: str | None = None) -> None:
        if self.primary is not None:
            self.primary.store(key, layer, created_by, config, record)

    def close(self) -> None:
        """Wait for the ``--cache-repo`` store's writes; close every store."""
        for _, store in self._stores():
            store.close()
