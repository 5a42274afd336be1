"""The path index of one layer: the metadata of every tar entry, without file contents.

A :class:`PathIndex` lists, in tar order, one :class:`IndexEntry` per entry of a layer: its
clean relative path, kind, mode, owner, size, mtime, link target and xattrs, plus the layer's
whiteouts (``DIR/.wh.NAME`` -> kind ``w`` at ``DIR/NAME``) and opaque markers
(``DIR/.wh..wh..opq`` -> kind ``o`` at ``DIR``); OCI image-spec layer.md. It is what the lazy
filesystem (:mod:`executor.engine.lazyfs`) needs to compute COPY/ADD/WORKDIR layers after
cache hits without downloading or unpacking the layers below.

Produced where the bytes pass: :func:`executor.layers.writer.write_layer` records each header
it writes (:class:`IndexRecorder`); :func:`scan_layer` reads only the tar headers of a blob
(decompressed on a background thread, file data skipped, nothing written).

Serialization (:meth:`PathIndex.encode`, media type :data:`MEDIA_TYPE`): gzip (mtime 0, so
deterministic) of UTF-8 JSON lines; line 1 ``{"pathindex": 1, "diff_id": "sha256:...",
"entries": N}``, then one JSON array per entry ``[path, kind, mode, uid, gid, size,
mtime_ns, link]`` with an optional 9th element ``{xattr name: base64 value}``. Paths are
``surrogateescape``-decoded like tar names. :func:`PathIndex.decode` treats the bytes as
untrusted: any malformed line, non-canonical path (absolute, ``..``, empty or ``.``
components, NUL), out-of-range number or size over the limits rejects the whole index with
:class:`PathIndexError` (callers then take the eager path).

:class:`MergedTree` stacks the indexes of an image's layers into the visible tree the way
:mod:`executor.layers.extract` applies them (whiteouts and opaque markers hide lower entries
only; a directory over a directory merges and takes the new metadata; anything else
replaces; parent symlinks are followed inside the root).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import stat
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, NamedTuple

from ..errors import LayerError
from .tarstream import BLK, CHR, DIR, FIFO, LNK, REG, SYM, TarReader

MEDIA_TYPE = "application/vnd.dev.executor.pathindex.v1.jsonl+gzip"
VERSION = 1

#: Kinds: regular file, directory, symlink, hardlink, char/block device, fifo, whiteout, opaque.
FILE, DIRECTORY, SYMLINK, HARDLINK, CHARDEV, BLOCKDEV, FIFO_KIND, WHITEOUT, OPAQUE = "fdlhcbpwo"
KINDS = frozenset("fdlhcbpwo")
_TAR_KIND = {REG: FILE, DIR: DIRECTORY, SYM: SYMLINK, LNK: HARDLINK, CHR: CHARDEV, BLK: BLOCKDEV, FIFO: FIFO_KIND}

MAX_ENTRIES = 300_000       # entries of one layer's index (a larger layer is not indexed: eager path)
MAX_ENCODED = 48 << 20      # decompressed bytes of an index (bounds the memory a hostile one takes)
MAX_COMPRESSED = 16 << 20   # compressed bytes of an index
MAX_PATH = 4096
MAX_SIZE = 1 << 50          # bytes of one file
MAX_XATTR = 64 << 10        # bytes of one xattr value
_MAX_ID = (1 << 32) - 1
_MAX_NS = 1 << 62

_WH = ".wh."
_WH_META = ".wh..wh."
_WH_OPQ = ".wh..wh..opq"


class PathIndexError(ValueError):
    """A path index that cannot be used: malformed, over a limit, or inconsistent (the message
    says which line/path)."""


class IndexEntry(NamedTuple):
    """One layer entry: ``path`` (clean, relative, ``/``-separated, never ''), ``kind`` (one of
    :data:`KINDS`), ``mode`` (permission bits incl. setuid/setgid/sticky), numeric ``uid``/
    ``gid``, ``size`` (bytes of a regular file, else 0), ``mtime_ns`` (nanoseconds since the
    epoch), ``link`` (symlink target as written, or the hardlink target path; else '') and
    ``xattrs`` ((name, raw value) pairs, as in the layer). A named tuple: an index holds one per
    layer entry, and a frozen dataclass costs several times more to create."""

    path: str
    kind: str
    mode: int = 0
    uid: int = 0
    gid: int = 0
    size: int = 0
    mtime_ns: int = 0
    link: str = ""
    xattrs: tuple[tuple[str, bytes], ...] = ()

    def row(self) -> list:
        r: list = [self.path, self.kind, self.mode, self.uid, self.gid, self.size, self.mtime_ns, self.link]
        if self.xattrs:
            r.append({k: base64.b64encode(v).decode() for k, v in self.xattrs})
        return r


def _canonical(path: str, what: str) -> str:
    if type(path) is not str or not path or len(path) > MAX_PATH or "\x00" in path:
        raise PathIndexError(f"{what}: bad path {path!r:.80}")
    if path[0] == "/" or path[-1] == "/" or "//" in path or (
            "." in path and any(p in (".", "..") for p in path.split("/"))):
        raise PathIndexError(f"{what}: path {path!r:.80} is not a clean relative path")
    return path


def _int(v, lo: int, hi: int, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
        raise PathIndexError(f"{what}: number {v!r:.40} out of range")
    return v


@dataclass
class PathIndex:
    """The entries of one layer (tar order) and the layer's ``diff_id`` ('' when unknown)."""

    diff_id: str = ""
    entries: list[IndexEntry] = field(default_factory=list)

    def encode(self) -> bytes:
        """The serialized index (see the module docstring); the same index gives the same bytes."""
        lines = [json.dumps({"pathindex": VERSION, "diff_id": self.diff_id, "entries": len(self.entries)},
                            sort_keys=True, separators=(",", ":"))]
        dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True).encode
        lines += [dumps(e.row()) for e in self.entries]
        raw = ("\n".join(lines) + "\n").encode("utf-8", "surrogateescape")
        return gzip.compress(raw, compresslevel=6, mtime=0)

    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.encode()).hexdigest()

    @classmethod
    def decode(cls, data: bytes, diff_id: str | None = None) -> "PathIndex":
        """Parse untrusted serialized bytes; ``diff_id`` given: it must be the one recorded.

        Raises :class:`PathIndexError` for anything malformed (see the module docstring)."""
        if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_COMPRESSED:
            raise PathIndexError("index blob too large or not bytes")
        try:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = d.decompress(bytes(data), MAX_ENCODED + 1)
            if len(raw) > MAX_ENCODED or d.unconsumed_tail:
                raise PathIndexError(f"index decompresses to more than {MAX_ENCODED} bytes")
            if not d.eof:
                raise PathIndexError("index is truncated")
        except zlib.error as e:
            raise PathIndexError(f"index is not gzip data ({e})") from None
        try:
            text = raw.decode("utf-8", "surrogateescape")
        except UnicodeError:  # pragma: no cover - surrogateescape accepts any bytes
            raise PathIndexError("index is not UTF-8") from None
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        if not lines:
            raise PathIndexError("index is empty")
        try:
            head = json.loads(lines[0])
        except ValueError:
            raise PathIndexError("index header is not JSON") from None
        if not isinstance(head, dict) or head.get("pathindex") != VERSION:
            raise PathIndexError("not a path index of version 1")
        n = head.get("entries")
        _int(n, 0, MAX_ENTRIES, "index header")
        if n != len(lines) - 1:
            raise PathIndexError(f"index header says {n} entries, it has {len(lines) - 1}")
        rec = head.get("diff_id")
        if not isinstance(rec, str) or (diff_id is not None and rec != diff_id):
            raise PathIndexError(f"index is of layer {rec!r:.80}, not {diff_id}")
        try:  # one parse of every row (the line structure is only formatting)
            rows = json.loads("[" + ",".join(lines[1:]) + "]")
        except ValueError:
            raise PathIndexError("index entries are not JSON") from None
        if len(rows) != n:
            raise PathIndexError(f"index header says {n} entries, it has {len(rows)}")
        return cls(diff_id=rec, entries=[_parse_row(row, f"index entry {i}") for i, row in enumerate(rows, 1)])


