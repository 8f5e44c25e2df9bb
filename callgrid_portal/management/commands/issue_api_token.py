"""Issue (or revoke) API tokens for a user: ``manage.py issue_api_token USERNAME``."""

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from knox.models import AuthToken
from knox.settings import knox_settings


class Command(BaseCommand):
    help = (
        "Print a new API token for USERNAME (send it as 'Authorization: Token <token>'). "
        "Only the token goes to stdout, so a script can capture it; it is stored hashed and "
        "cannot be shown again. --revoke-all deletes the user's tokens instead."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--expires-days",
            type=int,
            default=None,
            metavar="N",
            help="Days until the token expires; 0 never expires. Default: API_TOKEN_TTL_DAYS.",
        )
        parser.add_argument(
            "--revoke-all",
            action="store_true",
            help="Delete every token of the user and issue none.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = options["username"]
        user_model = get_user_model()
        try:
            user = user_model._default_manager.get_by_natural_key(username)
        except user_model.DoesNotExist:
            raise CommandError(f"No user named {username!r}.") from None

        if options["revoke_all"]:
            deleted, _ = AuthToken.objects.filter(user=user).delete()
            # Messages go to stderr: stdout carries tokens only.
            self.stderr.write(f"Revoked {deleted} token(s) of {username}.")
            return

        if not user.is_active:
            raise CommandError(f"User {username!r} is inactive; its tokens would be refused.")
        days = options["expires_days"]
        if days is None:
            expiry = knox_settings.TOKEN_TTL
        elif days < 0:
            raise CommandError("--expires-days must be 0 (never) or more.")
        else:
            expiry = timedelta(days=days) if days else None
        _instance, token = AuthToken.objects.create(user=user, expiry=expiry)
        self.stdout.write(token)
