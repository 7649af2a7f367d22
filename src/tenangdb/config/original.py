"""Configs written for the original (Go) TenangDB: how to tell one, what changes for it, and
how its operator acknowledges that.

Many of the original's keys did nothing (`cleanup.remote_retention_days`, `weekend_only`,
`backup.timeout`, …); here they act. A file whose keys are all the original's and that does
not carry `config_version` is taken as the original's: until its operator has read the review
(`tenangdb config --migrate`) and acknowledged it (`--write`, which adds `config_version: 2`),
cleanup only shows its plan and an explicit `backup.timeout` is not enforced, so that the night
the binary changes deletes nothing and kills no dump the original would have let finish.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from tenangdb.config.schema import default_of
from tenangdb.errors import ConfigError
from tenangdb.fileio import write_atomically

VERSION = 2
MARK = "config_version"
MIGRATE_COMMAND = "tenangdb config --migrate"

# Every key the original read (its config structs, defaults included).
ORIGINAL_KEYS = frozenset({
    "database.host", "database.port", "database.username", "database.password", "database.timeout",
    "database.mysqldump_path", "database.mysql_path",
    "database.mydumper.enabled", "database.mydumper.binary_path", "database.mydumper.defaults_file",
    "database.mydumper.threads", "database.mydumper.chunk_filesize", "database.mydumper.compress_method",
    "database.mydumper.build_empty_files", "database.mydumper.use_defer", "database.mydumper.single_table",
    "database.mydumper.no_schemas", "database.mydumper.no_data",
    "database.mydumper.myloader.enabled", "database.mydumper.myloader.binary_path",
    "database.mydumper.myloader.defaults_file", "database.mydumper.myloader.threads",
    "backup.directory", "backup.databases", "backup.batch_size", "backup.concurrency", "backup.timeout",
    "backup.retry_count", "backup.retry_delay", "backup.check_last_backup_time", "backup.min_backup_interval",
    "backup.skip_confirmation",
    "backup.compression.enabled", "backup.compression.format", "backup.compression.level",
    "backup.compression.keep_original", "backup.compression.compress_upload",
    "upload.enabled", "upload.rclone_path", "upload.rclone_config_path", "upload.destination", "upload.timeout",
    "upload.retry_count",
    "upload.encryption",  # its security guide's; it read and ignored it (here it refuses unencrypted uploads)
    "logging.level", "logging.format", "logging.file_format", "logging.file_path",
    "cleanup.enabled", "cleanup.cleanup_uploaded_files", "cleanup.remote_retention_days", "cleanup.weekend_only",
    "cleanup.age_based_cleanup", "cleanup.max_age_days", "cleanup.verify_cloud_exists", "cleanup.databases",
    "metrics.enabled", "metrics.port", "metrics.storage_path",
})
_SECTIONS = frozenset(key.rpartition(".")[0] for key in ORIGINAL_KEYS) - {""}


def _leaves(data: Mapping[str, Any], prefix: str = ""):
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from _leaves(value, dotted)
        elif not (dotted in _SECTIONS and value is None):  # an empty section sets nothing
            yield dotted


def not_original_because(raw: Mapping[str, Any]) -> str | None:
    """Why a config (keys as `normalize_keys` leaves them: lower case, the original's ignored
    keys dropped) is not the original TenangDB's, or None when it is."""
    if MARK in raw:
        return f"it carries {MARK}: {raw[MARK]}"
    for key in _leaves(raw):
        if key not in ORIGINAL_KEYS:
            return f"it sets {key}, which only this TenangDB has"
    return None


def is_from_original(raw: Mapping[str, Any]) -> bool:
    return not_original_because(raw) is None


def unreviewed_cleanup(path: Path | None) -> str:
    return (f"{path} is a config of the original TenangDB, whose cleanup ignored most of these keys: cleanup "
            f"runs as --dry-run until you review what now changes with `{MIGRATE_COMMAND}`")


