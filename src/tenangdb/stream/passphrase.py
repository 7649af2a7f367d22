"""age's passphrase (scrypt) mode, streaming, in both directions (c2sp.org/age, age-encryption.org/v1).

pyrage can encrypt with a passphrase only from and to whole byte strings, and refuses a
recipient defined in Python, so a dump of any size could not stream through it. This module
writes and reads the age v1 format for the one scrypt stanza itself; a file it writes is an
ordinary age file (`age -d` asks for the passphrase and decrypts it) and it reads what `age -p`,
rage or pyrage.passphrase write.

    age-encryption.org/v1
    -> scrypt <salt: 16 random bytes, base64 without padding> <log2 of the scrypt work factor>
    <ChaCha20-Poly1305(key=scrypt(passphrase, "age-encryption.org/v1/scrypt" || salt), nonce=0, file key)>
    --- <HMAC-SHA256(HKDF(file key, "", "header"), the header up to and including "---")>
    <16-byte nonce><STREAM: 64 KiB chunks, ChaCha20-Poly1305 under HKDF(file key, nonce, "payload"),
                    nonce = 11-byte big-endian counter || 0x01 on the last chunk, else 0x00>

The primitives are the `cryptography` package's (OpenSSL's ChaCha20-Poly1305, HKDF and HMAC)
and the standard library's scrypt; only the framing is ours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION_LINE = b"age-encryption.org/v1"
SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
CHUNK = 64 * 1024
TAG = 16
NONCE = 16
FILE_KEY = 16
# age's own default: about a second and 256 MiB of memory per file on a current machine.
DEFAULT_WORK_FACTOR = 18
# age (Go) refuses to decrypt above 2^22 unless told otherwise, and so do we: one stanza with
# a larger factor would make every verify spend many seconds and more than 4 GiB of memory
# per file, which is how a planted or damaged file could exhaust the host.
MAX_WORK_FACTOR = 22
MIN_WORK_FACTOR = 10
HEADER_LIMIT = 64 * 1024  # one scrypt stanza needs ~150 bytes; anything this long is not ours
_LOG_N = re.compile(rb"^[1-9][0-9]*$")
_ZERO_NONCE = bytes(12)


class AgeFormatError(Exception):
    """The file is not a well-formed age file we can open: damaged, truncated or foreign."""


class WrongPassphrase(AgeFormatError):
    """No configured passphrase opens the file, or it was not encrypted with a passphrase."""


class Passphrase:
    """A passphrase, as both the recipient (to encrypt) and the identity (to decrypt) of age's
    scrypt mode. Never printed: its repr names only what it is."""

    def __init__(self, secret: str, work_factor: int = DEFAULT_WORK_FACTOR) -> None:
        self._secret = secret.encode("utf-8")
        self.work_factor = work_factor

    def __repr__(self) -> str:
        return "Passphrase(…)"

    def wrap_key(self, salt: bytes, log_n: int) -> bytes:
        n = 1 << log_n
        # OpenSSL needs 128·r·(N + p + 2) bytes; hashlib's default ceiling (32 MiB) would
        # refuse age's default factor.
        try:
            return hashlib.scrypt(self._secret, salt=SCRYPT_LABEL + salt, n=n, r=8, p=1, dklen=32,
                                  maxmem=128 * 8 * (n + 3) + (1 << 20))
        except (MemoryError, ValueError):  # OpenSSL could not allocate it
            raise AgeFormatError(f"scrypt with work factor 2^{log_n} needs {n >> 10} MiB of memory, which this "
                                 "host could not give") from None


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes, what: str) -> bytes:
    """Canonical unpadded base64 only, as the format demands."""
    if b"=" in text or not re.fullmatch(rb"[A-Za-z0-9+/]*", text):
        raise AgeFormatError(f"the header's {what} is not base64")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except ValueError:
        raise AgeFormatError(f"the header's {what} is not base64") from None
    if _b64(data) != text:
        raise AgeFormatError(f"the header's {what} is not canonical base64")
    return data


def _hkdf(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def _header_mac(file_key: bytes, header: bytes) -> bytes:
    return hmac.new(_hkdf(file_key, b"", b"header"), header, hashlib.sha256).digest()


def _chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def header(passphrase: Passphrase, file_key: bytes) -> bytes:
    """The header of a new file: one scrypt stanza and the MAC."""
    salt = os.urandom(16)
    log_n = passphrase.work_factor
    body = ChaCha20Poly1305(passphrase.wrap_key(salt, log_n)).encrypt(_ZERO_NONCE, file_key, None)
    # A 32-byte body is 43 base64 characters: one final line, shorter than 64 columns.
    text = VERSION_LINE + b"\n-> scrypt " + _b64(salt) + b" %d\n" % log_n + _b64(body) + b"\n---"
    return text + b" " + _b64(_header_mac(file_key, text)) + b"\n"


def encrypt_io(read: Callable[[int], bytes], write: Callable[[bytes], object], passphrase: Passphrase) -> None:
    """Stream everything `read` gives into `write` as an age file for `passphrase`."""
    file_key = os.urandom(FILE_KEY)
    nonce = os.urandom(NONCE)
    write(header(passphrase, file_key) + nonce)
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    pending = bytearray()
    counter = 0
    ended = False
    while True:
        # A chunk is sealed only once we know whether another follows (its nonce says so),
        # so one chunk more than a full one is gathered first.
        while not ended and len(pending) <= CHUNK:
            data = read(CHUNK)
            if not data:
                ended = True
            else:
                pending += data
        if ended and len(pending) <= CHUNK:
            write(aead.encrypt(_chunk_nonce(counter, True), bytes(pending), None))
            return
        write(aead.encrypt(_chunk_nonce(counter, False), bytes(pending[:CHUNK]), None))
        del pending[:CHUNK]
        counter += 1


class _Buffered:
    """Exact-size reads and line reads over a `read(n)` that may return less."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._buffer = bytearray()
        self._eof = False

    def _more(self, want: int) -> None:
        while len(self._buffer) < want and not self._eof:
            data = self._read(max(want - len(self._buffer), CHUNK + TAG))
            if not data:
                self._eof = True
            else:
                self._buffer += data

    def line(self, limit: int) -> bytes:
        """One line without its LF; raises at the end of the file or past `limit` bytes."""
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end >= 0:
                out = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return out
            if len(self._buffer) > limit or self._eof:
                raise AgeFormatError("the age header is truncated or is not one")
            start = len(self._buffer)
            self._more(len(self._buffer) + 1)

    def take(self, n: int) -> bytes:
        self._more(n)
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def at_end(self) -> bool:
        self._more(1)
        return not self._buffer


