"""age keys: parse recipients and identities, generate identities, fingerprint recipients."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import pyrage
from pyrage import ssh, x25519

from tenangdb.errors import ConfigError, TenangDBError
from tenangdb.secrets import redact


def fingerprint(recipient: str) -> str:
    return "sha256:" + hashlib.sha256(recipient.strip().encode()).hexdigest()[:16]


def parse_recipient(text: str, origin: str):
    text = text.strip()
    try:
        if text.startswith("age1"):
            return x25519.Recipient.from_str(text)
        if text.startswith(("ssh-ed25519 ", "ssh-rsa ")):
            return ssh.Recipient.from_str(text)
    except pyrage.RecipientError as exc:
        raise ConfigError(f"{origin}: not a valid age recipient ({exc})") from None
    raise ConfigError(f"{origin}: not an age recipient (expected age1… or an ssh public key)")


def _key_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def parse_identities(text: str, origin: str) -> list:
    identities = []
    for line in _key_lines(text):
        redact.add(line)
        if not line.startswith("AGE-SECRET-KEY-1"):
            raise ConfigError(f"{origin}: not an age identity (expected AGE-SECRET-KEY-1…; a passphrase is not "
                              "supported: make an identity with `tenangdb key generate -o FILE`)")
        try:
            identities.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise ConfigError(f"{origin}: the age identity is malformed") from None
    if not identities:
        raise ConfigError(f"{origin}: holds no age identity")
    return identities


def read_key_file(path: str, origin: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{origin}: {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{origin}: {path} is not readable by this user") from None


@dataclass
class KeySet:
    recipients: list  # pyrage recipient objects, to encrypt to
    recipient_strings: list[str]
    identities: list  # pyrage identity objects, to decrypt with

    def fingerprints(self) -> list[dict[str, str]]:
        return [{"recipient": r, "fingerprint": fingerprint(r)} for r in self.recipient_strings]


def load_identities(enc) -> list:
    """The age identities (secret keys) configured in `backup.encryption`, possibly none."""
    identities = []
    if enc.key is not None and enc.key.get_secret_value():
        identities += parse_identities(enc.key.get_secret_value(), "backup.encryption.key")
    if enc.key_file:
        identities += parse_identities(read_key_file(enc.key_file, "backup.encryption.key_file"),
                                       "backup.encryption.key_file")
    return identities


def load_keys(enc) -> KeySet:
    """Recipients and identities from `backup.encryption` (an EncryptionConfig)."""
    recipient_strings: list[str] = []
    for text in enc.recipients:
        recipient_strings.append(text.strip())
    if enc.recipients_file:
        content = read_key_file(enc.recipients_file, "backup.encryption.recipients_file")
        recipient_strings += _key_lines(content)
    identities = load_identities(enc)
    recipients = [parse_recipient(text, "backup.encryption.recipients") for text in recipient_strings]
    if not recipients:
        # With only an identity configured, encrypt to its own public key.
        for identity in identities:
            public = str(identity.to_public())
            recipient_strings.append(public)
            recipients.append(identity.to_public())
    return KeySet(recipients=recipients, recipient_strings=recipient_strings, identities=identities)


def undecryptable_recipients(enc) -> list[str]:
    """The recipients of `backup.encryption` when an identity is configured and decrypts none
    of them: backups encrypted here could then never be verified or restored with the key the
    operator holds. Empty when the identity can decrypt, when no identity is configured (a host
    that only encrypts) or no recipient is (the identity's own key is used), or when a key file
    cannot be read (the command that needs it says so)."""
    if not enc.enabled or not (enc.recipients or enc.recipients_file):
        return []
    try:
        identities = load_identities(enc)
        keys = load_keys(enc)
    except TenangDBError:
        return []
    if not identities:
        return []
    own = {str(identity.to_public()) for identity in identities}
    if own & set(keys.recipient_strings):
        return []
    return keys.recipient_strings


def generate_identity_file(path: Path, force: bool = False) -> str:
    """Write a new age identity to `path` (0600, never overwritten unless forced); return its recipient."""
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    from datetime import datetime, timezone

    body = (
        f"# created: {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
        f"# public key: {public}\n{identity}\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise TenangDBError(f"{path} already exists; refusing to overwrite a key (use --force)") from None
    except OSError as exc:
        raise TenangDBError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)
        fh.write(body)
        fh.flush()
        os.fsync(fh.fileno())
    return public
