"""The configuration schema: the single source of keys, defaults and validation.

Section and key names follow the original TenangDB (`database`, `backup`, `upload`,
`logging`, `metrics`, `cleanup`) so its configuration files keep working; keys it
documented but never honoured are accepted and described where they become real.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

# Keys whose values are secrets: redacted everywhere and refused in world-readable files.
SECRET_KEYS = frozenset({"database.password", "backup.encryption.key", "metrics.basic_auth.password",
                         # Webhook and ping URLs carry their credential in the URL itself.
                         "notify.webhook", "notify.ping"})

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
    enabled: bool = True
    binary_path: str | None = None
    defaults_file: str | None = None
    threads: int = Field(4, ge=1)


class MydumperConfig(_Section):
    """The parallel engine (backup.engine: auto or mydumper)."""

    enabled: bool = True
    binary_path: str | None = None
    defaults_file: str | None = None
    threads: int = Field(4, ge=1)
    chunk_filesize: int = Field(100, ge=1)
    compress_method: str | None = None
    build_empty_files: bool = False
    use_defer: bool = True
    single_table: bool = False
    no_schemas: bool = False
    no_data: bool = False
    @field_validator("no_schemas", "no_data")
    @classmethod
    def _whole_dumps_only(cls, value: bool) -> bool:
        if value:
            raise ValueError("true would make backups that cannot be restored into a working "
                             "database; TenangDB always dumps schemas and data")
        return value

    max_unsealed_mb: int = Field(1024, ge=16, description="plaintext dump files waiting to be sealed before "
                                 "mydumper is paused")
    myloader: MyloaderConfig = Field(default_factory=MyloaderConfig)


SslMode = Literal["DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY"]


class DatabaseConfig(_Section):
    host: str = "localhost"
    port: int = Field(3306, ge=1, le=65535)
    socket: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    timeout: float = Field(30, gt=0, description="connect timeout in seconds")
    defaults_file: str | None = None
    ssl_mode: SslMode = "PREFERRED"
    ssl_ca: str | None = None
    ssl_cert: str | None = None
    ssl_key: str | None = None
    mysqldump_path: str | None = None
    mysql_path: str | None = None
    mydumper: MydumperConfig = Field(default_factory=MydumperConfig)

    @field_validator("ssl_mode", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


CompressionFormat = Literal["zstd", "gzip", "xz", "none"]
_FORMAT_ALIASES = {"tar.gz": "gzip", "tgz": "gzip", "gz": "gzip", "tar.zst": "zstd", "zst": "zstd",
                   "tar.xz": "xz"}
_LEVELS = {"zstd": (1, 22), "gzip": (1, 9), "xz": (0, 9), "none": (0, 0)}
DEFAULT_LEVELS = {"zstd": 3, "gzip": 6, "xz": 6, "none": 0}


class CompressionConfig(_Section):
    format: CompressionFormat = Field("zstd", alias="algorithm")
    level: int | None = None
    # The original's keys: `enabled: false` means no compression; the others had no effect there.
    enabled: bool = True
    keep_original: bool | None = None
    compress_upload: bool | None = None

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
    enabled: bool = False
    recipients: list[str] = Field(default_factory=list)
    recipients_file: str | None = None
    key: SecretStr | None = None
    key_file: str | None = None
    # A host that encrypts to recipients whose identity is kept elsewhere, while it holds an
    # identity of its own for something else; without this, that is a configuration error.
    allow_foreign_recipients: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value}
        return value

    @field_validator("recipients", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _need_keys(self) -> "EncryptionConfig":
        if self.enabled and not (self.recipients or self.recipients_file or self.key or self.key_file):
            raise ValueError(
                "encryption is enabled but no recipients, recipients_file, key or key_file is set"
            )
        return self


class BackupConfig(_Section):
    directory: str = Field(default_factory=default_backup_directory)
    # A list of names, or `all`: every database but the server's own schemas.
    databases: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list, description="shell patterns of databases to skip")
    include_mysql: bool = Field(False, description="with `databases: all`, also back up the mysql schema")
    tracking_directory: str | None = Field(None, description="where the last-backup tracking file lives")
    engine: Literal["auto", "mysqldump", "mydumper"] = "auto"
    compression: CompressionConfig = Field(default_factory=CompressionConfig)
    encryption: EncryptionConfig = Field(default_factory=EncryptionConfig)
    batch_size: int = Field(5, ge=1)
    concurrency: int = Field(3, ge=1)
    # Per database dump. The original had a 30m default that nothing enforced; killing a long
    # dump at 30 minutes would lose backups it made, so the default only stops a hung dump.
    timeout: float = Field(86400, gt=0)
    retry_count: int = Field(3, ge=1)
    retry_delay: float = Field(10, ge=0)
    check_last_backup_time: bool = True
    min_backup_interval: float = Field(3600, ge=0)
    skip_confirmation: bool = False
    verify_backup: bool = False
    test_restore: bool = False
    checksum_algorithm: Literal["sha256"] = "sha256"
    fidelity: Literal["lenient", "strict"] = Field(
        "lenient", description="what a backup that cannot hold everything exactly counts as (docs/fidelity.md); "
        "either way it is kept and its losses recorded: lenient: a success (exit 0); strict: a failure (exit 4, "
        "the tracking file is not advanced)")

    @field_validator("databases", "exclude", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("databases")
    @classmethod
    def _all_alone(cls, value: list[str]) -> list[str]:
        if "all" in value and len(value) > 1:
            raise ValueError("`all` cannot be combined with database names (use backup.exclude)")
        return value

    @field_validator("timeout", "retry_delay", "min_backup_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


UploadVerify = Literal["hash", "size", "download", "off"]


def default_rclone_config() -> str:
    """rclone's own default, spelled out so that it is always passed explicitly."""
    return os.path.join(os.path.expanduser("~"), ".config", "rclone", "rclone.conf")


