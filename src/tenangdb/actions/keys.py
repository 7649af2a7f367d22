"""`tenangdb key rotate`: a new age identity for new backups, the old ones kept for older backups.

The key file stays one age identity file (docs/SECURITY.md, "Rotating the encryption key"):
the new identity goes first, each identity it replaces stays below it under a `# retired:`
comment. Backups are encrypted to the identities that are not retired; verify and restore
try every one, so a backup made before the rotation still opens, and `age -d -i FILE`
decrypts any of them by hand.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from tenangdb.config.loader import LoadedConfig
from tenangdb.errors import ConfigError
from tenangdb.stream.crypto import configured_passphrase, rotate_identity_file

log = logging.getLogger("tenangdb.keys")


@dataclass
class Rotated:
    key_file: Path
    recipient: str
    retired: list[str]
    notes: list[str] = field(default_factory=list)  # what the operator must still change by hand


def key_file_of(loaded: LoadedConfig | None, given: str | None) -> Path:
    """The key file to rotate: the one given, else the configured backup.encryption.key_file."""
    if given:
        return Path(given)
    enc = loaded.settings.backup.encryption if loaded else None
    if enc is not None and enc.key_file:
        return Path(enc.key_file)
    if enc is not None and configured_passphrase(enc) is not None:
        raise ConfigError("backup.encryption.key is a passphrase: key rotate makes age identities. Run "
                          "`tenangdb key generate -o FILE`, set backup.encryption.key_file: FILE and keep the "
                          "passphrase in backup.encryption.key to read the older backups")
    if enc is not None and enc.key is not None:
        raise ConfigError("the identity is given inline (backup.encryption.key or TENANGDB_ENCRYPTION_KEY), "
                          "which key rotate cannot rewrite: put it in a file (mode 0600) named by "
                          "backup.encryption.key_file, or give --key-file")
    raise ConfigError("no key file to rotate: set backup.encryption.key_file or give --key-file")


def rotate(loaded: LoadedConfig | None, key_file: str | None = None) -> Rotated:
    path = key_file_of(loaded, key_file)
    done = rotate_identity_file(path)
    result = Rotated(key_file=path, recipient=done.recipient, retired=done.retired)
    log.info("key rotated in %s: new backups go to %s; kept %d retired identit%s for older backups", path,
             done.recipient, len(done.retired), "y" if len(done.retired) == 1 else "ies")
    enc = loaded.settings.backup.encryption if loaded else None
    if enc is not None and enc.key_file and Path(enc.key_file) != path:
        result.notes.append(f"the config reads its identity from {enc.key_file}, not {path}")
    if enc is not None:
        listed = [r for r in enc.recipients if r.strip() in done.retired]
        if listed or enc.recipients_file:
            where = "backup.encryption.recipients" if listed else f"backup.encryption.recipients_file ({enc.recipients_file})"
            result.notes.append(f"{where} names the recipients backups go to: replace the retired key's public "
                                f"key there with {done.recipient}, or new backups still go to the old key")
    return result