def _parse_row(row, what: str) -> IndexEntry:
    if type(row) is not list or len(row) not in (8, 9):
        raise PathIndexError(f"{what}: not an entry")
    path, kind, mode, uid, gid, size, mtime_ns, link = row[:8]
    if not (kind == OPAQUE and path == "."):  # "." : an opaque marker at the root
        _canonical(path, what)
    if kind not in KINDS:
        raise PathIndexError(f"{what}: unknown kind {kind!r:.20}")
    if not (type(mode) is int and 0 <= mode <= 0o7777 and type(uid) is int and 0 <= uid <= _MAX_ID
            and type(gid) is int and 0 <= gid <= _MAX_ID and type(size) is int and 0 <= size <= MAX_SIZE
            and type(mtime_ns) is int and -_MAX_NS <= mtime_ns <= _MAX_NS):
        raise PathIndexError(f"{what}: a number out of range")
    if type(link) is not str or len(link) > MAX_PATH or "\x00" in link:
        raise PathIndexError(f"{what}: bad link target")
    if kind == HARDLINK:
        _canonical(link, what)
    elif link and kind != SYMLINK:
        raise PathIndexError(f"{what}: a link target on a {kind!r} entry")
    if len(row) == 8:
        return IndexEntry(path, kind, mode, uid, gid, size, mtime_ns, link)
    xa = row[8]
    if not isinstance(xa, dict) or len(xa) > 256:
        raise PathIndexError(f"{what}: bad xattrs")
    items = []
    for k, v in sorted(xa.items()):
        if not isinstance(k, str) or not k or len(k) > 255 or "\x00" in k or not isinstance(v, str) \
                or len(v) > MAX_XATTR * 2:
            raise PathIndexError(f"{what}: bad xattr")
        try:
            items.append((k, base64.b64decode(v, validate=True)))
        except ValueError:
            raise PathIndexError(f"{what}: bad xattr value") from None
    return IndexEntry(path, kind, mode, uid, gid, size, mtime_ns, link, tuple(items))


