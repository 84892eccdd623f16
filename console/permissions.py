"""Server-side permission checks shared by the pages and the API."""

from django.contrib.auth.mixins import PermissionRequiredMixin
from rest_framework.permissions import BasePermission

from console.accounts.roles import ROLE_PERMISSIONS


def roles_granting(perm: str) -> list[str]:
    return [role for role, perms in ROLE_PERMISSIONS.items() if perm in perms]


def denial_message(perm: str) -> str:
    roles = " or ".join(roles_granting(perm)) or "admin"
    return f"You do not have permission to do this ({perm}); it needs the {roles} role."


class MethodPermissions(BasePermission):
    """Reads ``view.permissions_by_method = {"GET": "app.perm", "POST": "app.perm"}``.

    A method missing from the map is refused: new endpoints are closed until
    someone decides who may call them.
    """

    def has_permission(self, request, view):
        user = request.user
        if not user or not user.is_authenticated:
            return False
        perm = view.permissions_by_method.get(request.method)
        if request.method in ("HEAD", "OPTIONS"):
            perm = view.permissions_by_method.get("GET", perm)
        if perm is None:
            self.message = f"{request.method} is not allowed here."
            return False
        if not user.has_perm(perm):
            self.message = denial_message(perm)
            return False
        return True


class PermissionRequired(PermissionRequiredMixin):
    """For pages: 403 with a message that names the role needed (never a login loop)."""

    raise_exception = True

    def get_permission_denied_message(self):
        perms = self.get_permission_required()
        return denial_message(perms[0]) if perms else super().get_permission_denied_message()