# --- the review ------------------------------------------------------------------------------

@dataclass
class _Key:
    value: Any
    set: bool  # written in the file, not the default

    @property
    def shown(self) -> str:
        value = self.value
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, list):
            text = ", ".join(str(v) for v in value) if value else "[]"
        elif value is None:
            text = "not set"
        else:
            text = str(value)
        return text if self.set else f"{text} (default)"


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "no", "off", "0")
    return bool(value)


class _Reader:
    def __init__(self, raw: Mapping[str, Any]) -> None:
        self.raw = raw

    def __call__(self, key: str) -> _Key:
        node: Any = self.raw
        for part in key.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return _Key(default_of(key), False)
            node = node[part]
        return _Key(node, True)


Rule = Callable[[_Reader], "str | None"]


def _if_set(key: str, said: str) -> Rule:
    """A key that changes something only where the file sets it (true, a list, a name)."""
    def rule(get: _Reader) -> str | None:
        found = get(key)
        return f"{found.shown} — {said}" if found.set and _truthy(found.value) else None
    return rule


def _refused(what: str) -> str:
    return (f"the original dumped without {what}; TenangDB refuses it (exit 2): a backup must restore into a "
            "working database; remove the key")


def _remote_retention(get: _Reader) -> str | None:
    key = get("cleanup.remote_retention_days")
    uploads = _truthy(get("upload.enabled").value) and get("upload.destination").value
    if not key.set and not uploads:
        return None
    when = "" if uploads else " once uploads are on"
    return (f"{key.shown} — the original never deleted remote copies; TenangDB will delete remote copies "
            f"older than {key.value} days{when} (the newest verified and newest complete one of each "
            "database are always kept)")


def _weekend_only(get: _Reader) -> str | None:
    key = get("cleanup.weekend_only")
    if _truthy(key.value):
        return None
    return (f"{key.shown} — the original ran cleanup only on Saturday and Sunday whatever this said "
            "(--force bypassed it); TenangDB runs it on any day")


def _verify_cloud(get: _Reader) -> str | None:
    key = get("cleanup.verify_cloud_exists")
    if not _truthy(key.value) or not (key.set or _truthy(get("upload.enabled").value)):
        return None
    return (f"{key.shown} — the original never checked the remote copy; with uploads on, TenangDB deletes "
            "a local copy only once its remote copy is verified, and checks that copy again just before")


def _max_age(get: _Reader) -> str | None:
    key = get("cleanup.max_age_days")
    if not _truthy(get("cleanup.age_based_cleanup").value):
        return None
    if str(key.value).strip() == "0":
        return (f"{key.shown} — the original's real cleanup read 0 as 7 days (its dry run as 0: everything); "
                "TenangDB refuses 0 (exit 2): write 7 to keep what the original did")
    return (f"{key.shown} — the original deleted whole top-level folders of backup.directory (a database's "
            f"every backup, the newest too) once the folder itself was {key.value} days old; TenangDB deletes "
            f"each backup older than {key.value} days by the time in its manifest, and always keeps each "
            "database's newest complete backup")


def _age_based(get: _Reader) -> str | None:
    key = get("cleanup.age_based_cleanup")
    if not key.set:
        return None
    if _truthy(key.value):
        return (f"{key.shown} — the original only let its dry run list old files with it (its real cleanup "
                "deleted by age whatever this said); TenangDB deletes by cleanup.max_age_days because of it, "
                "and its dry run shows exactly what a real run deletes")
    return (f"{key.shown} — the original's real cleanup deleted by age anyway; TenangDB never deletes a "
            "local backup for its age")


def _timeout(get: _Reader) -> str | None:
    from tenangdb.config.sample import format_duration

    key = get("backup.timeout")
    if key.set:
        return (f"{key.shown} — the original never enforced it; TenangDB kills a dump that runs longer (until "
                f"this file is migrated it is not enforced and the "
                f"{format_duration(default_of('backup.timeout'))} default applies)")
    return (f"{format_duration(key.value)} (default) — the original never stopped a dump (its 30m default was "
            f"not enforced); TenangDB kills a dump that runs longer")


