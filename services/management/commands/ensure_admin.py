"""``manage.py ensure_admin``: make sure a fresh install has an admin login.

With the embedded database (no DATABASE_URL) and no superuser yet, it creates ``admin`` with a
random password written to ``<embedded data dir>/admin-password`` (mode 0600) and says where.
With a DATABASE_URL it creates nothing: that database belongs to someone who chooses their
own credentials, so it only says how to run ``createsuperuser``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from services import embedded

ADMIN_USERNAME = "admin"


def admin_password_file() -> Path:
    return embedded.LOCAL_DIR / "admin-password"


def write_secret(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by the owner only, also when the file existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text + "\n")


class Command(BaseCommand):
    help = "Create an 'admin' superuser on the embedded database if there is no superuser yet."

    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            self._report_existing()
        elif not settings.EMBEDDED_POSTGRES:
            self.stdout.write(
                "No admin login yet. Create one with: python manage.py createsuperuser"
            )
        elif users.filter(username=ADMIN_USERNAME).exists():
            # Someone made a plain user called admin; promoting it silently would be a surprise.
            self.stdout.write(
                f"A user {ADMIN_USERNAME!r} exists but is no superuser. "
                "Create one with: python manage.py createsuperuser"
            )
        else:
            self._create_admin()

    def _report_existing(self) -> None:
        password_file = admin_password_file()
        if settings.EMBEDDED_POSTGRES and password_file.exists():
            self.stdout.write(f"Admin login: user {ADMIN_USERNAME!r}, password in {password_file}")

    def _create_admin(self) -> None:
        password = secrets.token_urlsafe(18)
        password_file = admin_password_file()
        # The file first: a user whose password was never saved anywhere is a locked door.
        write_secret(password_file, password)
        with transaction.atomic():
            get_user_model().objects.create_superuser(
                username=ADMIN_USERNAME, email="", password=password
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Created admin login: user {ADMIN_USERNAME!r}, password in {password_file}"
            )
        )
