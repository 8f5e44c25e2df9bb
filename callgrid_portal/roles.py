"""The three roles of the portal, kept as Django groups.

``viewer`` reads, ``operator`` also edits buyers and sends test bids, ``admin`` does everything.
Superusers count as admins. The groups are created by a data migration.
"""

from typing import TYPE_CHECKING, cast

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

if TYPE_CHECKING:
    from django.contrib.auth.models import User

VIEWER = "viewer"
OPERATOR = "operator"
ADMIN = "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)

# Each role includes the ones before it.
_RANK = {VIEWER: 1, OPERATOR: 2, ADMIN: 3}


def user_role(user: AbstractBaseUser | AnonymousUser | None) -> str | None:
    """Return the strongest role of ``user``, or ``None`` when it has none."""
    if user is None or not user.is_authenticated or not user.is_active:
        return None
    # Authenticated, so not AnonymousUser: the portal's user model (AUTH_USER_MODEL is
    # django.contrib.auth's User) has is_superuser and groups.
    account = cast("User", user)
    if account.is_superuser:
        return ADMIN
    cached = getattr(account, "_callgrid_role", False)
    if cached is not False:
        return cast("str | None", cached)
    names = set(account.groups.values_list("name", flat=True))
    role = max((name for name in names if name in _RANK), key=_RANK.__getitem__, default=None)
    # A per-request memo on the user object, which no stub declares.
    account._callgrid_role = role  # type: ignore[attr-defined]
    return role


def has_role(user: AbstractBaseUser | AnonymousUser | None, role: str) -> bool:
    """Tell whether ``user`` holds ``role`` or a stronger one."""
    held = user_role(user)
    return held is not None and _RANK[held] >= _RANK[role]
