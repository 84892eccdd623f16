"""The four roles are Django groups; this table is the one place that says what each may do.

Later features add their permissions here (promotion requests, reviews, deployments).
"""

from django.contrib.auth.models import Group, Permission

from console import perms

VIEWER, ENGINEER, APPROVER, ADMIN = "viewer", "engineer", "approver", "admin"
ROLES = (VIEWER, ENGINEER, APPROVER, ADMIN)

_READ = [
    perms.VIEW_MODEL,
    perms.VIEW_VERSION,
    perms.VIEW_AUDIT,
    perms.VIEW_PROMOTION,
    perms.VIEW_ENVIRONMENT,
    perms.VIEW_DEPLOYMENT,
    perms.VIEW_ROLLOUT,
]
_REQUEST = [perms.REQUEST_PROMOTION, perms.COMMENT_PROMOTION]
_OPERATE = [perms.OPERATE_DEPLOYMENT]
_REVIEW = [perms.REVIEW_PROMOTION, perms.COMMENT_PROMOTION]
_ADMINISTER = [
    perms.SYNC_REGISTRY,
    perms.CANCEL_ANY_PROMOTION,
    perms.ADD_ENVIRONMENT,
    perms.CHANGE_ENVIRONMENT,
    perms.VIEW_WEBHOOK_DELIVERY,
    perms.VIEW_TARGET,
    perms.ADD_TARGET,
    perms.CHANGE_TARGET,
    perms.BREAK_GLASS,
]
_WRITE_REGISTRY = [
    perms.ADD_MODEL,
    perms.CHANGE_MODEL,
    perms.ADD_VERSION,
    perms.CHANGE_VERSION,
]

ROLE_PERMISSIONS = {
    VIEWER: _READ,
    ENGINEER: _READ + _WRITE_REGISTRY + _REQUEST + _OPERATE,
    APPROVER: _READ + _REVIEW,
    # Admins run the place but do not review: approving is for the environment's approver
    # group, so separation of duties holds even for them (add an admin to that group if needed).
    ADMIN: sorted(set(_READ + _WRITE_REGISTRY + _REQUEST + _OPERATE + _ADMINISTER)),
}


def ensure_roles(**kwargs):
    """Create the role groups and set their permissions exactly (idempotent)."""
    wanted = {perm for perms in ROLE_PERMISSIONS.values() for perm in perms}
    by_code = {}
    for perm in Permission.objects.select_related("content_type"):
        code = f"{perm.content_type.app_label}.{perm.codename}"
        if code in wanted:
            by_code[code] = perm
    if len(by_code) < len(wanted):
        return  # some app has not migrated yet; the next post_migrate finishes the job
    for role, granted in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([by_code[p] for p in granted])
