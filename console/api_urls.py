from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from console.accounts.api import MeView
from console.audit.api import AuditEventListView
from registry.api import views as registry

app_name = "api"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("me/", MeView.as_view(), name="me"),
    path("audit/", AuditEventListView.as_view(), name="audit"),
    path("sync/", registry.SyncView.as_view(), name="sync"),
    path("versions/", registry.VersionSearchView.as_view(), name="version-search"),
    path("models/", registry.ModelListView.as_view(), name="model-list"),
    path("models/<str:name>/", registry.ModelDetailView.as_view(), name="model-detail"),
    path("models/<str:name>/aliases/", registry.ModelAliasesView.as_view(), name="model-aliases"),
    path("models/<str:name>/versions/", registry.VersionListView.as_view(), name="version-list"),
    path("models/<str:name>/versions/<int:version>/", registry.VersionDetailView.as_view(), name="version-detail"),
    path("models/<str:name>/versions/<int:version>/run/", registry.VersionRunView.as_view(), name="version-run"),
]
