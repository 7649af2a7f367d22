"""age's passphrase (scrypt) format as stream/passphrase.py writes and reads it, checked against
pyrage (rage) in both directions, and every refusal the spec asks of a reader; the key ring
and key choice of stream/crypto.py. The real `age` binary reads our files in
tests/test_passphrase.py."""

from __future__ import annotations

import base64
import io
import os

import pytest
from pyrage import passphrase as rage_passphrase
from pyrage import x25519

from tenangdb.config.schema import EncryptionConfig
from tenangdb.errors import ConfigError
from tenangdb.stream import crypto
from tenangdb.stream.passphrase import (CHUNK, AgeFormatError, Passphrase, WrongPassphrase, decrypt_io,
                                        encrypt_io)

FAST = 10  # the work factor of files written here: the format, not the cost, is under test


def seal(data: bytes, secret: str = "correct horse battery staple", work: int = FAST) -> bytes:
    out = io.BytesIO()
    encrypt_io(io.BytesIO(data).read, out.write, Passphrase(secret, work))
    return out.getvalue()


def open_(sealed: bytes, *secrets: str) -> bytes:
    out = io.BytesIO()
    decrypt_io(io.BytesIO(sealed).read, out.write, [Passphrase(s) for s in secrets or ["correct horse battery staple"]])
    return out.getvalue()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17])
def test_our_files_open_with_rage_and_ours_at_every_chunk_boundary(size):
    data = os.urandom(size)
    sealed = seal(data)
    assert sealed.startswith(b"age-encryption.org/v1\n-> scrypt ")
    assert rage_passphrase.decrypt(sealed, "correct horse battery staple") == data
    assert open_(sealed) == data


def test_a_file_rage_wrote_opens_with_ours():
    # pyrage picks its own work factor (about a second of work), so one file only.
    data = os.urandom(CHUNK * 2 + 5)
    sealed = rage_passphrase.encrypt(data, "s3cret-from-rage")
    assert open_(sealed, "not it", "s3cret-from-rage") == data


def test_a_wrong_passphrase_is_told_apart_from_damage():
    sealed = seal(b"hello")
    with pytest.raises(WrongPassphrase):
        open_(sealed, "wrong")


def _x25519_file() -> bytes:
    import pyrage

    return pyrage.encrypt(b"data", [x25519.Identity.generate().to_public()])


def test_a_file_encrypted_to_recipients_is_the_wrong_key_for_a_passphrase():
    with pytest.raises(WrongPassphrase, match="recipients"):
        open_(_x25519_file())


def _header_lines(sealed: bytes) -> tuple[list[bytes], bytes]:
    head, _, rest = sealed.partition(b"\n---")
    return head.split(b"\n"), rest


def test_a_scrypt_stanza_beside_another_is_refused():
    lines, rest = _header_lines(seal(b"x"))
    mixed = b"\n".join(lines[:3] + [b"-> X25519 " + base64.b64encode(os.urandom(32)).rstrip(b"="),
                                    base64.b64encode(os.urandom(32)).rstrip(b"=")] + lines[3:]) + b"\n---" + rest
    with pytest.raises(AgeFormatError, match="mixes a passphrase stanza"):
        open_(mixed)


def test_a_work_factor_above_the_bound_is_refused_before_any_work():
    lines, rest = _header_lines(seal(b"x"))
    args = lines[1].split(b" ")
    lines[1] = b" ".join(args[:3] + [b"23"])
    with pytest.raises(AgeFormatError, match="2\\^23 is above"):
        open_(b"\n".join(lines) + b"\n---" + rest)
    lines[1] = b" ".join(args[:3] + [b"018"])  # the spec: no leading zero
    with pytest.raises(AgeFormatError, match="malformed"):
        open_(b"\n".join(lines) + b"\n---" + rest)


def test_an_altered_header_fails_its_mac():
    altered = seal(b"x")
    mac_at = altered.index(b"\n--- ") + 5
    flipped = altered[:mac_at] + (b"B" if altered[mac_at:mac_at + 1] != b"B" else b"C") + altered[mac_at + 1:]
    with pytest.raises(AgeFormatError):
        open_(flipped)


def test_truncation_and_damage_are_refused_even_at_a_chunk_boundary():
    data = os.urandom(3 * CHUNK)
    sealed = seal(data)
    payload_start = sealed.index(b"\n--- ") + 5 + 43 + 1 + 16
    cut_at_boundary = sealed[:payload_start + 2 * (CHUNK + 16)]
    with pytest.raises(AgeFormatError, match="ends early"):
        open_(cut_at_boundary)
    with pytest.raises(AgeFormatError):
        open_(sealed[:-1])
    damaged = bytearray(sealed)
    damaged[payload_start + 100] ^= 1
    with pytest.raises(AgeFormatError, match="damaged at chunk 0"):
        open_(bytes(damaged))
    with pytest.raises(AgeFormatError):
        open_(sealed + b"trailing")


