from django.urls import path

from . import views

app_name = "deployer"

# Included at the site root, so the paths are written in full.
urlpatterns = [
    path("deployments/", views.deployment_list, name="list"),
    path("deployments/<int:pk>/", views.deployment_detail, name="detail"),
    path("deployments/<int:pk>/health/", views.deployment_health, name="health"),
    path("deployments/<int:pk>/redeploy/", views.deployment_redeploy, name="redeploy"),
    path("deployments/<int:pk>/undeploy/", views.deployment_undeploy, name="undeploy"),
    path("deployments/<int:pk>/stop/", views.deployment_stop, name="stop"),
    path("deployments/<int:pk>/rollback/", views.deployment_rollback, name="rollback"),
    path("rollouts/<int:pk>/", views.rollout_detail, name="rollout"),
    path("rollouts/<int:pk>/traffic/", views.rollout_traffic, name="rollout-traffic"),
    path("rollouts/<int:pk>/promote/", views.rollout_promote, name="rollout-promote"),
    path("rollouts/<int:pk>/abort/", views.rollout_abort, name="rollout-abort"),
]