class UploadConfig(_Section):
    enabled: bool = False
    destination: str | None = Field(None, description="rclone path, e.g. s3backup:bucket/tenangdb")
    rclone_path: str | None = None
    rclone_config_path: str | None = None
    timeout: float = Field(300, gt=0, description="per rclone call")
    retry_count: int = Field(3, ge=1)
    retry_delay: float = Field(10, ge=0, description="first wait between attempts; doubles each time")
    # true/hash: sizes, and hashes where the backend has them; size: sizes only;
    # download: read every stored file back and hash it; false/off: rclone's exit status only.
    verify: UploadVerify = "hash"

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

    @field_validator("timeout", "retry_delay", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

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


class LoggingConfig(_Section):
    level: LogLevel = "info"
    format: Literal["clean", "text", "json"] = "clean"
    file_format: Literal["clean", "text", "json"] = "text"
    file_path: str | None = Field(None, alias="file")

    @field_validator("level", mode="before")
    @classmethod
    def _level(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.lower()
            return "warning" if value == "warn" else value
        return value


class BasicAuthConfig(_Section):
    username: str | None = None
    # Plain, ${VAR}, a bcrypt hash ($2b$...) or sha256:<64 hex digits>.
    password: SecretStr | None = None

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
    enabled: bool = False
    listen: str = "127.0.0.1"
    port: int = Field(9090, ge=1, le=65535)
    path: str = "/metrics"
    storage_path: str | None = None
    textfile: str | None = Field(None, description="node_exporter textfile written after every run")
    basic_auth: BasicAuthConfig = Field(default_factory=BasicAuthConfig)
    tls_cert: str | None = None
    tls_key: str | None = None

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
    webhook: SecretStr | None = Field(None, description="JSON POST for every backup event")
    ping: SecretStr | None = Field(None, description="healthchecks.io-style URL: /start, itself, /fail")
    timeout: float = Field(10, gt=0)
    retries: int = Field(2, ge=0, le=10)
    retry_delay: float = Field(2, ge=0)

    @field_validator("webhook", "ping")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not re.match(r"https?://[^/\s]+", value.get_secret_value()):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("timeout", "retry_delay", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


class KeepConfig(_Section):
    """A grandfather-father-son policy: how many of the newest, and one per day/week/month/year."""

    keep_last: int | None = Field(None, ge=0)
    keep_daily: int | None = Field(None, ge=0)
    keep_weekly: int | None = Field(None, ge=0)
    keep_monthly: int | None = Field(None, ge=0)
    keep_yearly: int | None = Field(None, ge=0)


class CleanupConfig(_Section):
    enabled: bool = Field(False, description="run cleanup after every backup")
    max_age_days: int = Field(7, ge=1, description="local backups older than this may be deleted")
    remote_retention_days: int = Field(30, ge=1, description="remote backups older than this may be deleted")
    cleanup_uploaded_files: bool = Field(False, description="delete a local copy once its remote copy is verified")
    verify_cloud_exists: bool = Field(True, description="re-check the remote copy before deleting a local one")
    weekend_only: bool = Field(False, description="cleanup runs only on Saturday and Sunday unless --force")
    age_based_cleanup: bool = Field(True, description="false: local backups are never deleted for their age")
    require_verified: bool = Field(False, description="keep_* rules count only backups that passed verify "
                                   "(or verify --test-restore)")
    databases: list[str] = Field(default_factory=list)
    # A GFS policy for both places; `remote` overrides any of them for the remote copies.
    keep_last: int | None = Field(None, ge=0)
    keep_daily: int | None = Field(None, ge=0)
    keep_weekly: int | None = Field(None, ge=0)
    keep_monthly: int | None = Field(None, ge=0)
    keep_yearly: int | None = Field(None, ge=0)
    remote: KeepConfig = Field(default_factory=KeepConfig)

    @field_validator("databases", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class SandboxConfig(_Section):
    """The throwaway server a test restore starts (verify.target: sandbox)."""

    parent: str | None = Field(None, description="folder for the sandbox's private temp folder "
                               "(default: the system temp folder); needs room for the restored data")
    options: list[str] = Field(default_factory=list, description="extra mariadbd options, e.g. "
                               "--innodb-buffer-pool-size=2G")
    startup_timeout: float = Field(120, gt=0)

    @field_validator("startup_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)


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
    align_lock_wait: float = Field(
        5, gt=0, le=3600, description="how long a backup may wait to hold commits (BACKUP STAGE BLOCK_COMMIT, or "
        "FLUSH TABLES WITH READ LOCK for mydumper) while its snapshots open; past it the backup goes on "
        "without content proof")
    align_deadline: float = Field(
        2, gt=0, le=3600, description="how long commits stay held at most while waiting for the dump tool to "
        "open its snapshot (it normally takes milliseconds); past it they are let go and the backup goes on "
        "without content proof")
    require_content_proof: bool = Field(
        False, description="a test restore that can only show the load and the objects (no recorded counts "
        "and checksums to compare) fails with exit 7 instead of passing with a warning")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)

    @field_validator("align_lock_wait", "align_deadline", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> float:
        return parse_duration(value)

    @field_validator("database_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_$]+", value):
            raise ValueError("use letters, digits, _ and $ only")
        return value


class Settings(_Section):
    # Read by the loader before ${VAR} expansion; see config/loader.py.
    secrets_file: str | None = Field(
        None, description="NAME=\"value\" file (mode 0600) where ${NAME} references are looked up when "
        "the environment does not set them; TENANGDB_SECRETS_FILE overrides it")
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    upload: UploadConfig = Field(default_factory=UploadConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    cleanup: CleanupConfig = Field(default_factory=CleanupConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
