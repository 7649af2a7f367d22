"""Load the configuration: find the file, read YAML, expand ${VAR}, apply TENANGDB_* overrides,
validate against the schema, and remember where every value came from."""

from __future__ import annotations

import difflib
import logging
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import platformdirs
import yaml
from pydantic import BaseModel, SecretStr, ValidationError

from tenangdb.config import original
from tenangdb.config.schema import SECRET_KEYS, Settings, default_log_file, default_of, section_model
from tenangdb.errors import ConfigError
from tenangdb.logs import FAILED, early_security_event
from tenangdb.secrets import redact

_VAR = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)(:?-([^}]*))?\}")
ENV_PREFIX = "TENANGDB_"
# Short names the original's security guide documents.
ENV_ALIASES = {
    "TENANGDB_DB_PASSWORD": "database.password",
    "TENANGDB_ENCRYPTION_KEY": "backup.encryption.key",
}
REDACTED = "********"
log = logging.getLogger("tenangdb.config")


@dataclass
class LoadedConfig:
    settings: Settings
    path: Path | None
    searched: list[Path]
    sources: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # logged once logging is set up
    # A file of the original TenangDB not yet reviewed (config/original.py): cleanup only shows
    # its plan, and the keys in `unenforced` (key -> value as written) are not acted on.
    from_original: bool = False
    unenforced: dict[str, str] = field(default_factory=dict)
    # The file the original would have logged to (it did unless told otherwise), for a file of
    # the original that sets no logging.file_path: backup and cleanup runs log there too.
    original_log_file: str | None = None

    def source_of(self, key: str) -> str:
        return self.sources.get(key, "default")


def search_path() -> list[Path]:
    return [
        Path("config.yaml"),
        Path("tenangdb.yaml"),  # the original looked for it too
        Path(platformdirs.user_config_dir("tenangdb")) / "config.yaml",
        Path("/etc/tenangdb/config.yaml"),
    ]


def discover(explicit: str | os.PathLike | None) -> tuple[Path | None, list[Path]]:
    if explicit:
        return Path(explicit), [Path(explicit)]
    searched = search_path()
    for candidate in searched:
        if candidate.is_file():
            return candidate, searched
    return None, searched


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"config file {path} is not readable by this user") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    return data


# Keys the original TenangDB read from its files, documented or shipped, but never acted on:
# loading them with a warning keeps those files working, and says they still do nothing.
IGNORED_KEYS = {
    "frequency": "schedule backups with the systemd timer or the CronJob; backup.min_backup_interval "
                 "is the minimum time between runs",
    "database.type": "only MySQL and MariaDB are supported",
    "database.mysql": "the dump options are chosen by backup.engine",
    "database.postgresql": "only MySQL and MariaDB are supported",
}


