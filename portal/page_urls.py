from django.contrib.auth import views as auth_views
from django.urls import path

from portal.views import pages

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", pages.dashboard, name="dashboard"),
    path("models/", pages.models, name="models"),
    path("models/<int:model_id>/", pages.model_detail, name="model-detail"),
    path("models/<int:model_id>/delete/", pages.model_remove, name="model-delete"),
    path("deployments/", pages.deployments, name="deployments"),
    path("deployments/<int:deployment_id>/undeploy/", pages.deployment_remove, name="deployment-undeploy"),
    path("keys/", pages.keys, name="keys"),
    path("keys/<int:key_id>/revoke/", pages.key_revoke, name="key-revoke"),
    path("usage/", pages.usage, name="usage"),
    path("tenant/switch/", pages.tenant_switch, name="tenant-switch"),
]
