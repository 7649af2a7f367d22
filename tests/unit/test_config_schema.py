"""The config schema as the single source: its duration and list types, the secret keys it
derives, the sample config it writes, and the README's config blocks checked against it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pydantic import BaseModel, Field, SecretStr, TypeAdapter, ValidationError

from tenangdb.config.loader import load_config
from tenangdb.config.sample import format_duration, sample_yaml, secret_variable
from tenangdb.config.schema import (SECRET_KEYS, CleanupConfig, Duration, KeepConfig, NameList, Settings,
                                    default_of, field_of, is_compat, is_duration, iter_fields, secret_keys,
                                    section_model)

ROOT = Path(__file__).resolve().parents[2]
DURATION = TypeAdapter(Duration)
NAMES = TypeAdapter(NameList)


@pytest.mark.parametrize("value,seconds", [
    (90, 90), (1.5, 1.5), ("90", 90), ("2.5", 2.5), ("30s", 30), ("10m", 600), ("2h30m", 9000),
    ("1d", 86400), ("250ms", 0.25), (" 1h ", 3600), (0, 0),
])
def test_duration_accepts_numbers_and_units(value, seconds):
    assert DURATION.validate_python(value) == seconds


@pytest.mark.parametrize("value", ["soon", "", "10 m", "1h-", "-5", True, -1, "m10"])
def test_duration_refuses_the_rest(value):
    with pytest.raises(ValidationError, match="duration"):
        DURATION.validate_python(value)


def test_every_duration_key_uses_the_one_type():
    durations = {key for key, info in iter_fields() if is_duration(info)}
    assert {"database.timeout", "backup.timeout", "backup.retry_delay", "backup.min_backup_interval",
            "upload.timeout", "upload.retry_delay", "notify.timeout", "notify.retry_delay",
            "verify.align_lock_wait", "verify.align_deadline", "verify.sandbox.startup_timeout",
            "binlog.max_lag"} == durations
    # Constraints of the key still apply after the unit is parsed.
    with pytest.raises(ValidationError, match="greater than 0"):
        Settings.model_validate({"upload": {"timeout": "0s"}})
    assert Settings.model_validate({"notify": {"retry_delay": "1m"}}).notify.retry_delay == 60


@pytest.mark.parametrize("value,names", [
    ("a, b", ["a", "b"]), ("a,,b ,", ["a", "b"]), ("", []), (["x", "y"], ["x", "y"]), ([], []),
])
def test_name_list_from_a_list_or_a_comma_separated_string(value, names):
    assert NAMES.validate_python(value) == names


def test_name_list_keys_take_the_comma_form():
    s = Settings.model_validate({"backup": {"databases": "shop, billing", "exclude": "tmp_*",
                                            "encryption": {"recipients": "age1a, age1b"}},
                                 "cleanup": {"databases": "shop"}})
    assert s.backup.databases == ["shop", "billing"] and s.backup.exclude == ["tmp_*"]
    assert s.backup.encryption.recipients == ["age1a", "age1b"] and s.cleanup.databases == ["shop"]


def test_cleanup_reuses_the_keep_model():
    assert issubclass(CleanupConfig, KeepConfig)
    keep = set(KeepConfig.model_fields)
    assert keep <= set(CleanupConfig.model_fields)
    assert section_model(CleanupConfig.model_fields["remote"]) is KeepConfig
    c = Settings.model_validate({"cleanup": {"keep_daily": 7, "remote": {"keep_monthly": 24}}}).cleanup
    assert c.keep_daily == 7 and c.remote.keep_monthly == 24 and c.remote.keep_daily is None
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Settings.model_validate({"cleanup": {"keep_last": -1}})


def test_secret_keys_are_the_secret_fields():
    assert SECRET_KEYS == {"database.password", "backup.encryption.key", "metrics.basic_auth.password",
                           "notify.webhook", "notify.ping"}

    class Inner(BaseModel):
        token: SecretStr | None = None
        name: str = ""

    class Outer(BaseModel):
        key: SecretStr = SecretStr("x")
        inner: Inner = Field(default_factory=Inner)
        plain: str | None = None

    assert secret_keys(Outer) == {"key", "inner.token"}


def test_every_key_is_described_and_compat_keys_say_so():
    for key, info in iter_fields():
        assert info.description and len(info.description) > 5, key
    compat = {key for key, info in iter_fields() if is_compat(info)}
    assert {"database.mydumper.compress_method", "database.mydumper.use_defer", "database.mydumper.single_table",
            "backup.compression.keep_original", "backup.compression.compress_upload"} <= compat
    for key in compat:
        assert "original TenangDB" in field_of(key).description, key


def test_defaults_come_from_the_schema():
    assert default_of("database.port") == 3306 and default_of("metrics.listen") == "127.0.0.1"
    assert default_of("backup.compression.format") == "zstd" and default_of("backup.timeout") == 86400
    with pytest.raises(KeyError):
        field_of("database.nope")


def test_sample_parses_back_and_validates():
    text = sample_yaml()
    data = yaml.safe_load(text)
    settings = Settings.model_validate(data)
    assert settings.model_dump() == Settings(config_version=2).model_dump()
    for key, info in iter_fields():
        leaf = key.rpartition(".")[2]
        assert re.search(rf"^\s*(# )?{re.escape(leaf)}:", text, re.M), key
    for key in SECRET_KEYS:
        leaf = key.rpartition(".")[2]
        assert re.search(rf"^\s*# {leaf}: \$\{{{secret_variable(key)}\}}$", text, re.M), key
    assert secret_variable("database.password") == "TENANGDB_DB_PASSWORD"
    assert secret_variable("notify.webhook") == "TENANGDB_NOTIFY_WEBHOOK"


def test_sample_secrets_uncommented_load_from_the_environment(tmp_path):
    # The placeholders name variables the loader really reads.
    text = re.sub(r"^(\s*)# (\w+: \$\{\w+\})$", r"\1\2", sample_yaml(), flags=re.M)
    # basic_auth takes both keys or neither.
    text = text.replace("    username: null", "    username: prometheus")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    os.chmod(cfg, 0o600)
    env = {secret_variable(key): "https://example.invalid/hook" for key in SECRET_KEYS}
    loaded = load_config(cfg, environ=env, check_recipients=False)
    assert loaded.warnings == []
    assert loaded.settings.notify.webhook.get_secret_value() == "https://example.invalid/hook"


@pytest.mark.parametrize("seconds,text", [(86400, "24h"), (300, "5m"), (30, "30s"), (2.5, "2.5s"), (5400, "90m")])
def test_sample_durations_are_written_with_units(seconds, text):
    assert format_duration(seconds) == text
    assert DURATION.validate_python(text) == seconds


def test_config_sample_command_needs_no_config_file(tmp_path, monkeypatch):
    from tenangdb.cli.main import cli

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "missing.yaml"), "config", "--sample"])
    assert result.exit_code == 0, result.output
    assert result.output == sample_yaml()


def _yaml_blocks() -> list[tuple[str, int, str]]:
    blocks = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        for match in re.finditer(r"^```yaml\n(.*?)^```", text, re.M | re.S):
            blocks.append((path.name, text.count("\n", 0, match.start()) + 1, match.group(1)))
    return blocks


def _unknown_keys(data: dict, model: type[BaseModel], prefix: str = "") -> list[str]:
    names = {}
    for name, info in model.model_fields.items():
        names[name] = info
        if info.alias:
            names[info.alias] = info
    unknown = []
    for key, value in data.items():
        info = names.get(key)
        if info is None:
            unknown.append(f"{prefix}{key}")
            continue
        sub = section_model(info)
        if sub is not None and isinstance(value, dict):
            unknown += _unknown_keys(value, sub, f"{prefix}{key}.")
    return unknown


BLOCKS = _yaml_blocks()


def test_the_docs_have_config_blocks():
    assert sum(1 for name, _, _ in BLOCKS if name == "README.md") >= 6


@pytest.mark.parametrize("name,line,block", BLOCKS, ids=[f"{n}:{line}" for n, line, _ in BLOCKS])
def test_doc_config_blocks_agree_with_the_schema(tmp_path, name, line, block):
    data = yaml.safe_load(block)
    assert isinstance(data, dict), f"{name}:{line}"
    assert _unknown_keys(data, Settings) == [], f"{name}:{line}"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(block)
    os.chmod(cfg, 0o600)
    env = {var: "https://example.invalid/secret" for var in re.findall(r"\$\{(\w+)", block)}
    loaded = load_config(cfg, environ=env, check_recipients=False)
    assert loaded.warnings == [], f"{name}:{line}"
