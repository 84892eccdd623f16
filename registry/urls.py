from django.urls import path

from . import views

app_name = "registry"

urlpatterns = [
    path("", views.model_list, name="model-list"),
    path("new/", views.model_create, name="model-create"),
    path("sync/", views.sync_now, name="sync"),
    path("<str:name>/", views.model_detail, name="model-detail"),
    path("<str:name>/edit/", views.model_edit, name="model-edit"),
    path("<str:name>/versions/new/", views.version_register, name="version-register"),
    path("<str:name>/versions/<int:version>/", views.version_detail, name="version-detail"),
    path("<str:name>/versions/<int:version>/run/", views.version_run, name="version-run"),
    path("<str:name>/versions/<int:version>/edit/", views.version_edit, name="version-edit"),
    path("<str:name>/versions/<int:version>/convert/", views.version_convert, name="version-convert"),
]