def _ns(t: int | float) -> int:
    return int(t * 1_000_000_000) if isinstance(t, float) else t * 1_000_000_000


class IndexRecorder:
    """Collects the entries of a layer as its tar is read or written; :meth:`index` gives the
    :class:`PathIndex`. ``add`` takes raw tar-entry fields (name as written, whiteout markers
    included); names are cleaned here (a root entry is dropped)."""

    def __init__(self) -> None:
        self.entries: list[IndexEntry] = []
        self.overflow = False  # more than MAX_ENTRIES: nothing more is kept, :meth:`index` raises

    def add(self, name: str, kind: str, mode: int, uid: int, gid: int, size: int, mtime: int | float,
            link: str = "", xattrs: Iterable[tuple[str, bytes]] = ()) -> None:
        if self.overflow:
            return
        if len(self.entries) >= MAX_ENTRIES:
            self.overflow = True
            self.entries = []
            return
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if not parts or ".." in parts:
            return  # the root entry (its metadata is not in a layer diff), or an escaping name
        base = parts[-1]
        if base.startswith(_WH):
            if base == _WH_OPQ:
                self.entries.append(IndexEntry("/".join(parts[:-1]) or ".", OPAQUE))
                return
            if base.startswith(_WH_META) or base == _WH:
                return
            parts[-1] = base[len(_WH):]
            self.entries.append(IndexEntry("/".join(parts), WHITEOUT))
            return
        if any(p.startswith(_WH_META) for p in parts[:-1]):
            return
        if kind == HARDLINK:
            lp = [p for p in link.split("/") if p not in ("", ".")]
            link = "/".join(lp)
        self.entries.append(IndexEntry("/".join(parts), kind, mode & 0o7777, uid, gid,
                                       size if kind == FILE else 0, _ns(mtime), link,
                                       tuple(sorted(xattrs))))

    def index(self, diff_id: str = "") -> PathIndex:
        """The recorded index; raises PathIndexError when the layer has too many entries."""
        if self.overflow:
            raise PathIndexError(f"the layer has more than {MAX_ENTRIES} entries: not indexed")
        return PathIndex(diff_id, list(self.entries))


def scan_tar_chunks(next_chunk, diff_id: str = "") -> PathIndex:
    """The index of the uncompressed tar delivered by ``next_chunk`` (headers only, data skipped).
    Raises LayerError for a malformed tar."""
    rec = IndexRecorder()
    for m in TarReader(next_chunk):
        kind = _TAR_KIND.get(m.type)
        if kind is None or m.sparse:
            continue  # extraction skips these too
        rec.add(m.name, kind, m.mode, m.uid, m.gid, m.size, m.mtime, m.linkname, m.xattrs)
    return rec.index(diff_id)


