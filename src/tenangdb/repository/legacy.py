"""Backups the original TenangDB made, in the same layout: `{dir}/{db}/{YYYY-MM}/` holding

- `{db}-{YYYY-MM-DD_HH-MM-SS}.sql`: the plain output of mysqldump/mariadb-dump;
- `{db}-{stamp}/`: a mydumper folder (a `metadata` file and one or more `.sql` files);
- `{db}-{stamp}.tar.gz`, `.tar.zst` or `.tar.xz`: a tar of one of those, whose top entry is the
  backup's own name. The original always wrote gzip inside, whatever the extension; the
  compression is read from the file's first bytes, so a real zstd or xz archive works too.

The stamp is the original's local time. There is no manifest, so nothing records what such a
backup holds or the checksums of its bytes: what can be shown is that it reads to its end (an
archive's gzip trailer carries a CRC of its content) and that the dump tool wrote its
completion mark. Every place that shows a legacy backup says so.
"""

from __future__ import annotations

import contextlib
import gzip
import lzma
import os
import re
import stat
import tarfile
import zlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Callable, Iterator

import zstandard

from tenangdb.errors import VerifyFailed
from tenangdb.mysql import mydumper, mysqldump
from tenangdb.repository.manifest import MANIFEST

SQL, FOLDER, ARCHIVE = "sql", "mydumper folder", "archive"
_NAME = re.compile(r"^(?P<db>.+)-(?P<stamp>\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2})"
                   r"(?P<ext>\.sql|\.tar\.gz|\.tar\.zst|\.tar\.xz)?$")
STAMP = "%Y-%m-%d_%H-%M-%S"
# mydumper's files: plain, or compressed by its --compress (gzip; zstd/lz4 in later releases).
_DUMP_FILE = re.compile(r"\.sql(\.gz|\.zst|\.lz4)?$")
CHUNK = 1 << 20


@dataclass(frozen=True)
class Legacy:
    path: Path
    database: str
    time: datetime  # aware: the stamp read as this machine's local time, as the original wrote it
    form: str  # SQL, FOLDER or ARCHIVE

    def describe(self) -> str:
        return f"a backup of the original TenangDB ({self.form}, no manifest)"


