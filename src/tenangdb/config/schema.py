"""The configuration schema: the single source of keys, defaults, descriptions and validation.

Section and key names follow the original TenangDB (`database`, `backup`, `upload`,
`logging`, `metrics`, `cleanup`) so its configuration files keep working; keys it
documented but never honoured are accepted and described where they become real. Keys kept
only so the original's files load are marked `compat` (see `is_compat`); the loader's
IGNORED_KEYS are the ones that are not even in the schema. `config/sample.py` writes the
commented sample config (`tenangdb config --sample`) from these fields, and `tenangdb init`
takes its defaults and choices from them.
"""

from __future__ import annotations

import os
import re
from typing import Annotated, Any, Iterator, Literal, get_args, get_origin

import platformdirs
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator,
                      model_validator)
from pydantic.fields import FieldInfo

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> float:
    """Seconds from `90`, `"90"`, `"30s"`, `"10m"`, `"2h30m"` (a bare number is seconds)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m or 1h")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"expected a duration such as 30s, 10m or 1h, got {value!r}")
    return total


def split_list(value: Any) -> Any:
    """`"a, b"` (as an environment override carries a list) → `["a", "b"]`; lists pass as they are."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


# Seconds, written as a number or as 30s / 10m / 2h30m.
Duration = Annotated[float, BeforeValidator(parse_duration)]
# Names, written as a YAML list or as one comma-separated string.
NameList = Annotated[list[str], BeforeValidator(split_list)]

COMPAT = {"compat": True}
_COMPAT_NOTE = "Kept for compatibility with the original TenangDB"


def compat(default: Any, description: str, **kwargs: Any) -> Any:
    """A key the original TenangDB's files carry: accepted so they load, marked as such."""
    return Field(default, description=f"{_COMPAT_NOTE}: {description}", json_schema_extra=COMPAT, **kwargs)


