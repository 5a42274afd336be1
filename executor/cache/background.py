"""Cache entries written on a small background thread pool (both layer-cache stores use it)."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from ..logs import counted

log = logging.getLogger("executor.cache")


@dataclass
class BackgroundWriter:
    """Cache entries written on a small thread pool, awaited once before the build exits.

    ``verb`` ("push", "write") is what log lines say. A failed entry is a warning, never a
    build failure (a cache must not break a build).
    """

    verb: str
    _pool: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=3,
                                                                                 thread_name_prefix="cache"))
    _futures: list[tuple[str, Future]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def submit(self, key: str, fn, *args) -> None:
        """Run ``fn(*args)`` in the background as the entry for ``key``."""
        fut = self._pool.submit(fn, *args)
        with self._lock:
            self._futures.append((key, fut))

    def wait(self, repo: str) -> tuple[int, int]:
        """Wait for every pending entry; returns (done, failed)."""
        with self._lock:
            futures, self._futures = self._futures, []
        ok = failed = 0
        for key, fut in futures:
            try:
                fut.result()
                ok += 1
            except Exception as e:  # noqa: BLE001 - a cache entry must never fail the build
                failed += 1
                log.warning("could not %s cache entry %s:%s: %s", self.verb, repo, key[:12], e)
        if futures:
            past = {"push": "pushed", "write": "wrote"}.get(self.verb, self.verb)
            log.info("%s %s to %s%s", past, counted(ok, "cache entry", "cache entries"), repo, f" ({failed} failed)" if failed else "")
        return ok, failed

    def close(self, repo: str) -> None:
        """Wait for pending entries and stop the pool."""
        self.wait(repo)
        self._pool.shutdown(wait=True)
