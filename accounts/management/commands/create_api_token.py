"""manage.py create_api_token USERNAME [--name N] [--expires-in-days D]"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.tokens import token_create

MAX_DAYS = 3650  # ten years; far enough for "never" to be the honest choice beyond it


class Command(BaseCommand):
    help = "Issue an API token for a user and print it; it is shown this once only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="api", help="What the token is for (default: api).")
        parser.add_argument("--expires-in-days", type=int, default=None, help="Days until it expires (default: never).")

    def handle(self, *args: Any, username: str, name: str, expires_in_days: int | None, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"There is no user {username!r}.")
        if not user.is_active:
            raise CommandError(f"The user {username!r} is inactive.")
        if expires_in_days is not None and not 1 <= expires_in_days <= MAX_DAYS:
            raise CommandError(f"--expires-in-days must be from 1 to {MAX_DAYS}.")
        name = name.strip()
        if not name or len(name) > 100:
            raise CommandError("--name must be 1 to 100 characters.")
        expires_in = dt.timedelta(days=expires_in_days) if expires_in_days is not None else None
        issued = token_create(user=user, name=name, expires_in=expires_in)
        expiry = f"expires {issued.token.expires_at:%Y-%m-%d %H:%M %Z}" if issued.token.expires_at else "never expires"
        self.stderr.write(f"Token {name!r} for {username} ({expiry}). Store it now; it cannot be shown again.")
        self.stdout.write(issued.secret)
