"""The Compression StrEnum and the split codec modules behind executor.layers.compress."""

from __future__ import annotations

import gzip
import io

import pytest
import zstandard

from executor.layers import compress
from executor.layers.compression import Compression, sniff
from executor.layers.decompress import open_decompressed
from executor.layers.digesting import DigestingWriter


def test_members_are_their_strings():
    assert Compression.GZIP == "gzip" and Compression.ZSTD == "zstd" and Compression.NONE == "none"
    assert str(Compression.ZSTD) == "zstd" and f"{Compression.GZIP}" == "gzip"
    assert {"gzip": 1}[Compression.GZIP] == 1                        # same hash as the string
    assert Compression("zstd") is Compression.ZSTD
    assert Compression.parse(Compression.NONE) is Compression.NONE
    assert [c.media_type_suffix for c in Compression] == ["+gzip", "+zstd", ""]


def test_parse_rejects_unknown_with_the_choices():
    with pytest.raises(ValueError, match="gzip, zstd or none"):
        Compression.parse("lz4")
    with pytest.raises(ValueError, match="unknown layer compression 'GZIP'"):
        Compression.parse("GZIP")


def test_old_import_path_reexports_the_same_objects():
    assert compress.GZIP is Compression.GZIP and compress.ZSTD is Compression.ZSTD and compress.NONE is Compression.NONE
    assert compress.COMPRESSIONS == ("gzip", "zstd", "none")
    assert compress.DigestingWriter is DigestingWriter and compress.open_decompressed is open_decompressed
    assert compress.sniff is sniff


@pytest.mark.parametrize("kind", ["gzip", Compression.GZIP, "zstd", Compression.ZSTD, "none"])
def test_writer_accepts_members_and_strings_and_roundtrips(kind):
    data = b"layer bytes " * 50_000
    out = io.BytesIO()
    w = DigestingWriter(out, kind)
    w.write(data)
    d = w.close()
    assert w.compression is Compression(kind)
    blob = out.getvalue()
    assert sniff(blob[:4]) is Compression(kind)
    assert open_decompressed(io.BytesIO(blob)).read() == data
    if kind == "gzip":
        assert gzip.decompress(blob) == data
    if kind == "zstd":
        assert zstandard.ZstdDecompressor().decompressobj().decompress(blob) == data
    assert d.uncompressed_size == len(data) and d.size == len(blob)


@pytest.mark.parametrize("kind,level,msg", [("gzip", 10, "gzip level must be 0..9"),
                                            ("zstd", 23, "zstd level must be -7..22")])
def test_bad_levels(kind, level, msg):
    with pytest.raises(ValueError, match=msg):
        DigestingWriter(io.BytesIO(), kind, level=level)
