"""The stream pipeline, without a server: sealing and unsealing files, and the dump tool's process."""

from __future__ import annotations

import io
import os
import shutil
import time
from pathlib import Path

import pytest
from pyrage import x25519

from tenangdb.errors import ToolMissing, VerifyFailed
from tenangdb.runner import spawn
from tenangdb.stream.pipeline import seal, unseal

DATA = os.urandom(300_000) + b"INSERT INTO t VALUES (1,'x');\n" * 50_000
IDENTITY = x25519.Identity.generate()


@pytest.mark.parametrize("fmt", ["zstd", "gzip", "xz", "none"])
@pytest.mark.parametrize("encrypted", [False, True])
def test_round_trip_and_damage(tmp_path, fmt, encrypted):
    path = tmp_path / "dump"
    recipients = [IDENTITY.to_public()] if encrypted else None
    identities = [IDENTITY] if encrypted else None
    sealed = seal(io.BytesIO(DATA).read, path, compression=fmt, level=1, recipients=recipients)
    assert sealed.plain.size == len(DATA) and sealed.stored.size == path.stat().st_size
    assert oct(path.stat().st_mode & 0o777) == "0o640"
    if encrypted:
        assert b"INSERT INTO" not in path.read_bytes()
    out = bytearray()
    back = unseal(path, compression=fmt, identities=identities, forward=out.extend)
    assert bytes(out) == DATA and back.plain == sealed.plain and back.stored == sealed.stored
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    if fmt == "none" and not encrypted:
        assert unseal(path, compression=fmt, identities=None).plain.sha256 != sealed.plain.sha256
    else:
        with pytest.raises(VerifyFailed):
            unseal(path, compression=fmt, identities=identities)


def test_wrong_key_is_named(tmp_path):
    path = tmp_path / "dump"
    seal(io.BytesIO(DATA).read, path, compression="zstd", level=1, recipients=[IDENTITY.to_public()])
    with pytest.raises(VerifyFailed, match="wrong key"):
        unseal(path, compression="zstd", identities=[x25519.Identity.generate()])


def test_seal_never_overwrites(tmp_path):
    path = tmp_path / "dump"
    path.write_bytes(b"precious")
    with pytest.raises(FileExistsError):
        seal(io.BytesIO(b"x").read, path, compression="none", level=0, recipients=None)
    assert path.read_bytes() == b"precious"


@pytest.mark.skipif(not shutil.which("stdbuf"), reason="coreutils stdbuf is not installed")
def test_dump_tool_output_buffer_is_widened_and_missing_tool_named():
    # The dump tool's stdio buffer decides how many write() calls a dump costs; stdbuf must
    # exec the tool itself (same PID) so kills and /proc checks reach the real tool.
    with spawn(["seq", "1", "3000000"], stdout_buffer=1 << 20) as child:
        proc = Path("/proc") / str(child.pid)
        deadline = time.monotonic() + 10
        # Until stdbuf has exec'd the tool, the PID shows stdbuf; the tool then blocks on the
        # full pipe, so it is still there to be read.
        while not (proc / "cmdline").read_bytes().startswith(b"seq\0") and time.monotonic() < deadline:
            time.sleep(0.01)
        environ = (proc / "environ").read_bytes().split(b"\0")
        out = child.stdout.read()
    assert child.popen.returncode == 0
    assert out.splitlines()[-1] == b"3000000" and len(out.splitlines()) == 3000000
    assert b"_STDBUF_O=1048576" in environ
    with pytest.raises(ToolMissing, match="no-such-dump-tool is not installed"):
        spawn(["no-such-dump-tool", "x"], stdout_buffer=1 << 20)


def test_a_failed_last_write_of_the_encryptor_fails_the_seal(tmp_path, monkeypatch):
    # pyrage writes the last piece of an age file when its own buffer is dropped, and Rust
    # ignores errors there: a disk that fills up on exactly that write must still fail.
    import errno

    from tenangdb.stream import pipeline

    real_write = os.write
    sizes = []

    def write(fd, data):
        sizes.append(len(data))
        if len(sizes) > 2:  # the header, one full 64 KiB chunk, then the short last one
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(pipeline.os, "write", write)
    data = os.urandom(65536 + 100)
    with pytest.raises(OSError, match="No space left"):
        seal(io.BytesIO(data).read, tmp_path / "dump", compression="none", level=0,
             recipients=[IDENTITY.to_public()])
    assert len(sizes) == 3 and sizes[2] < 8192


@pytest.mark.parametrize("threaded", [True, False])
@pytest.mark.parametrize("encrypted", [False, True])
def test_a_failing_consumer_stops_unseal_and_its_worker(tmp_path, encrypted, threaded):
    # Decompression runs in a worker thread: the consumer's own error must come back to the
    # caller (not a decryption or decompression error), and the worker must not outlive it.
    import threading

    path = tmp_path / "dump"
    data = os.urandom(1 << 20) * 3 + DATA  # several 1 MiB batches
    seal(io.BytesIO(data).read, path, compression="zstd", level=1,
         recipients=[IDENTITY.to_public()] if encrypted else None)
    calls = []

    def forward(chunk: bytes) -> None:
        calls.append(len(chunk))
        if len(calls) == 2:
            raise BrokenPipeError(32, "Broken pipe")

    with pytest.raises(BrokenPipeError):
        unseal(path, compression="zstd", identities=[IDENTITY] if encrypted else None, forward=forward,
               threaded=threaded)
    deadline = time.monotonic() + 5
    while any(t.name.startswith("decompress") for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name.startswith("decompress") for t in threading.enumerate())
    assert len(calls) == 2  # nothing was forwarded after the failure


@pytest.mark.parametrize("encrypted", [False, True])
def test_a_consumer_failing_near_the_end_is_reported_not_waited_on(tmp_path, encrypted):
    # The consumer's error can land while decompression, done with its input, waits to hand
    # over the end of the stream behind the pieces still queued: the caller must get the
    # error, never wait for a worker that will not end. Each failure point near the end is
    # tried, the consumer lingering on its failing piece so that decompression gets there.
    import threading

    path = tmp_path / "dump"
    data = os.urandom(12 << 20)
    seal(io.BytesIO(data).read, path, compression="zstd", level=1,
         recipients=[IDENTITY.to_public()] if encrypted else None)
    identities = [IDENTITY] if encrypted else None
    pieces = []
    unseal(path, compression="zstd", identities=identities, forward=lambda chunk: pieces.append(len(chunk)))
    for failing in range(max(0, len(pieces) - 40), len(pieces)):
        seen = []

        def forward(chunk: bytes) -> None:
            seen.append(len(chunk))
            if len(seen) - 1 == failing:
                time.sleep(0.05)
                raise BrokenPipeError(32, "Broken pipe")
        outcome: list = []

        def run() -> None:
            try:
                unseal(path, compression="zstd", identities=identities, forward=forward)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - what the caller would meet
                outcome.append(exc)
        caller = threading.Thread(target=run, daemon=True)
        caller.start()
        caller.join(timeout=10)
        assert not caller.is_alive(), f"unseal did not return when piece {failing} of {len(pieces)} failed"
        assert isinstance(outcome[0], BrokenPipeError), outcome