def detect(path: Path) -> Legacy | None:
    """The legacy backup at `path`, or None when it is not one (ours, or anything else)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISDIR(mode):
        if (path / MANIFEST).exists():
            return None
        named = by_name(path.name, folder=True, files=[mydumper.METADATA] if (path / mydumper.METADATA).is_file() else [])
    elif stat.S_ISREG(mode):
        named = by_name(path.name, folder=False)
    else:
        return None
    return Legacy(path, *named) if named else None


def by_name(name: str, *, folder: bool, files: list[str] | None = None) -> tuple[str, datetime, str] | None:
    """(database, time, form) when `name` is one the original gave a backup of this shape: a
    file with its extensions, or a folder holding mydumper's metadata (and no manifest of
    ours, which the caller checks); else None. Also for listings of a remote."""
    match = _NAME.match(name)
    if not match:
        return None
    ext = match.group("ext")
    if folder:
        if ext or mydumper.METADATA not in (files or []):
            return None
        form = FOLDER
    elif ext:
        form = SQL if ext == ".sql" else ARCHIVE
    else:
        return None
    try:
        when = datetime.strptime(match.group("stamp"), STAMP).astimezone()  # naive = local time
    except ValueError:
        return None  # no such date (a month 13): not a name the original wrote
    return match.group("db"), when, form


def _open(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")
    except OSError as exc:
        raise VerifyFailed(f"{path}: cannot be read: {exc.strerror or exc}") from None


@contextlib.contextmanager
def _decompressed(path: Path) -> Iterator[IO[bytes]]:
    with _open(path) as raw:
        magic = raw.read(6)
        raw.seek(0)
        if magic.startswith(b"\x1f\x8b"):
            with gzip.GzipFile(fileobj=raw) as stream:
                yield stream
        elif magic.startswith(b"\x28\xb5\x2f\xfd"):
            with zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True) as stream:
                yield stream
        elif magic.startswith(b"\xfd7zXZ\x00"):
            with lzma.LZMAFile(raw) as stream:
                yield stream
        else:
            raise VerifyFailed(f"{path}: not a gzip, zstd or xz archive")


@dataclass
class Member:
    name: str  # the dump file's own name, or a file's path inside the mydumper folder
    dump: bool  # the archive's top entry is this file: an archived .sql dump
    read: Callable[[int], bytes]


@contextlib.contextmanager
def _archive(legacy: Legacy, *, whole: bool = True) -> Iterator[Iterator[Member]]:
    """The regular files of an archive in order, as members relative to its top entry. Damage,
    a cut or anything outside the backup's own top entry is a VerifyFailed naming it.
    `whole`: once the caller is done, read on to the compressed stream's end, where gzip
    checks its CRC (tar stops reading at its end-of-archive blocks)."""
    top = _strip_ext(legacy.path.name)
    try:
        with _decompressed(legacy.path) as stream, tarfile.open(fileobj=stream, mode="r|") as tar:
            def members() -> Iterator[Member]:
                for info in tar:
                    name = info.name[2:] if info.name.startswith("./") else info.name
                    if info.isdir():
                        continue
                    parts = Path(name).parts
                    dump = parts == (f"{top}.sql",)
                    if not dump and (len(parts) < 2 or parts[0] != top or ".." in parts or name.startswith("/")):
                        raise VerifyFailed(f"{legacy.path}: holds {info.name!r}, outside the backup {top!r}")
                    if not info.isreg():
                        continue  # the original recorded links without their target: nothing to load
                    handle = tar.extractfile(info)
                    yield Member(parts[0] if dump else "/".join(parts[1:]), dump, handle.read)
            yield members()
            while whole and stream.read(CHUNK):
                pass
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib.error, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise VerifyFailed(f"{legacy.path}: the archive is damaged or cut short ({exc})") from None


def _strip_ext(name: str) -> str:
    for ext in (".tar.gz", ".tar.zst", ".tar.xz"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def archive_form(legacy: Legacy) -> str:
    """What an archive holds: SQL or FOLDER (read from its first file)."""
    with _archive(legacy, whole=False) as members:
        for member in members:
            return SQL if member.dump else FOLDER
    raise VerifyFailed(f"{legacy.path}: the archive holds no file")


def content_form(legacy: Legacy) -> str:
    """SQL or FOLDER: how the backup loads."""
    return archive_form(legacy) if legacy.form == ARCHIVE else legacy.form


@contextlib.contextmanager
def sql_stream(legacy: Legacy) -> Iterator[Callable[[int], bytes]]:
    """The plain SQL of a `.sql` backup or of an archive holding one, as a read(n) callable."""
    if legacy.form == SQL:
        with _open(legacy.path) as handle:
            yield handle.read
        return
    with _archive(legacy) as members:
        for member in members:
            if member.dump:
                yield member.read
                for _ in members:  # the rest, so a damaged trailer still fails the read
                    pass
                return
        raise VerifyFailed(f"{legacy.path}: the archive holds no .sql dump")


def extract_folder(legacy: Legacy, into: Path) -> Path:
    """Unpack an archive of a mydumper folder into `into` (a private folder): regular files only,
    created 0600 and never through a link. Returns the folder myloader reads."""
    with _archive(legacy) as members:
        for member in members:
            if member.dump:
                raise VerifyFailed(f"{legacy.path}: the archive holds a .sql dump, not a mydumper folder")
            target = into.joinpath(*member.name.split("/"))
            target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := member.read(CHUNK):
                    out.write(chunk)
    return into


@dataclass
class Checked:
    """What reading a legacy backup whole showed."""
    legacy: Legacy
    form: str  # SQL or FOLDER: its content
    plain_bytes: int
    files: int

    def summary(self) -> str:
        how = "its archive read whole (gzip/zstd/xz checks passed), " if self.legacy.form == ARCHIVE else ""
        return (f"legacy backup ({self.form}): {how}{self.files} file(s), {self.plain_bytes} plain bytes, the dump "
                "tool's completion mark present; no manifest, so no checksums or object list to compare")


def check(legacy: Legacy) -> Checked:
    """Read the backup whole: an archive to its end, and the dump's completion mark (mysqldump's
    last comment, or mydumper's `Finished dump at` in its metadata). VerifyFailed says what is wrong."""
    if legacy.form == FOLDER:
        files = []
        for path in (p for p in legacy.path.iterdir() if p.is_file()):
            with _open(path) as handle:
                files.append(_read_through(path.name, handle.read))
        return _folder_checked(legacy, files)
    if legacy.form == SQL or content_form(legacy) == SQL:
        total, tail = 0, b""
        with sql_stream(legacy) as read:
            while chunk := read(CHUNK):
                total += len(chunk)
                tail = (tail + chunk)[-4096:]
        if not mysqldump.is_complete(tail):
            raise VerifyFailed(f"{legacy.path}: the dump ends without mysqldump's completion comment; it is "
                               "incomplete")
        return Checked(legacy, SQL, total, 1)
    with _archive(legacy) as members:
        files = [_read_through(member.name, member.read) for member in members]
    return _folder_checked(legacy, files)


def _read_through(name: str, read: Callable[[int], bytes]) -> tuple[str, str, int]:
    """(name, text if it is mydumper's metadata, bytes read): every file read to its end in
    bounded pieces (a table's data file may be gigabytes), only the metadata kept."""
    kept, total = [], 0
    while chunk := read(CHUNK):
        total += len(chunk)
        if name == mydumper.METADATA:
            kept.append(chunk)
    return name, b"".join(kept).decode("utf-8", errors="replace"), total


def _folder_checked(legacy: Legacy, read: list[tuple[str, str, int]]) -> Checked:
    files = {name: text for name, text, _ in read}
    total = sum(size for _, _, size in read)
    if mydumper.METADATA not in files or not mydumper.is_complete(files[mydumper.METADATA]):
        raise VerifyFailed(f"{legacy.path}: mydumper's metadata does not record the end of the dump; it is "
                           "incomplete")
    if not any(_DUMP_FILE.search(name) for name in files):
        raise VerifyFailed(f"{legacy.path}: the mydumper folder holds no dump file (.sql, .sql.gz, ...)")
    return Checked(legacy, FOLDER, total, len(files))
