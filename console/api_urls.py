from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from console.accounts.api import MeView
from console.audit.api import AuditEventListView
from deployer import api as deployer
from deployer.metrics_api import DeploymentMetricsView
from registry.api import views as registry
from registry.promotions import api as promotions

app_name = "api"

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("me/", MeView.as_view(), name="me"),
    path("audit/", AuditEventListView.as_view(), name="audit"),
    path("sync/", registry.SyncView.as_view(), name="sync"),
    path("versions/", registry.VersionSearchView.as_view(), name="version-search"),
    path("promotions/", promotions.PromotionListView.as_view(), name="promotion-list"),
    path("promotions/<int:pk>/", promotions.PromotionDetailView.as_view(), name="promotion-detail"),
    path("promotions/<int:pk>/approve/", promotions.ApproveView.as_view(), name="promotion-approve"),
    path("promotions/<int:pk>/reject/", promotions.RejectView.as_view(), name="promotion-reject"),
    path("promotions/<int:pk>/cancel/", promotions.CancelView.as_view(), name="promotion-cancel"),
    path("promotions/<int:pk>/comments/", promotions.CommentView.as_view(), name="promotion-comments"),
    path("environments/", promotions.EnvironmentListView.as_view(), name="environment-list"),
    path(
        "environments/<str:name>/policy-changes/", promotions.PolicyChangeListView.as_view(), name="policy-change-list"
    ),
    path(
        "environments/<str:name>/policy-changes/<int:pk>/confirm/",
        promotions.PolicyChangeConfirmView.as_view(),
        name="policy-change-confirm",
    ),
    path(
        "environments/<str:name>/policy-changes/<int:pk>/withdraw/",
        promotions.PolicyChangeWithdrawView.as_view(),
        name="policy-change-withdraw",
    ),
    path("environments/<str:name>/history/", promotions.EnvironmentHistoryView.as_view(), name="environment-history"),
    path("deployments/", deployer.DeploymentListView.as_view(), name="deployment-list"),
    path("deployments/<int:pk>/", deployer.DeploymentDetailView.as_view(), name="deployment-detail"),
    path("deployments/<int:pk>/metrics/", DeploymentMetricsView.as_view(), name="deployment-metrics"),
    path("deployments/<int:pk>/rollouts/", deployer.DeploymentRolloutsView.as_view(), name="deployment-rollouts"),
    path("deployments/<int:pk>/redeploy/", deployer.RedeployView.as_view(), name="deployment-redeploy"),
    path("deployments/<int:pk>/undeploy/", deployer.UndeployView.as_view(), name="deployment-undeploy"),
    path("deployments/<int:pk>/stop/", deployer.StopView.as_view(), name="deployment-stop"),
    path("deployments/<int:pk>/rollback/", deployer.RollbackView.as_view(), name="deployment-rollback"),
    path("rollouts/<int:pk>/", deployer.RolloutDetailView.as_view(), name="rollout-detail"),
    path("rollouts/<int:pk>/promote/", deployer.CanaryPromoteView.as_view(), name="rollout-promote"),
    path("rollouts/<int:pk>/abort/", deployer.CanaryAbortView.as_view(), name="rollout-abort"),
    path("models/", registry.ModelListView.as_view(), name="model-list"),
    path("models/<str:name>/", registry.ModelDetailView.as_view(), name="model-detail"),
    path("models/<str:name>/aliases/", registry.ModelAliasesView.as_view(), name="model-aliases"),
    path("models/<str:name>/versions/", registry.VersionListView.as_view(), name="version-list"),
    path("models/<str:name>/versions/<int:version>/", registry.VersionDetailView.as_view(), name="version-detail"),
    path("models/<str:name>/versions/<int:version>/run/", registry.VersionRunView.as_view(), name="version-run"),
    path(
        "models/<str:name>/versions/<int:version>/convert/",
        registry.VersionConvertView.as_view(),
        name="version-convert",
    ),
]
