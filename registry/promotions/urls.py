from django.urls import path

from . import views

app_name = "promotions"

# Included at the site root, so the paths are written in full.
urlpatterns = [
    path("promotions/", views.request_list, name="list"),
    path("promotions/inbox/", views.inbox, name="inbox"),
    path("promotions/<int:pk>/", views.request_detail, name="detail"),
    path("promotions/<int:pk>/approve/", views.request_approve, name="approve"),
    path("promotions/<int:pk>/reject/", views.request_reject, name="reject"),
    path("promotions/<int:pk>/cancel/", views.request_cancel, name="cancel"),
    path("promotions/<int:pk>/comment/", views.request_comment, name="comment"),
    path("models/<str:name>/versions/<int:version>/promote/", views.request_create, name="request"),
    path("models/<str:name>/drift/", views.drift, name="drift"),
    path("models/<str:name>/aliases/<str:environment>/restore/", views.alias_restore, name="alias-restore"),
    path("environments/", views.environment_list, name="environments"),
    path("environments/new/", views.environment_create, name="environment-create"),
    path("environments/<str:name>/", views.environment_detail, name="environment"),
    path("environments/<str:name>/edit/", views.environment_edit, name="environment-edit"),
    path(
        "environments/<str:name>/policy-changes/<int:pk>/confirm/",
        views.policy_change_confirm,
        name="policy-change-confirm",
    ),
    path(
        "environments/<str:name>/policy-changes/<int:pk>/withdraw/",
        views.policy_change_withdraw,
        name="policy-change-withdraw",
    ),
    path("environments/<str:name>/webhooks/", views.delivery_list, name="deliveries"),
]