def scan_layer(blob: BinaryIO, media_type: str | None, diff_id: str, verify: bool = True) -> PathIndex:
    """The index of the layer blob ``blob`` (compressed as ``media_type``), whose uncompressed
    content must hash to ``diff_id`` (LayerError otherwise; ``verify`` False: the caller has
    just verified it, e.g. by extracting it). Reads headers only; writes nothing."""
    from .decompress import ChunkStream
    hasher = hashlib.sha256() if verify else None
    with ChunkStream(blob, media_type, hasher=hasher) as chunks:
        index = scan_tar_chunks(chunks.next_chunk, diff_id)
        if hasher is not None:
            chunks.drain()
    if hasher is not None and "sha256:" + hasher.hexdigest() != diff_id:
        raise LayerError(f"layer content does not match diff_id {diff_id}")
    return index


def scan_layer_file(path: Path, media_type: str | None, diff_id: str, verify: bool = True) -> PathIndex:
    """:func:`scan_layer` of the blob file ``path``."""
    with open(path, "rb") as f:
        return scan_layer(f, media_type, diff_id, verify)


# -- the merged tree --------------------------------------------------------------------

class Unprovable(Exception):
    """The merged tree cannot say what the eager path would do here (implicit directories,
    symlink loops, an index inconsistent with itself): take the eager path."""


class _Node:
    __slots__ = ("entry", "children", "implicit")

    def __init__(self, entry: IndexEntry | None, implicit: bool = False):
        self.entry = entry
        self.children: dict[str, _Node] | None = {} if entry is None or entry.kind == DIRECTORY else None
        self.implicit = implicit


_MAX_LINKS = 40