def _compression_enabled(get: _Reader) -> str | None:
    key = get("backup.compression.enabled")
    if key.set and not _truthy(key.value):
        return None
    if key.set:
        return (f"{key.shown} — the original tar+gzipped each finished dump into one archive beside it; "
                "TenangDB compresses each dump file as it is written (backup.compression.format), with no "
                "archive")
    return ("true (default) — the original compressed nothing unless this was true; TenangDB compresses "
            "each dump file with zstd (set `enabled: false` to store dumps uncompressed)")


_FORMATS = {"tar.gz": "gzip", "tgz": "gzip", "tar.zst": "zstd", "tar.xz": "xz"}


def _codec(get: _Reader) -> str:
    key = get("backup.compression.format")
    if not key.set:
        return "zstd"
    name = str(key.value).strip().lower()
    return _FORMATS.get(name, name)


def _compression_off(get: _Reader) -> bool:
    key = get("backup.compression.enabled")
    return key.set and not _truthy(key.value)


def _compression_format(get: _Reader) -> str | None:
    key = get("backup.compression.format")
    if not key.set or _compression_off(get):
        return None
    if not get("backup.compression.enabled").set:
        was = "compressed nothing (backup.compression.enabled was false by default)"
    elif _codec(get) == "gzip":
        was = "wrote a .tar.gz archive"
    else:
        was = f"wrote a .{str(key.value).strip().lower()} archive that held gzip data whatever its name"
    return f"{key.shown} — the original {was}; TenangDB compresses each dump file with {_codec(get)}"


def _compression_level(get: _Reader) -> str | None:
    key = get("backup.compression.level")
    if not key.set or _compression_off(get):
        return None
    codec = _codec(get)
    return (f"{key.shown} — the original used it as a gzip level (outside 1-9: gzip's default); TenangDB "
            f"applies it to {codec} and refuses a level out of {codec}'s range")


def _mydumper_enabled(get: _Reader) -> str | None:
    key = get("database.mydumper.enabled")
    if key.set:
        return None
    return ("true (default) — the original used mysqldump unless this was true; TenangDB's backup.engine "
            "auto uses mydumper when it is installed (set `enabled: false` to keep mysqldump)")


def _host(get: _Reader) -> str | None:
    key = get("database.host")
    if str(key.value).strip().lower() != "localhost":
        return None
    return (f"{key.shown} — the original connected over TCP to localhost; TenangDB uses the local unix "
            "socket, as the mysql client does (write 127.0.0.1 for TCP)")


def _log_file(get: _Reader) -> str | None:
    if get("logging.file_path").set:
        return None
    return ("not set — the original logged to a file by default (/var/log/tenangdb/tenangdb.log as root); "
            "TenangDB keeps logging there until this review is written, then only where this key says")