def is_compat(info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    return isinstance(extra, dict) and bool(extra.get("compat"))


def is_duration(info: FieldInfo) -> bool:
    return any(isinstance(m, BeforeValidator) and m.func is parse_duration for m in info.metadata)


class _Section(BaseModel):
    model_config = ConfigDict(
        extra="forbid", validate_default=True, populate_by_name=True, coerce_numbers_to_str=True
    )


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def default_backup_directory() -> str:
    if _is_root():
        return "/var/backups/tenangdb"
    return os.path.join(platformdirs.user_data_dir("tenangdb"), "backups")


def default_log_file() -> str:
    if _is_root():
        return "/var/log/tenangdb/tenangdb.log"
    return os.path.join(platformdirs.user_data_dir("tenangdb"), "logs", "tenangdb.log")


def default_state_directory() -> str:
    if _is_root():
        return "/var/lib/tenangdb"
    return platformdirs.user_data_dir("tenangdb")


class MyloaderConfig(_Section):
    """myloader, which loads mydumper backups (restore and test restore)."""

    enabled: bool = Field(True, description="false: mydumper backups cannot be restored here (an error says so)")
    binary_path: str | None = Field(None, description="the myloader program (default: myloader on the PATH)")
    defaults_file: str | None = Field(None, description="an option file for myloader instead of the "
                                      "database section's connection keys")
    threads: int = Field(4, ge=1, description="tables loaded at once")


class MydumperConfig(_Section):
    """The parallel engine (backup.engine: auto or mydumper)."""

    enabled: bool = Field(True, description="false: backup.engine auto never picks mydumper")
    binary_path: str | None = Field(None, description="the mydumper program (default: mydumper on the PATH)")
    defaults_file: str | None = Field(None, description="an option file for mydumper instead of the "
                                      "database section's connection keys")
    threads: int = Field(4, ge=1, description="threads dumping at once")
    chunk_filesize: int = Field(100, ge=1, description="MB per data file: sealing overlaps the dump file by file")
    compress_method: str | None = compat(None, "no effect; TenangDB compresses every file itself "
                                         "(backup.compression)")
    build_empty_files: bool = Field(False, description="also write data files for tables without rows")
    use_defer: bool = compat(True, "no effect")
    single_table: bool = compat(False, "no effect")
    no_schemas: bool = Field(False, description="must stay false: a dump without schemas cannot be restored")
    no_data: bool = Field(False, description="must stay false: a dump without data cannot be restored")

    @field_validator("no_schemas", "no_data")
    @classmethod
    def _whole_dumps_only(cls, value: bool) -> bool:
        if value:
            raise ValueError("true would make backups that cannot be restored into a working "
                             "database; TenangDB always dumps schemas and data")
        return value

    max_unsealed_mb: int = Field(1024, ge=16, description="MB of plaintext dump files waiting to be sealed before "
                                 "mydumper is paused")
    myloader: MyloaderConfig = Field(default_factory=MyloaderConfig, description=MyloaderConfig.__doc__)


SslMode = Literal["DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"]


class DatabaseConfig(_Section):
    """The server to back up and how to reach it."""

    host: str = Field("localhost", description="server host name or address; localhost means the local unix "
                      "socket, as for the mysql client")
    port: int = Field(3306, ge=1, le=65535, description="TCP port")
    socket: str | None = Field(None, description="unix socket path (default: the client's own)")
    username: str | None = Field(None, description="account the backups run as (default: the client's own, "
                                 "e.g. the login name)")
    password: SecretStr | None = Field(None, description="its password (none: socket authentication); give it "
                                       "as ${VAR} or set TENANGDB_DB_PASSWORD")
    timeout: Duration = Field(30, gt=0, description="connect timeout (seconds, or 30s / 1m)")
    defaults_file: str | None = Field(None, description="an option file to use instead of the keys above")
    ssl_mode: SslMode = Field("PREFERRED", description="TLS to the server (off this machine use REQUIRED or "
                              "better)")
    ssl_ca: str | None = Field(None, description="CA certificate file for VERIFY_CA and VERIFY_IDENTITY")
    ssl_cert: str | None = Field(None, description="client certificate file")
    ssl_key: str | None = Field(None, description="client certificate's key file")
    mysqldump_path: str | None = Field(None, description="the dump program (default: mariadb-dump, else mysqldump, "
                                       "on the PATH)")
    mysql_path: str | None = Field(None, description="the client program restores load with (default: mariadb, "
                                   "else mysql, on the PATH)")
    mydumper: MydumperConfig = Field(default_factory=MydumperConfig, description=MydumperConfig.__doc__)

    @field_validator("ssl_mode", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value


CompressionFormat = Literal["zstd", "gzip", "xz", "none"]
_FORMAT_ALIASES = {"tar.gz": "gzip", "tgz": "gzip", "gz": "gzip", "tar.zst": "zstd", "zst": "zstd",
                   "tar.xz": "xz"}
_LEVELS = {"zstd": (1, 22), "gzip": (1, 9), "xz": (0, 9), "none": (0, 0)}
DEFAULT_LEVELS = {"zstd": 3, "gzip": 6, "xz": 6, "none": 0}


class CompressionConfig(_Section):
    """How dump files are compressed (also written as `compression: gzip` or `compression: false`)."""

    format: CompressionFormat = Field("zstd", alias="algorithm", description="zstd, gzip, xz or none (the "
                                      "original's algorithm: and tar.gz / tar.zst / tar.xz are read as these)")
    level: int | None = Field(None, description="compression level (default: zstd 3, gzip 6, xz 6; ranges: "
                              "zstd 1-22, gzip 1-9, xz 0-9)")
    # The original's keys: `enabled: false` means no compression; the others had no effect there.
    enabled: bool = compat(True, "false means format none")
    keep_original: bool | None = compat(None, "no effect")
    compress_upload: bool | None = compat(None, "no effect")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"format": value}
        if isinstance(value, bool):
            return {"enabled": value}
        if isinstance(value, dict):
            value = dict(value)
            fmt = value.get("format", value.get("algorithm"))
            if isinstance(fmt, str) and fmt.lower() in _FORMAT_ALIASES:
                value.pop("algorithm", None)
                value["format"] = _FORMAT_ALIASES[fmt.lower()]
        return value

    @model_validator(mode="after")
    def _check_level(self) -> "CompressionConfig":
        if not self.enabled:
            self.format = "none"
        if self.level is not None and self.format != "none":
            low, high = _LEVELS[self.format]
            if not low <= self.level <= high:
                raise ValueError(f"level {self.level} is out of range for {self.format} ({low}-{high})")
        return self

    @property
    def effective_level(self) -> int:
        return self.level if self.level is not None else DEFAULT_LEVELS[self.format]


class EncryptionConfig(_Section):
    """age encryption of every stored file (also written as `encryption: false`)."""

    enabled: bool = Field(False, description="encrypt backups; needs recipients, recipients_file, key or key_file")
    recipients: NameList = Field(default_factory=list, description="age public keys (age1...) to encrypt to")
    recipients_file: str | None = Field(None, description="a file of age public keys, one a line")
    key: SecretStr | None = Field(None, description="an age identity (AGE-SECRET-KEY-1...), to verify and restore, "
                                  "or a passphrase (age's scrypt mode: used to encrypt only when no recipient or "
                                  "identity is configured; docs/SECURITY.md says what it costs); give it as ${VAR} "
                                  "or set TENANGDB_ENCRYPTION_KEY")
    key_file: str | None = Field(None, description="a file holding the age identity (mode 0600), to verify and "
                                 "restore; without recipients, backups are encrypted to it (to its current "
                                 "identity after `tenangdb key rotate`)")
    # age's default; each stored file costs one scrypt of 2^N (N=18: ~256 MiB, about a second)
    # to write and again to read. The ceiling is the one decryption accepts (stream/passphrase.py).
    passphrase_work_factor: int = Field(18, ge=10, le=22, description="with a passphrase: log2 of the scrypt "
                                        "work factor of each new file (18 is age's default; higher resists "
                                        "guessing longer, and costs memory and time per file)")
    # A host that encrypts to recipients whose identity is kept elsewhere, while it holds an
    # identity of its own for something else; without this, that is a configuration error.
    allow_foreign_recipients: bool = Field(False, description="true: an identity that decrypts none of the "
                                           "recipients is only a warning (else exit 2; no identity at all is fine)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value}
        return value

    @model_validator(mode="after")
    def _need_keys(self) -> "EncryptionConfig":
        if self.enabled and not (self.recipients or self.recipients_file or self.key or self.key_file):
            raise ValueError(
                "encryption is enabled but no recipients, recipients_file, key or key_file is set"
            )
        return self


BackupEngine = Literal["auto", "mysqldump", "mydumper", "mariabackup"]


class IncrementalConfig(_Section):
    """Incremental physical backups: between two full backups, each backup copies only the pages
    changed since the one before it (its parent). A restore needs the whole chain, full first."""

    enabled: bool = Field(False, description="take increments between full backups (off: every backup is full)")
    full_every: Duration | None = Field(7 * 86400, gt=0, description="a new full backup once the chain's full "
                                        "backup is this old (e.g. 7d); null: by max_increments alone")
    max_increments: int | None = Field(6, ge=1, description="a new full backup once the chain holds this many "
                                       "increments; null: by full_every alone")

    @model_validator(mode="after")
    def _chains_end(self) -> "IncrementalConfig":
        # A chain that never ends makes every restore read every backup since the first.
        if self.enabled and self.full_every is None and self.max_increments is None:
            raise ValueError("incremental backups need full_every or max_increments, or chains never end")
        return self


class PhysicalConfig(_Section):
    """The physical engine (backup.engine: mariabackup): a copy of the whole instance's files."""

    incremental: IncrementalConfig = Field(default_factory=IncrementalConfig, description=IncrementalConfig.__doc__)
    use_memory: str = Field("256M", pattern=r"^[0-9]+[KMG]?$", description="mariabackup --prepare --use-memory "
                            "(restore and test restore): memory for applying the redo log")


class BackupConfig(_Section):
    """What is backed up, where, and how."""

    directory: str = Field(default_factory=default_backup_directory, description="where backups are stored "
                           "(default /var/backups/tenangdb as root, else the user data dir)")
    # A list of names, or `all`: every database but the server's own schemas.
    databases: NameList = Field(default_factory=list, description="databases to back up, or all (every "
                                "database but the server's own schemas)")
    exclude: NameList = Field(default_factory=list, description="shell patterns of databases to skip")
    include_mysql: bool = Field(False, description="with `databases: all`, also back up the mysql schema")
    tracking_directory: str | None = Field(None, description="where the last-backup tracking file lives "
                                           "(default /var/lib/tenangdb as root, else the user data dir)")
    engine: BackupEngine = Field("auto", description="auto (mydumper when installed and "
                                 "database.mydumper.enabled), mysqldump, mydumper or mariabackup (physical: the "
                                 "whole instance, which backup.databases does not narrow)")
    physical: PhysicalConfig = Field(default_factory=PhysicalConfig, description=PhysicalConfig.__doc__)
    compression: CompressionConfig = Field(default_factory=CompressionConfig, description=CompressionConfig.__doc__)
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig, description=EncryptionConfig.__doc__)
    batch_size: int = Field(5, ge=1, description="databases per batch; batches run one after another")
    concurrency: int = Field(3, ge=1, description="databases backed up at once, each on its own connection")
    # Per database dump. The original had a 30m default that nothing enforced; killing a long
    # dump at 30 minutes would lose backups it made, so the default only stops a hung dump.
    timeout: Duration = Field(86400, gt=0, description="per database dump; its process group is killed on "
                              "expiry (seconds, or 30m / 24h)")
    retry_count: int = Field(3, ge=1, description="attempts per database for transient failures")
    retry_delay: Duration = Field(10, ge=0, description="first wait between attempts; doubles each attempt "
                                  "(at most 5 minutes)")
    check_last_backup_time: bool = Field(True, description="check backup.min_backup_interval before a run")
    min_backup_interval: Duration = Field(3600, ge=0, description="a backup newer than this asks on a terminal; "
                                          "without one: a warning, then the run")
    skip_confirmation: bool = Field(False, description="run without asking, as --yes does")
    verify_backup: bool = Field(False, description="verify every new backup after the run (exit 7 when one fails)")
    test_restore: bool = Field(False, description="test-restore every new backup after the run (exit 7 when one "
                               "fails)")
    checksum_algorithm: Literal["sha256"] = compat("sha256", "backups are always hashed with SHA-256")
    fidelity: Literal["lenient", "strict"] = Field(
        "lenient", description="what a backup that cannot hold everything exactly counts as (docs/fidelity.md); "
        "either way it is kept and its losses recorded: lenient: a success (exit 0); strict: a failure (exit 4, "
        "the tracking file is not advanced)")

    @field_validator("databases")
    @classmethod
    def _all_alone(cls, value: list[str]) -> list[str]:
        if "all" in value and len(value) > 1:
            raise ValueError("`all` cannot be combined with database names (use backup.exclude)")
        return value


UploadVerify = Literal["hash", "size", "download", "off"]


def default_rclone_config() -> str:
    """rclone's own default, spelled out so that it is always passed explicitly."""
    return os.path.join(os.path.expanduser("~"), ".config", "rclone", "rclone.conf")


class UploadConfig(_Section):
    """Off-site copies with rclone."""

    enabled: bool = Field(False, description="upload after every backup")
    destination: str | None = Field(None, description="rclone path, e.g. s3backup:bucket/tenangdb (a plain path "
                                    "is a local folder)")
    rclone_path: str | None = Field(None, description="the rclone program (default: rclone on the PATH)")
    rclone_config_path: str | None = Field(None, description="rclone's config file (default "
                                           "~/.config/rclone/rclone.conf); always passed to rclone explicitly")
    timeout: Duration = Field(300, gt=0, description="per rclone call (seconds, or 5m)")
    encryption: bool = Field(False, description="true: never upload a backup that is not encrypted (each one is "
                             "refused and reported; backup.encryption makes them encrypted)")
    retry_count: int = Field(3, ge=1, description="attempts per backup")
    retry_delay: Duration = Field(10, ge=0, description="first wait between attempts; doubles each time")
    # true/hash: sizes, and hashes where the backend has them; size: sizes only;
    # download: read every stored file back and hash it; false/off: rclone's exit status only.
    verify: UploadVerify = Field("hash", description="how the remote copy is checked: hash (or true): sizes and "
                                 "hashes; size: sizes only; download: every file read back and hashed; off (or "
                                 "false): rclone's exit status only")

    verify_upload: bool | None = compat(None, "the security guide's name of upload.verify: true is hash, false is off "
                                        "(upload.verify wins when both are set)")

    @model_validator(mode="after")
    def _verify_upload(self) -> "UploadConfig":
        if self.verify_upload is not None and "verify" not in self.model_fields_set:
            self.verify = "hash" if self.verify_upload else "off"
        return self

    @field_validator("verify", mode="before")
    @classmethod
    def _verify(cls, value: Any) -> Any:
        if value is True:
            return "hash"
        if value is False or value is None:
            return "off"
        if isinstance(value, str):  # e.g. from TENANGDB_UPLOAD_VERIFY=false
            value = value.strip().lower()
            return {"true": "hash", "yes": "hash", "on": "hash", "false": "off", "no": "off"}.get(value, value)
        return value

    @field_validator("destination")
    @classmethod
    def _destination(cls, value: str | None) -> str | None:
        if value is not None:
            value = value.strip()
            if not value or any(ch in value for ch in "\n\r\x00"):
                raise ValueError("must be an rclone path such as remote:bucket/prefix or /mnt/offsite")
            value = value.rstrip("/") or "/"
        return value

    @model_validator(mode="after")
    def _need_destination(self) -> "UploadConfig":
        if self.enabled and not self.destination:
            raise ValueError("upload is enabled but upload.destination is not set")
        return self

    @property
    def config_path(self) -> str:
        return os.path.expanduser(self.rclone_config_path) if self.rclone_config_path else default_rclone_config()


LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["clean", "text", "json"]


class LoggingConfig(_Section):
    """Log lines on stderr and, optionally, in a file."""

    level: LogLevel = Field("info", description="debug, info, warning (or warn) or error; --log-level overrides it")
    format: LogFormat = Field("clean", description="stderr lines: clean, text or json")
    file_format: LogFormat = Field("text", description="log file lines: clean, text or json")
    file_path: str | None = Field(None, alias="file", description="also log to this file (created 0640); none: "
                                  "no log file")

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.lower()
            return "warning" if value == "warn" else value
        return value


class BasicAuthConfig(_Section):
    """HTTP basic auth for the exporter: both keys or neither."""

    username: str | None = Field(None, description="user name Prometheus sends")
    # Plain, ${VAR}, a bcrypt hash ($2b$...) or sha256:<64 hex digits>.
    password: SecretStr | None = Field(None, description="its password: plain (as ${VAR}), sha256:<64 hex digits> "
                                       "or a bcrypt hash ($2b$...)")

    @model_validator(mode="after")
    def _both(self) -> "BasicAuthConfig":
        if bool(self.username) != bool(self.password and self.password.get_secret_value()):
            raise ValueError("basic_auth needs both username and password (or neither)")
        if self.password:
            secret = self.password.get_secret_value()
            if secret.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-fA-F]{64}", secret):
                raise ValueError("password: a sha256: hash must be followed by 64 hex digits")
            if re.match(r"\$2[aby]\$", secret) and not re.fullmatch(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}", secret):
                raise ValueError("password: this looks like a bcrypt hash but is not a complete one")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.username)


