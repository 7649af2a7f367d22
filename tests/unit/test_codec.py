"""Decompression hands over bounded pieces and knows where the stream ends: a data directory is
full of empty pages, and a few KB of compressed zeros are hundreds of MB once decoded."""

from __future__ import annotations

import os
import tracemalloc

import pytest
import zstandard
from pyrage import x25519

from tenangdb.errors import VerifyFailed
from tenangdb.stream.codec import OUT, compressor, decompressor
from tenangdb.stream.pipeline import seal, unseal

MiB = 1 << 20


def _zeros(total: int):
    block, left = bytes(MiB), total

    def read(n: int = -1) -> bytes:
        nonlocal left
        step = min(MiB, left)
        left -= step
        return block[:step] if step < MiB else block
    return read


@pytest.mark.parametrize("fmt, size, encrypted", [("zstd", 512 * MiB, True), ("zstd", 512 * MiB, False),
                                                  ("gzip", 256 * MiB, False), ("xz", 256 * MiB, False)])
def test_unsealing_zeros_keeps_memory_flat(tmp_path, fmt, size, encrypted):
    identity = x25519.Identity.generate()
    path = tmp_path / "zeros"
    sealed = seal(_zeros(size), path, compression=fmt, level=1 if fmt != "zstd" else 3,
                  recipients=[identity.to_public()] if encrypted else None)
    assert sealed.plain.size == size and path.stat().st_size < 2 * MiB  # one or two batches hold it all
    pieces = []
    tracemalloc.start()
    try:
        back = unseal(path, compression=fmt, identities=[identity] if encrypted else None,
                      forward=lambda piece: pieces.append(len(piece)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert back.plain == sealed.plain
    assert max(pieces) <= OUT and sum(pieces) == size
    assert peak < 16 * MiB, f"unsealing {size // MiB} MiB of zeros held {peak / MiB:.0f} MiB at once"


def _frame(data: bytes) -> bytes:
    codec = compressor("zstd", 3)
    return codec.compress(data) + codec.flush()


def _decoded(codec, pieces) -> bytes:
    out = bytearray()
    for piece in pieces:
        codec.decompress(piece, out.extend)
    codec.finish(out.extend)
    return bytes(out)


DATA = os.urandom(200_000) + bytes(3 * MiB) + b"the end\n" * 10_000


@pytest.mark.parametrize("fmt", ["zstd", "gzip", "xz", "none"])
def test_any_split_of_the_stream_decodes_the_same(fmt):
    codec = compressor(fmt, 1)
    stored = codec.compress(DATA) + codec.flush()
    for size in (7, 4096, MiB, len(stored)):
        pieces = [stored[i:i + size] for i in range(0, len(stored), size)]
        decoder = decompressor(fmt)
        assert _decoded(decoder, pieces) == DATA and decoder.complete, (fmt, size)


@pytest.mark.parametrize("fmt", ["zstd", "gzip", "xz"])
def test_the_stream_is_followed_byte_by_byte(fmt):
    data = b"a" * 5000 + os.urandom(3000) + bytes(MiB)
    codec = compressor(fmt, 1)
    stored = codec.compress(data) + codec.flush()
    decoder = decompressor(fmt)
    assert _decoded(decoder, [stored[i:i + 1] for i in range(len(stored))]) == data and decoder.complete


@pytest.mark.parametrize("fmt", ["zstd", "gzip", "xz"])
def test_a_stream_cut_short_is_not_complete(fmt):
    codec = compressor(fmt, 1)
    stored = codec.compress(DATA) + codec.flush()
    for cut in (1, 4, len(stored) // 2):
        decoder = decompressor(fmt)
        _decoded(decoder, [stored[:-cut]])
        assert not decoder.complete, (fmt, cut)


@pytest.mark.parametrize("trailer", [b"x", b"\0" * 8, None])
def test_bytes_after_the_zstd_frame_are_damage_and_never_decoded(trailer):
    stored = _frame(DATA)
    trailer = trailer if trailer is not None else _frame(b"appended")  # a whole second frame
    decoder = decompressor("zstd")
    assert _decoded(decoder, [stored + trailer]) == DATA  # nothing of the trailer comes out
    assert not decoder.complete
    decoder = decompressor("zstd")
    assert _decoded(decoder, [stored, trailer]) == DATA and not decoder.complete


def test_unseal_refuses_a_file_with_bytes_after_its_frame(tmp_path):
    path = tmp_path / "dump"
    seal(lambda n=-1, _c=[DATA]: _c.pop() if _c else b"", path, compression="zstd", level=3, recipients=None)
    with open(path, "ab") as fh:
        fh.write(_frame(b"more"))
    with pytest.raises(VerifyFailed, match="trailing bytes"):
        unseal(path, compression="zstd", identities=None)


def test_bytes_that_are_no_zstd_frame_are_refused(tmp_path):
    path = tmp_path / "dump"
    path.write_bytes(zstandard.ZstdCompressor().compress(DATA)[:4] + b"\x08" + b"\0" * 100)  # a reserved bit
    with pytest.raises(VerifyFailed, match="cannot be decompressed as zstd"):
        unseal(path, compression="zstd", identities=None)
    path.write_bytes(b"plain text, not zstd" * 10)
    with pytest.raises(VerifyFailed, match="cannot be decompressed as zstd"):
        unseal(path, compression="zstd", identities=None)