RULES: dict[str, Rule] = {
    "cleanup.remote_retention_days": _remote_retention,
    "cleanup.weekend_only": _weekend_only,
    "cleanup.cleanup_uploaded_files": _if_set(
        "cleanup.cleanup_uploaded_files", "the original never deleted a local copy for being uploaded; TenangDB "
        "deletes a local copy once its remote copy is verified, however young"),
    "upload.encryption": _if_set(
        "upload.encryption", "the original ignored it; TenangDB refuses to upload a backup that is not encrypted "
        "when it is true"),
    "cleanup.enabled": _if_set(
        "cleanup.enabled", "the original ignored it (cleanup ran only as `tenangdb cleanup`); TenangDB also runs "
        "cleanup after each backup run"),
    "cleanup.verify_cloud_exists": _verify_cloud,
    "cleanup.databases": _if_set(
        "cleanup.databases", "with this filter the original's real cleanup deleted nothing (only its dry run "
        "listed files); TenangDB deletes the expired backups of these databases"),
    "cleanup.max_age_days": _max_age,
    "cleanup.age_based_cleanup": _age_based,
    "backup.timeout": _timeout,
    "backup.retry_delay": _if_set(
        "backup.retry_delay", "the original waited this long between every two attempts; TenangDB doubles the "
        "wait after each attempt (at most 5 minutes)"),
    "backup.compression.enabled": _compression_enabled,
    "backup.compression.format": _compression_format,
    "backup.compression.level": _compression_level,
    "backup.compression.keep_original": _if_set(
        "backup.compression.keep_original", "the original kept the uncompressed dump beside its archive; "
        "TenangDB stores only the compressed files"),
    "database.host": _host,
    "database.mydumper.enabled": _mydumper_enabled,
    "database.mydumper.compress_method": _if_set(
        "database.mydumper.compress_method", "the original had mydumper compress its files; TenangDB compresses "
        "every file itself (backup.compression)"),
    "database.mydumper.no_schemas": _if_set("database.mydumper.no_schemas", _refused("schemas")),
    "database.mydumper.no_data": _if_set("database.mydumper.no_data", _refused("data")),
    "metrics.port": _if_set(
        "metrics.port", "the original served metrics on it only while `tenangdb backup` ran; here it is the "
        "port of `tenangdb exporter` (`tenangdb-exporter` uses 9090 unless --port, as before)"),
    "logging.file_path": _log_file,
}


def review(raw: Mapping[str, Any]) -> list[str]:
    """One line per key whose behaviour changes, set in the file or defaulted: `key: value —
    what the original did; what TenangDB does now`."""
    get = _Reader(raw)
    lines = []
    for key, rule in RULES.items():
        said = rule(get)
        if said:
            lines.append(f"{key}: {said}")
    return lines


# --- the acknowledgement ---------------------------------------------------------------------

COMMENT = (f"# Reviewed with `{MIGRATE_COMMAND}`: the keys the original TenangDB ignored now act "
           "(cleanup deletes, backup.timeout is enforced).")


def marked_text(text: str) -> str:
    """The file's text with the mark added at the top (after any YAML directives and document
    start), so its comments and layout stay as they are."""
    lines = text.splitlines(keepends=True)
    at = 0
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("%") or stripped == "---":
            at = index + 1
        elif stripped and not stripped.startswith("#"):
            break
    newline = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    block = f"{COMMENT}{newline}{MARK}: {VERSION}{newline}"
    if at and not lines[at - 1].endswith(("\n", "\r")):
        lines[at - 1] += newline
    return "".join(lines[:at]) + block + "".join(lines[at:])


def original_copy(path: Path) -> Path:
    return path.with_name(path.name + ".original")


def write_mark(path: Path) -> Path:
    """Add `config_version: 2` to the file in place, keeping the old file beside it as
    `<name>.original` (same mode). Returns the copy's path."""
    target = path.resolve()  # a symlinked config is changed where it lives, the link kept
    try:
        text = target.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    new = marked_text(text)
    try:
        before = yaml.safe_load(text) or {}
        after = yaml.safe_load(new)
    except yaml.YAMLError:
        after = None
    if not isinstance(after, dict) or after != {MARK: VERSION, **before}:
        raise ConfigError(f"cannot add {MARK}: {VERSION} to {path} without changing what it says; add the line "
                          "at the top by hand")
    copy = original_copy(target)
    try:
        info = target.stat()
        shutil.copyfile(target, copy)  # unlike copy2, refuses a directory in the copy's place
        shutil.copystat(target, copy)
        write_atomically(target, new.encode("utf-8"), info.st_mode & 0o7777)
        if os.geteuid() == 0:  # root rewrote it: it stays the owner's (e.g. root:tenangdb)
            os.chown(target, info.st_uid, info.st_gid)
    except OSError as exc:
        where = exc.filename or target
        raise ConfigError(f"cannot write {where}: {exc.strerror or exc}; {path} is unchanged") from None
    return copy
