"""Secrets at rest: Fernet encryption of provider secrets, stored as ``enc:v1:<token>``.

The key comes from the environment variable ``NOTIFICATIONS_KEY`` (a Fernet key; several keys
separated by commas rotate: the first encrypts, all decrypt) or else from the key file
``<EMBEDDED_DATA_DIR or <checkout>/.local>/notifications.key``, created with 0600 permissions
on first use. Creating it is atomic: the key is written to a private temporary file that is then
hard-linked into place, which fails if another process won the race; the loser reads the
winner's key, so every process ends up with the same one.

A value without the ``enc:v1:`` prefix is plaintext and passes through ``decrypt`` unchanged, so
rows written before encryption keep working (and are encrypted on their next save). A token that
does not decrypt raises ``SecretError``: never garbage, never a silent empty secret.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

logger = logging.getLogger(__name__)

PREFIX = "enc:v1:"
KEY_ENV = "NOTIFICATIONS_KEY"
KEY_FILE_NAME = "notifications.key"
MASK = "••••"
# Below this length the last 4 characters would give away too much of the secret.
MASK_REVEAL_MIN_LENGTH = 12
CHECKOUT_DIR = Path(__file__).resolve().parent.parent


class SecretError(Exception):
    """A key that cannot be used, or a stored secret that does not decrypt with it."""


def encrypt(text: str) -> str:
    """``text`` encrypted in its stored form; an already encrypted value is returned as is."""
    if not isinstance(text, str):
        raise TypeError(f"only text can be encrypted, got {type(text).__name__}")
    if is_encrypted(text):
        return text
    return PREFIX + _fernet().encrypt(text.encode()).decode("ascii")


def decrypt(value: str) -> str:
    """The plain text of a stored value; plaintext (no prefix) passes through unchanged."""
    if not is_encrypted(value):
        return value
    try:
        return _fernet().decrypt(value[len(PREFIX) :].encode("ascii")).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise SecretError(
            f"a stored secret does not decrypt with the current key ({key_source()}): the key "
            "changed or the value is corrupt. Enter the secret again, or restore the old key."
        ) from exc


def is_encrypted(value: object) -> bool:
    return isinstance(value, str) and value.startswith(PREFIX)


def mask(value: str | None) -> str:
    """``••••1234``: the last 4 of the plain secret if long enough, else ``••••``; "" if unset.

    Never raises: a value that does not decrypt is shown as ``•••• (undecryptable)``.
    """
    if not value:
        return ""
    try:
        plain = decrypt(value)
    except SecretError:
        return f"{MASK} (undecryptable)"
    return MASK + plain[-4:] if len(plain) >= MASK_REVEAL_MIN_LENGTH else MASK


def is_mask(value: object) -> bool:
    """True for what ``mask`` produces: a form that sends a mask back means "keep the secret"."""
    return isinstance(value, str) and value.startswith(MASK)


def encrypt_fields(config: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """A copy of ``config`` with the non-empty text values of ``fields`` encrypted."""
    wanted = set(fields)
    return {
        name: encrypt(value) if name in wanted and isinstance(value, str) and value else value
        for name, value in config.items()
    }


def decrypt_fields(config: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """A copy of ``config`` with ``fields`` decrypted (the sender's view). May raise SecretError."""
    wanted = set(fields)
    return {
        name: decrypt(value) if name in wanted and isinstance(value, str) else value
        for name, value in config.items()
    }


def mask_fields(config: dict[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """A copy of ``config`` fit for display and logs: ``fields`` masked, whatever their type."""
    wanted = set(fields)
    return {
        name: (mask(value) if isinstance(value, str) else MASK) if name in wanted else value
        for name, value in config.items()
    }


def key_file_path() -> Path:
    local_dir = os.environ.get("EMBEDDED_DATA_DIR") or CHECKOUT_DIR / ".local"
    return Path(local_dir) / KEY_FILE_NAME


def key_source() -> str:
    """Where the key comes from, for messages (never the key itself)."""
    return f"${KEY_ENV}" if os.environ.get(KEY_ENV) else str(key_file_path())


_cache: tuple[str, MultiFernet] | None = None


def _fernet() -> MultiFernet:
    """The cipher of the current key source, built once per source (env value or file path)."""
    global _cache
    env_keys = os.environ.get(KEY_ENV, "").strip()
    source = f"env:{env_keys}" if env_keys else f"file:{key_file_path()}"
    if _cache is None or _cache[0] != source:
        keys = env_keys.split(",") if env_keys else [_read_or_create_key_file(key_file_path())]
        _cache = (source, MultiFernet([_make_fernet(key.strip(), source) for key in keys]))
    return _cache[1]


def _make_fernet(key: str, source: str) -> Fernet:
    try:
        return Fernet(key.encode("ascii"))
    except (ValueError, UnicodeError) as exc:
        where = f"${KEY_ENV}" if source.startswith("env:") else source.removeprefix("file:")
        raise SecretError(
            f"{where} does not hold a valid Fernet key (32 url-safe base64-encoded bytes); "
            'generate one with: python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())"'
        ) from exc


def _read_or_create_key_file(path: Path) -> str:
    if not path.exists():
        _create_key_file(path)
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        logger.warning(
            "key file %s is readable by others (mode %o); chmod 600 it",
            path,
            mode,
            extra={"event": "notifications.key_file_permissions", "path": str(path)},
        )
    return path.read_text().strip()


def _create_key_file(path: Path) -> None:
    """Write a new key to ``path`` unless another process does first (then keep theirs)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with O_EXCL and mode 0600; link() publishes it complete or not
    # at all, and fails if the name exists, so a reader never sees a half-written key.
    fd, tmp = tempfile.mkstemp(prefix=".notifications.key.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(Fernet.generate_key().decode("ascii") + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
            logger.info(
                "created notifications key file %s",
                path,
                extra={"event": "notifications.key_file_created", "path": str(path)},
            )
    finally:
        os.unlink(tmp)
