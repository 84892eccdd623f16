"""Every permission the code checks, by name: the one place each ``app.codename`` is written.

Page views, the API's ``permissions_by_method`` maps, services and the role table
(``console/accounts/roles.py``) use these names. Templates check the same permissions
through Django's ``perms`` (``{% if perms.registry.add_registeredmodel %}``). This module
imports nothing, so every layer may use it.
"""

# The registry (registry/)
VIEW_MODEL = "registry.view_registeredmodel"
ADD_MODEL = "registry.add_registeredmodel"
CHANGE_MODEL = "registry.change_registeredmodel"
VIEW_VERSION = "registry.view_modelversion"
ADD_VERSION = "registry.add_modelversion"
CHANGE_VERSION = "registry.change_modelversion"
SYNC_REGISTRY = "registry.sync_registry"

# The audit trail (console/audit/)
VIEW_AUDIT = "audit.view_auditevent"

# Promotions (registry/promotions/)
VIEW_PROMOTION = "promotions.view_promotionrequest"
REQUEST_PROMOTION = "promotions.add_promotionrequest"
COMMENT_PROMOTION = "promotions.comment_promotionrequest"
REVIEW_PROMOTION = "promotions.review_promotionrequest"
CANCEL_ANY_PROMOTION = "promotions.cancel_any_promotionrequest"
VIEW_ENVIRONMENT = "promotions.view_environment"
ADD_ENVIRONMENT = "promotions.add_environment"
CHANGE_ENVIRONMENT = "promotions.change_environment"
VIEW_WEBHOOK_DELIVERY = "promotions.view_webhookdelivery"

# The deployer (deployer/)
VIEW_DEPLOYMENT = "deployer.view_deployment"
VIEW_ROLLOUT = "deployer.view_rollout"
OPERATE_DEPLOYMENT = "deployer.operate_deployment"
BREAK_GLASS = "deployer.break_glass_deployment"
VIEW_TARGET = "deployer.view_deploymenttarget"
ADD_TARGET = "deployer.add_deploymenttarget"
CHANGE_TARGET = "deployer.change_deploymenttarget"
