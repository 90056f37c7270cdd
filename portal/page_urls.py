from django.contrib.auth import views as auth_views
from django.urls import path

from portal.views import dashboard, deployments, keys, models, tenants, usage

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", dashboard.dashboard, name="dashboard"),
    path("models/", models.models, name="models"),
    path("models/<int:model_id>/", models.detail, name="model-detail"),
    path("models/<int:model_id>/delete/", models.delete, name="model-delete"),
    path("deployments/", deployments.deployments, name="deployments"),
    path("deployments/<int:deployment_id>/undeploy/", deployments.undeploy, name="deployment-undeploy"),
    path("deployments/<int:deployment_id>/retry/", deployments.retry, name="deployment-retry"),
    path("keys/", keys.keys, name="keys"),
    path("keys/<int:key_id>/revoke/", keys.revoke, name="key-revoke"),
    path("usage/", usage.usage, name="usage"),
    path("tenant/switch/", tenants.tenant_switch, name="tenant-switch"),
]