HEALTH_PATHS = ("/healthz", "/health", "/ready")


class MetricsConfig(_Section):
    """Prometheus metrics: the state file every run updates, and the exporter that serves it."""

    enabled: bool = Field(False, description="record every run's outcome in the metrics state file")
    listen: str = Field("127.0.0.1", description="address tenangdb exporter listens on")
    port: int = Field(9090, ge=1, le=65535, description="port tenangdb exporter listens on")
    path: str = Field("/metrics", description="URL path of the metrics")
    storage_path: str | None = Field(None, description="the metrics state file (default: metrics.json in "
                                     "/var/lib/tenangdb as root, else the user data dir)")
    textfile: str | None = Field(None, description="node_exporter textfile written after every run")
    basic_auth: BasicAuthConfig = Field(default_factory=BasicAuthConfig, description=BasicAuthConfig.__doc__)
    tls_cert: str | None = Field(None, description="certificate file; with tls_key, the exporter serves HTTPS")
    tls_key: str | None = Field(None, description="the certificate's key file")
    duration_form: Literal["histogram", "gauge"] = Field(
        "histogram", description="how tenangdb_{backup,upload,restore}_duration_seconds are served: histogram "
        "(quantiles and rates work), or gauge, the latest run's duration, as the original TenangDB's exporter "
        "served them (its Grafana panels read them so)")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or value in HEALTH_PATHS or value == "/" or any(c in value for c in "?# "):
            raise ValueError("must be an absolute URL path such as /metrics (not /, /healthz, /health or /ready)")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> "MetricsConfig":
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        return self

    @property
    def state_path(self) -> str:
        return self.storage_path or os.path.join(default_state_directory(), "metrics.json")


