"""Recipients the configured identity cannot decrypt are refused when the config is loaded."""

from __future__ import annotations

from test_failures import only_line


def _new_key(env, name: str) -> tuple[str, str]:
    path = env.root / name
    done = env.cli("key", "generate", "-o", str(path))
    assert done.returncode == 0, done.stderr
    return str(path), done.stdout.strip()


def test_recipients_the_key_file_cannot_decrypt_are_a_config_error(env, sample_db):
    key_file, _ = _new_key(env, "ours.txt")
    _, theirs = _new_key(env, "theirs.txt")
    cfg = env.write_config({"backup": {"databases": [sample_db], "encryption": {
        "enabled": True, "recipients": [theirs], "key_file": key_file}}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 2, done.stderr
    line = only_line(done.stderr)
    assert str(cfg) in line and theirs[:14] in line and "allow_foreign_recipients" in line, line
    assert not env.backups_of(sample_db)


def test_allow_foreign_recipients_backs_up_with_a_warning(env, sample_db):
    key_file, _ = _new_key(env, "ours.txt")
    _, theirs = _new_key(env, "theirs.txt")
    cfg = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump", "encryption": {
        "enabled": True, "recipients": [theirs], "key_file": key_file, "allow_foreign_recipients": True}}})
    done = env.cli("backup", config=cfg)
    assert done.returncode == 0, done.stderr
    assert "decrypts none of the recipients" in done.stderr
    assert len(env.backups_of(sample_db)) == 1


def test_recipients_without_an_identity_or_with_ours_among_them_are_fine(env, sample_db):
    # A host that must not read its backups holds only the recipients: the recommended setup.
    key_file, ours = _new_key(env, "ours.txt")
    _, theirs = _new_key(env, "theirs.txt")
    only = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump", "encryption": {
        "enabled": True, "recipients": [theirs]}}}, name="only.yaml")
    done = env.cli("backup", config=only)
    assert done.returncode == 0 and "decrypts none" not in done.stderr, done.stderr
    both = env.write_config({"backup": {"databases": [sample_db], "engine": "mysqldump", "encryption": {
        "enabled": True, "recipients": [theirs, ours], "key_file": key_file}}}, name="both.yaml")
    done = env.cli("backup", "--force", config=both)
    assert done.returncode == 0 and "decrypts none" not in done.stderr, done.stderr
    newest = env.backups_of(sample_db)[-1]
    assert env.cli("verify", "-b", str(newest), config=both).returncode == 0


def test_an_unexpected_file_problem_is_one_line_naming_the_path(offline_env):
    blocker = offline_env.root / "a-file"
    blocker.write_text("")
    done = offline_env.cli("key", "generate", "-o", str(blocker / "key.txt"))
    assert done.returncode == 1, done.stderr
    assert only_line(done.stderr).startswith(f"error: {blocker}") and "internal error" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
