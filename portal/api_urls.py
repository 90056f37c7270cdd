from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from billing.api import UsageListView, UsageSummaryView, UsageTimeseriesView
from graph_editor.api import (
    ModelDetailView,
    ModelListView,
    ModelVersionDetailView,
    ModelVersionListView,
)
from tenants.api import ApiKeyListView, ApiKeyRevokeView, TenantView
from workers.api import DeploymentDetailView, DeploymentListView

urlpatterns = [
    path("tenant", TenantView.as_view(), name="api-tenant"),
    path("keys", ApiKeyListView.as_view(), name="api-keys"),
    path("keys/<int:key_id>/revoke", ApiKeyRevokeView.as_view(), name="api-key-revoke"),
    path("models", ModelListView.as_view(), name="api-models"),
    path("models/<int:model_id>", ModelDetailView.as_view(), name="api-model"),
    path("models/<int:model_id>/versions", ModelVersionListView.as_view(), name="api-model-versions"),
    path("versions/<int:version_id>", ModelVersionDetailView.as_view(), name="api-version"),
    path("deployments", DeploymentListView.as_view(), name="api-deployments"),
    path("deployments/<int:deployment_id>", DeploymentDetailView.as_view(), name="api-deployment"),
    path("usage", UsageListView.as_view(), name="api-usage"),
    path("usage/summary", UsageSummaryView.as_view(), name="api-usage-summary"),
    path("usage/timeseries", UsageTimeseriesView.as_view(), name="api-usage-timeseries"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
]
