"""Remove expired layer-cache entries (``executor cache prune``): a cache that does not grow
without bound (registries with tag limits, e.g. ECR's 10 000 per repository).

An entry is one of the single-layer images :mod:`executor.cache.entry` describes (step,
final-config and trail entries alike, recognised by the manifest annotation
``dev.executor.cache.kind``); its age is its ``org.opencontainers.image.created``
annotation (what ``--cache-ttl`` compares). Anything else in the repository or layout (tags or
images another tool put there, entries without a readable time) is left alone.

Registry (:func:`prune_registry`): the repository's tags are listed (distribution-spec
"Listing tags"), each tag's manifest read (one GET each), and each expired manifest deleted
by digest (``DELETE /v2/<name>/manifests/<digest>``, "Deleting manifests"; once per manifest),
which also removes its tags; 8 requests at a time. The registry frees the blobs at its own garbage collection
(docker-registry: ``registry garbage-collect``). A registry with deletion disabled answers 405:
each such entry is reported, with how to enable deletion.

OCI layout (:func:`prune_layout`): under the layout's index lock (:func:`executor.oci.layout.index_lock`,
the one every writer takes), the expired descriptors are dropped from ``index.json`` (the new
index replaces the old by rename, first), then every blob no kept manifest references
(manifest, config, layers; nested indexes followed) is deleted. A reader sees the old or the
new index, never a kept entry whose blob is gone. An unreferenced blob modified after the
cutoff is kept: it may belong to an entry a build is writing at this moment (blobs first,
index last).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import NotFound, RegistryError, UserError
from ..oci import mediatypes as mt
from ..oci.image import sha256_digest
from ..oci.layout import REF_NAME, blob_path, index_lock, read_index, write_index
from ..reference import Reference, parse_reference
from ..registry.cancel import Cancelled
from ..registry.client import RegistryClient
from .entry import ANN_CREATED, ANN_KIND, parse_rfc3339

log = logging.getLogger("executor.cache")

#: What to do when a registry refuses deletion with 405 (the hint of :attr:`Failure.reason`).
DELETE_DISABLED_HINT = ("the registry has deletion disabled (405); enable it (docker-registry / distribution: "
                        "storage: delete: enabled: true in config.yml, or REGISTRY_STORAGE_DELETE_ENABLED=true), or "
                        "expire the cache with the registry's own retention policy (ECR lifecycle rules, Harbor tag "
                        "retention, GAR cleanup policies)")


@dataclass(frozen=True)
class Entry:
    """One cache entry: its ``name`` (tag / ref name), manifest ``digest``, ``kind`` (layer,
    empty, config, trail) and ``created`` (POSIX seconds)."""

    name: str
    digest: str
    kind: str
    created: float


@dataclass(frozen=True)
class Failure:
    """An expired entry that could not be deleted: why (one line), and the HTTP status if any."""

    entry: Entry
    reason: str
    status: int | None = None


@dataclass(frozen=True)
class PruneReport:
    """What a prune found and did. ``entries``: the cache entries seen; ``expired``: those
    older than the cutoff; ``deleted``: removed (all of ``expired`` on success; none with
    ``dry_run``); ``failed``: expired ones not removed; ``others``: tags/ref names that are
    not cache entries (left alone); ``blobs``/``freed``: layout blobs deleted (or that would
    be) and their bytes."""

    location: str
    dry_run: bool
    entries: int
    expired: tuple[Entry, ...]
    deleted: tuple[Entry, ...]
    failed: tuple[Failure, ...]
    others: int
    blobs: int = 0
    freed: int = 0


def _entry(name: str, digest: str, annotations: dict) -> Entry | None:
    kind = annotations.get(ANN_KIND)
    created = parse_rfc3339(annotations.get(ANN_CREATED, ""))
    if not isinstance(kind, str) or created is None:
        return None
    return Entry(name=name, digest=digest, kind=kind, created=created)


# ---------------------------------------------------------------------------------- registry
def prune_registry(client: RegistryClient, repo: str, cutoff: float, dry_run: bool = False,
                   workers: int = 8) -> PruneReport:
    """Delete the entries of registry repository ``repo`` (``registry/name``) created before
    ``cutoff`` (POSIX seconds); with ``dry_run`` only report them.

    Raises RegistryError when the tags cannot be listed (unreachable registry, no rights);
    a manifest that cannot be read or deleted is a :class:`Failure` of the report instead.
    """
    base = parse_reference(repo)
    tags = client.list_tags(base)

    def read(tag: str) -> tuple[str, Entry | None, str | None]:
        try:
            got = client.get_manifest_or_none(base.with_tag(tag), accept=(mt.OCI_MANIFEST,))
        except Cancelled:
            raise
        except RegistryError as e:
            return tag, None, str(e)
        if got is None:
            return tag, None, None  # deleted meanwhile
        data, _, digest = got
        try:
            doc = json.loads(data)
        except ValueError:
            return tag, None, None
        ann = doc.get("annotations") if isinstance(doc, dict) else None
        return tag, _entry(tag, digest, ann) if isinstance(ann, dict) else None, None

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        found = list(pool.map(read, tags))
        entries = [e for _, e, _ in found if e is not None]
        failed: list[Failure] = [Failure(Entry(tag, "", "?", 0.0), f"cannot read its manifest: {err}")
                                 for tag, e, err in found if e is None and err]
        others = sum(1 for _, e, err in found if e is None and not err)
        expired = sorted((e for e in entries if e.created < cutoff), key=lambda e: (e.created, e.name))
        # one DELETE per manifest (several tags may share one), as many at once as the GETs
        first = {e.digest: e for e in reversed(expired)}
        outcomes = {} if dry_run else dict(zip(first, pool.map(lambda e: _delete(client, base, e), first.values())))
    deleted: list[Entry] = []
    for e in [] if dry_run else expired:
        outcome = outcomes[e.digest]
        if outcome is None:
            deleted.append(e)
        else:
            failed.append(Failure(e, outcome.reason, outcome.status))
    return PruneReport(location=base.name, dry_run=dry_run, entries=len(entries), expired=tuple(expired),
                       deleted=tuple(deleted), failed=tuple(failed), others=others)


def _delete(client: RegistryClient, base: Reference, e: Entry) -> Failure | None:
    try:
        client.delete_manifest(Reference(registry=base.registry, repository=base.repository, digest=e.digest))
    except Cancelled:
        raise
    except NotFound:
        return None  # already gone
    except RegistryError as err:
        if err.status == 405:
            return Failure(e, DELETE_DISABLED_HINT, 405)
        return Failure(e, str(err), err.status)
    return None


# ---------------------------------------------------------------------------------- OCI layout
def prune_layout(root: Path, cutoff: float, dry_run: bool = False) -> PruneReport:
    """Remove the entries of the OCI layout cache at ``root`` created before ``cutoff``, then
    its unreferenced blobs (see the module docstring); with ``dry_run`` change nothing.

    Raises UserError when ``root`` is not an OCI image layout, or when a kept entry's
    manifest is unreadable (then no blob is deleted: what it references is unknown).
    """
    where = f"oci:{root}"
    if not (root / "index.json").is_file():
        raise UserError(f"--cache-repo {where}: no OCI image layout there (no index.json)")
    with index_lock(root):
        index = read_index(root)
        descs = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
        keep: list[dict] = []
        expired: list[Entry] = []
        entries = others = 0
        for d in descs:
            ann = d.get("annotations") or {}
            e = _entry(str(ann.get(REF_NAME, "")), str(d.get("digest", "")), ann)
            if e is None:
                e = _layout_entry(root, d)
            if e is None:
                others += 1
            else:
                entries += 1
                if e.created < cutoff:
                    expired.append(e)
                    continue
            keep.append(d)
        referenced = _referenced(root, keep, where)
        if not dry_run and expired:
            index["manifests"] = keep
            write_index(root, index)
        blobs, freed = _collect(root, referenced, cutoff, dry_run)
    expired.sort(key=lambda e: (e.created, e.name))
    return PruneReport(location=where, dry_run=dry_run, entries=entries, expired=tuple(expired),
                       deleted=() if dry_run else tuple(expired), failed=(), others=others, blobs=blobs, freed=freed)


def _layout_entry(root: Path, desc: dict) -> Entry | None:
    """The entry of an index descriptor whose annotations lack kind/created: read its manifest."""
    try:
        doc = json.loads(blob_path(root, str(desc.get("digest", ""))).read_bytes())
    except (OSError, ValueError):
        return None
    ann = doc.get("annotations") if isinstance(doc, dict) else None
    name = (desc.get("annotations") or {}).get(REF_NAME, "")
    return _entry(str(name), str(desc.get("digest", "")), ann) if isinstance(ann, dict) else None


def _referenced(root: Path, descs: list[dict], where: str) -> set[str]:
    """Every blob digest the descriptors ``descs`` reach (manifests, configs, layers, nested indexes)."""
    seen: set[str] = set()
    todo = list(descs)
    while todo:
        d = todo.pop()
        digest = str(d.get("digest", ""))
        if not digest or digest in seen:
            continue
        seen.add(digest)
        if not _is_manifest(d):
            continue  # a config or layer: a leaf
        try:
            data = blob_path(root, digest).read_bytes()
            if sha256_digest(data) != digest:
                raise ValueError("its bytes do not match its digest")
            doc = json.loads(data)
        except (OSError, ValueError) as e:
            raise UserError(f"--cache-repo {where}: manifest {digest} of a kept entry is unreadable ({e}); "
                            "no blob was deleted") from None
        children = [doc.get("config")] + list(doc.get("layers") or []) + list(doc.get("manifests") or [])
        todo += [c for c in children if isinstance(c, dict)]
    return seen


def _is_manifest(desc: dict) -> bool:
    return desc.get("mediaType") in (mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST, mt.DOCKER_MANIFEST_LIST)


def _collect(root: Path, referenced: set[str], cutoff: float, dry_run: bool) -> tuple[int, int]:
    """Delete (or count, with ``dry_run``) the blobs under ``root/blobs`` that ``referenced``
    lacks and that were last modified before ``cutoff``; returns (count, bytes)."""
    count = freed = 0
    blobs = root / "blobs"
    for alg_dir in sorted(blobs.iterdir()) if blobs.is_dir() else []:
        if not alg_dir.is_dir():
            continue
        for path in alg_dir.iterdir():
            if path.name.startswith(".") or f"{alg_dir.name}:{path.name}" in referenced:
                continue  # a writer's temp file, or in use
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            if st.st_mtime >= cutoff:
                continue  # perhaps a build's entry being written now (blobs first, index last)
            if not dry_run:
                try:
                    path.unlink()
                except FileNotFoundError:
                    continue
            count += 1
            freed += st.st_size
    return count, freed
