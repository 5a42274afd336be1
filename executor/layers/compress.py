"""Layer compression and decompression (the historical import path).

The code lives in one module per concept; this module re-exports their names so
``from executor.layers.compress import DigestingWriter, open_decompressed, GZIP`` keeps working:

* :mod:`executor.layers.compression` -- :class:`Compression` (a ``StrEnum``: gzip, zstd,
  none), magic-byte :func:`sniff`;
* :mod:`executor.layers.digesting` -- :class:`DigestingWriter` (tar stream in, compressed
  blob out, ``digest`` and ``diff_id`` computed in one pass) and :class:`LayerDigests`;
* :mod:`executor.layers.gzip_codec` -- deterministic serial and pigz-style parallel gzip,
  the streaming gzip reader;
* :mod:`executor.layers.zstd_codec` -- zstd writer and reader;
* :mod:`executor.layers.decompress` -- :func:`open_decompressed` (sniffing, prefetch).
"""

from __future__ import annotations

from executor.layers.compression import GZIP_MAGIC as _GZIP_MAGIC
from executor.layers.compression import ZSTD_MAGIC as _ZSTD_MAGIC
from executor.layers.compression import Compression, sniff
from executor.layers.compression import Prefixed as _Prefixed
from executor.layers.compression import read_prefix as _read_exact_prefix
from executor.layers.decompress import Prefetch as _Prefetch
from executor.layers.decompress import open_decompressed
from executor.layers.digesting import DigestingWriter, LayerDigests
from executor.layers.digesting import HashingSink as _HashingSink
from executor.layers.digesting import PlainWriter as _Plain
from executor.layers.gzip_codec import DEFAULT_GZIP_LEVEL, GZIP_BLOCK
from executor.layers.gzip_codec import GZIP_HEADER as _GZIP_HEADER
from executor.layers.gzip_codec import PROBE as _PROBE
from executor.layers.gzip_codec import PROBE_RATIO as _PROBE_RATIO
from executor.layers.gzip_codec import WINDOW as _WINDOW
from executor.layers.gzip_codec import GzipReader as _GzipReader
from executor.layers.gzip_codec import ParallelGzip as _ParallelGzip
from executor.layers.gzip_codec import SerialGzip as _SerialGzip
from executor.layers.gzip_codec import incompressible as _incompressible
from executor.layers.gzip_codec import stored as _stored
from executor.layers.zstd_codec import DEFAULT_ZSTD_LEVEL
from executor.layers.zstd_codec import ZstdWriter as _Zstd

GZIP = Compression.GZIP
ZSTD = Compression.ZSTD
NONE = Compression.NONE
#: Every supported compression, as members (equal to the strings "gzip", "zstd", "none").
COMPRESSIONS = tuple(Compression)

__all__ = [
    "COMPRESSIONS", "DEFAULT_GZIP_LEVEL", "DEFAULT_ZSTD_LEVEL", "GZIP", "GZIP_BLOCK", "NONE", "ZSTD",
    "Compression", "DigestingWriter", "LayerDigests", "open_decompressed", "sniff",
    # private names kept for existing tests and callers
    "_GZIP_HEADER", "_GZIP_MAGIC", "_GzipReader", "_HashingSink", "_PROBE", "_PROBE_RATIO", "_ParallelGzip",
    "_Plain", "_Prefetch", "_Prefixed", "_SerialGzip", "_WINDOW", "_ZSTD_MAGIC", "_Zstd",
    "_incompressible", "_read_exact_prefix", "_stored",
]