def _read_header(src: _Buffered) -> tuple[list[tuple[list[bytes], bytes]], bytes, bytes]:
    """The stanzas (arguments, body), the header bytes the MAC covers, and the MAC."""
    version = src.line(HEADER_LIMIT)
    if version != VERSION_LINE:
        raise AgeFormatError("not an age v1 file (its first line is not age-encryption.org/v1)")
    covered = bytearray(version + b"\n")
    stanzas: list[tuple[list[bytes], bytes]] = []
    while True:
        line = src.line(HEADER_LIMIT)
        if len(covered) > HEADER_LIMIT:
            raise AgeFormatError("the age header is too long")
        if line.startswith(b"--- "):
            covered += b"---"
            mac = _unb64(line[4:], "MAC")
            if len(mac) != 32 or not stanzas:
                raise AgeFormatError("the age header's MAC line is malformed")
            return stanzas, bytes(covered), mac
        if not line.startswith(b"-> "):
            raise AgeFormatError("the age header is malformed")
        covered += line + b"\n"
        args = line[3:].split(b" ")
        if not all(args):
            raise AgeFormatError("the age header has an empty stanza argument")
        body = bytearray()
        while True:  # the body ends with its first line shorter than 64 columns
            part = src.line(HEADER_LIMIT)
            covered += part + b"\n"
            if len(part) > 64:
                raise AgeFormatError("the age header has a stanza line longer than 64 columns")
            body += part
            if len(part) < 64:
                break
        stanzas.append((args, _unb64(bytes(body), "stanza body")))


def _file_key(stanzas, passphrases: list[Passphrase], max_work_factor: int) -> bytes:
    scrypt = [s for s in stanzas if s[0][0] == b"scrypt"]
    if not scrypt:
        raise WrongPassphrase("it was encrypted to age recipients, not with a passphrase")
    if len(stanzas) > 1:
        # age's rule: a passphrase file has one stanza, so nobody holding some other key can
        # have written it (the header MAC is keyed by the file key, which that key would know).
        raise AgeFormatError("its age header mixes a passphrase stanza with others, which age forbids")
    args, body = scrypt[0]
    if len(args) != 3:
        raise AgeFormatError("its scrypt stanza does not have three arguments")
    salt = _unb64(args[1], "scrypt salt")
    if len(salt) != 16 or not _LOG_N.match(args[2]):
        raise AgeFormatError("its scrypt stanza is malformed")
    log_n = int(args[2])
    if log_n > max_work_factor:
        raise AgeFormatError(f"its scrypt work factor 2^{log_n} is above the 2^{max_work_factor} we accept "
                             "(a factor that large costs more memory and time than a backup should)")
    if len(body) != 32:
        raise AgeFormatError("its scrypt stanza's body is not 32 bytes")
    for passphrase in passphrases:
        try:
            return ChaCha20Poly1305(passphrase.wrap_key(salt, log_n)).decrypt(_ZERO_NONCE, body, None)
        except InvalidTag:
            continue
    raise WrongPassphrase("the passphrase does not open it")


def decrypt_io(read: Callable[[int], bytes], write: Callable[[bytes], object], passphrases: list[Passphrase], *,
               max_work_factor: int = MAX_WORK_FACTOR) -> None:
    """Stream the age file `read` gives, plain, into `write`; raises WrongPassphrase or
    AgeFormatError (damaged, truncated, foreign). Every chunk is authenticated before it is
    written, and a file that ends without its last chunk is refused."""
    src = _Buffered(read)
    stanzas, covered, mac = _read_header(src)
    file_key = _file_key(stanzas, passphrases, max_work_factor)
    if not hmac.compare_digest(_header_mac(file_key, covered), mac):
        raise AgeFormatError("its age header fails its MAC (altered)")
    nonce = src.take(NONCE)
    if len(nonce) != NONCE:
        raise AgeFormatError("the age payload is truncated (no nonce)")
    aead = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    counter = 0
    while True:
        sealed = src.take(CHUNK + TAG)
        last = len(sealed) < CHUNK + TAG or src.at_end()
        if len(sealed) < TAG:
            raise AgeFormatError("the age payload is truncated")
        try:
            plain = aead.decrypt(_chunk_nonce(counter, last), sealed, None)
        except InvalidTag:
            where = "ends early (truncated)" if last else "is damaged"
            raise AgeFormatError(f"the age payload {where} at chunk {counter}") from None
        if last and not plain and counter:
            raise AgeFormatError("the age payload ends with an empty chunk")
        if plain:
            write(plain)
        if last:
            return
        counter += 1


def is_passphrase_file(path) -> bool:
    """True when the file's age header holds a scrypt stanza (looked up without reading on)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    return head.startswith(VERSION_LINE + b"\n") and b"\n-> scrypt " in head.split(b"\n---", 1)[0]