class MergedTree:
    """The visible tree of a stack of layer indexes (apply them bottom first with :meth:`apply`)."""

    def __init__(self) -> None:
        self.root = _Node(None)

    # resolution -------------------------------------------------------------------------
    def _resolve(self, parts: list[str], follow_final: bool, create: bool = False,
                 trace: list | None = None) -> tuple[list[str], _Node | None]:
        """(real path parts, node or None when missing) of ``parts``; symlinks followed inside the
        root (``..`` stops at the root, as chroot). ``create``: missing directories are made
        (implicit). ``trace``: gets (real path, node) of every existing entry visited."""
        todo = list(reversed(parts))
        cur: list[str] = []
        node = self.root
        nodes = [self.root]
        links = 0
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            if name == "..":
                if cur:
                    cur.pop()
                    nodes.pop()
                    node = nodes[-1]
                continue
            if node.children is None:
                raise Unprovable("/".join(cur) + " is not a directory")
            child = node.children.get(name)
            final = not todo
            if child is None:
                if create:
                    child = node.children[name] = _Node(None, implicit=True)
                else:
                    return cur + [name] + list(reversed(todo)), None
            if child.implicit and not create:
                raise Unprovable(f"{'/'.join(cur + [name])} was created implicitly by extraction")
            if trace is not None:
                trace.append(("/".join(cur + [name]), child))
            if child.entry is not None and child.entry.kind == SYMLINK and (not final or follow_final):
                links += 1
                if links > _MAX_LINKS:
                    raise Unprovable("too many levels of symbolic links")
                target = child.entry.link
                if target.startswith("/"):
                    cur, nodes, node = [], [self.root], self.root
                todo.extend(reversed(target.split("/")))
                continue
            cur.append(name)
            nodes.append(child)
            node = child
        return cur, node

    def lookup(self, path: str, follow_final: bool = True) -> IndexEntry | None:
        """The entry visible at in-image ``path`` (None: missing, or the root)."""
        _, node = self._resolve(path.split("/"), follow_final)
        return node.entry if node is not None else None

    def trace(self, path: str) -> list[tuple[str, IndexEntry]]:
        """Every existing entry met while resolving in-image ``path`` (symlinks followed, the
        final one too): (real relative path, entry), in the order met. Raises Unprovable."""
        out: list = []
        self._resolve(path.split("/"), True, trace=out)
        return [(p, n.entry) for p, n in out if n.entry is not None]

    def subtree(self, path: str) -> list[tuple[str, IndexEntry]]:
        """Entries at and below the real relative ``path`` (not following symlinks below it)."""
        _, node = self._resolve(path.split("/"), True)
        out: list = []
        stack = [(path, node)] if node is not None else []
        while stack:
            p, n = stack.pop()
            if n.entry is not None:
                out.append((p, n.entry))
            for name, c in (n.children or {}).items():
                stack.append((f"{p}/{name}" if p else name, c))
        return out

    # applying a layer ---------------------------------------------------------------------
    def apply(self, index: PathIndex) -> None:
        """Stack ``index`` on top (OCI layer.md changeset semantics, as the extractor applies
        them). Raises Unprovable when the result cannot be known without the files."""
        own = {e.path for e in index.entries if e.kind not in (WHITEOUT, OPAQUE)}
        keep = set(own)
        for p in own:
            i = p.rfind("/")
            while i > 0:
                keep.add(p[:i])
                i = p.rfind("/", 0, i)
        for e in index.entries:  # whiteouts hide lower entries only: apply them first
            if e.kind == OPAQUE:
                d = [] if e.path == "." else e.path.split("/")
                real, node = self._resolve(d, True, create=True)
                if node is not None and node.children is not None:
                    _opaque(node, "/".join(real), keep)
                continue
            if e.kind == WHITEOUT:
                parts = e.path.split("/")
                if e.path in own:
                    continue
                real, node = self._resolve(parts[:-1], True)
                if node is None or node.children is None:
                    continue
                node.children.pop(parts[-1], None)
        parents: dict[str, _Node] = {}  # parent path -> its node, while nothing is replaced
        for e in index.entries:
            if e.kind in (WHITEOUT, OPAQUE):
                continue
            cut = e.path.rfind("/")
            ppath, name = (e.path[:cut], e.path[cut + 1:]) if cut >= 0 else ("", e.path)
            parent = parents.get(ppath)
            if parent is None:
                _, parent = self._resolve(ppath.split("/") if ppath else [], True, create=True)
                if parent is None or parent.children is None:
                    raise Unprovable(f"the parent of {e.path} is not a directory")
                parents[ppath] = parent
            old = parent.children.get(name)
            if old is not None and not (e.kind == DIRECTORY and old.children is not None):
                if old.children is not None or (old.entry is not None and old.entry.kind == SYMLINK):
                    parents.clear()  # a directory or symlink replaced: resolutions may change
            if e.kind == HARDLINK:
                _, target = self._resolve(e.link.split("/"), False)
                if target is None or target.entry is None or target.entry.kind in (DIRECTORY, SYMLINK):
                    raise Unprovable(f"hardlink {e.path} to {e.link}: no such file in the index")
                t = target.entry
                e = IndexEntry(e.path, HARDLINK, t.mode, t.uid, t.gid, t.size, t.mtime_ns, e.link, t.xattrs)
            if e.kind == DIRECTORY and old is not None and old.children is not None:
                old.entry = e
                old.implicit = False
                continue
            parent.children[name] = _Node(e)

    @classmethod
    def of(cls, indexes: Iterable[PathIndex]) -> "MergedTree":
        tree = cls()
        for ix in indexes:
            tree.apply(ix)
        return tree


def _opaque(node: _Node, prefix: str, keep: set[str]) -> None:
    """Remove the lower entries below ``node`` (real path ``prefix``) that the layer does not
    create or hold entries under (recursively), as the extractor's opaque handling does."""
    for name in list(node.children or ()):
        p = f"{prefix}/{name}" if prefix else name
        if p in keep:
            child = node.children[name]
            if child.children is not None:
                _opaque(child, p, keep)
        else:
            del node.children[name]


def kind_of_mode(mode: int) -> str:
    """The index kind of an ``st_mode``."""
    return {stat.S_IFREG: FILE, stat.S_IFDIR: DIRECTORY, stat.S_IFLNK: SYMLINK, stat.S_IFCHR: CHARDEV,
            stat.S_IFBLK: BLOCKDEV, stat.S_IFIFO: FIFO_KIND}.get(stat.S_IFMT(mode), FILE)
