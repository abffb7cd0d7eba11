"""manage.py create_demo_user: a signed-in identity for local development only."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from accounts.roles import ADMINS

USERNAME = "demo"
PASSWORD = "demo"  # noqa: S105  (development mode only: the command refuses to run otherwise)


class Command(BaseCommand):
    help = "Create (or reset) the development user demo/demo: staff, superuser, in every role."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("create_demo_user runs in development mode only (DJANGO_DEBUG=1).")
        user, _ = get_user_model().objects.get_or_create(username=USERNAME)
        user.is_staff = user.is_superuser = user.is_active = True
        if not user.check_password(PASSWORD):
            user.set_password(PASSWORD)
        user.save()
        user.groups.add(Group.objects.get(name=ADMINS))
        self.stdout.write(f"Sign in as {USERNAME} / {PASSWORD} (GraphQL `login` mutation, or the admin at /admin/).")
