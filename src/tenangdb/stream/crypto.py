"""age keys: parse recipients, identities and passphrases, generate and rotate identities,
fingerprint recipients.

A key file is an age identity file (`age -d -i FILE` reads it as it is) that may hold several
identities: `tenangdb key rotate` puts a new one first and keeps the old ones below it, each
marked by a `# retired: DATE` comment. Backups are encrypted to the identities that are not
retired; every identity in the file decrypts.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pyrage
from pyrage import ssh, x25519

from tenangdb.errors import ConfigError, TenangDBError
from tenangdb.fileio import write_atomically
from tenangdb.secrets import redact
from tenangdb.stream.passphrase import DEFAULT_WORK_FACTOR, Passphrase

RETIRED = "# retired:"
PASSPHRASE = "passphrase"
RECIPIENTS = "recipients"


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


@dataclass
class KeyringEntry:
    identity: object  # a pyrage x25519 identity
    retired: str | None  # the `# retired:` comment's date, None for a current identity

    @property
    def recipient(self) -> str:
        return str(self.identity.to_public())


def parse_keyring(text: str, origin: str) -> list[KeyringEntry]:
    """Every identity of an age identity file, each with whether a `# retired:` comment
    (in the comments right above it) marks it as kept only for older backups."""
    entries: list[KeyringEntry] = []
    retired: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith(RETIRED):
                retired = line[len(RETIRED):].strip().split(" ", 1)[0] or "yes"
            continue
        redact.add(line)
        if not line.startswith("AGE-SECRET-KEY-1"):
            raise ConfigError(f"{origin}: not an age identity (expected AGE-SECRET-KEY-1…; a passphrase goes in "
                              "backup.encryption.key or TENANGDB_ENCRYPTION_KEY)")
        try:
            entries.append(KeyringEntry(x25519.Identity.from_str(line), retired))
        except pyrage.IdentityError:
            raise ConfigError(f"{origin}: the age identity is malformed") from None
        retired = None
    if not entries:
        raise ConfigError(f"{origin}: holds no age identity")
    return entries


def parse_identities(text: str, origin: str) -> list:
    return [entry.identity for entry in parse_keyring(text, origin)]


def is_identity_text(text: str) -> bool:
    """An age identity (or several), rather than a passphrase."""
    return any(line.startswith("AGE-SECRET-KEY-") for line in _key_lines(text))


def read_key_file(path: str, origin: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{origin}: {path} does not exist") from None
    except PermissionError:
        raise ConfigError(f"{origin}: {path} is not readable by this user") from None


def configured_passphrase(enc) -> Passphrase | None:
    """`backup.encryption.key` when it is a passphrase rather than an age identity. Taken as
    written but for a trailing line break (what `age -d` reads from its prompt)."""
    if enc.key is None or not enc.key.get_secret_value() or is_identity_text(enc.key.get_secret_value()):
        return None
    secret = enc.key.get_secret_value().rstrip("\r\n")
    redact.add(secret)
    return Passphrase(secret, getattr(enc, "passphrase_work_factor", DEFAULT_WORK_FACTOR))


def load_keyring(enc) -> list[KeyringEntry]:
    """The age identities of `backup.encryption.key` and `key_file`, possibly none."""
    entries: list[KeyringEntry] = []
    if enc.key is not None and enc.key.get_secret_value() and is_identity_text(enc.key.get_secret_value()):
        entries += parse_keyring(enc.key.get_secret_value(), "backup.encryption.key")
    if enc.key_file:
        entries += parse_keyring(read_key_file(enc.key_file, "backup.encryption.key_file"),
                                 "backup.encryption.key_file")
    return entries


def load_identities(enc) -> list:
    """What decrypts: the configured age identities (retired ones too) and the passphrase."""
    passphrase = configured_passphrase(enc)
    return [entry.identity for entry in load_keyring(enc)] + ([passphrase] if passphrase else [])


@dataclass
class KeySet:
    recipients: list  # pyrage recipient objects, or one Passphrase, to encrypt to
    recipient_strings: list[str]
    identities: list  # pyrage identity objects and Passphrases, to decrypt with

    @property
    def mode(self) -> str:
        return PASSPHRASE if any(isinstance(r, Passphrase) for r in self.recipients) else RECIPIENTS

    def fingerprints(self) -> list[dict[str, str]]:
        return [{"recipient": r, "fingerprint": fingerprint(r)} for r in self.recipient_strings]


def load_keys(enc) -> KeySet:
    """Recipients and identities from `backup.encryption` (an EncryptionConfig).

    Recipients come first: the configured ones, else the public keys of the current (not
    retired) identities, and only when there is neither, the passphrase. A passphrase beside
    recipients or an identity is therefore only one more way to read (older) backups: age
    forbids a passphrase stanza beside any other, and a recipient is the safer of the two.
    """
    recipient_strings: list[str] = []
    for text in enc.recipients:
        recipient_strings.append(text.strip())
    if enc.recipients_file:
        content = read_key_file(enc.recipients_file, "backup.encryption.recipients_file")
        recipient_strings += _key_lines(content)
    keyring = load_keyring(enc)
    passphrase = configured_passphrase(enc)
    identities = [entry.identity for entry in keyring] + ([passphrase] if passphrase else [])
    recipients = [parse_recipient(text, "backup.encryption.recipients") for text in recipient_strings]
    if not recipients:
        current = [entry for entry in keyring if entry.retired is None]
        if keyring and not current:
            raise ConfigError("backup.encryption.key_file: every identity in it is retired; run "
                              "`tenangdb key rotate` to add a current one")
        for entry in current:
            recipient_strings.append(entry.recipient)
            recipients.append(entry.identity.to_public())
    if not recipients and passphrase is not None:
        recipients = [passphrase]
    return KeySet(recipients=recipients, recipient_strings=recipient_strings, identities=identities)


def undecryptable_recipients(enc) -> list[str]:
    """The recipients of `backup.encryption` when an identity is configured and decrypts none
    of them: backups encrypted here could then never be verified or restored with the key the
    operator holds. Empty when the identity can decrypt, when no identity is configured (a host
    that only encrypts; a passphrase beside recipients only reads older backups) or no recipient
    is (the identity's own key is used), or when a key file cannot be read (the command that
    needs it says so)."""
    if not enc.enabled or not (enc.recipients or enc.recipients_file):
        return []
    try:
        keyring = load_keyring(enc)
        keys = load_keys(enc)
    except TenangDBError:
        return []
    if not keyring:
        return []
    own = {entry.recipient for entry in keyring}
    if own & set(keys.recipient_strings):
        return []
    return keys.recipient_strings


def key_needed(mode: str | None, fingerprints: list[str], identities: list) -> tuple[str, bool]:
    """What a backup encrypted in `mode` to `fingerprints` needs, said briefly, and whether one
    of `identities` is it (a passphrase counts as available; only decrypting proves it right)."""
    if mode == PASSPHRASE:
        return PASSPHRASE, any(isinstance(i, Passphrase) for i in identities)
    have = {fingerprint(str(i.to_public())) for i in identities if not isinstance(i, Passphrase)}
    if not fingerprints:  # an older manifest that did not record them
        return "age identity", bool(have)
    needed = ",".join(sorted(fingerprints))
    return needed, bool(set(fingerprints) & have)


def _identity_block(identity, comments: list[str]) -> str:
    return "".join(f"# {c}\n" for c in comments) + f"# public key: {identity.to_public()}\n{identity}\n"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def generate_identity_file(path: Path, force: bool = False) -> str:
    """Write a new age identity to `path` (0600, never overwritten unless forced); return its recipient."""
    identity = x25519.Identity.generate()
    public = str(identity.to_public())
    body = _identity_block(identity, [f"created: {_now()}"])
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


@dataclass
class Rotation:
    recipient: str  # the new identity's public key
    retired: list[str]  # the public keys it replaces, kept in the file


def rotate_identity_file(path: Path) -> Rotation:
    """Put a new identity first in the key file at `path` and mark the current ones retired,
    keeping every identity so that older backups still decrypt. The file is replaced
    atomically (0600): a crash leaves the old file or the new, never half of one."""
    text = read_key_file(str(path), "key file")
    old = parse_keyring(text, str(path))
    stamp = _now()
    current = [e.recipient for e in old if e.retired is None]
    lines = []
    for raw in text.splitlines():
        # A current identity gets its retired mark right above it, after its own comments.
        if raw.strip().startswith("AGE-SECRET-KEY-1") and any(
                e.retired is None and str(e.identity) == raw.strip() for e in old):
            lines.append(f"{RETIRED} {stamp} by `tenangdb key rotate`; kept to read older backups")
        lines.append(raw)
    identity = x25519.Identity.generate()
    redact.add(str(identity))
    body = _identity_block(identity, [f"created: {stamp}", "current: new backups are encrypted to this key"])
    # The file keeps its owner and (never wider than 0640) its mode: a key file that root
    # rotates for a service user must stay readable by that user.
    st = path.stat()
    write_atomically(path, (body + "\n".join(lines) + "\n").encode(), st.st_mode & 0o640)
    if os.geteuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
        os.chown(path, st.st_uid, st.st_gid)
    return Rotation(recipient=str(identity.to_public()), retired=current)


# Words of the examples in our docs and the security guide, and the usual placeholders: a
# passphrase containing one was copied, not chosen.
_PLACEHOLDERS = ("your-encryption-key", "your-secure-password", "strong_password_here", "changeme", "change-me",
                 "password", "passphrase", "secret", "example", "tenangdb", "123456", "qwerty")
MIN_PASSPHRASE = 16
MIN_BITS = 72


def passphrase_weakness(secret: str) -> str | None:
    """Why a passphrase is weak, or None. The rule (docs/SECURITY.md): at least 16 characters,
    at least 8 different ones, no placeholder or example word, and at least 72 bits by a
    generous estimate (length × log2 of the alphabet its character classes span). It catches
    short, repetitive and copied passphrases; it cannot see a quotation or a name."""
    if len(secret) < MIN_PASSPHRASE:
        return f"shorter than {MIN_PASSPHRASE} characters"
    if len(set(secret)) < 8:
        return "fewer than 8 different characters"
    lowered = secret.lower()
    for word in _PLACEHOLDERS:
        if word in lowered:
            return f"contains the placeholder {word!r}"
    alphabet = sum(size for present, size in (
        (any(c.islower() for c in secret), 26), (any(c.isupper() for c in secret), 26),
        (any(c.isdigit() for c in secret), 10), (any(not c.isalnum() for c in secret), 33)) if present)
    import math

    bits = len(secret) * math.log2(max(alphabet, 2))
    if bits < MIN_BITS:
        return f"about {bits:.0f} bits by length and character classes, under {MIN_BITS}"
    return None


def round_trip(keys: KeySet) -> str | None:
    """Encrypt a test blob as backups are, and decrypt it with the identities: None when it
    comes back, else what went wrong (never a secret)."""
    import io

    from tenangdb.stream import passphrase

    blob = os.urandom(64)
    try:
        if keys.mode == PASSPHRASE:
            sealed, opened = io.BytesIO(), io.BytesIO()
            passphrase.encrypt_io(io.BytesIO(blob).read, sealed.write, keys.recipients[0])
            passphrase.decrypt_io(io.BytesIO(sealed.getvalue()).read, opened.write,
                                  [i for i in keys.identities if isinstance(i, Passphrase)])
            back = opened.getvalue()
        else:
            back = pyrage.decrypt(pyrage.encrypt(blob, keys.recipients),
                                  [i for i in keys.identities if not isinstance(i, Passphrase)])
    except Exception as exc:  # noqa: BLE001 - pyrage raises its own error types
        return type(exc).__name__
    return None if back == blob else "it came back different"