class NotifyConfig(_Section):
    """Notifications of backup and upload events; the URLs carry their credential and are secrets."""

    webhook: SecretStr | None = Field(None, description="JSON POST for every backup event")
    ping: SecretStr | None = Field(None, description="healthchecks.io-style URL: /start, itself, /fail")
    timeout: Duration = Field(10, gt=0, description="per request (seconds, or 10s)")
    retries: int = Field(2, ge=0, le=10, description="further attempts after a failed request")
    retry_delay: Duration = Field(2, ge=0, description="wait between attempts (seconds, or 2s)")

    @field_validator("webhook", "ping")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(r"https?://[^/\s]+", value.get_secret_value()):
            raise ValueError("must be an http:// or https:// URL")
        return value


class KeepConfig(_Section):
    """A grandfather-father-son policy: how many of the newest, and one per day/week/month/year.

    Unset or 0: no such rule."""

    keep_last: int | None = Field(None, ge=0, description="the N newest backups")
    keep_daily: int | None = Field(None, ge=0, description="the newest backup of each of the N most recent days")
    keep_weekly: int | None = Field(None, ge=0, description="the newest backup of each of the N most recent "
                                    "ISO weeks")
    keep_monthly: int | None = Field(None, ge=0, description="the newest backup of each of the N most recent "
                                     "months")
    keep_yearly: int | None = Field(None, ge=0, description="the newest backup of each of the N most recent years")


