"""notifications.crypto: round trips, plaintext passthrough, key sources, the key file, masks."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from notifications import crypto
from notifications.crypto import SecretError


@pytest.fixture(autouse=True)
def key_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No env key, the key file in a fresh directory, and no cipher cached from another test."""
    monkeypatch.delenv(crypto.KEY_ENV, raising=False)
    monkeypatch.setenv("EMBEDDED_DATA_DIR", str(tmp_path / "local"))
    monkeypatch.setattr(crypto, "_cache", None)
    return tmp_path / "local"


def use_env_key(monkeypatch: pytest.MonkeyPatch, *keys: bytes) -> None:
    monkeypatch.setenv(crypto.KEY_ENV, ",".join(key.decode() for key in keys))


@pytest.mark.parametrize("plain", ["", "x", "xoxb-1234-abcd", "pässwörd ✓ 🔒", "a" * 5000])
def test_round_trip(plain: str) -> None:
    stored = crypto.encrypt(plain)
    assert stored.startswith("enc:v1:")
    assert crypto.is_encrypted(stored)
    assert crypto.decrypt(stored) == plain


def test_the_stored_form_does_not_contain_the_plain_text() -> None:
    assert "xoxb-secret-token" not in crypto.encrypt("xoxb-secret-token")


def test_encrypting_an_encrypted_value_changes_nothing() -> None:
    stored = crypto.encrypt("token-123")
    assert crypto.encrypt(stored) == stored


@pytest.mark.parametrize("plain", ["", "https://hooks.example/abc", "enc:v2:not ours", "ENC:v1:x"])
def test_plain_values_pass_through(plain: str) -> None:
    assert not crypto.is_encrypted(plain)
    assert crypto.decrypt(plain) == plain


def test_encrypt_refuses_non_text() -> None:
    with pytest.raises(TypeError, match="only text"):
        crypto.encrypt(123)  # type: ignore[arg-type]


def test_a_token_from_another_key_raises_secret_error(monkeypatch: pytest.MonkeyPatch) -> None:
    use_env_key(monkeypatch, Fernet.generate_key())
    stored = crypto.encrypt("the secret")
    use_env_key(monkeypatch, Fernet.generate_key())
    with pytest.raises(SecretError, match=r"does not decrypt with the current key \(\$NOTIF"):
        crypto.decrypt(stored)


@pytest.mark.parametrize("stored", ["enc:v1:", "enc:v1:garbage", "enc:v1:ünïcode"])
def test_a_corrupt_token_raises_secret_error(stored: str) -> None:
    with pytest.raises(SecretError, match="key changed or the value is corrupt"):
        crypto.decrypt(stored)


def test_the_key_file_is_created_with_0600_and_reused(
    key_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = crypto.encrypt("the secret")
    key_file = key_dir / "notifications.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text()
    Fernet(key.strip().encode())  # a valid key
    monkeypatch.setattr(crypto, "_cache", None)  # as a new process would
    assert crypto.decrypt(stored) == "the secret"
    assert key_file.read_text() == key
    assert os.listdir(key_dir) == ["notifications.key"]  # no temporary file left


def test_a_lost_creation_race_keeps_the_winners_key(key_dir: Path) -> None:
    key_dir.mkdir()
    winner = Fernet.generate_key().decode() + "\n"
    (key_dir / "notifications.key").write_text(winner)
    crypto._create_key_file(key_dir / "notifications.key")
    assert (key_dir / "notifications.key").read_text() == winner
    assert os.listdir(key_dir) == ["notifications.key"]


def test_concurrent_first_uses_end_with_one_key(key_dir: Path) -> None:
    path = key_dir / "notifications.key"
    start = threading.Barrier(8)
    keys: list[str] = []

    def first_use() -> None:
        start.wait()
        keys.append(crypto._read_or_create_key_file(path))

    threads = [threading.Thread(target=first_use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8
    assert set(keys) == {path.read_text().strip()}


def test_the_env_key_wins_over_the_key_file(key_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    crypto.encrypt("creates the file")
    env_key = Fernet.generate_key()
    use_env_key(monkeypatch, env_key)
    stored = crypto.encrypt("the secret")
    assert Fernet(env_key).decrypt(stored.removeprefix("enc:v1:").encode()) == b"the secret"


def test_an_env_key_means_no_key_file(key_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_env_key(monkeypatch, Fernet.generate_key())
    crypto.encrypt("x")
    assert not key_dir.exists()


def test_several_env_keys_rotate(monkeypatch: pytest.MonkeyPatch) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    use_env_key(monkeypatch, old)
    stored_with_old = crypto.encrypt("the secret")
    use_env_key(monkeypatch, new, old)
    assert crypto.decrypt(stored_with_old) == "the secret"
    stored_with_new = crypto.encrypt("the secret")
    assert Fernet(new).decrypt(stored_with_new.removeprefix("enc:v1:").encode()) == b"the secret"


@pytest.mark.parametrize("bad_key", ["not-a-key", "short", "é" * 44])
def test_a_bad_env_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, bad_key: str) -> None:
    monkeypatch.setenv(crypto.KEY_ENV, bad_key)
    with pytest.raises(SecretError, match=r"\$NOTIFICATIONS_KEY does not hold a valid Fernet key"):
        crypto.encrypt("x")


def test_a_bad_key_file_is_a_clear_error(key_dir: Path) -> None:
    key_dir.mkdir()
    (key_dir / "notifications.key").write_text("garbage\n")
    with pytest.raises(SecretError, match=r"notifications\.key does not hold a valid Fernet key"):
        crypto.encrypt("x")


def test_a_key_file_readable_by_others_is_warned_about(
    key_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    crypto.encrypt("creates the file")
    (key_dir / "notifications.key").chmod(0o644)
    crypto._cache = None
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="notifications.crypto"):
        crypto.encrypt("x")
    assert [r.event for r in caplog.records] == ["notifications.key_file_permissions"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, ""),
        ("", ""),
        ("abc", "••••"),
        ("12345678901", "••••"),  # 11: too short to reveal anything
        ("123456789012", "••••9012"),
        ("https://hooks.slack.com/services/T0/B0/xyzw", "••••xyzw"),
    ],
)
def test_mask(value: str | None, shown: str) -> None:
    assert crypto.mask(value) == shown
    if value:
        assert (
            crypto.mask(crypto.encrypt(value)) == shown
        )  # the plain secret's tail, not the token's
        assert crypto.is_mask(shown)


def test_mask_of_an_undecryptable_value_does_not_raise() -> None:
    assert crypto.mask("enc:v1:garbage") == "•••• (undecryptable)"


def test_field_helpers_touch_only_the_named_fields() -> None:
    config = {"url": "https://x.example/hook", "token": "secret-token-1234", "blank": "", "n": 3}
    stored = crypto.encrypt_fields(config, ("token", "blank", "n"))
    assert stored["url"] == config["url"]
    assert stored["token"].startswith("enc:v1:")
    assert stored["blank"] == ""  # nothing to hide
    assert stored["n"] == 3  # only text is encrypted
    assert crypto.decrypt_fields(stored, ("token",)) == config
    masked = crypto.mask_fields(stored, ("token", "n"))
    assert masked == {"url": config["url"], "token": "••••1234", "blank": "", "n": "••••"}