def _fields(model: type[BaseModel]) -> dict[str, str]:
    """Every name a key of this model may be written as (field names and aliases) → field name."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        names[name] = name
        if info.alias:
            names[info.alias] = name
    return names


def normalize_keys(raw: dict[str, Any], model: type[BaseModel] = Settings, prefix: str = "",
                   notes: list[str] | None = None) -> tuple[dict[str, Any], list[str]]:
    """Keys as the original read them: case-insensitively (mapped, with a warning) and without
    the ones it ignored (dropped, with a warning). Anything else unknown is left for the schema
    to refuse, with its did-you-mean."""
    notes = [] if notes is None else notes
    names = _fields(model)
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in raw.items():
        text = str(key)
        dotted = f"{prefix}.{text}" if prefix else text
        name = text
        if text not in names:
            folded = {candidate.lower(): candidate for candidate in names}
            if text.lower() in folded:
                name = folded[text.lower()]
                notes.append(f"{dotted}: read as {prefix + '.' if prefix else ''}{name} (keys are lower case)")
            else:
                ignored = IGNORED_KEYS.get(f"{prefix}.{text.lower()}" if prefix else text.lower())
                if ignored is not None:
                    notes.append(f"{dotted}: ignored, as the original TenangDB ignored it ({ignored})")
                    continue
        if name in out:
            raise ConfigError(f"{dotted} and {origin[name]} are the same key written twice; keep one")
        origin[name] = dotted
        field_name = names.get(name)
        sub = section_model(model.model_fields[field_name]) if field_name else None
        if sub is not None and isinstance(value, dict):
            value, _ = normalize_keys(value, sub, f"{prefix}.{name}" if prefix else name, notes)
        out[name] = value
    return out, notes


def _security_guide_keys(raw: dict[str, Any]) -> None:
    """The security guide writes the age identity as `backup.encryption_key` beside
    `encryption: true`: it is `backup.encryption.key`."""
    backup = raw.get("backup")
    if not isinstance(backup, dict) or "encryption_key" not in backup:
        return
    key = backup.pop("encryption_key")
    encryption = backup.get("encryption")
    if isinstance(encryption, dict):
        if "key" in encryption:
            raise ConfigError("backup.encryption_key and backup.encryption.key are the same key written twice; "
                              "keep one")
        encryption["key"] = key
    else:
        backup["encryption"] = {"key": key} if encryption is None else {"enabled": encryption, "key": key}


def _walk(data: Any, prefix: str = ""):
    if isinstance(data, dict):
        for key, value in data.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            yield from _walk(value, dotted)
    else:
        yield prefix, data


def _only_references(value: Any) -> bool:
    """True when a secret's value is nothing but ${VAR} references (so not a plaintext secret)."""
    return isinstance(value, str) and _VAR.sub("", value).strip() == "" and "${" in value