class CleanupConfig(KeepConfig):
    """Retention: which backups are deleted, locally and remotely. The keep_* rules apply to
    both places; `remote` overrides any of them for the remote copies."""

    enabled: bool = Field(False, description="run cleanup after every backup")
    max_age_days: int = Field(7, ge=1, description="local backups older than this (days) may be deleted")
    remote_retention_days: int = Field(30, ge=1, description="remote backups older than this (days) may be "
                                       "deleted")
    cleanup_uploaded_files: bool = Field(False, description="delete a local copy once its remote copy is verified")
    verify_cloud_exists: bool = Field(True, description="re-check the remote copy before deleting a local one")
    weekend_only: bool = Field(False, description="cleanup runs only on Saturday and Sunday unless --force")
    age_based_cleanup: bool = Field(True, description="false: local backups are never deleted for their age")
    require_verified: bool = Field(False, description="keep_* rules count only backups that passed verify "
                                   "(or verify --test-restore)")
    databases: NameList = Field(default_factory=list, description="only these databases (default: all)")
    pitr_days: float | None = Field(
        None, gt=0, description="point-in-time window kept in the binlog archive (local and its remote mirror): "
        "archived binlog files are kept from the newest base backup taken at or before this many days ago (the "
        "oldest point one can restore to); unset: every file any kept base backup needs, so the window is as long "
        "as backups are kept. Files after the newest base backup are never deleted")
    remote: KeepConfig = Field(default_factory=KeepConfig, description="keep_* for the remote copies (unset "
                               "keys: the ones above)")


