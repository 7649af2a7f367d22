"""The stream pipeline: plain bytes → SHA-256 → compress → age encrypt → SHA-256 → file, and back.

age encryption is pyrage's to recipients, or ours (stream/passphrase.py) with a passphrase.

Everything is streamed in bounded chunks: memory stays flat whatever the size of
the dump, and no plaintext byte is ever written to disk when encryption is on.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

import pyrage

from tenangdb.errors import Interrupted, TenangDBError, VerifyFailed, interrupt_requested
from tenangdb.stream import passphrase
from tenangdb.stream.codec import compressor, decompressor
from tenangdb.stream.passphrase import Passphrase

CHUNK = 1 << 20
HEAD_KEEP = 64 * 1024
TAIL_KEEP = 4096
FILE_MODE = 0o640


@dataclass
class Digest:
    size: int
    sha256: str


@dataclass
class SealResult:
    plain: Digest
    stored: Digest
    head: bytes
    tail: bytes


class _HashingFileWriter:
    """Stored-bytes side: hash, count and write to a new file (never an existing one).

    Every WRITEBACK bytes the kernel is asked to start writing the finished range out and
    drop it from the page cache: the final fsync then has little left to do, and a large
    backup does not push the database server's own pages out of memory.
    """

    WRITEBACK = 16 << 20

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), FILE_MODE)
        os.fchmod(self._fd, FILE_MODE)  # the umask must not widen or narrow what we promise
        self._hash = hashlib.sha256()
        self.size = 0
        self._advised = 0
        self.error: BaseException | None = None

    def write(self, data) -> int:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
            if self.size + len(data) - self._advised >= self.WRITEBACK and hasattr(os, "posix_fadvise"):
                end = self.size + len(data)
                os.posix_fadvise(self._fd, self._advised, end - self._advised, os.POSIX_FADV_DONTNEED)
                self._advised = end
        except BaseException as exc:  # surfaced after pyrage returns, with its real cause
            self.error = exc
            raise
        self._hash.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> Digest:
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = -1
        return Digest(self.size, self._hash.hexdigest())

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class _PlainSource:
    """Pulls plain bytes from the dump, hashes and compresses them; serves compressed bytes.

    Used as the reader pyrage's streaming encryptor pulls from, or drained directly
    when encryption is off.
    """

    def __init__(self, read: Callable[[int], bytes], fmt: str, level: int) -> None:
        self._read = read
        self._codec = compressor(fmt, level)
        self._hash = hashlib.sha256()
        self.size = 0
        self.head = bytearray()
        self.tail = b""
        self._buffer = b""
        self._offset = 0
        self._done = False
        self.error: BaseException | None = None

    def _fill(self) -> None:
        while self._offset >= len(self._buffer) and not self._done:
            data = self._read(CHUNK)
            if not data:
                self._buffer, self._offset, self._done = self._codec.flush(), 0, True
                return
            self._hash.update(data)
            self.size += len(data)
            if len(self.head) < HEAD_KEEP:
                self.head += data[: HEAD_KEEP - len(self.head)]
            self.tail = (self.tail + data)[-TAIL_KEEP:] if len(data) < TAIL_KEEP else data[-TAIL_KEEP:]
            self._buffer, self._offset = self._codec.compress(data), 0

    def read(self, n: int = -1) -> bytes:
        try:
            self._fill()
        except BaseException as exc:  # surfaced after pyrage returns, with its real cause
            self.error = exc
            raise
        if n is None or n < 0:
            n = len(self._buffer) - self._offset
        out = self._buffer[self._offset : self._offset + n]
        self._offset += len(out)
        return out

    def digest(self) -> Digest:
        return Digest(self.size, self._hash.hexdigest())


class ReadAhead:
    """Reads a stream in a thread so the producer never waits for our hashing and compressing.

    At most `depth` chunks are held, so memory stays bounded; an error in the reader is
    raised to the consumer.
    """

    BATCH = CHUNK
    TRICKLE = 64 * 1024
    NAP = 0.002

    def __init__(self, stream: BinaryIO, depth: int = 4) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stream = stream
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="read-ahead")
        self._thread.start()

    def _run(self) -> None:
        # A dump tool writes in small pieces; gathering them into batches of BATCH bytes
        # makes the hashing, compressing and queueing cost per byte, not per write.
        buffer = bytearray(CHUNK)
        view = memoryview(buffer)
        try:
            while not self._stop.is_set():
                filled = got = 0
                while filled < self.BATCH:
                    if 0 < got < self.TRICKLE:
                        # We are ahead of the producer: let its writes pile up in the
                        # (1 MiB) pipe instead of waking both sides for every small write.
                        # (Not after the read that completes a batch: measured, that nap
                        # came on 711 of 956 batches of a 1 GB stream, 1.4 s asleep.)
                        time.sleep(self.NAP)
                    got = self._stream.readinto(view[filled:])
                    if not got:
                        break
                    filled += got
                if filled:
                    self._queue.put(bytes(view[:filled]))
                if filled < self.BATCH:
                    self._queue.put(b"")
                    return
        except BaseException as exc:  # handed to the consumer
            self._queue.put(exc)

    def read(self, n: int = -1) -> bytes:  # noqa: ARG002 - chunks come as the stream gives them
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        if not item:
            self._queue.put(b"")  # stay at end of stream for later calls
        return item

    def close(self) -> None:
        """Stop reading. Never waits: the thread may sit in a read that ends only when the
        producer is killed, which our caller does next."""
        self._stop.set()
        while True:
            try:
                self._queue.get_nowait()  # unblock a pending put so the thread sees the stop
            except queue.Empty:
                return


def seal(read: Callable[[int], bytes], dest: Path, *, compression: str, level: int,
         recipients: list | None) -> SealResult:
    """Stream `read` into `dest`; returns the digests of the plain and the stored bytes."""
    source = _PlainSource(read, compression, level)
    writer = _HashingFileWriter(dest)
    try:
        if recipients and isinstance(recipients[0], Passphrase):
            # Our own code: a failing read or write raises its own error, nothing to unwrap.
            try:
                passphrase.encrypt_io(source.read, writer.write, recipients[0])
            except passphrase.AgeFormatError as exc:  # scrypt could not get its memory
                raise TenangDBError(f"encryption failed: {exc}") from None
        elif recipients:
            try:
                pyrage.encrypt_io(source, writer, recipients)
            except Exception as exc:  # pyrage reports a failing callback as its own error
                if interrupt_requested():
                    raise Interrupted("interrupted; unfinished work was removed") from None
                for cause in (source.error, writer.error):
                    if cause is not None:
                        raise cause from None
                raise TenangDBError(f"encryption failed: {exc}") from None
            # pyrage's last write happens when its BufWriter is dropped, which ignores
            # errors: a write that failed there (the disk filling up on the last piece)
            # is known only to our writer, and the file would be short.
            for cause in (source.error, writer.error):
                if cause is not None:
                    raise cause
        else:
            while chunk := source.read(CHUNK):
                writer.write(chunk)
        stored = writer.close()
    except BaseException:
        writer.abort()
        raise
    return SealResult(plain=source.digest(), stored=stored, head=bytes(source.head), tail=source.tail)


class _HashingFileReader:
    def __init__(self, path: Path, hashing: bool = True) -> None:
        self._fh = open(path, "rb", buffering=0)
        self._hash = hashlib.sha256() if hashing else None
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n if n and n > 0 else CHUNK)
        if self._hash is not None:
            self._hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def close(self) -> Digest:
        self._fh.close()
        return Digest(self.size, self._hash.hexdigest() if self._hash is not None else "")


class _Stage:
    """A worker thread fed through a bounded queue. Its first error is kept and raised to
    whoever feeds it next; after that (or an abort) it takes items without working on them,
    so that no feeder blocks on a dead stage. `end()` ends it, after `last()` when all went
    well; the stage it feeds (`then`) is ended when it ends, whatever happened, so that a
    failure anywhere leaves no thread waiting for an end that never comes."""

    def __init__(self, name: str, depth: int, work: Callable, last: Callable[[], None], abort: threading.Event,
                 then: "_Stage | None" = None) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._work, self._last, self._abort, self._then = work, last, abort, then
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                try:
                    item = self._queue.get(timeout=0.5)
                except queue.Empty:
                    if self._abort.is_set():
                        return
                    continue
                if item is None:
                    if self.error is None and not self._abort.is_set():
                        try:
                            self._last()
                        except BaseException as exc:  # noqa: BLE001 - raised by join
                            self.error = exc
                    return
                if self.error is not None or self._abort.is_set():
                    continue
                try:
                    self._work(item)
                except BaseException as exc:  # raised to the feeder at its next put, or by join
                    self.error = exc
        finally:
            if self._then is not None:
                self._then.end()

    def put(self, item) -> None:
        while True:
            if self.error is not None:
                raise self.error
            try:
                self._queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if self._abort.is_set():
                    return  # nobody will take it

    def end(self) -> None:
        """No more input. Delivered even to a stage that failed (it is still taking items)."""
        while not self._abort.is_set():
            try:
                self._queue.put(None, timeout=0.5)
                return
            except queue.Full:
                continue

    def join(self) -> None:
        self._thread.join()
        if self.error is not None:
            raise self.error


class _PlainSink:
    """Receives decrypted (still compressed) bytes; worker threads decompress, hash, forward.

    pyrage hands over 8 KiB at a time; decompressing each piece on its own cost more than
    the decompression itself (every call sets up a fresh output buffer: measured 6.2 s
    against 3.4 s for a 1.5 GB dump), so pieces are gathered into BATCH bytes first. The
    batches go to a thread that decompresses, and its pieces to another that hashes and
    forwards them (zstd, hashlib and pipe writes release the GIL): decryption, decompression
    and the consumer each go at their own pace. A consumer such as mbstream takes its input in
    bursts (it writes a file 10 MiB at a time, reading nothing meanwhile); with decompression
    waiting on its pipe, a 600 MB restore's unpack ran hardly faster than the sum of both
    sides. `threaded=False` keeps it all on the caller's thread, for callers that already run
    one unseal per core (measured: a second thread per file there only adds switching).

    A batch decodes into pieces of codec.OUT bytes at most, however well it compressed (6 KB
    of zstd can be 200 MB of empty pages): measured, 512 MiB of zeros unseal with 1 MiB of
    Python memory at the peak, not 512 MiB.
    """

    BATCH = CHUNK
    DEPTH = 4  # batches in flight: memory stays bounded
    PIECES = 32  # decoded pieces in flight (8 MiB): enough to ride over a consumer's burst

    def __init__(self, fmt: str, forward: Callable[[bytes], None] | None, threaded: bool = True,
                 counted: Callable[[int], None] | None = None) -> None:
        self._threaded = threaded
        self._codec = decompressor(fmt)
        self._forward = forward
        self._counted = counted
        self._hash = hashlib.sha256()
        self._pending = bytearray()
        self.size = 0
        self._error: BaseException | None = None
        self._abort = threading.Event()
        self._stages: tuple[_Stage, _Stage] | None = None

    def _emit(self, plain: bytes) -> None:
        if plain:
            self._hash.update(plain)
            self.size += len(plain)
            if self._forward is not None:
                self._forward(plain)
            if self._counted is not None:
                self._counted(len(plain))

    def _start(self) -> tuple[_Stage, _Stage]:
        if self._stages is None:
            out = _Stage("decompress-out", self.PIECES, self._emit, lambda: None, self._abort)
            self._stages = (_Stage("decompress", self.DEPTH, lambda batch: self._codec.decompress(batch, out.put),
                                   lambda: self._codec.finish(out.put), self._abort, then=out), out)
        return self._stages

    def _put(self, batch) -> None:
        try:
            if self._threaded:
                self._start()[0].put(batch)
            else:
                self._codec.decompress(batch, self._emit)
        except BaseException as exc:
            self._error = exc
            raise

    def write(self, data) -> int:
        if self.error is not None:
            raise self.error
        self._pending += data
        if len(self._pending) >= self.BATCH:
            # The gathered bytes themselves, not a copy: measured, once the decoder's pieces
            # were small, a 1 MiB copy per batch made the allocator hand its pages back and
            # fault them in again each time (96,000 page faults instead of 4,300 and 15% more
            # CPU for an 800 MB unseal).
            batch, self._pending = self._pending, bytearray()
            self._put(batch)
        return len(data)

    def flush(self) -> None:
        pass

    def finish(self) -> None:
        if self._pending:
            batch, self._pending = self._pending, bytearray()
            self._put(batch)
        try:
            if not self._threaded:
                self._codec.finish(self._emit)
                return
            decompress, out = self._start()
            decompress.end()
            decompress.join()
            out.join()
        except BaseException as exc:
            self._error = exc
            raise

    def abort(self) -> None:
        """Stop the workers after a failure; they end within a moment unless one is inside
        `forward`, whose caller ends that (by killing the process it writes to)."""
        self._abort.set()

    @property
    def error(self) -> BaseException | None:
        """The first failure, here or in a worker (which the caller may not have met yet)."""
        for stage in self._stages or ():
            if stage.error is not None:
                return stage.error
        return self._error

    @property
    def complete(self) -> bool:
        return self._codec.complete

    def digest(self) -> Digest:
        return Digest(self.size, self._hash.hexdigest())


def _decrypt_with_passphrase(reader: _HashingFileReader, sink: _PlainSink, identities: list, name: str) -> None:
    passphrases = [i for i in identities if isinstance(i, Passphrase)]
    if not passphrases:
        raise VerifyFailed(f"{name}: it is encrypted with a passphrase and none is configured (wrong key; set "
                           "backup.encryption.key or TENANGDB_ENCRYPTION_KEY to it)")
    try:
        passphrase.decrypt_io(reader.read, sink.write, passphrases)
    except passphrase.WrongPassphrase as exc:
        raise VerifyFailed(f"{name}: the configured passphrase cannot decrypt it (wrong key: {exc})") from None
    except passphrase.AgeFormatError as exc:
        raise VerifyFailed(f"{name}: decryption failed, the file is damaged or truncated ({exc})") from None


@dataclass
class UnsealResult:
    plain: Digest
    stored: Digest


def unseal(path: Path, *, compression: str, identities: list | None,
           forward: Callable[[bytes], None] | None = None, hash_stored: bool = True,
           threaded: bool = True, counted: Callable[[int], None] | None = None) -> UnsealResult:
    """Read a stored file back to plain bytes, hashing both sides; raises VerifyFailed on damage.

    `forward` receives the plain bytes as they are produced (None to only check them).
    `hash_stored=False` skips the stored-bytes digest (for a second pass over a file that
    was just verified; the plain digest still proves what was forwarded).
    `threaded=False` for callers that already unseal several files at once (see _PlainSink).
    `counted(n)` hears of each n plain bytes as they pass (a progress display), from any thread.
    """
    name = str(path)
    try:
        reader = _HashingFileReader(path, hashing=hash_stored)
    except FileNotFoundError:
        raise VerifyFailed(f"{name}: file is missing") from None
    except PermissionError:
        raise VerifyFailed(f"{name}: file is not readable by this user") from None
    sink = _PlainSink(compression, forward, threaded, counted)
    try:
        if identities is not None and passphrase.is_passphrase_file(path):
            _decrypt_with_passphrase(reader, sink, identities, name)
        elif identities is not None:
            keys = [i for i in identities if not isinstance(i, Passphrase)]
            if not keys:
                raise VerifyFailed(f"{name}: it is encrypted to age recipients and only a passphrase is "
                                   "configured (wrong key; set backup.encryption.key_file to the identity)")
            try:
                pyrage.decrypt_io(reader, sink, keys)
            except Exception as exc:  # pyrage reports damage as DecryptError or a bare OSError
                if interrupt_requested():
                    raise Interrupted("interrupted; unfinished work was removed") from None
                if sink.error is not None:
                    raise sink.error from None
                text = str(exc)
                if "No matching keys" in text or "no identity matched" in text.lower():
                    raise VerifyFailed(f"{name}: the configured age identity cannot decrypt it (wrong key)") from None
                raise VerifyFailed(f"{name}: decryption failed, the file is damaged or truncated ({text})") from None
            if sink.error is not None:  # raised in pyrage's last write, whose errors it ignores
                raise sink.error
        else:
            while chunk := reader.read(CHUNK):
                sink.write(chunk)
        reader.drain()
        sink.finish()
    except VerifyFailed:
        reader.close()
        sink.abort()
        raise
    except (OSError, EOFError, ValueError) as exc:
        reader.close()
        sink.abort()
        if sink.error is not None and sink.error is not exc:
            raise sink.error from None
        if isinstance(exc, BrokenPipeError) or forward is not None and isinstance(exc, OSError):
            raise
        raise VerifyFailed(f"{name}: cannot be decompressed as {compression} ({exc})") from None
    except BaseException as exc:
        reader.close()
        sink.abort()
        if type(exc).__module__.startswith("zstandard") or "zstd" in type(exc).__name__.lower():
            raise VerifyFailed(f"{name}: cannot be decompressed as {compression} ({exc})") from None
        raise
    stored = reader.close()
    if not sink.complete:
        raise VerifyFailed(f"{name}: the {compression} stream ends early or has trailing bytes (truncated or damaged)")
    return UnsealResult(plain=sink.digest(), stored=stored)