def test_non_canonical_base64_is_refused():
    lines, rest = _header_lines(seal(b"x"))
    lines[1] = lines[1].replace(b" 10", b"= 10")
    with pytest.raises(AgeFormatError, match="base64"):
        open_(b"\n".join(lines) + b"\n---" + rest)


def test_the_passphrase_never_shows_in_its_repr():
    assert "hunter2" not in repr(Passphrase("hunter2"))


# --- which key encrypts (stream/crypto.py) ---

def enc(**values) -> EncryptionConfig:
    return EncryptionConfig.model_validate({"enabled": True, **values})


def test_a_passphrase_encrypts_only_when_nothing_else_gives_a_recipient(tmp_path):
    keys = crypto.load_keys(enc(key="a long passphrase of several words"))
    assert keys.mode == crypto.PASSPHRASE and keys.fingerprints() == []
    recipient = str(x25519.Identity.generate().to_public())
    keys = crypto.load_keys(enc(key="a long passphrase of several words", recipients=[recipient]))
    assert keys.mode == crypto.RECIPIENTS and keys.recipient_strings == [recipient]
    assert any(isinstance(i, Passphrase) for i in keys.identities)  # still reads older backups


def test_rotation_keeps_old_identities_and_encrypts_to_the_new_one(tmp_path):
    path = tmp_path / "key.txt"
    first = crypto.generate_identity_file(path)
    os.chmod(path, 0o600)
    done = crypto.rotate_identity_file(path)
    assert done.retired == [first] and done.recipient != first
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    ring = crypto.parse_keyring(path.read_text(), "key")
    assert [(e.recipient, bool(e.retired)) for e in ring] == [(done.recipient, False), (first, True)]
    keys = crypto.load_keys(enc(key_file=str(path)))
    assert keys.recipient_strings == [done.recipient]
    assert len(keys.identities) == 2
    again = crypto.rotate_identity_file(path)
    assert again.retired == [done.recipient]
    assert [bool(e.retired) for e in crypto.parse_keyring(path.read_text(), "key")] == [False, True, True]


def test_a_key_file_of_only_retired_identities_encrypts_to_nothing(tmp_path):
    path = tmp_path / "key.txt"
    crypto.generate_identity_file(path)
    path.write_text("# retired: 2026-01-01\n" + path.read_text())
    with pytest.raises(ConfigError, match="every identity in it is retired"):
        crypto.load_keys(enc(key_file=str(path)))


def test_key_needed_names_the_key_and_whether_it_is_here():
    identity = x25519.Identity.generate()
    mine = crypto.fingerprint(str(identity.to_public()))
    assert crypto.key_needed("recipients", [mine], [identity]) == (mine, True)
    assert crypto.key_needed("recipients", ["sha256:other"], [identity]) == ("sha256:other", False)
    assert crypto.key_needed("passphrase", [], [identity]) == ("passphrase", False)
    assert crypto.key_needed("passphrase", [], [Passphrase("p")]) == ("passphrase", True)


@pytest.mark.parametrize("secret, weak", [
    ("short", "shorter than 16"),
    ("aaaaaaaabbbbbbbbcccc", "fewer than 8 different"),
    ("your-encryption-key", "placeholder"),
    ("1357924680135792", "bits"),
    ("correct horse battery staple", None),
    ("Xk3#9vLq!2mZr8Tw", None),
])
def test_the_weak_passphrase_rule(secret, weak):
    found = crypto.passphrase_weakness(secret)
    assert (found is None) if weak is None else (weak in found)


def test_the_manifest_says_the_mode_and_older_manifests_mean_recipients():
    from tenangdb.repository.manifest import Encryption

    old = Encryption.model_validate({"enabled": True, "method": "age",
                                     "recipients": [{"recipient": "age1x", "fingerprint": "sha256:ab"}]})
    assert old.effective_mode == "recipients" and old.fingerprints == ["sha256:ab"]
    assert "mode" not in old.model_dump()  # written as before when absent
    new = Encryption.model_validate({"enabled": True, "method": "age", "mode": "passphrase", "recipients": []})
    assert new.effective_mode == "passphrase" and new.model_dump()["mode"] == "passphrase"
    assert Encryption().effective_mode is None