class SandboxConfig(_Section):
    """The throwaway server a test restore starts (verify.target: sandbox)."""

    parent: str | None = Field(None, description="folder for the sandbox's private temp folder "
                               "(default: the system temp folder); needs room for the restored data")
    options: list[str] = Field(default_factory=list, description="extra mariadbd options, e.g. "
                               "--innodb-buffer-pool-size=2G")
    startup_timeout: Duration = Field(120, gt=0, description="longest wait for the sandbox server to start "
                                      "(seconds, or 2m)")


class VerifyConfig(_Section):
    """Test restores (`tenangdb verify --test-restore`, backup.test_restore) and what backups record for them."""

    target: Literal["auto", "sandbox", "server"] = Field(
        "auto", description="where a test restore loads the backup: sandbox (a throwaway mariadbd), server "
        "(a scratch database on the configured server) or auto (sandbox when mariadbd is installed)")
    database_prefix: str = Field("tenangdb_verify_", min_length=1, max_length=40,
                                 description="name prefix of the scratch database (target: server)")
    record: bool = Field(True, description="count and checksum every table in the dump's snapshot during "
                         "each backup, for test restores to compare against")
    checksum: Literal["checksum-table", "md5"] = Field(
        "checksum-table", description="checksum-table: the server's CHECKSUM TABLE (fast, 32-bit, compared only "
        "on the same server version); md5: a portable 128-bit checksum of every row, about ten times the cost")
    align_lock_wait: Duration = Field(
        5, gt=0, le=3600, description="how long a backup may wait to hold commits (BACKUP STAGE BLOCK_COMMIT, or "
        "FLUSH TABLES WITH READ LOCK for mydumper) while its snapshots open; past it the backup goes on "
        "without content proof")
    align_deadline: Duration = Field(
        2, gt=0, le=3600, description="how long commits stay held at most while waiting for the dump tool to "
        "open its snapshot (it normally takes milliseconds); past it they are let go and the backup goes on "
        "without content proof")
    require_content_proof: bool = Field(
        False, description="a test restore that can only show the load and the objects (no recorded counts "
        "and checksums to compare) fails with exit 7 instead of passing with a warning")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig, description=SandboxConfig.__doc__)

    @field_validator("database_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_$]+", value):
            raise ValueError("use letters, digits, _ and $ only")
        return value


