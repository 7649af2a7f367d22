"""FolderSealer against real producer processes: files are sealed once closed, plaintext is
removed, the producer is paused when the unsealed backlog grows, rewrites are refused."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import pytest

from tenangdb.errors import BackupFailed
from tenangdb.runner import spawn
from tenangdb.stream.folder import FolderSealer
from tenangdb.stream.pipeline import unseal


def producer(tmp_path, script: str):
    source = tmp_path / "dump"
    code = textwrap.dedent(script).format(out=str(source))
    return source, spawn([sys.executable, "-c", code], stdout=subprocess.DEVNULL)


def test_every_closed_file_is_sealed_and_backpressure_pauses_the_producer(tmp_path):
    source, child = producer(tmp_path, """
        import os, time
        os.mkdir({out!r})
        for i in range(12):
            with open(os.path.join({out!r}, f"part{{i:02}}.sql"), "wb") as fh:
                fh.write(bytes([i]) * (1 << 20) + os.urandom(1 << 20))
            time.sleep(0.05)  # still running when the sealer first looks
    """)
    dest = tmp_path / "sealed"
    dest.mkdir()
    sealer = FolderSealer(source, dest, compression="zstd", level=3, recipients=None, suffix=".zst",
                          max_unsealed=1 << 20)
    with child:
        sealed = sealer.run(child)
        assert child.wait() == 0
    assert [f.plain_name for f in sealed] == [f"part{i:02}.sql" for i in range(12)]
    assert list(source.iterdir()) == []  # no plaintext left
    assert sealer.pauses > 0  # every closed file is over the limit: it had to wait
    for f in sealed:
        out = bytearray()
        result = unseal(dest / f.name, compression="zstd", identities=None, forward=out.extend)
        assert result.plain.sha256 == f.result.plain.sha256 == hashlib.sha256(out).hexdigest()
        assert len(out) == 2 << 20


def test_a_file_written_again_after_sealing_is_refused(tmp_path):
    source, child = producer(tmp_path, """
        import os, time
        os.mkdir({out!r})
        path = os.path.join({out!r}, "a.sql")
        with open(path, "wb") as fh:
            fh.write(b"first")
        while os.path.exists(path):
            time.sleep(0.01)
        with open(path, "wb") as fh:
            fh.write(b"second")
        time.sleep(1)
    """)
    dest = tmp_path / "sealed"
    dest.mkdir()
    sealer = FolderSealer(source, dest, compression="none", level=0, recipients=None, suffix="",
                          max_unsealed=1 << 30)
    with child, pytest.raises(BackupFailed, match="wrote a.sql again"):
        sealer.run(child)


def test_files_mydumper_renames_are_sealed_once_under_their_final_name(tmp_path):
    # mydumper's way: a table that fits one chunk is renamed from t.00001.sql to t.sql after
    # closing; a bigger one goes on with t.00002.sql. Neither may be sealed twice or lost.
    source, child = producer(tmp_path, """
        import os, time
        os.mkdir({out!r})
        def write(name, data):
            with open(os.path.join({out!r}, name), "wb") as fh:
                fh.write(data)
        write("small.00001.sql", b"small")
        time.sleep(0.5)
        os.rename(os.path.join({out!r}, "small.00001.sql"), os.path.join({out!r}, "small.sql"))
        write("big.00001.sql", b"first")
        time.sleep(0.5)
        write("big.00002.sql", b"second")
        write("metadata.partial", b"done")  # and its metadata, under a temporary name until the end
        time.sleep(0.5)
        os.rename(os.path.join({out!r}, "metadata.partial"), os.path.join({out!r}, "metadata"))
    """)
    dest = tmp_path / "sealed"
    dest.mkdir()
    sealer = FolderSealer(source, dest, compression="none", level=0, recipients=None, suffix="",
                          max_unsealed=1 << 30)
    with child:
        sealed = sealer.run(child)
        assert child.wait() == 0
    assert {f.plain_name: (dest / f.name).read_bytes() for f in sealed} == {
        "small.sql": b"small", "big.00001.sql": b"first", "big.00002.sql": b"second", "metadata": b"done"}


def test_a_symlinked_backup_directory_still_sees_open_files(tmp_path):
    # /proc/<pid>/fd shows resolved paths; through a symlink, a file still being written must
    # not look closed (it would be sealed short and its plaintext unlinked under the writer).
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    source = tmp_path / "link" / "dump"
    code = textwrap.dedent(f"""
        import os, time
        os.mkdir({str(source)!r})
        with open(os.path.join({str(source)!r}, "slow.sql"), "wb") as fh:
            for _ in range(15):
                fh.write(b"x" * 1000 + b"\\n")
                fh.flush()
                time.sleep(0.05)
    """)
    child = spawn([sys.executable, "-c", code], stdout=subprocess.DEVNULL)
    dest = tmp_path / "sealed"
    dest.mkdir()
    sealer = FolderSealer(source, dest, compression="none", level=0, recipients=None, suffix="",
                          max_unsealed=1 << 30)
    with child:
        sealed = sealer.run(child)
        assert child.wait() == 0
    assert [(f.plain_name, f.result.plain.size) for f in sealed] == [("slow.sql", 15 * 1001)]