def _logging_section(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """The raw `logging` section with ${VAR} expanded where the environment can (a refused
    config is logged where its own logging section says, as far as it can be read)."""
    section = raw.get("logging")
    if not isinstance(section, dict):
        return {}
    out = {}
    for key, value in section.items():
        try:
            out[key] = _expand(value, environ, f"logging.{key}", {})
        except ConfigError:
            continue
    return out


def _check_secret_permissions(path: Path, raw: dict[str, Any], insecure: bool, environ: Mapping[str, str]) -> None:
    plaintext = plaintext_secrets(raw)
    if not plaintext:
        return
    mode = path.stat().st_mode
    if mode & stat.S_IROTH and not insecure:
        # A security event (logs.py): the operator's grep of the journal and the log file must
        # see it. The names of the keys only, never their values.
        early_security_event(_logging_section(raw, environ), log, "config_refused", FAILED,
                             "config file %s refused: it holds a plaintext secret (%s) and other users can "
                             "read it", path, ", ".join(plaintext))
        raise ConfigError(
            f"config file {path} holds a plaintext secret ({', '.join(plaintext)}) and is readable "
            f"by other users; run: chmod o-rwx {path}  (or move the secret to an environment "
            f"variable referenced as ${{VAR}}, or pass --insecure)"
        )


_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPED = '"\\$`'  # what a backslash escapes inside double quotes (shell and systemd agree)


def read_secrets_file(path: str | os.PathLike) -> dict[str, str]:
    """NAME="value" lines, as systemd's EnvironmentFile= and a shell's `set -a; . file` read them.

    Values are never shown in errors: only the line number is."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"secrets file {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"secrets file {path} is not readable by this user (run as root, or through the "
                          "systemd units, which hand it over as a credential)") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise ConfigError(f"secrets file {path} is not a UTF-8 text file") from None
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export "):
            stripped = stripped[len("export "):].lstrip()
        name, sep, rest = stripped.partition("=")
        if not sep or not _SECRET_NAME.fullmatch(name):
            raise ConfigError(f"secrets file {path}, line {number}: expected NAME=\"value\"")
        value = _secret_value(rest, path, number)
        values[name] = value
        redact.add(value)
    return values


def _secret_value(rest: str, path: Path, number: int) -> str:
    if rest.startswith("'"):
        end = rest.find("'", 1)
        if end < 0 or rest[end + 1:].strip():
            raise ConfigError(f"secrets file {path}, line {number}: unbalanced single quote")
        return rest[1:end]
    if not rest.startswith('"'):
        return rest.strip()
    out, i = [], 1
    while i < len(rest):
        char = rest[i]
        if char == "\\" and i + 1 < len(rest) and rest[i + 1] in _ESCAPED:
            out.append(rest[i + 1])
            i += 2
            continue
        if char == '"':
            if rest[i + 1:].strip():
                break
            return "".join(out)
        out.append(char)
        i += 1
    raise ConfigError(f"secrets file {path}, line {number}: unbalanced double quote")


def secrets_file_text(values: Mapping[str, str], header: str = "") -> str:
    """The inverse of read_secrets_file: one NAME="value" line per secret."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    for name, value in values.items():
        if not _SECRET_NAME.fullmatch(name):
            raise ConfigError(f"{name!r} cannot name a secret (letters, digits and _ only)")
        if any(c in value for c in "\n\r\0"):
            raise ConfigError(f"the value of {name} holds a line break or NUL, which a secrets file cannot carry")
        escaped = "".join("\\" + c if c in _ESCAPED else c for c in value)
        lines.append(f'{name}="{escaped}"')
    return "\n".join(lines) + "\n"


def plaintext_secrets(raw: dict[str, Any]) -> list[str]:
    """The secret keys of a raw config mapping whose value is written out rather than ${VAR}."""
    return [key for key, value in _walk(raw) if key in SECRET_KEYS
            and value not in (None, "") and not _only_references(value)]


def read_raw(path: Path) -> dict[str, Any]:
    """The config file as YAML data, before expansion or validation."""
    return _read_yaml(path)


def _expand(data: Any, environ: Mapping[str, str], key: str, used: dict[str, list[str]]) -> Any:
    if isinstance(data, dict):
        return {k: _expand(v, environ, f"{key}.{k}" if key else str(k), used) for k, v in data.items()}
    if isinstance(data, list):
        return [_expand(v, environ, key, used) for v in data]
    if not isinstance(data, str) or "${" not in data:
        return data

    def replace(match: re.Match[str]) -> str:
        if match.group(1):  # $${VAR} is a literal ${VAR}
            return match.group(0)[1:]
        name, has_default, default = match.group(2), match.group(3), match.group(4)
        value = environ.get(name)
        if value is None or (value == "" and has_default and has_default.startswith(":")):
            if has_default is None:
                raise ConfigError(f"{key}: environment variable {name} is not set (referenced as ${{{name}}})")
            value = default or ""
        used.setdefault(key, []).append(name)
        return value

    return _VAR.sub(replace, data)


def _field_path(model: type[BaseModel], words: list[str]) -> list[str] | None:
    """Match upper-case words from an env var name to a nested key (fields may hold '_')."""
    if not words:
        return None
    for name, info in model.model_fields.items():
        parts = name.upper().split("_")
        if words[: len(parts)] != parts:
            continue
        rest = words[len(parts):]
        if not rest:
            return [name]
        sub = section_model(info)
        if sub is not None:
            deeper = _field_path(sub, rest)
            if deeper:
                return [name, *deeper]
    return None


def _env_overrides(environ: Mapping[str, str], notes: list[str] | None = None) -> dict[str, tuple[str, str]]:
    """dotted key → (value, variable name). A TENANGDB_* variable that names no key is noted
    and skipped: the original read no environment at all, so one left over must not stop a run."""
    sections = {name.upper(): name for name in Settings.model_fields}
    found: dict[str, tuple[str, str]] = {}
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX):
            continue
        if var in ENV_ALIASES:
            found[ENV_ALIASES[var]] = (value, var)
            continue
        words = var[len(ENV_PREFIX):].split("_")
        section = sections.get(words[0])
        if section is None:
            continue  # not an override (TENANGDB_CONFIG and friends)
        model = Settings.model_fields[section].annotation
        path = _field_path(model, words[1:])
        if path is None:
            if notes is not None:
                names = [f"{ENV_PREFIX}{section.upper()}_{name.upper()}" for name in model.model_fields]
                close = difflib.get_close_matches(var, names, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                notes.append(f"environment variable {var} does not name a key of the {section} section "
                             f"and is ignored{hint}")
            continue
        found[".".join([section, *path])] = (value, var)
    return found


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            # A shorthand value (`encryption: true`) is widened so a nested override can land.
            child = {} if child is None else ({"enabled": child} if isinstance(child, bool) else {"format": child})
            node[part] = child
        node = child
    node[parts[-1]] = value


def _describe(error: dict[str, Any]) -> str:
    loc = ".".join(str(part) for part in error["loc"] if not str(part).startswith("function-"))
    kind = error["type"]
    if kind == "extra_forbidden":
        parent, _, leaf = loc.rpartition(".")
        model: type[BaseModel] = Settings
        for part in parent.split(".") if parent else []:
            info = model.model_fields.get(part)
            sub = section_model(info) if info is not None else None
            if sub is None:
                break
            model = sub
        names = list(model.model_fields)
        close = difflib.get_close_matches(leaf, names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {', '.join(names)})"
        return f"{loc}: unknown key{hint}"
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    received = error.get("input")
    shown = "" if kind == "missing" or isinstance(received, (dict, list)) or received is None \
        or any(loc.endswith(s.split(".")[-1]) and loc == s for s in SECRET_KEYS) else f", got {received!r}"
    return f"{loc}: {message}{shown}" if loc else f"{message}"


def load_config(
    explicit: str | os.PathLike | None = None,
    *,
    insecure: bool = False,
    environ: Mapping[str, str] | None = None,
    check_recipients: bool = True,
) -> LoadedConfig:
    """`check_recipients` false: for `doctor`, which reports a recipient mismatch as one of
    its checks instead of refusing to run."""
    env = os.environ if environ is None else environ
    if explicit is None and env.get("TENANGDB_CONFIG"):
        explicit = env["TENANGDB_CONFIG"]
    path, searched = discover(explicit)
    raw: dict[str, Any] = {}
    sources: dict[str, str] = {}
    notes: list[str] = []
    from_original = False
    if path is not None:
        raw = _read_yaml(path)
        if not raw:
            # Every default would apply: the system server's socket, /var/backups/tenangdb. A file
            # emptied by mistake (a failed deploy, a truncating editor) must not mean that.
            raise ConfigError(f"config file {path} is empty or holds only comments; nothing would be "
                              "configured (run tenangdb init to write one)")
        try:
            raw, notes = normalize_keys(raw)
        except ConfigError as exc:
            raise ConfigError(f"configuration error in {path}: {exc}") from None
        notes = [f"{path}: {note}" for note in notes]
        try:
            _security_guide_keys(raw)
        except ConfigError as exc:
            raise ConfigError(f"configuration error in {path}: {exc}") from None
        from_original = original.is_from_original(raw)
        _check_secret_permissions(path, raw, insecure, env)
        used: dict[str, list[str]] = {}
        lookup: Mapping[str, str] = env
        secrets_path = env.get("TENANGDB_SECRETS_FILE") or raw.get("secrets_file")
        unreadable: ConfigError | None = None
        if secrets_path:
            if not isinstance(secrets_path, str):
                raise ConfigError(f"configuration error in {path}: secrets_file must be a path")
            try:
                # The environment wins, so one variable can override the file.
                secrets_at = Path(_expand(secrets_path, env, "secrets_file", {}))
                if not secrets_at.is_absolute():
                    secrets_at = path.parent / secrets_at  # beside the config, wherever we run
                lookup = {**read_secrets_file(secrets_at), **env}
            except ConfigError as exc:
                unreadable = exc
        try:
            data = _expand(raw, lookup, "", used)
        except ConfigError as exc:
            raise (unreadable or exc) from None
        for key, _ in _walk(raw):
            sources[key] = f"file {path}"
        for key, names in used.items():
            sources[key] = f"file {path} via ${{{', '.join(names)}}}"
    else:
        data = {}
    for key, (value, var) in _env_overrides(env, notes).items():
        _set(data, key, value)
        sources[key] = f"env {var}"
    where = f"in {path}" if path else "(no config file; defaults and environment)"
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = _describe(errors[0])
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise ConfigError(f"configuration error {where}: {first}{more}") from None
    for key in SECRET_KEYS:
        value = settings
        for part in key.split("."):
            value = getattr(value, part)
        if isinstance(value, SecretStr):
            redact.add(value.get_secret_value())
    unenforced: dict[str, str] = {}
    if from_original and sources.get("backup.timeout", "").startswith("file"):
        # The original never enforced it: a 30m written there must not kill tonight's long dump.
        unenforced["backup.timeout"] = str(raw["backup"]["timeout"])
        settings.backup.timeout = default_of("backup.timeout")
        sources["backup.timeout"] = (f"default; {path} sets {unenforced['backup.timeout']}, not enforced until "
                                     f"{original.MIGRATE_COMMAND}")
    original_log_file = default_log_file() if from_original and "logging.file_path" not in sources else None
    warnings = notes + (_check_recipients(settings, where) if check_recipients else [])
    return LoadedConfig(settings=settings, path=path, searched=searched, sources=sources, warnings=warnings,
                        from_original=from_original, unenforced=unenforced, original_log_file=original_log_file)


def _short(recipient: str) -> str:
    return recipient if len(recipient) <= 24 else f"{recipient[:14]}…{recipient[-6:]}"


def _check_recipients(settings: Settings, where: str) -> list[str]:
    """Recipients the configured identity cannot decrypt make backups that every later verify
    and restore refuses: an error at load, before any backup is written, unless allowed."""
    from tenangdb.stream.crypto import undecryptable_recipients

    enc = settings.backup.encryption
    foreign = undecryptable_recipients(enc)
    if not foreign:
        return []
    names = ", ".join(_short(r) for r in foreign)
    identity = "backup.encryption.key_file" if enc.key_file else "backup.encryption.key"
    if enc.allow_foreign_recipients:
        return [f"backup.encryption: the configured identity ({identity}) decrypts none of the recipients "
                f"({names}); backups made here can be verified and restored only where their identity is "
                "(backup.encryption.allow_foreign_recipients is true)"]
    raise ConfigError(f"configuration error {where}: backup.encryption.recipients: no configured identity "
                      f"({identity}) belongs to recipient{'s' if len(foreign) > 1 else ''} {names}, so backups could never be verified or "
                      "restored with it; fix the recipients or the key, or set "
                      "backup.encryption.allow_foreign_recipients: true on a host that must not hold the identity")


def effective_items(loaded: LoadedConfig) -> list[tuple[str, str, str]]:
    """(key, value as shown, source) for every leaf, secrets redacted."""
    rows: list[tuple[str, str, str]] = []

    def visit(model: BaseModel, prefix: str) -> None:
        for name in type(model).model_fields:
            value = getattr(model, name)
            key = f"{prefix}.{name}" if prefix else name
            if isinstance(value, BaseModel):
                visit(value, key)
                continue
            if isinstance(value, SecretStr) or key in SECRET_KEYS:
                shown = REDACTED if value not in (None, "") else "(not set)"
            elif value is None:
                shown = "(not set)"
            elif isinstance(value, list):
                shown = ", ".join(value) if value else "[]"
            else:
                shown = str(value)
            rows.append((key, shown, _source_for(loaded, key)))

    visit(loaded.settings, "")
    return rows


def _source_for(loaded: LoadedConfig, key: str) -> str:
    if key in loaded.sources:
        return loaded.sources[key]
    # A shorthand (`compression: gzip`) sets its children from the parent's value.
    parent = key.rpartition(".")[0]
    while parent:
        if parent in loaded.sources:
            return loaded.sources[parent]
        parent = parent.rpartition(".")[0]
    return "default"