class BinlogConfig(_Section):
    """The binary-log archive for point-in-time restore (`tenangdb binlog`): the server's closed
    binlog files, pulled over the replication protocol and sealed like backups."""

    enabled: bool = Field(False, description="true: `tenangdb binlog` archives this server's binary log")
    directory: str | None = Field(None, description="where the archive lives (default: {backup.directory}/.binlog, "
                                  "hidden from the backup layout's walkers)")
    max_lag: Duration = Field(300, gt=0, description="the most the archive may lag the server: the open file is "
                              "closed (FLUSH BINARY LOGS) this often when it has writes, so this is the RPO "
                              "(seconds, or 5m)")
    binlog_path: str | None = Field(None, description="the mariadb-binlog program (default: mariadb-binlog, else "
                                    "mysqlbinlog, on the PATH)")
    upload: bool = Field(True, description="copy each archived file off-site to {upload.destination}/.binlog/ "
                         "when upload.enabled, proven like backups (upload.verify)")


class Settings(_Section):
    config_version: int | None = Field(
        None, description="written as 2 by init and by `config --migrate --write`; a file without it whose keys "
        "are all the original TenangDB's is reviewed as the original's (see `tenangdb config --migrate`)")
    # Read by the loader before ${VAR} expansion; see config/loader.py.
    secrets_file: str | None = Field(
        None, description="NAME=\"value\" file (mode 0600) where ${NAME} references are looked up when "
        "the environment does not set them; TENANGDB_SECRETS_FILE overrides it")
    database: DatabaseConfig = Field(default_factory=DatabaseConfig, description=DatabaseConfig.__doc__)
    backup: BackupConfig = Field(default_factory=BackupConfig, description=BackupConfig.__doc__)
    upload: UploadConfig = Field(default_factory=UploadConfig, description=UploadConfig.__doc__)
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description=LoggingConfig.__doc__)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description=MetricsConfig.__doc__)
    notify: NotifyConfig = Field(default_factory=NotifyConfig, description=NotifyConfig.__doc__)
    cleanup: CleanupConfig = Field(default_factory=CleanupConfig, description=CleanupConfig.__doc__)
    verify: VerifyConfig = Field(default_factory=VerifyConfig, description=VerifyConfig.__doc__)
    binlog: BinlogConfig = Field(default_factory=BinlogConfig, description=BinlogConfig.__doc__)

    @field_validator("config_version")
    @classmethod
    def _known_version(cls, value: int | None) -> int | None:
        if value is not None and value != 2:
            raise ValueError("2 is the only config version this TenangDB knows")
        return value


