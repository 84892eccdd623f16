"""The four roles are Django groups; this table is the one place that says what each may do.

Later features add their permissions here (promotion requests, reviews, deployments).
"""

from django.contrib.auth.models import Group, Permission

VIEWER, ENGINEER, APPROVER, ADMIN = "viewer", "engineer", "approver", "admin"
ROLES = (VIEWER, ENGINEER, APPROVER, ADMIN)

_READ = [
    "registry.view_registeredmodel",
    "registry.view_modelversion",
    "audit.view_auditevent",
    "promotions.view_promotionrequest",
    "promotions.view_environment",
    "deployer.view_deployment",
    "deployer.view_rollout",
]
_REQUEST = ["promotions.add_promotionrequest", "promotions.comment_promotionrequest"]
_OPERATE = ["deployer.operate_deployment"]
_REVIEW = ["promotions.review_promotionrequest", "promotions.comment_promotionrequest"]
_ADMINISTER = [
    "registry.sync_registry",
    "promotions.cancel_any_promotionrequest",
    "promotions.add_environment",
    "promotions.change_environment",
    "promotions.view_webhookdelivery",
    "deployer.view_deploymenttarget",
    "deployer.add_deploymenttarget",
    "deployer.change_deploymenttarget",
    "deployer.break_glass_deployment",
]
_WRITE_REGISTRY = [
    "registry.add_registeredmodel",
    "registry.change_registeredmodel",
    "registry.add_modelversion",
    "registry.change_modelversion",
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
    for role, perms in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set([by_code[p] for p in perms])
