"""The layer-cache store protocol: what the engine's cache wrapper needs from a backend.

Two backends implement it: :class:`executor.cache.registry_store.LayerCache` (a registry
repository, ``--cache-repo REGISTRY/REPO``) and
:class:`executor.cache.layout_store.LayoutLayerCache` (an OCI image layout on disk,
``--cache-repo oci:/path``). :class:`executor.cache.chain.StoreChain` puts several in a row
(``--cache-repo`` then each read-only ``--cache-from``).
"""

from __future__ import annotations

from typing import Protocol

from ..oci.image import Layer
from .entry import CacheHit


class LayerStore(Protocol):
    """A cache of step results by 64-hex chain key. Lookups never raise (absent, expired or
    unreadable entries are misses); stores run in the background and only warn on failure.
    ``lookup_record``/``read_trail`` return None for anything absent or unreadable."""

    def lookup(self, key: str) -> CacheHit | None: ...

    def lookup_config(self, key: str) -> dict | None: ...

    def store(self, key: str, layer: Layer | None, created_by: str, config: dict | None = None,
              record: str | None = None) -> None: ...

    # miss explanations (executor.cache.explain): an entry's key record, the per-build trail
    def lookup_record(self, key: str) -> dict | None: ...

    def read_trail(self, name: str) -> dict | None: ...

    def write_trail(self, name: str, trail: str) -> None: ...

    # path indexes of layers (the lazy filesystem, executor.engine.lazyfs): by diff_id
    def lookup_index(self, diff_id: str) -> bytes | None: ...

    def store_index(self, diff_id: str, data) -> None: ...

    def close(self) -> None: ...