def section_model(info: FieldInfo) -> type[BaseModel] | None:
    """The model of a field that is a section of its own, else None."""
    annotation = info.annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _is_secret(info: FieldInfo) -> bool:
    annotation = info.annotation
    return annotation is SecretStr or SecretStr in get_args(annotation)


def iter_fields(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[tuple[str, FieldInfo]]:
    """(dotted key, field) for every key, sections before the keys inside them."""
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        yield key, info
        sub = section_model(info)
        if sub is not None:
            yield from iter_fields(sub, f"{key}.")


def field_of(key: str) -> FieldInfo:
    """The schema field of a dotted key, e.g. `database.port`."""
    model: type[BaseModel] = Settings
    info: FieldInfo | None = None
    for part in key.split("."):
        if model is None or part not in model.model_fields:
            raise KeyError(key)
        info = model.model_fields[part]
        model = section_model(info)  # type: ignore[assignment]
    assert info is not None
    return info


def default_of(key: str) -> Any:
    """The default value of a dotted key, e.g. default_of("database.port") == 3306."""
    return field_of(key).get_default(call_default_factory=True)


def bounds_of(key: str) -> tuple[int | float | None, int | float | None]:
    """(lowest, highest) a number key accepts; None where it has no bound."""
    low = high = None
    for constraint in field_of(key).metadata:
        low = getattr(constraint, "ge", low)
        high = getattr(constraint, "le", high)
    return low, high


def choices_of(key: str) -> tuple[str, ...]:
    """The values a Literal key accepts, in the schema's order; () for any other key."""
    annotation = field_of(key).annotation
    return get_args(annotation) if get_origin(annotation) is Literal else ()


def secret_keys(model: type[BaseModel] = Settings) -> frozenset[str]:
    """The dotted keys of the SecretStr fields."""
    return frozenset(key for key, info in iter_fields(model) if _is_secret(info))


# Keys whose values are secrets: redacted everywhere and refused in world-readable files.
# Webhook and ping URLs are among them: they carry their credential.
SECRET_KEYS = secret_keys()
